#!/usr/bin/perl

# nginx's stream module as an Istio gateway for TCP and TLS (docs/module.md,
# "mesh_gateway in stream"): Istio's tcp-echo task at a TCP Gateway
# server (all to v1, then 80% v1 / 20% v2), the API reference's SNI
# routing at a TLS PASSTHROUGH server (ssl_preread reads the ClientHello,
# the TLS goes through to the instance untouched), connections no route
# takes closed, a change reaching new connections without reload, and
# nginx -t refusing a bad mesh_gateway.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use IO::Select;
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info', stream => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

for my $v (qw(v1 v2)) {
    my $port = $t->start_tcp_backend(name => "echo-$v");
    is $t->register('tcp-echo' => "echo-$v", $port, labels => { version => $v })
       ->{status}, 201, "register tcp-echo $v";
}

for my $b (qw(login1 rev1)) {
    my $port = $t->start_tcp_backend(name => $b);
    # the VirtualService's login.prod.svc.cluster.local is service
    # "login" of the registry (registryd's domain_suffixes)
    my $svc = $b eq 'login1' ? 'login' : 'reviews';
    is $t->register($svc => $b, $port)->{status}, 201, "register $svc/$b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location = /mesh/status { mesh_status; }
    }
}

stream {
    upstream tcp_echo { mesh tcp-echo; }
    upstream login    { mesh login; }
    upstream reviews  { mesh reviews; }

    # a TCP server whose hosts a VirtualService must share
    server {
        listen 127.0.0.1:%%PORT_DBGW%%;
        mesh_gateway db-gw port=5432;
        proxy_pass $mesh_upstream;
    }

    # the mesh (no gateway): tls routes by SNI, then tcp routes
    server {
        listen 127.0.0.1:%%PORT_MESHTLS%%;
        ssl_preread on;
        proxy_pass tcp_echo;
    }

    # Istio's tcp-echo Gateway listens on 31400: this port stands for it
    server {
        listen 127.0.0.1:%%PORT_TCPGW%%;
        mesh_gateway tcp-echo-gateway port=31400;
        proxy_pass $mesh_upstream;
    }

    # the TLS server of "mygateway" (443): routed by the ClientHello's SNI
    server {
        listen 127.0.0.1:%%PORT_TLSGW%%;
        ssl_preread on;
        mesh_gateway mygateway port=443;
        proxy_pass $mesh_upstream;
    }
}
EOF
$t->start_nginx;

my $tcpgw = $t->named_port('TCPGW');
my $tlsgw = $t->named_port('TLSGW');


# a TLS ClientHello (TLS 1.2, one cipher suite) naming $sni, or without
# server_name when $sni is undef
sub client_hello {
    my ($sni) = @_;
    my $ext = '';
    if (defined $sni) {
        my $list = pack('C n/a*', 0, $sni);
        $ext = pack('n n/a*', 0, pack('n/a*', $list));
    }
    my $body = pack('n', 0x0303) . ("\x11" x 32) . pack('C', 0)
             . pack('n/a*', pack('n', 0x002f)) . pack('C/a*', "\0")
             . pack('n/a*', $ext);
    my $hs = pack('C', 1) . substr(pack('N', length $body), 1) . $body;
    return pack('C n n/a*', 0x16, 0x0301, $hs);
}


is $t->tcp_line($tcpgw), '', 'no Gateway yet: the connection is closed';
like $t->read_file('error.log'),
     qr/mesh: gateway: no Gateway with a TCP or TLS server for port 31400: closed/,
     '... and the reason logged';

# Istio's samples/tcp-echo/tcp-echo-all-v1.yaml: its Gateway, its
# DestinationRule and its VirtualService, as they are
my $all_v1 = <<'EOF';
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tcp-echo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 31400
      name: tcp
      protocol: TCP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tcp-echo-destination
spec:
  host: tcp-echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: 31400
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v1
EOF
my $r = $t->apply_objects($all_v1);
is $r->{status}, 200, 'tcp-echo-all-v1.yaml applies';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';

my %seen;
$seen{ $t->tcp_line($tcpgw, "x\n") || 'closed' }++ for 1 .. 20;
is join(' ', map { "$_=$seen{$_}" } sort keys %seen), 'echo-v1=20',
   'at the TCP gateway: 20 of 20 connections to v1';

{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tcpgw,
                                  Proto => 'tcp', Timeout => 3);
    syswrite $s, "ping gateway\n";
    my $sel = IO::Select->new($s);
    my $in = '';
    while (($in =~ tr/\n//) < 2 && $sel->can_read(3)) {
        last unless sysread $s, $in, 4096, length $in;
    }
    close $s;
    is $in, "echo-v1\nping gateway\n", '... the bytes go through both ways';
}

# samples/tcp-echo/tcp-echo-20-v2.yaml: 80% v1, 20% v2, no reload
$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: 31400
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v1
      weight: 80
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v2
      weight: 20
EOF
is $r->{status}, 200, 'tcp-echo-20-v2.yaml applies';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';

%seen = ();
my $n = 500;
$seen{ $t->tcp_line($tcpgw, "x\n") || 'closed' }++ for 1 .. $n;
my $v2 = $seen{'echo-v2'} // 0;
my $sigma = sqrt($n * 0.2 * 0.8);
ok abs($v2 - $n * 0.2) <= 4 * $sigma,
   "80/20 at the gateway: v2 had $v2 of $n (expected 100, 4 sigma "
   . sprintf('%.0f', 4 * $sigma) . ')' or diag explain \%seen;
is(($seen{'echo-v1'} // 0) + $v2, $n, '... every connection served');

my ($st) = grep { $_->{name} eq 'tcp-echo' && $_->{protocol} eq 'tcp' }
                @{ $t->mesh_status->{services} };
is $st->{requests}, $n + 21,
   "the $n + 21 connections counted by the stream upstream of tcp-echo"
   or diag explain $st;

# the TLS gateway: the VirtualService reference's SNI example
$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mygateway
spec:
  servers:
  - port:
      number: 443
      name: tls
      protocol: TLS
    tls:
      mode: PASSTHROUGH
    hosts:
    - "*.bookinfo.com"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo-sni
spec:
  hosts:
  - "*.bookinfo.com"
  gateways:
  - mygateway
  tls:
  - match:
    - port: 443
      sniHosts:
      - login.bookinfo.com
    route:
    - destination:
        host: login.prod.svc.cluster.local
  - match:
    - port: 443
      sniHosts:
      - reviews.bookinfo.com
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
EOF
is $r->{status}, 200, 'a TLS PASSTHROUGH Gateway and SNI routes';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';

is $t->tcp_line($tlsgw, client_hello('login.bookinfo.com')), 'login1',
   'SNI login.bookinfo.com: to login';
is $t->tcp_line($tlsgw, client_hello('reviews.bookinfo.com')), 'rev1',
   'SNI reviews.bookinfo.com: to reviews';
is $t->tcp_line($tlsgw, client_hello('REVIEWS.Bookinfo.com')), 'rev1',
   '... in any case';
is $t->tcp_line($tlsgw, client_hello('details.bookinfo.com')), '',
   'SNI details.bookinfo.com (no route): closed';
is $t->tcp_line($tlsgw, client_hello('login.example.com')), '',
   'SNI login.example.com (not the server\'s hosts): closed';
is $t->tcp_line($tlsgw, client_hello(undef)), '', 'no SNI: closed';
like $t->read_file('error.log'),
     qr/no Gateway with a TCP or TLS server for port 443 \(no server name: a TLS server takes connections by the ClientHello's, "ssl_preread on" reads it\): closed/,
     '... the log says a TLS server needs the name';

# what reaches the instance is the ClientHello as the client sent it
{
    my $hello = client_hello('login.bookinfo.com');
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $tlsgw,
                                  Proto => 'tcp', Timeout => 3);
    syswrite $s, $hello;
    my $sel = IO::Select->new($s);
    my $in = '';
    while (length $in < length("login1\n") + length $hello
           && $sel->can_read(3))
    {
        last unless sysread $s, $in, 4096, length $in;
    }
    close $s;
    is $in, "login1\n" . $hello,
       '... and the ClientHello reaches the instance untouched (echoed)';
}

like $t->read_file('error.log'),
     qr/mesh: gateway: no VirtualService route for port 443 and SNI "details\.bookinfo\.com": closed/,
     'the closed connection\'s reason logged';

# the most specific sniHosts wins, whatever the order of the routes
$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo-sni
spec:
  hosts:
  - "*.bookinfo.com"
  gateways:
  - mygateway
  tls:
  - match:
    - sniHosts: ["*.bookinfo.com"]
    route:
    - destination: {host: reviews.prod.svc.cluster.local}
  - match:
    - sniHosts: [login.bookinfo.com]
    route:
    - destination: {host: login.prod.svc.cluster.local}
EOF
is $r->{status}, 200, 'a wildcard tls route before an exact one';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';
is $t->tcp_line($tlsgw, client_hello('login.bookinfo.com')), 'login1',
   'SNI login.bookinfo.com: the exact sniHosts wins (login)';
is $t->tcp_line($tlsgw, client_hello('details.bookinfo.com')), 'rev1',
   'SNI details.bookinfo.com: the wildcard (reviews)';

# a TCP server takes the VirtualServices whose hosts it shares
my $dbgw = $t->named_port('DBGW');
$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: db-gw
spec:
  servers:
  - port: {number: 5432, name: tcp, protocol: TCP}
    hosts: [db.example]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: db
spec:
  hosts: [other.example]
  gateways: [db-gw]
  tcp:
  - route:
    - destination: {host: tcp-echo, subset: v2}
EOF
is $r->{status}, 200, 'a TCP server for db.example, a VirtualService for '
   . 'other.example bound to it';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';
is $t->tcp_line($dbgw, "x\n"), '', '... hosts not shared: closed';

$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: db
spec:
  hosts: [db.example]
  gateways: [db-gw]
  tcp:
  - route:
    - destination: {host: tcp-echo, subset: v2}
EOF
is $r->{status}, 200, 'the VirtualService for db.example';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';
is $t->tcp_line($dbgw, "x\n"), 'echo-v2', '... taken: to v2';

# the mesh's own tls routes, for a stream upstream of the service: a
# server name v2.echo.example to v2, anything else by the tcp route to v1
my $meshtls = $t->named_port('MESHTLS');
$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo-mesh
spec:
  hosts:
  - tcp-echo
  - "*.echo.example"
  tls:
  - match:
    - sniHosts: [v2.echo.example]
    route:
    - destination: {host: tcp-echo, subset: v2}
  tcp:
  - route:
    - destination: {host: tcp-echo, subset: v1}
EOF
is $r->{status}, 200, 'a mesh VirtualService with tls and tcp routes';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9), 'nginx has it';

is $t->tcp_line($meshtls, client_hello('v2.echo.example')), 'echo-v2',
   'in the mesh, SNI v2.echo.example: the tls route, to v2';
is $t->tcp_line($meshtls, client_hello('v3.echo.example')), 'echo-v1',
   '... SNI v3.echo.example: no tls route takes it, the tcp route (v1)';
is $t->tcp_line($meshtls, "plain\n"), 'echo-v1', '... not TLS: the tcp route';

# conf/policies' TLS gateway applies as it is
{
    my $yaml = do { local $/; open my $fh, '<',
                    'conf/policies/edge-tls-gateway.yaml' or die $!; <$fh> };
    is $t->apply_objects($yaml)->{status}, 200,
       'conf/policies/edge-tls-gateway.yaml applies';
}

# the Gateway deleted: closed again, without reload
is $t->api(DELETE => '/v1/objects/gateway/default/tcp-echo-gateway')
       ->{status}, 200, 'tcp-echo-gateway deleted';
ok $t->wait_mesh_index, 'nginx has it';
is $t->tcp_line($tcpgw, "x\n"), '', 'the TCP gateway closes connections again';

# nginx -t
for my $case (
    [ 'mesh_gateway a/b/c;', qr/invalid Gateway "a\/b\/c" in "mesh_gateway"/ ],
    [ 'mesh_gateway g port=0;',
      qr/invalid parameter "port=0" of "mesh_gateway"/ ],
) {
    my ($directive, $re) = @$case;
    $t->nginx_conf(<<"EOF", 'bad.conf');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
}
stream {
    server {
        listen 127.0.0.1:%%PORT_BAD%%;
        $directive
        proxy_pass \$mesh_upstream;
    }
}
EOF
    my ($rc, $out) = $t->nginx_test('bad.conf');
    isnt $rc, 0, "nginx -t refuses \"$directive\"";
    like $out, qr/\[emerg\] .*$re/, '... naming the directive and the value'
        or diag $out;
}

$t->nginx_conf(<<'EOF', 'noreg.conf');
%%PRELUDE%%
stream {
    server {
        listen 127.0.0.1:%%PORT_BAD%%;
        mesh_gateway g;
        proxy_pass $mesh_upstream;
    }
}
EOF
my ($rc, $out) = $t->nginx_test('noreg.conf');
isnt $rc, 0, 'nginx -t: mesh_gateway without mesh_registry in http{}';
like $out, qr/\[emerg\] .*"mesh_gateway" in stream\{\} needs "mesh_registry"/,
     '... says so' or diag $out;

$t->done_checks;
done_testing;
