#!/usr/bin/perl

# DestinationRule trafficPolicy.tls (docs/policies.md, docs/module.md "TLS
# to the instances"), on real TLS traffic: instances that are nginx
# servers with certificates made here with openssl (one requiring a
# client certificate signed by the test's CA, one not) and a plain HTTP
# one. MUTUAL presents the rule's certificate and checks the instance's
# against caCertificates and the service's name; a CA that did not sign
# it, or subjectAltNames it does not carry, is a 502 with the reason in
# the log; a subset's own tls (DISABLE) replaces the rule's and reaches a
# plain instance from a proxy_pass https:// location; SIMPLE presents no
# certificate and sends sni; ISTIO_MUTUAL uses the mesh_tls_* directives;
# a portLevelSettings entry's tls is the one of the upstreams with its
# port= (an entry without tls has none; a subset's own tls is over it);
# SIMPLE or MUTUAL where the location is proxy_pass http://, a file that
# cannot be read, or ISTIO_MUTUAL without the directives is a 502 logged
# once. Every change of tls is a policy applied to the running nginx.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info', workers => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

# the instances' certificate names the service "orders" three ways; the
# mesh's own (ISTIO_MUTUAL) and the rule's client certificate are
# signed by the same CA
my $d = $t->make_certs(certs => [
    [ 'server', '/CN=orders', 'DNS:orders,DNS:orders.mesh,IP:127.0.0.1,'
                              . 'URI:spiffe://mesh/ns/shop/sa/orders' ],
    [ 'client', '/CN=rule-client' ],
    [ 'mesh', '/CN=mesh-nginx' ],
]);

$t->start_registryd;

my ($mtls) = $t->start_backend_nginx(name => 'mtls', ports => 1,
    ssl => { cert => "$d/server.crt", key => "$d/server.key",
             client_ca => "$d/ca.crt" });
my ($stls) = $t->start_backend_nginx(name => 'stls', ports => 1,
    ssl => { cert => "$d/server.crt", key => "$d/server.key" });
my $plain = $t->start_backend(name => 'plain');

is $t->register(orders => 'v1', $mtls, labels => { version => 'v1' })
    ->{status}, 201, 'register orders v1 (TLS, client certificates)';
is $t->register(orders => 'v2', $plain, labels => { version => 'v2' })
    ->{status}, 201, 'register orders v2 (plain HTTP)';
is $t->register(simple => 's1', $stls)->{status}, 201,
    'register simple s1 (TLS)';

my $conf = <<"EOF";
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    MESH_TLS

    upstream orders { mesh orders; }
    upstream orders_443 { mesh orders port=443; }
    upstream orders_8443 { mesh orders port=8443; }
    upstream simple { mesh simple; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            proxy_pass https://orders;
            proxy_next_upstream off;
        }

        location /p443/ {
            proxy_pass https://orders_443/;
            proxy_next_upstream off;
        }

        location /p8443/ {
            proxy_pass https://orders_8443/;
            proxy_next_upstream off;
        }

        location /simple/ {
            proxy_pass https://simple/;
            proxy_next_upstream off;
        }

        location /plain/ {
            proxy_pass http://orders/;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF

# the mesh_tls_* directives go together, and their files must load
(my $bad = $conf) =~ s{MESH_TLS}{mesh_tls_certificate $d/mesh.crt;};
$t->nginx_conf($bad, 'bad.conf');
my ($code, $out) = $t->nginx_test('bad.conf');
isnt $code, 0, 'mesh_tls_certificate alone: nginx -t fails';
like $out, qr/\[emerg\].*"mesh_tls_certificate_key" is missing/,
    '... naming the missing directive';

($bad = $conf) =~ s{MESH_TLS}{mesh_tls_certificate $d/mesh.crt;
    mesh_tls_certificate_key $d/client.key;
    mesh_tls_trusted_certificate $d/ca.crt;};
$t->nginx_conf($bad, 'bad.conf');
($code, $out) = $t->nginx_test('bad.conf');
isnt $code, 0, 'a key that is not the certificate\'s: nginx -t fails';
like $out, qr/\[emerg\].*mesh_tls_certificate_key ".*client\.key" is not the key/,
    '... naming the directive and the file';

(my $good = $conf) =~ s{MESH_TLS}{mesh_tls_certificate $d/mesh.crt;
    mesh_tls_certificate_key $d/mesh.key;
    mesh_tls_trusted_certificate $d/ca.crt;};
$t->nginx_conf($good);
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

my $c = $t->client(keepalive => 0);

sub apply {
    my ($name, $yaml, $what) = @_;
    my $r = $t->apply_policy($name, $yaml);
    like $r->{status}, qr/^20[01]$/, "apply: $what" or diag $r->{content};
    ok $t->wait_mesh_index, '... and nginx has it';
}

sub log_text { $t->read_file($t->dir . '/error.log') // '' }

sub count { my ($re) = @_; my @m = log_text() =~ /$re/g; scalar @m }

my $vs = <<'EOF';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders}
spec:
  hosts: [orders]
  http:
  - match: [{headers: {x-sub: {exact: v2}}}]
    route: [{destination: {host: orders, subset: v2}}]
  - route: [{destination: {host: orders, subset: v1}}]
EOF

sub orders_rule {
    my ($tls) = @_;
    return <<"EOF" . "---\n" . $vs;
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders}
spec:
  host: orders
  trafficPolicy:
    tls:
$tls
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      tls: {mode: DISABLE}
EOF
}

# MUTUAL: the rule's certificate, the instance's checked against the CA
# and the service's name, which is also the SNI

apply('orders', orders_rule(<<"EOF"), 'MUTUAL with the CA that signed');
      mode: MUTUAL
      clientCertificate: $d/client.crt
      privateKey: $d/client.key
      caCertificates: $d/ca.crt
EOF

my $r = $c->get('/');
is $r->{status}, 200, 'MUTUAL: 200 from the instance that wants a '
    . 'client certificate';
is $r->{headers}{'x-backend'}, "p$mtls", '... the TLS instance';
is $r->{headers}{'x-client-dn'}, 'CN=rule-client',
    '... which saw the rule\'s clientCertificate';
is $r->{headers}{'x-sni'}, 'orders', '... and the service\'s name as SNI';

# the subset's own tls replaces the rule's: DISABLE, plain TCP from this
# proxy_pass https:// location to the plain instance
$r = $c->get('/', { 'X-Sub' => 'v2' });
is $r->{status}, 200, 'subset v2 (tls DISABLE) from an https location: 200';
is $r->{headers}{'x-backend'}, 'plain', '... from the plain instance';

# tls in a portLevelSettings entry: the upstreams with that port= take
# it in place of the trafficPolicy's; an entry without tls has none (the
# location decides); a subset's own tls is over the rule's entries
apply('orders', orders_rule(<<"EOF"), 'MUTUAL, and port 443 its own tls');
      mode: MUTUAL
      clientCertificate: $d/client.crt
      privateKey: $d/client.key
      caCertificates: $d/ca.crt
    portLevelSettings:
    - port: {number: 443}
      tls:
        mode: MUTUAL
        clientCertificate: $d/mesh.crt
        privateKey: $d/mesh.key
        caCertificates: $d/ca.crt
        sni: orders.mesh
    - port: {number: 8443}
      loadBalancer: {simple: RANDOM}
EOF

$r = $c->get('/p443/');
is $r->{status}, 200, 'port=443: 200 from the TLS instance';
is $r->{headers}{'x-client-dn'}, 'CN=mesh-nginx',
    '... with the entry\'s clientCertificate';
is $r->{headers}{'x-sni'}, 'orders.mesh', '... and the entry\'s sni';
$r = $c->get('/');
is $r->{headers}{'x-client-dn'}, 'CN=rule-client',
    'no port=: the trafficPolicy\'s certificate still';
is $r->{headers}{'x-sni'}, 'orders', '... and SNI';
is $c->get('/p8443/')->{status}, 400,
    'port=8443, an entry without tls: the location\'s TLS, no client '
    . 'certificate: 400 from the instance';
$r = $c->get('/p443/', { 'X-Sub' => 'v2' });
is $r->{status}, 200, 'port=443 to subset v2: its own tls (DISABLE): 200';
is $r->{headers}{'x-backend'}, 'plain', '... from the plain instance';

apply('orders', orders_rule(<<"EOF"), 'MUTUAL as before, no ports');
      mode: MUTUAL
      clientCertificate: $d/client.crt
      privateKey: $d/client.key
      caCertificates: $d/ca.crt
EOF

# MUTUAL in a proxy_pass http:// location: no TLS there
is $c->get('/plain/')->{status}, 502, 'MUTUAL in a proxy_pass http:// '
    . 'location: 502';
is $c->get('/plain/')->{status}, 502, '... every time';
is count(qr/asks for tls mode MUTUAL to service "orders", which this location reaches over plain HTTP.*use "proxy_pass https:\/\/"/),
    1, '... logged once, with the fix';
is $c->get('/plain/', { 'X-Sub' => 'v2' })->{status}, 200,
    '... while its DISABLE subset is plain HTTP anyway: 200';

# a CA that did not sign the instance: refused, the reason logged
apply('orders', orders_rule(<<"EOF"), 'MUTUAL with another CA');
      mode: MUTUAL
      clientCertificate: $d/client.crt
      privateKey: $d/client.key
      caCertificates: $d/other-ca.crt
EOF

is $c->get('/')->{status}, 502, 'a CA that did not sign the instance: 502';
like log_text(), qr/\[error\].*mesh: upstream SSL certificate verify error: \(\d+:unable to get local issuer certificate\).*other-ca\.crt of the tls of DestinationRule "orders"/,
    '... the verify error logged, with the CA file and the rule';

# a file that cannot be read: 502, logged once, naming rule and file
apply('orders', orders_rule(<<"EOF"), 'MUTUAL with a missing key file');
      mode: MUTUAL
      clientCertificate: $d/client.crt
      privateKey: $d/missing.key
      caCertificates: $d/ca.crt
EOF

is $c->get('/')->{status}, 502, 'a key file that cannot be read: 502';
is $c->get('/')->{status}, 502, '... every time';
is count(qr/\[error\].*DestinationRule "orders" tls: cannot read privateKey ".*missing\.key"/),
    1, '... logged once, naming the rule and the file';

# ISTIO_MUTUAL: the mesh's own certificate, the instance's checked
# against mesh_tls_trusted_certificate
apply('orders', orders_rule("      mode: ISTIO_MUTUAL\n"), 'ISTIO_MUTUAL');

$r = $c->get('/');
is $r->{status}, 200, 'ISTIO_MUTUAL: 200';
is $r->{headers}{'x-client-dn'}, 'CN=mesh-nginx',
    '... with the certificate of mesh_tls_certificate';

# SIMPLE: no client certificate, the name checked against
# subjectAltNames (any of them: DNS or URI), sni sent as given

my $simple = sub {
    my ($tls) = @_;
    return <<"EOF";
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: simple}
spec:
  host: simple
  trafficPolicy:
    tls:
      mode: SIMPLE
      caCertificates: $d/ca.crt
$tls
EOF
};

apply('simple', $simple->(<<'EOF'), 'SIMPLE with names the instance lacks');
      subjectAltNames: [simple.mesh, "spiffe://mesh/ns/shop/sa/simple"]
EOF

is $c->get('/simple/')->{status}, 502, 'SIMPLE, wrong subjectAltNames: 502';
like log_text(), qr/\[error\].*mesh: upstream SSL certificate does not match any of "simple\.mesh", "spiffe:\/\/mesh\/ns\/shop\/sa\/simple" of the tls of DestinationRule "simple"/,
    '... the names logged';

apply('simple', $simple->(<<'EOF'), 'SIMPLE with a URI name it carries');
      sni: orders.mesh
      subjectAltNames: [simple.mesh, "spiffe://mesh/ns/shop/sa/orders"]
EOF

$r = $c->get('/simple/');
is $r->{status}, 200, 'SIMPLE, one of subjectAltNames matches: 200';
is $r->{headers}{'x-client-dn'}, undef,
    '... no client certificate presented (nginx sends no empty header)';
is $r->{headers}{'x-sni'}, 'orders.mesh', '... sni as given';

# without subjectAltNames the name checked is the SNI (the service's
# name by default): the instance's certificate does not say "simple"
apply('simple', $simple->(''), 'SIMPLE without names');
is $c->get('/simple/')->{status}, 502,
    'SIMPLE, the certificate does not name the service: 502';
like log_text(), qr/does not match "simple" of the tls of DestinationRule "simple"/,
    '... the name logged';

# the rule gone: the location's own TLS again, which checks nothing
is $t->delete_policy('simple')->{status}, 200, 'delete the SIMPLE rule';
ok $t->wait_mesh_index, '... and nginx has it';
$r = $c->get('/simple/');
is $r->{status}, 200, 'without tls in a policy the location decides: 200';
is $r->{headers}{'x-sni'}, undef, '... no SNI (proxy_ssl_server_name off)';

# ISTIO_MUTUAL in an nginx without the mesh_tls_* directives: 502, and
# the log says which to add
(my $none = $conf) =~ s{MESH_TLS}{};
$t->nginx_conf($none);
$t->reload_nginx(wait_old => 1);
ok $t->wait_mesh_index, 'reloaded without mesh_tls_*';
is $c->get('/')->{status}, 502, 'ISTIO_MUTUAL without mesh certificates: 502';
is $c->get('/')->{status}, 502, '... every time';
is count(qr/\[error\].*DestinationRule "orders" asks for tls mode ISTIO_MUTUAL to service "orders": this nginx has no mesh certificates; add "mesh_tls_certificate", "mesh_tls_certificate_key" and "mesh_tls_trusted_certificate"/),
    1, '... logged once, naming the directives';
is $c->get('/', { 'X-Sub' => 'v2' })->{status}, 200,
    '... while its DISABLE subset goes on';

# every request ended with a response; the worker never crashed
is count(qr/\[alert\]/), 0, 'no [alert] in the error log';

$t->done_checks(allow => qr/mesh_tls_certificate/);
done_testing;
