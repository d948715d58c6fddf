#!/usr/bin/perl

# registryd and nginx stopped and started in every order, with traffic
# checked at each step: what nginx routes is always the registry's last
# state it could know (from the poll, or mesh_cache_file at a cold start),
# and once both run it is synced again without a reload.
#
#   1. registryd restarted under a running nginx
#   2. nginx restarted under a running registryd
#   3. both stopped; registryd started first, then nginx
#   4. both stopped; nginx started first (from its cache file), then
#      registryd
#   5. both stopped, nginx without a cache file started first: 502 (it
#      knows nothing), then registryd: routes within a poll
#   6. both killed -9 at once, started at once

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;
my $rport = $t->registryd_port;

my %port;
$port{$_} = $t->start_backend(name => $_) for qw(b1 b2 b3 b4 b5);
is $t->register(orders => $_, $port{$_})->{status}, 201, "register $_"
    for qw(b1 b2);

$t->nginx_conf(<<'EOF');
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
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

# who answers 30 requests: "b1,b2" (any failure shows as "failed N")
sub routed {
    my $res = $t->load(requests => 30, clients => 2);
    return "failed $res->{failed}" if $res->{failed};
    return join ',', sort keys %{ $res->{count} };
}

sub state { ($t->mesh_status // {})->{registry}{state} // 'none' }

sub synced {
    my $end = time + 5;
    while (time < $end) {
        return 1 if state() eq 'synced'
                    && ($t->mesh_status->{index} // -1)
                       >= ($t->registry_index // 0);
        sleep 0.02;
    }
    return 0;
}

sub cache_written {
    my ($since) = @_;
    my $end = time + 5;
    while (time < $end) {
        my @s = stat $t->cache_file;
        return 1 if @s && $s[9] >= $since;
        sleep 0.05;
    }
    return 0;
}

$t->start_nginx;
ok synced(), 'start: synced';
is routed(), 'b1,b2', 'start: b1,b2';

# 1. registryd restarted under a running nginx
$t->stop_registryd;
is routed(), 'b1,b2', '1. registryd down: nginx routes on what it has';
$t->start_registryd(port => $rport);
is $t->register(orders => 'b3', $port{b3})->{status}, 201,
    '1. registryd back: register b3';
ok synced(), '1. nginx synced again';
is routed(), 'b1,b2,b3', '1. b3 gets traffic';

# 2. nginx restarted under a running registryd
$t->stop_nginx;
$t->start_nginx;
ok synced(), '2. nginx restarted: synced';
is routed(), 'b1,b2,b3', '2. b1,b2,b3';

# 3. both stopped; registryd first, then nginx
my $t0 = int time;
ok cache_written($t0 - 1), '3. the cache file is current';
$t->stop_nginx;
$t->stop_registryd;
$t->start_registryd(port => $rport);
is $t->register(orders => 'b4', $port{b4})->{status}, 201,
    '3. registryd first: register b4';
$t->start_nginx;
ok synced(), '3. then nginx: synced';
is routed(), 'b1,b2,b3,b4', '3. b1..b4';

# 4. both stopped; nginx first (from its cache file), then registryd
ok cache_written($t0), '4. the cache file holds b4';
$t->stop_nginx;
$t->stop_registryd;
$t->start_nginx;
is routed(), 'b1,b2,b3,b4', '4. nginx first: routes from its cache file';
isnt state(), 'synced', '4. ... and says it is not synced';
$t->start_registryd(port => $rport);
ok synced(), '4. registryd then: synced';
is $t->deregister(orders => 'b1')->{status}, 200, '4. deregister b1';
ok synced(), '4. nginx follows';
is routed(), 'b2,b3,b4', '4. b1 no longer gets traffic';

# 5. both stopped; nginx without a cache file first, then registryd
$t->stop_nginx;
$t->stop_registryd;
unlink $t->cache_file;
$t->start_nginx;
my $r = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP') . '/');
is $r->{status}, 502, '5. nginx first, no cache file: 502, it knows nothing';
$t->start_registryd(port => $rport);
my $back;
my $end = time + 5;
$t0 = time;
while (time < $end) {
    $r = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP') . '/');
    if ($r->{status} == 200) {
        $back = time - $t0;
        last;
    }
    sleep 0.02;
}
ok defined $back, sprintf '5. registryd then: routes within %.2f s',
    $back // 5;
ok synced(), '5. synced';
is routed(), 'b2,b3,b4', '5. b2,b3,b4';

# 6. both killed -9 at once, started at once
ok cache_written(int time - 1), '6. the cache file is current';
kill 'KILL', $t->registryd_pid, $t->nginx_pid, $t->nginx_workers;
$t->kill_registryd;
$t->stop_nginx;
$t->start_registryd(port => $rport);
$t->start_nginx;
ok synced(), '6. both back: synced';
is $t->register(orders => 'b5', $port{b5})->{status}, 201, '6. register b5';
ok synced(), '6. nginx follows';
is routed(), 'b2,b3,b4,b5', '6. b2..b5';

$t->done_checks;
done_testing;
