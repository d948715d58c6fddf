#!/usr/bin/perl

# Mesh membership and TLS to the instances compose with nginx's own
# directives: a mesh upstream reached with proxy_pass https:// and
# proxy_ssl_certificate / proxy_ssl_trusted_certificate / proxy_ssl_verify
# on, in front of instances that require a client certificate (mutual
# TLS). A CA, the instances' certificate and nginx's client certificate are
# made here with openssl. Without the client certificate the instances
# refuse the request; with a CA that did not sign them nginx refuses them.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

# a CA, another one, the instances' certificate (for orders.mesh and
# 127.0.0.1) and nginx's client certificate, all signed by the first CA
my $d = $t->make_certs(certs => [
    [ 'server', '/CN=orders.mesh', 'DNS:orders.mesh,IP:127.0.0.1' ],
    [ 'client', '/CN=nginx-mesh-client' ],
]);

$t->start_registryd;

# two instances: one nginx listening on two ports, TLS, client certs
# signed by the CA required
my @ports = $t->start_backend_nginx(name => 'tls', ports => 2,
    ssl => { cert => "$d/server.crt", key => "$d/server.key",
             client_ca => "$d/ca.crt" });

is $t->register(orders => "i$_", $ports[$_])->{status}, 201, "register i$_"
    for 0 .. 1;

$t->nginx_conf(<<"EOF");
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        # mutual TLS to every member, whichever the registry lists
        location / {
            proxy_pass https://orders;
            proxy_ssl_certificate         $d/client.crt;
            proxy_ssl_certificate_key     $d/client.key;
            proxy_ssl_trusted_certificate $d/ca.crt;
            proxy_ssl_verify              on;
            proxy_ssl_name                orders.mesh;
            proxy_ssl_server_name         on;
        }

        # no client certificate: the instances refuse
        location /nocert/ {
            proxy_pass https://orders/;
            proxy_ssl_trusted_certificate $d/ca.crt;
            proxy_ssl_verify              on;
            proxy_ssl_name                orders.mesh;
        }

        # a CA that did not sign the instances: nginx refuses them
        location /wrongca/ {
            proxy_pass https://orders/;
            proxy_ssl_certificate         $d/client.crt;
            proxy_ssl_certificate_key     $d/client.key;
            proxy_ssl_trusted_certificate $d/other-ca.crt;
            proxy_ssl_verify              on;
            proxy_ssl_name                orders.mesh;
            proxy_next_upstream           off;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

my $c = $t->client;
my (%by, %dn, $bad);
for (1 .. 20) {
    my $r = $c->get('/');
    $bad++ unless $r->{status} == 200;
    $by{ $r->{headers}{'x-backend'} // 'none' }++;
    $dn{ $r->{headers}{'x-client-dn'} // 'none' }++;
}
is $bad // 0, 0, '20 requests over mutual TLS: all 200';
is_deeply \%by, { "p$ports[0]" => 10, "p$ports[1]" => 10 },
    'round robin over both instances';
is_deeply [ keys %dn ], [ 'CN=nginx-mesh-client' ],
    'each instance saw nginx\'s client certificate';

my $r = $c->get('/nocert/');
is $r->{status}, 400, 'without a client certificate the instance refuses';

$r = $c->get('/wrongca/');
is $r->{status}, 502, 'with a CA that did not sign the instance: 502';

my $log = $t->read_file($t->dir . "/error.log") // "";
like $log, qr/upstream SSL certificate verify error/,
    'and nginx says why';

# a change of members reaches TLS traffic as any other
is $t->deregister(orders => 'i0')->{status}, 200, 'deregister i0';
ok $t->wait_mesh_index, 'nginx has the change';
%by = ();
$by{ $c->get('/')->{headers}{'x-backend'} // 'none' }++ for 1 .. 6;
is_deeply \%by, { "p$ports[1]" => 6 }, 'all to i1 now, over TLS';

$t->done_checks(allow => qr/upstream SSL certificate verify error/);
done_testing;
