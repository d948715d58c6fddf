#!/usr/bin/perl

# DestinationRule loadBalancer.localityLbSetting and warmupDurationSecs
# (docs/policies.md), on traffic. This nginx is in us-east/z1
# (mesh_locality); instances register their locality as their zone.
#
# - failover (Envoy's priorities): all healthy, every request stays in
#   the local zone; with 2 of its 5 instances killed (ejected: 60%
#   healthy) the zone takes min(100, 1.4 * 60) = 84% of the requests and
#   the next priority (same region) the rest, measured over 2,000
#   requests within 4 sigma;
# - failover from/to: with the local instance down, the region "to"
#   names takes all; another policy, applied while nginx runs, moves it;
# - distribute: 70/30 between two localities, within 4 sigma; a locality
#   it leaves out gets nothing;
# - without mesh_locality (reload): round robin over all, as before;
# - warmupDurationSecs 4s: a new instance's share grows over the window
#   (early slice small, late slice near its full share, then equal).

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

my %zone = (
    l1 => 'us-east/z1', l2 => 'us-east/z1', l3 => 'us-east/z1',
    l4 => 'us-east/z1', l5 => 'us-east/z1',
    r1 => 'us-east/z2', r2 => 'us-east/z2',
    e1 => 'eu-west/z1', a1 => 'ap-south/z1',
);

for my $b (sort keys %zone) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port, zone => $zone{$b})->{status}, 201,
       "register $b in $zone{$b}";
}

# pay: one local instance that refuses connections, one in each of two
# other regions
is $t->register(pay => 'p-local', $t->port, zone => 'us-east/z1')->{status},
   201, 'register p-local (nothing listens)';

for my $b (qw(p-eu p-ap)) {
    my $z = $b eq 'p-eu' ? 'eu-west/z9' : 'ap-south/z9';
    is $t->register(pay => $b, $t->start_backend(name => $b, events => 1),
                    zone => $z)->{status}, 201, "register $b in $z";
}

# cart: two localities of us-east and one of eu-west
for my $b (qw(c1 c2 c3 c4)) {
    my $z = $b =~ /[12]/ ? 'us-east/z1' : $b eq 'c3' ? 'us-east/z2'
                                                     : 'eu-west/z1';
    is $t->register(cart => $b, $t->start_backend(name => $b, events => 1),
                    zone => $z)->{status}, 201, "register $b in $z";
}

for my $b (qw(s1 s2)) {
    is $t->register(slow => $b, $t->start_backend(name => $b, events => 1))
           ->{status}, 201, "register $b";
}

sub conf {
    my ($locality) = @_;
    $t->nginx_conf(<<"EOF");
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
$locality
    upstream orders { mesh orders; }
    upstream pay    { mesh pay; }
    upstream cart   { mesh cart; }
    upstream slow   { mesh slow; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /orders/ { proxy_pass http://orders; }
        location /pay/    { proxy_pass http://pay; }
        location /cart/   { proxy_pass http://cart; }
        location /slow/   { proxy_pass http://slow; }
        location = /mesh/status { mesh_status; }
    }
}
EOF
}

sub dr {
    my ($name, $lb, $outlier) = @_;
    $outlier //= "    outlierDetection:\n"
               . "      consecutive5xxErrors: 1\n"
               . "      interval: 1s\n"
               . "      baseEjectionTime: 10m\n"
               . "      maxEjectionPercent: 100\n";
    my $r = $t->apply_policy($name, <<"EOF");
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: $name
spec:
  host: $name
  trafficPolicy:
    loadBalancer:
$lb
$outlier
EOF
    like $r->{status}, qr/^20[01]$/, "DestinationRule $name applied"
        or diag explain $r->{json};
    ok $t->wait_mesh_index, '... nginx has it';
}

# shares of the backends over n requests
sub shares {
    my ($path, $n) = @_;
    my $l = $t->load(requests => $n, path => $path, clients => 4);
    is $l->{ok}, $n, "$n requests to $path, all 200"
        or diag explain $l->{statuses}, $l->{errors};
    return $l->{count};
}

sub sum_of {
    my ($count, $re) = @_;
    my $s = 0;
    $s += $count->{$_} for grep { /$re/ } keys %$count;
    return $s;
}

# |observed - expected| within 4 standard deviations of a binomial
sub within_4sigma {
    my ($got, $n, $p, $what) = @_;
    my $sigma = sqrt($n * $p * (1 - $p));
    my $ok = abs($got - $n * $p) <= 4 * $sigma + 1;
    ok $ok, sprintf('%s: %d of %d (%.1f%%), expected %.1f%% +- %.1f',
                    $what, $got, $n, 100 * $got / $n, 100 * $p,
                    400 * $sigma / $n);
}

conf('    mesh_locality us-east/z1;');
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx (mesh_locality us-east/z1) has the index';

# failover, default priorities

dr('orders', "      simple: ROUND_ROBIN\n"
           . "      localityLbSetting:\n"
           . "        enabled: true");

my $c = shares('/orders/', 400);
is sum_of($c, qr/^l/), 400, 'all healthy: every request stays in us-east/z1'
    or diag explain $c;
is scalar(grep { /^l/ } keys %$c), 5, '... spread over its 5 instances';

$t->kill_backend($_) for qw(l1 l2);
shares('/orders/', 100);         # their first failures eject them

my $n = 2000;
$c = shares('/orders/', $n);
is sum_of($c, qr/^l[12]$/), 0, 'killed instances (ejected) get nothing';
within_4sigma(sum_of($c, qr/^l/), $n, 0.84,
              '3 of 5 local healthy: the local zone takes min(100, 1.4*60)%');
within_4sigma(sum_of($c, qr/^r/), $n, 0.16, '... the same region the rest');
is sum_of($c, qr/^[ea]/), 0, '... other regions nothing';

# failover from/to: the local instance refuses, then is ejected

dr('pay', "      localityLbSetting:\n"
        . "        failover:\n"
        . "        - {from: us-east, to: ap-south}");
shares('/pay/', 20);
$c = shares('/pay/', 200);
is $c->{'p-ap'} // 0, 200, 'failover us-east -> ap-south: all to ap-south'
    or diag explain $c;

dr('pay', "      localityLbSetting:\n"
        . "        failover:\n"
        . "        - {from: us-east, to: eu-west}");
$c = shares('/pay/', 200);
is $c->{'p-eu'} // 0, 200,
   'the policy changed without reload: all to eu-west' or diag explain $c;

# without outlierDetection, Istio does not fail over: all priorities one
dr('pay', "      simple: ROUND_ROBIN\n"
        . "      localityLbSetting:\n"
        . "        failover:\n"
        . "        - {from: us-east, to: eu-west}", '');
$c = shares('/pay/', 200);
ok abs(($c->{'p-eu'} // 0) - ($c->{'p-ap'} // 0)) <= 20,
   'no outlierDetection: no failover, both regions share'
    or diag explain $c;

# distribute

dr('cart', "      localityLbSetting:\n"
         . "        distribute:\n"
         . "        - from: us-east/*\n"
         . "          to: {\"us-east/z1\": 70, \"eu-west/*\": 30}", '');
$c = shares('/cart/', $n);
within_4sigma(sum_of($c, qr/^c[12]$/), $n, 0.70, 'distribute: us-east/z1');
within_4sigma($c->{c4} // 0, $n, 0.30, 'distribute: eu-west/*');
is $c->{c3} // 0, 0, 'distribute: us-east/z2 is not named: nothing';

# warmupDurationSecs: s3 comes while traffic runs (s1, s2 are old by now)

dr('slow', "      simple: ROUND_ROBIN\n"
         . "      warmupDurationSecs: 4s", '');
is $t->register(slow => 's3', $t->start_backend(name => 's3', events => 1))
       ->{status}, 201, 'register s3';
ok $t->wait_mesh_index, '... nginx has it';

my $start = time;
my (%early, %late, %after);
my $cl = $t->client(keepalive => 1);

while (time - $start < 6.5) {
    my $el = time - $start;
    my $b = $cl->get('/slow/')->{headers}{'x-backend'} // 'none';
    if ($el < 1.2) {
        $early{$b}++;
    } elsif ($el > 2.8 && $el < 3.9) {
        $late{$b}++;
    } elsif ($el > 4.8) {
        $after{$b}++;
    }
}
$cl->close;

my $share = sub {
    my ($h) = @_;
    my $tot = 0;
    $tot += $_ for values %$h;
    return $tot ? ($h->{s3} // 0) / $tot : -1;
};

ok $share->(\%early) > 0 && $share->(\%early) < 0.15,
   sprintf('s3 in its first second: %.1f%% (10..30%% of a weight: < 15%%)',
           100 * $share->(\%early)) or diag explain \%early;
ok $share->(\%late) > 0.22,
   sprintf('s3 at 3..4 s of 4 s: %.1f%% (> 22%%)', 100 * $share->(\%late))
    or diag explain \%late;
ok $share->(\%late) > $share->(\%early), '... it grew';
ok abs($share->(\%after) - 1 / 3) < 0.03,
   sprintf('after the window: %.1f%% (a third)', 100 * $share->(\%after))
    or diag explain \%after;

# without mesh_locality: as before, whatever the rules say

conf('');
ok $t->reload_nginx(wait_old => 1), 'reload without mesh_locality';
ok $t->wait_mesh_index, '... synced';
$c = shares('/cart/', 400);
is_deeply [ map { $c->{$_} // 0 } qw(c1 c2 c3 c4) ], [100, 100, 100, 100],
          'no mesh_locality: round robin over all four, as before'
    or diag explain $c;

# mesh_locality's value is checked
conf('    mesh_locality us-east/z1/r1/x;');
my ($rc, $out) = $t->nginx_test;
isnt $rc, 0, 'nginx -t refuses a locality of four parts';
like $out, qr/\[emerg\].*invalid locality "us-east\/z1\/r1\/x" in "mesh_locality"/,
     '... naming the directive and the value';
conf('');

$t->done_checks;
done_testing;
