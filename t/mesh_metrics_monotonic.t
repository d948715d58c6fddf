#!/usr/bin/perl

# A service's totals are its own counters: when an instance leaves the
# registry they do not drop (a Prometheus counter must never go down), and
# they go on counting.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;

$t->start_registryd;

my %port;
for my $b (qw(b1 b2 b3)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port{$b})->{status}, 201, "register $b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders { mesh orders; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

sub totals {
    my $st = $t->mesh_status || {};
    my ($svc) = grep { $_->{name} eq 'orders' } @{ $st->{services} || [] };
    my $r = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP')
                            . '/mesh/status?format=prometheus');
    my ($prom) = ($r->{content} // '')
        =~ /^nginx_mesh_service_requests_total\{service="orders"\} (\d+)/m;
    return ($svc->{requests}, $svc->{responses}{'2xx'}, $prom);
}

my $c = $t->client;
$c->get('/') for 1 .. 30;
is_deeply [ totals() ], [ 30, 30, 30 ], '30 requests counted';

is $t->deregister(orders => 'b3')->{status}, 200, 'deregister b3';
ok $t->wait_mesh_index, 'nginx has the change';
is_deeply [ totals() ], [ 30, 30, 30 ],
    'the service totals keep the leaving instance\'s requests';

$c->get('/') for 1 .. 10;
is_deeply [ totals() ], [ 40, 40, 40 ], 'and go on counting';

$t->done_checks;
done_testing;
