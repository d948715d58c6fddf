#!/usr/bin/perl

# VirtualService tcp routes for stream mesh upstreams (docs/policies.md,
# "tcp routes"): Istio's tcp-echo task (80% to v1, 20% to v2) on real
# connections, the route chosen by the port the client connected to, a
# port no route matches sent to the whole service, a destination of
# another service's stream upstream, a change reaching new connections
# without reload;
# a Gateway's TCP and TLS servers and tcp and tls routes bound to it
# taken, the tcp ones routing a stream mesh_gateway server, the mesh's
# stream upstreams left alone.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use IO::Select;
use Time::HiRes ();
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

my $oport = $t->start_tcp_backend(name => 'other');
is $t->register(other => 'o1', $oport)->{status}, 201, 'register other';

# an instance that never answers a SYN: its listen queue (backlog 1) is
# full of connections nobody accepts, so the kernel drops what comes next
my $hole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Proto => 'tcp', Listen => 1, ReuseAddr => 1)
    or die "blackhole listen: $!";
my @fill;
for (1 .. 3) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $hole->sockport,
                                  Proto => 'tcp', Blocking => 0);
    push @fill, $s if $s;
}
is $t->register(slow => 'hole', $hole->sockport)->{status}, 201,
    'register slow/hole';

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
    upstream other    { mesh other; }
    upstream slow     { mesh slow; }

    server { listen 127.0.0.1:%%PORT_MAIN%%;  proxy_pass tcp_echo; }
    server { listen 127.0.0.1:%%PORT_SIDE%%;  proxy_pass tcp_echo; }

    server {
        listen 127.0.0.1:%%PORT_SLOW%%;
        proxy_pass slow;
        proxy_connect_timeout 2s;
    }

    # the Gateway tcp-gateway's TCP server on port 31400, as Istio's
    # gateway pod listens on its target port
    server {
        listen 127.0.0.1:%%PORT_GWTCP%%;
        mesh_gateway tcp-gateway port=31400;
        proxy_pass $mesh_upstream;
    }
}
EOF
$t->start_nginx;

my $main = $t->named_port('MAIN');
my $side = $t->named_port('SIDE');


is $t->apply_objects(<<'EOF')->{status}, 200, 'subsets v1 and v2 of tcp-echo';
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
EOF

# Istio's samples/tcp-echo/tcp-echo-20-v2.yaml, for the mesh, with this
# test's port in place of 31400
is $t->apply_objects(<<"EOF")->{status}, 200, 'tcp routes: 80% v1, 20% v2 on one port';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - tcp-echo
  tcp:
  - match:
    - port: $main
    route:
    - destination:
        host: tcp-echo
        subset: v1
      weight: 80
    - destination:
        host: tcp-echo
        subset: v2
      weight: 20
EOF
ok $t->wait_mesh_index, 'nginx has it';

my %seen;
my $n = 1000;
$seen{ $t->tcp_line($main) }++ for 1 .. $n;
my $v2 = $seen{'echo-v2'} // 0;
my $sigma = sqrt($n * 0.2 * 0.8);
is(($seen{'echo-v1'} // 0) + $v2, $n, "$n connections, each to v1 or v2")
    or diag explain \%seen;
cmp_ok abs($v2 - $n * 0.2), '<=', 4 * $sigma,
       "v2 took $v2 of $n (200 +- 4 sigma)";

# a port no route matches: the service as a whole, as Istio's sidecar
# adds a filter chain of the service itself after the VirtualService's
%seen = ();
$seen{ $t->tcp_line($side) || 'closed' }++ for 1 .. 40;
is join(' ', map { "$_=" . ($seen{$_} // 0) } qw(echo-v1 echo-v2 closed)),
   'echo-v1=20 echo-v2=20 closed=0',
   'a port no route matches: the whole service (round robin over v1 and v2)'
   or diag explain \%seen;

is $t->apply_objects(<<"EOF")->{status}, 200, 'all to v2, the side port to other';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - tcp-echo
  tcp:
  - match:
    - port: $main
    route:
    - destination:
        host: tcp-echo
        subset: v2
  - route:
    - destination:
        host: other
EOF
ok $t->wait_mesh_index, 'nginx has it';

%seen = ();
$seen{ $t->tcp_line($main) }++ for 1 .. 50;
is join(' ', keys %seen), 'echo-v2', 'the main port: v2 only, no reload';
%seen = ();
$seen{ $t->tcp_line($side) }++ for 1 .. 20;
is join(' ', keys %seen), 'other', 'the side port: the route without match, '
   . 'to another service\'s stream upstream';

my ($st) = grep { $_->{name} eq 'other' && $_->{protocol} eq 'tcp' }
                @{ $t->mesh_status->{services} };
is $st->{requests}, 20, '... counted under that service';

# connectionPool.tcp.maxConnections: a connection over it is closed, and
# counted as overflow
is $t->apply_objects(<<'EOF')->{status}, 200, 'other: maxConnections 1';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: other
spec:
  host: other
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
EOF
ok $t->wait_mesh_index, 'nginx has it';

my $held = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $side,
                                 Proto => 'tcp', Timeout => 3);
my $hsel = IO::Select->new($held);
my $hin = '';
sysread $held, $hin, 100 if $hsel->can_read(3);
is $hin, "other\n", 'one connection held open to other';
is $t->tcp_line($side), '', 'a second one, over maxConnections: closed';
close $held;

($st) = grep { $_->{name} eq 'other' && $_->{protocol} eq 'tcp' }
             @{ $t->mesh_status->{services} };
is $st->{overflow}, 1, '... and counted as overflow';

# refused, with the field
my $r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad
spec:
  hosts: [tcp-echo2]
  tcp:
  - match:
    - destinationSubnets: [10.0.0.0/8]
    route:
    - destination: {host: tcp-echo}
EOF
is $r->{status}, 400, 'a tcp match on destinationSubnets: 400';
is $r->{json}{field}, 'spec.tcp[0].match[0].destinationSubnets',
   '... naming the field';

# a Gateway with TCP and TLS (PASSTHROUGH) servers, and tcp and tls
# routes bound to it alone: taken by registryd; the stream server with
# mesh_gateway routes by the tcp ones (Istio's tcp-echo sample on
# 31400), the mesh's stream upstreams do not
$r = $t->apply_objects(<<"EOF");
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tcp-gateway
spec:
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*.example"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: at-gateway
spec:
  hosts: ["*.example"]
  gateways: [tcp-gateway]
  tcp:
  - match:
    - port: 31400
    route:
    - destination: {host: tcp-echo, subset: v1}
  tls:
  - match:
    - sniHosts: [db.example]
    route:
    - destination: {host: other}
  - match:
    - sniHosts: ["*.eu.example"]
      port: 443
    route:
    - destination: {host: tcp-echo, subset: v1}
EOF
is $r->{status}, 200, 'tcp and tls routes at a TCP/TLS gateway alone: 200';
ok $t->wait_mesh_index, 'nginx has them';

my $snap = $t->api(GET => '/v1/snapshot')->{json};
my ($gw) = grep { $_->{kind} eq 'Gateway' } @{ $snap->{policies} };
is_deeply $gw->{servers},
    [ { port => 31400, hosts => ['*'], stream => 'TCP' },
      { port => 443, hosts => ['*.example'], stream => 'TLS' } ],
    '... the servers carry "stream", no "protocol"';
%seen = ();
$seen{ $t->tcp_line($t->named_port('GWTCP')) }++ for 1 .. 20;
is join(' ', keys %seen), 'echo-v1',
   'the TCP server (31400): the tcp route, tcp-echo v1';
%seen = ();
$seen{ $t->tcp_line($main) }++ for 1 .. 20;
is join(' ', keys %seen), 'echo-v2',
   '... the main port still routed by the mesh\'s VirtualService';

# connectionPool.tcp.connectTimeout in place of proxy_connect_timeout:
# seconds until nginx gives up on the instance that never answers and
# closes the client's connection
sub closed_after {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->named_port('SLOW'),
                                  Proto => 'tcp', Timeout => 3)
        or return -1;
    my $t0 = Time::HiRes::time();
    my $sel = IO::Select->new($s);
    my $in = '';
    while ($sel->can_read(5)) {
        my $n = sysread $s, $in, 4096, length $in;
        last unless $n;
    }
    close $s;
    return Time::HiRes::time() - $t0;
}

my $took = closed_after();
cmp_ok $took, '>=', 1.8,
    'no connectTimeout: proxy_connect_timeout 2s applies';
cmp_ok $took, '<', 4, '... and ends it';

is $t->apply_objects(<<'EOF')->{status}, 200, 'slow: connectTimeout 300ms, tcpKeepalive';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: slow
spec:
  host: slow
  trafficPolicy:
    connectionPool:
      tcp:
        connectTimeout: 300ms
        tcpKeepalive:
          time: 7s
          interval: 2s
EOF
ok $t->wait_mesh_index, 'nginx has it';

$took = closed_after();
cmp_ok $took, '>=', 0.25, 'connectTimeout 300ms: the connect waits 300ms';
cmp_ok $took, '<', 1.2, '... not proxy_connect_timeout';
like $t->read_file('error.log'), qr/upstream timed out .*while connecting to upstream/,
    '... "upstream timed out" logged';

# with an instance that answers beside it, the timeout moves the
# connection on to it: every client is served
my $fport = $t->start_tcp_backend(name => 'fast');
is $t->register(slow => 'fast', $fport)->{status}, 201, 'register slow/fast';
ok $t->wait_mesh_index, 'nginx has it';

my @served;
for (1 .. 4) {
    my $t0 = Time::HiRes::time();
    my $w = $t->tcp_line($t->named_port('SLOW'));
    push @served, $w if $w eq 'fast' && Time::HiRes::time() - $t0 < 1.2;
}
is scalar(@served), 4,
   '4 connections, each served by fast within 1.2s (the hole timed out)';

my ($sl) = grep { $_->{name} eq 'slow' && $_->{protocol} eq 'tcp' }
                @{ $t->mesh_status->{services} };
my ($hi) = grep { $_->{id} eq 'hole' } @{ $sl->{instances} // [] };
cmp_ok $hi->{failures} // 0, '>=', 1,
    '... the hole\'s timeouts counted as failures'
    or diag explain $sl;

# tcpKeepalive: nginx's connection to the instance has SO_KEEPALIVE
# (without proxy_socket_keepalive) and its first probe due within 7 s
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->named_port('SLOW'),
                                  Proto => 'tcp', Timeout => 3)
        or die "connect: $!";
    my ($timer, $line) = (undef, '');
    for (1 .. 30) {
        my ($rc, $out) = $t->run('ss', '-tnoH', 'state', 'established',
                                 "( dport = :$fport )");
        $line = $out;

        # [Nmin][S(sec|.)][MMMms], as in t/mesh_policy_pool.t
        if ($out =~ /timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:sec|\.))?
                                      (?:(\d+)ms)?,/x)
        {
            $timer = ($1 // 0) * 60 + ($2 // 0) + ($3 // 0) / 1000;
            last;
        }
        select undef, undef, undef, 0.1;
    }
    ok defined $timer, 'tcpKeepalive: the connection to the instance has '
        . 'SO_KEEPALIVE' or diag $line;
    ok defined $timer && $timer <= 7 && $timer > 4,
        '... its first probe due within time: 7s' or diag $line;
    close $s;
}

close $_ for @fill;
close $hole;

my $conf = do { local $/; open my $fh, '<', 'conf/policies/tcp-echo-routes.yaml'
                or die $!; <$fh> };
is $t->apply_objects($conf)->{status}, 200, 'conf/policies/tcp-echo-routes.yaml applies';

$t->done_checks;
done_testing;
