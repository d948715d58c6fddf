#!/usr/bin/perl

# mesh_metrics_rates: rate_10s is the request rate of the last complete
# 10 s slot, rate_60s that of the last six.  Slots are aligned on nginx's
# ngx_current_msec, a CLOCK_MONOTONIC time in ms, so the test can see
# them: a steady load runs across one whole slot; the requests counted at
# its two ends give the observed rate, which rate_10s must match within
# 30% (documented precision: exact counts per slot; the slack is for the
# samples taken a few ms off the boundaries).  About 12-22 s.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep clock_gettime CLOCK_MONOTONIC);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

for my $id (qw(o1 o2)) {
    my $port = $t->start_backend(name => $id, events => 1);
    is $t->register(orders => $id, $port)->{status}, 201,
        "register orders/$id";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders { mesh orders; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        location /orders/ { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

sub mono_ms { clock_gettime(CLOCK_MONOTONIC) * 1000 }

sub sleep_until {
    my ($ms) = @_;
    my $d = ($ms - mono_ms()) / 1000;
    sleep $d if $d > 0;
}

sub orders {
    my $st = $t->mesh_status || {};
    my ($s) = grep { $_->{name} eq 'orders' } @{ $st->{services} || [] };
    return $s || {};
}

my $o = orders();
is $o->{rate_10s}, 0, 'no traffic: rate_10s 0';
is $o->{rate_60s}, 0, 'no traffic: rate_60s 0';

# the next slot boundary at least 0.5 s away, and the one after it
my $now = mono_ms();
my $b1 = (int($now / 10000) + 1) * 10000;
$b1 += 10000 if $b1 - $now < 500;
my $b2 = $b1 + 10000;

my $h = $t->load_start(path => '/orders/', clients => 2,
                       duration => ($b2 - $now) / 1000 + 0.6);

sleep_until($b1 + 20);
my ($t1, $r1) = (mono_ms(), orders()->{requests} // 0);
sleep_until($b2 + 20);
my ($t2, $r2) = (mono_ms(), orders()->{requests} // 0);

my $observed = ($r2 - $r1) / (($t2 - $t1) / 1000);
diag sprintf 'observed %.1f req/s over %.2f s', $observed, ($t2 - $t1) / 1000;
cmp_ok $observed, '>', 20, 'the load is steady enough to measure';

sleep_until($b2 + 250);
$o = orders();
my $r = $t->load_wait($h);
is $r->{failed}, 0, 'no failed request' or diag explain $r->{errors};

my $rate = $o->{rate_10s} // 0;
diag sprintf 'rate_10s %.2f, rate_60s %.2f, observed %.1f', $rate,
    $o->{rate_60s} // 0, $observed;
cmp_ok abs($rate - $observed), '<=', 0.3 * $observed,
    'rate_10s within 30% of the observed rate';

# every request so far completed within the last six slots
my $r60 = ($o->{rate_60s} // 0) * 60;
cmp_ok abs($r60 - $r2), '<=', 0.1 * $r2 + 5,
    'rate_60s x 60: the requests of the last minute';

my $sum = 0;
$sum += $_->{rate_10s} // 0 for @{ $o->{instances} || [] };
cmp_ok abs($sum - $rate), '<=', 0.02 * @{ $o->{instances} || [] } + 0.001,
    'instance rate_10s sum to the service rate_10s';

ok defined $o->{mean_latency_ms_10s} && $o->{mean_latency_ms_10s} >= 0
   && $o->{mean_latency_ms_10s} < 1000,
    'mean_latency_ms_10s plausible';
my $l = $o->{latency_ms} || {};
my $mean = $l->{count} ? $l->{sum} / $l->{count} : 0;
cmp_ok abs(($o->{mean_latency_ms_10s} // 0) - $mean), '<=', 2 + $mean,
    'mean_latency_ms_10s close to the overall mean latency';

$t->done_checks;
done_testing;
