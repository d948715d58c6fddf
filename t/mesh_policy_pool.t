#!/usr/bin/perl

# A DestinationRule's connectionPool on real traffic (docs/policies.md,
# TrafficPolicy), each service with its own backends:
# - http2MaxRequests 3, 5 requests at once to instances that take 1 s:
#   exactly 2 answered 503 at once, 3 answered 200; "overflow" 2 in the
#   status JSON and nginx_mesh_overflow_total 2;
# - maxConnections 1 on two instances, 4 requests at once: 2 answered 200,
#   2 answered 503 at once (nginx queues none: http1MaxPendingRequests),
#   counted as overflow;
# - maxRequestsPerConnection 3 with "keepalive" in the upstream block: the
#   backend never sees a 4th request on one connection (X-Conn-Requests),
#   and does see a 3rd; without the policy a connection carries them all;
# - idleTimeout 1s under keepalive_timeout 60s: after 2 s idle the next
#   request comes on a new upstream connection; without it, on the old;
# - connectTimeout 300ms to an instance whose listen queue is full (its
#   SYNs dropped): 504 after ~0.3 s, under proxy_connect_timeout 10s;
# - tcpKeepalive {time: 7s}: nginx's connection to the instance has
#   SO_KEEPALIVE, its first probe due in <= 7 s (ss's keepalive timer; the
#   kernel's default would be 7200 s);
# - maxRetries 1, 4 requests at once to instances answering 503 after 1 s,
#   retries on 5xx: one retry at a time, the other 3 not made and counted
#   in "retry_overflow" (nginx_mesh_retry_overflow_total).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

-f $t->module_path or BAIL_OUT('no module at ' . $t->module_path);
-x $t->bin('registryd') or BAIL_OUT('no registryd');

$t->start_registryd;

my %port;
for my $b (qw(cap1 cap2)) {
    $port{$b} = $t->start_backend(name => $b, events => 1, delay => 1);
    is $t->register(cap => $b, $port{$b})->{status}, 201, "register cap/$b";
}
for my $b (qw(mc1 mc2)) {
    $port{$b} = $t->start_backend(name => $b, events => 1, delay => 1);
    is $t->register(mc => $b, $port{$b})->{status}, 201, "register mc/$b";
}
for my $b (qw(kc kc2 idle idle2 ka)) {
    $port{$b} = $t->start_backend(name => $b, events => 1,
                                  delay => $b eq 'ka' ? 3 : 0);
    is $t->register($b => $b, $port{$b})->{status}, 201, "register $b/$b";
}
for my $b (qw(rt1 rt2 rt3)) {
    $port{$b} = $t->start_backend(name => $b, events => 1, delay => 1,
                                  status => 503);
    is $t->register(rt => $b, $port{$b})->{status}, 201, "register rt/$b";
}

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
is $t->register(ct => 'hole', $hole->sockport)->{status}, 201,
    'register ct/hole';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream cap { mesh cap; }
    upstream mc  { mesh mc; }
    upstream kc  { mesh kc;  keepalive 4; }
    upstream kc2 { mesh kc2; keepalive 4; }
    upstream idle  { mesh idle;  keepalive 4; keepalive_timeout 60s; }
    upstream idle2 { mesh idle2; keepalive 4; keepalive_timeout 60s; }
    upstream ka  { mesh ka; }
    upstream ct  { mesh ct; }
    upstream rt  {
        mesh rt;
        mesh_balancer round_robin;
        # the failing instances stay in: this is about retries
        mesh_outlier consecutive_5xx=0 consecutive_gateway=0;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_connect_timeout 10s;

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /cap/  { proxy_pass http://cap; }
        location /mc/   { proxy_pass http://mc; }
        location /kc/   { proxy_pass http://kc; }
        location /kc2/  { proxy_pass http://kc2; }
        location /idle/  { proxy_pass http://idle; }
        location /idle2/ { proxy_pass http://idle2; }
        location /ka/   { proxy_pass http://ka; }
        location /ct/   { proxy_pass http://ct; }
        location /rt/   { proxy_pass http://rt; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

sub rule {
    my ($host, $pool) = @_;
    return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
         . "metadata:\n  name: $host\nspec:\n  host: $host\n"
         . "  trafficPolicy:\n    connectionPool:\n$pool";
}

my $policies = join "---\n",
    rule(cap => "      http:\n        http2MaxRequests: 3\n"),
    rule(mc => "      tcp:\n        maxConnections: 1\n"
             . "      http:\n        http1MaxPendingRequests: 0\n"),
    rule(kc => "      http:\n        maxRequestsPerConnection: 3\n"),
    rule(idle => "      http:\n        idleTimeout: 1s\n"),
    rule(ka => "      tcp:\n        tcpKeepalive:\n          time: 7s\n"
             . "          interval: 2s\n          probes: 4\n"),
    rule(ct => "      tcp:\n        connectTimeout: 300ms\n"),
    rule(rt => "      http:\n        maxRetries: 1\n")
    . "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
    . "metadata:\n  name: rt\nspec:\n  hosts: [rt]\n  http:\n"
    . "  - route:\n    - destination: {host: rt}\n"
    . "    retries: {attempts: 2, retryOn: 5xx}\n";

my $r = $t->apply_policy('pools', $policies);
is $r->{status}, 201, 'PUT the connectionPool policies'
    or diag explain $r->{json} // $r->{content};
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
    'nginx has their index' or diag explain $t->mesh_status;

# n requests to path sent at once (gap: seconds between two), each on its
# own connection; returns [status, seconds until its answer was complete]
# in sending order
sub at_once {
    my ($n, $path, $gap) = @_;
    my (@s, %st);
    my $t0 = time;

    for my $i (0 .. $n - 1) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->named_port('HTTP'),
                                      Proto => 'tcp', Timeout => 5)
            or die "connect: $!";
        print $s "GET $path HTTP/1.1\r\nHost: mesh\r\n"
               . "Connection: close\r\n\r\n";
        $s->blocking(0);
        push @s, $s;
        $st{fileno $s} = { i => $i, in => '' };
        sleep $gap if $gap;
    }

    my $sel = IO::Select->new(@s);
    my @out;

    while ($sel->count && time - $t0 < 15) {
        for my $s ($sel->can_read(0.2)) {
            my $c = $st{fileno $s};
            my $got = sysread($s, $c->{in}, 65536, length $c->{in});
            next if !defined $got && $!{EAGAIN};
            next if $got;
            my $resp = MeshTest::parse_http($c->{in});
            $out[$c->{i}] = [ $resp ? $resp->{status} : 0, time - $t0 ];
            $sel->remove($s);
            close $s;
        }
    }

    return map { $_ // [0, 99] } @out[0 .. $n - 1];
}

sub service_status {
    my ($name) = @_;
    my $st = $t->mesh_status or return {};
    my ($s) = grep { $_->{name} eq $name } @{ $st->{services} || [] };
    return $s || {};
}

sub prom {
    my ($name, $svc) = @_;
    my $p = $t->mesh_prometheus;
    return $t->prom_sum($t->parse_prometheus($p->{text}), $name,
                        { service => $svc });
}

# http2MaxRequests: a cap on the service's requests in flight

{
    my @got = at_once(5, '/cap/');
    my @fast = grep { $_->[0] == 503 } @got;
    my @ok = grep { $_->[0] == 200 } @got;

    is scalar(@fast), 2, 'http2MaxRequests 3: 2 of 5 answered 503'
        or diag explain \@got;
    is scalar(@ok), 3, '... and 3 answered 200' or diag explain \@got;
    ok !(grep { $_->[1] > 0.5 } @fast), '... the 503s at once, not after '
        . 'the instances answered' or diag explain \@got;
    ok !(grep { $_->[1] < 0.9 } @ok), '... the 200s after the 1 s delay'
        or diag explain \@got;

    my $s = service_status('cap');
    is $s->{overflow}, 2, '... "overflow" 2 in the status JSON'
        or diag explain $s;
    is $s->{requests}, 3, '... and 3 requests sent upstream';
    is $s->{active}, 0, '... none in flight after';
    is prom('nginx_mesh_overflow_total', 'cap'), 2,
        '... nginx_mesh_overflow_total{service="cap"} 2';

    my @again = at_once(3, '/cap/');
    is scalar(grep { $_->[0] == 200 } @again), 3,
        '... 3 at once pass again: the places were given back'
        or diag explain \@again;
}

# maxConnections with nothing queued: 503 at once, counted as overflow
# (20 ms apart: unlike http2MaxRequests, two workers admitting in the
# same microsecond may both see an instance below its cap)

{
    my @got = at_once(4, '/mc/', 0.02);
    my @fast = grep { $_->[0] == 503 } @got;

    is scalar(grep { $_->[0] == 200 } @got), 2,
        'maxConnections 1, two instances: 2 of 4 answered 200'
        or diag explain \@got;
    is scalar(@fast), 2, '... 2 answered 503 (none queued)'
        or diag explain \@got;
    ok !(grep { $_->[1] > 0.5 } @fast), '... at once' or diag explain \@got;
    is service_status('mc')->{overflow}, 2, '... counted as overflow';
    is prom('nginx_mesh_overflow_total', 'mc'), 2,
        '... in Prometheus too';
}

# maxRequestsPerConnection: a kept connection carries at most N requests

sub conn_requests {
    my ($path, $n) = @_;
    my $c = $t->client(keepalive => 1, timeout => 5);
    my @n = map { $c->get($path)->{headers}{'x-conn-requests'} // 0 }
            1 .. $n;
    $c->close;
    return @n;
}

{
    my @n = conn_requests('/kc/', 12);
    my ($max) = sort { $b <=> $a } @n;
    is $max, 3, 'maxRequestsPerConnection 3: at most 3 requests on one '
        . 'upstream connection, and 3 reached' or diag "@n";

    @n = conn_requests('/kc2/', 12);
    ($max) = sort { $b <=> $a } @n;
    cmp_ok $max, '>', 3, '... without it one connection carries more'
        or diag "@n";
}

# idleTimeout: a kept connection idle longer is closed

{
    my $c = $t->client(keepalive => 1, timeout => 5);
    my $c2 = $t->client(keepalive => 1, timeout => 5);

    my @before = map { $_->get('/idle/')->{headers}{'x-conn-requests'} }
                 $c, $c;
    my @ctl = map { $_->get('/idle2/')->{headers}{'x-conn-requests'} }
              $c2, $c2;
    is "@before", '1 2', 'idleTimeout 1s: back to back, one connection';
    is "@ctl", '1 2', '... the same without it';

    sleep 2;

    is $c->get('/idle/')->{headers}{'x-conn-requests'}, 1,
        '... after 2 s idle, a new upstream connection';
    is $c2->get('/idle2/')->{headers}{'x-conn-requests'}, 3,
        '... without it the old one (keepalive_timeout 60s)';
    $_->close for $c, $c2;
}

# connectTimeout: an instance that does not answer the SYN

{
    my $c = $t->client(keepalive => 0, timeout => 12);
    my $t0 = time;
    my $resp = $c->get('/ct/');
    my $took = time - $t0;

    is $resp->{status}, 504, 'connectTimeout 300ms: 504 from an instance '
        . 'that drops SYNs';
    cmp_ok $took, '>=', 0.25, '... after the connect timeout';
    cmp_ok $took, '<', 2, '... well under proxy_connect_timeout 10s'
        or diag "took $took s";
}

# tcpKeepalive: SO_KEEPALIVE with the given idle time on the connection

{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->named_port('HTTP'),
                                  Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    print $s "GET /ka/ HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n";

    # the backend holds the request 3 s: the connection is there
    my ($timer, $line) = (undef, '');
    for (1 .. 20) {
        my ($rc, $out) = $t->run('ss', '-tnoH', 'state', 'established',
                                 "( dport = :$port{ka} )");
        $line = $out;

        # ss writes the time left as [Nmin][S(sec|.)][MMMms]: "6.992ms"
        # is 6 s 992 ms, "119min" the kernel's default
        if ($out =~ /timer:\(keepalive,(?:(\d+)min)?(?:(\d+)(?:sec|\.))?
                                      (?:(\d+)ms)?,/x)
        {
            $timer = ($1 // 0) * 60 + ($2 // 0) + ($3 // 0) / 1000;
            last;
        }
        sleep 0.1;
    }

    ok defined $timer, 'tcpKeepalive: nginx\'s connection to the instance '
        . 'has SO_KEEPALIVE' or diag $line;
    ok defined $timer && $timer <= 7 && $timer > 4,
        '... its first probe due within time: 7s (the kernel\'s default '
        . 'is 7200 s)' or diag $line;

    local $/;
    my $resp = MeshTest::parse_http(scalar <$s>);
    is $resp && $resp->{status}, 200, '... and the request is answered';
    close $s;
}

# maxRetries: retries in flight to the service capped

{
    my @got = at_once(4, '/rt/');
    is scalar(grep { $_->[0] >= 500 } @got), 4,
        'maxRetries 1: every request to the failing instances fails'
        or diag explain \@got;

    my $s = service_status('rt');
    is $s->{retry_overflow}, 3, '... 3 of the 4 retries not made '
        . '("retry_overflow")' or diag explain $s;
    is $s->{retries}, 2, '... the one that was made retried twice, as '
        . 'attempts 2 allows' or diag explain $s;
    is $s->{requests}, 6, '... 6 tries in all' or diag explain $s;
    is prom('nginx_mesh_retry_overflow_total', 'rt'), 3,
        '... nginx_mesh_retry_overflow_total{service="rt"} 3';
    is scalar(grep { $_->[1] < 1.8 } @got), 3,
        '... 3 fail after their first try' or diag explain \@got;
    is scalar(grep { $_->[1] > 2.8 } @got), 1,
        '... 1 after three' or diag explain \@got;
}

close $_ for @fill, $hole;

$t->done_checks;
done_testing;
