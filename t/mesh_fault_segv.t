#!/usr/bin/perl

# kill -SEGV of the worker that holds the poll lease, under load and with
# requests in flight on a slow instance: another worker takes the poll
# over (synced again, a registration made after reaches traffic), the
# requests the dead worker held are taken back from the instance's active
# count (it does not stay pinned), only the requests in flight on the dead
# worker fail, and load started after the crash does not fail at all.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new(log_level => 'info', workers => 2);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

# a crash on purpose: under the sanitizers, not a report of theirs
$ENV{ASAN_OPTIONS} = join ':', grep { length } $ENV{ASAN_OPTIONS} // '',
    'handle_segv=0';

$t->start_registryd;

my %port;
$port{slow} = $t->start_backend(name => 'slow', events => 1, delay => 30);
$port{$_} = $t->start_backend(name => $_) for qw(f1 f2 f3);
is $t->register(slow => 'slow', $port{slow})->{status}, 201, 'register slow';
is $t->register(orders => $_, $port{$_})->{status}, 201, "register $_"
    for qw(f1 f2);

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream slow {
        mesh slow;
    }

    upstream orders {
        mesh orders;
        mesh_balancer least_request;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /slow {
            proxy_pass http://slow;
            proxy_read_timeout 60s;
        }
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

sub slow_active {
    my $st = $t->mesh_status or return -1;
    my ($s) = grep { $_->{name} eq 'slow' } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq 'slow' } @{ $s ? $s->{instances} : [] };
    return $i ? $i->{active} : -1;
}

# twenty requests that will wait 30 s, spread over both workers
my @socks;
for (1 .. 20) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->named_port('HTTP'), Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    print $s "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    push @socks, $s;
}

my ($end, $a) = (time + 5, -1);
while (time < $end) {
    $a = slow_active();
    last if $a == 20;
    sleep 0.05;
}
is $a, 20, 'twenty requests in flight on "slow"';

my $owner = $t->mesh_status->{registry}{poller_pid};
ok $owner && grep({ $_ == $owner } $t->nginx_workers),
    "the poll is worker ${owner}'s";

my $load = $t->load_start(clients => 4, duration => 4, keepalive => 0);
sleep 0.5;

kill 'SEGV', $owner;
my $killed = time;

# another worker takes the poll over
my ($took, $st);
while (time - $killed < 5) {
    $st = $t->mesh_status;
    my $p = $st && $st->{registry}{poller_pid};
    if ($p && $p != $owner && kill(0, $p)
        && ($st->{registry}{state} // '') eq 'synced')
    {
        $took = time - $killed;
        last;
    }
    sleep 0.02;
}
ok defined $took, sprintf 'another worker took the poll over (%.2f s)',
    $took // 5;

my $res = $t->load_wait($load);
ok $res->{total} > 100, "load through the crash: $res->{total} requests";
cmp_ok $res->{failed}, '<=', 4,
    "only requests in flight on the dead worker failed ($res->{failed})";

# a registration made after the crash reaches traffic
is $t->register(orders => 'f3', $port{f3})->{status}, 201, 'register f3';
ok $t->wait_mesh_index, 'the new poller follows the change';
$res = $t->load(requests => 60, clients => 3);
is $res->{failed}, 0, 'load after the crash: no request fails';
is join(',', sort keys %{ $res->{count} }), 'f1,f2,f3',
    'f3 gets traffic';

# the dead worker's requests do not pin "slow": when the clients of the
# survivors go, active returns to 0
close $_ for @socks;
($end, $a) = (time + 10, -1);
while (time < $end) {
    $a = slow_active();
    last if $a == 0;
    sleep 0.05;
}
is $a, 0, 'active on "slow" back to 0: nothing pinned by the dead worker';
like $t->read_file('error.log') // '',
    qr/mesh: worker $owner is gone: its requests in flight are taken back/,
    '... the dead worker\'s requests taken back, with a notice';

$t->done_checks(allow => qr/worker process $owner exited on signal 11/);
done_testing;
