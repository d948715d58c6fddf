#!/usr/bin/perl

# Mesh upstreams in nginx's stream module (docs/module.md, "TCP services"):
# a TCP echo service of three instances behind `mesh echo;` in stream{},
# on real connections. Weights respected; consistent hash on
# $remote_addr puts each client where stock stream `hash $remote_addr
# consistent` puts it; a registration reaches new connections without a
# reload; an instance killed with -9 under traffic costs no failed
# connection (the next instance is tried, and it is ejected); the http
# block's poller and status serve the stream upstreams too.

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

ok -f $t->stream_module_path, 'nginx\'s stream module is installed ('
   . $t->stream_module_path . ')';

$t->start_registryd;

my %port;
my %weight = (e1 => 1, e2 => 1, e3 => 2);

for my $e (qw(e1 e2 e3)) {
    $port{$e} = $t->start_tcp_backend(name => $e);
    is $t->register(echo => $e, $port{$e}, weight => $weight{$e})->{status},
       201, "register $e (weight $weight{$e})";
}

$port{e4} = $t->start_tcp_backend(name => 'e4');

$t->nginx_conf(<<"EOF");
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    # the same service in http: counted apart from the stream upstreams
    upstream echo_http {
        mesh echo;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location = /mesh/status { mesh_status; }
    }
}

stream {
    upstream echo {
        mesh echo;
    }

    upstream echo_hash {
        mesh echo;
        mesh_balancer consistent_hash \$remote_addr;
    }

    upstream stock_hash {
        hash \$remote_addr consistent;
        server 127.0.0.1:$port{e1} weight=1;
        server 127.0.0.1:$port{e2} weight=1;
        server 127.0.0.1:$port{e3} weight=2;
    }

    proxy_connect_timeout 2s;

    server { listen 127.0.0.1:%%PORT_TCP%%;   proxy_pass echo; }
    server { listen 127.0.0.1:%%PORT_HASH%%;  proxy_pass echo_hash; }
    server { listen 127.0.0.1:%%PORT_STOCK%%; proxy_pass stock_hash; }
}
EOF
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry';

# one connection: the instance's name, then the echo of a line
sub conn {
    my ($port, %o) = @_;
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => 3, ($o{from} ? (LocalAddr => $o{from}) : ()),
    ) or return "connect: $!";
    my $sel = IO::Select->new($s);
    my $in = '';
    my $want = $o{line} ? 2 : 1;

    syswrite $s, $o{line} if $o{line};
    while (($in =~ tr/\n//) < $want && $sel->can_read(3)) {
        my $n = sysread $s, $in, 4096, length $in;
        last unless $n;
    }
    close $s;
    return $in;
}

my $tcp = $t->named_port('TCP');

# the stream upstreams' record of service echo in the status
sub echo_status {
    my ($s) = grep { $_->{name} eq 'echo' && $_->{protocol} eq 'tcp' }
                   @{ $t->mesh_status->{services} };
    return $s;
}

# the status once every session has ended: nginx ends a session a moment
# after its client has gone, which a slow (sanitizer) build shows
sub echo_settled {
    my $s;
    for (1 .. 250) {
        $s = echo_status();
        last if $s->{active} == 0;
        select undef, undef, undef, 0.02;
    }
    return $s;
}


is conn($tcp, line => "hello mesh\n") =~ s/^e\d\n//r, "hello mesh\n",
   'a line through the stream mesh upstream comes back';

my %seen;
$seen{ (split /\n/, conn($tcp))[0] // 'none' }++ for 1 .. 400;
is join(' ', map { "$_=" . ($seen{$_} // 0) } sort keys %seen),
   'e1=100 e2=100 e3=200',
   'weights 1:1:2 over 400 connections (one round robin for the workers)';

my $st = echo_status();
cmp_ok $st->{requests}, '>=', 401, 'the status counts the connections '
   . 'under service echo' or diag explain $st;

# consistent hash: where stock stream `hash $remote_addr consistent` goes
my ($same, $n) = (0, 0);
for my $i (2 .. 41) {
    my $from = "127.0.0.$i";
    my $m = (split /\n/, conn($t->named_port('HASH'), from => $from))[0];
    my $s = (split /\n/, conn($t->named_port('STOCK'), from => $from))[0];
    $n++;
    $same++ if defined $m && defined $s && $m eq $s;
}
is $same, $n, "consistent hash on \$remote_addr: $same of $n clients where "
   . 'stock hash ... consistent puts them';

is $t->register(echo => 'e4', $port{e4})->{status}, 201, 'register e4';
ok $t->wait_mesh_index, '... nginx has it';
%seen = ();
$seen{ (split /\n/, conn($tcp))[0] // 'none' }++ for 1 .. 50;
ok $seen{e4}, "new connections reach e4 without a reload ($seen{e4} of 50)";

# the counters of the sessions, exact: 20 connections, each sends "ping\n"
# (5 bytes to the instance) and gets its name and the echo (3 + 5 bytes)
my $before = echo_settled();
is conn($tcp, line => "ping\n") =~ s/^e\d\n//r, "ping\n", 'a ping' for 1 .. 20;

my $after = echo_settled();

is $after->{requests} - $before->{requests}, 20, '20 connections counted';
is $after->{session_ms}{count} - $before->{session_ms}{count}, 20,
   '20 sessions ended';
is $after->{bytes_sent} - $before->{bytes_sent}, 100,
   'bytes sent to the instances: 20 x 5';
is $after->{bytes_received} - $before->{bytes_received}, 160,
   'bytes received from them: 20 x 8';
my $inst_sent = 0;
$inst_sent += $_->{bytes_sent} for @{ $after->{instances} };
is $inst_sent, $after->{bytes_sent}, 'the instances\' bytes add up to the '
   . 'service\'s';

is join(' ', sort map { $_->{protocol} } grep { $_->{name} eq 'echo' }
                                        @{ $t->mesh_status->{services} }),
   'http tcp', 'the service in both blocks: one record each, by protocol';

my $prom = $t->mesh_prometheus;
my $parsed = $t->parse_prometheus($prom->{text});
is scalar @{ $parsed->{bad} }, 0, 'Prometheus text parses';
is $t->prom_sum($parsed, 'nginx_mesh_tcp_connections_total',
                { service => 'echo' }),
   $after->{requests}, 'nginx_mesh_tcp_connections_total = the JSON\'s';
is $t->prom_sum($parsed, 'nginx_mesh_tcp_bytes_sent_total',
                { service => 'echo' }),
   $after->{bytes_sent}, 'nginx_mesh_tcp_bytes_sent_total = the JSON\'s';
is $t->prom_sum($parsed, 'nginx_mesh_tcp_session_duration_seconds_count',
                { service => 'echo' }),
   $after->{session_ms}{count}, 'the session histogram\'s count too';
is $t->prom_sum($parsed, 'nginx_mesh_requests_total', { service => 'echo' }),
   0, 'the http series of echo count its http upstream only: no request';
my ($pc, $pout) = $t->promtool_check($prom->{text});
is $pc, 0, 'promtool check metrics: clean' or diag $pout;

# kill -9 under concurrent connections
$t->kill_backend('e2');

my @pids;
my $fails = $t->dir . '/fails';
for my $c (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $bad = 0;
        for (1 .. 50) {
            my $r = conn($tcp, line => "x\n");
            $bad++ unless $r =~ /^e[134]\nx\n$/;
        }
        open my $fh, '>>', $fails or die;
        print $fh "$bad\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;

my $bad = 0;
$bad += $_ for split /\n/, $t->read_file('fails') // '';
is $bad, 0, '200 connections from 4 clients after kill -9 of e2: '
   . 'none failed';

$st = echo_status();
my ($e2) = grep { $_->{id} eq 'e2' } @{ $st->{instances} || [] };
is $e2 && $e2->{state}, 'ejected', 'e2 is ejected' or diag explain $e2;

like $t->read_file('error.log'), qr/mesh: ejected instance "e2"/,
     '... and the error log says so';

# configurations nginx -t refuses, with the reason
my $mod = $t->module_path;
my $smod = $t->stream_module_path;

$t->nginx_conf(<<"EOF", 'order.conf');
load_module $mod;
load_module $smod;
error_log %%TESTDIR%%/order.log;
pid %%TESTDIR%%/order.pid;
events { }
http { mesh_registry %%REGISTRY%%; }
stream { upstream u { mesh echo; } }
EOF
my ($code, $out) = $t->nginx_test('order.conf');
isnt $code, 0, 'the mesh module loaded before the stream module: nginx -t '
   . 'fails';
like $out, qr/\[emerg\].*"mesh" in stream\{\} needs the stream module loaded before the mesh module/,
     '... saying to put the stream module first';

$t->nginx_conf(<<"EOF", 'noreg.conf');
load_module $smod;
load_module $mod;
error_log %%TESTDIR%%/noreg.log;
pid %%TESTDIR%%/noreg.pid;
events { }
stream { upstream u { mesh echo; } }
http { mesh_registry %%REGISTRY%%; }
EOF
($code, $out) = $t->nginx_test('noreg.conf');
isnt $code, 0, 'stream{} before the http{} with mesh_registry: nginx -t '
   . 'fails';
like $out, qr/\[emerg\].*"mesh" in stream\{\} needs "mesh_registry" in an http\{\} block that comes before stream\{\}/,
     '... saying so';

# conf/nginx-stream.conf as it is, but for paths and ports
my $example = do { local $/; open my $fh, '<', 'conf/nginx-stream.conf'
                   or die $!; <$fh> };
$example =~ s{modules/ngx_stream_module\.so}{$smod};
$example =~ s{modules/ngx_http_mesh_module\.so}{$mod};
$example =~ s{http://127\.0\.0\.1:8500}{%%REGISTRY%%};
$example =~ s{listen 127\.0\.0\.1:8080}{listen 127.0.0.1:%%PORT_EX1%%};
$example =~ s{listen 6379}{listen 127.0.0.1:%%PORT_EX2%%};
$example =~ s{listen 8443}{listen 127.0.0.1:%%PORT_EX3%%};
$t->nginx_conf("error_log %%TESTDIR%%/ex.log;\npid %%TESTDIR%%/ex.pid;\n"
               . $example, 'example.conf');
($code, $out) = $t->nginx_test('example.conf');
is $code, 0, 'conf/nginx-stream.conf passes nginx -t' or diag $out;

$t->done_checks;
done_testing;
