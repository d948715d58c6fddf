#!/usr/bin/perl

# Active health checks: an http check against a backend that is killed
# turns the instance critical within interval x unhealthy_threshold +
# timeout + 1 s (in reads and in the snapshot) and passing again after
# healthy_threshold probes once the backend is back; a tcp check likewise;
# an http check expecting 200 from a backend answering 503 turns critical;
# 200 checks against a backend that hangs do not slow the API down; every
# transition moves the index; the probes are counted in /metrics.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

$t->start_registryd;

sub inst { $t->api(GET => "/v1/services/$_[0]/instances/$_[1]") }

sub snap_health {
    my ($svc, $id) = @_;
    my $s = $t->api(GET => '/v1/snapshot')->{json} || {};
    for my $sv (@{ $s->{services} || [] }) {
        next unless $sv->{name} eq $svc;
        for (@{ $sv->{instances} || [] }) {
            return $_->{health} if $_->{id} eq $id;
        }
    }
    return undef;
}

# polls until the instance has health $want; returns the seconds it took
# (undef after $max s) and the index then
sub wait_health {
    my ($svc, $id, $want, $max) = @_;
    my $t0 = time;
    while (time - $t0 < $max) {
        my $r = inst($svc, $id);
        return (time - $t0, $r->{json}{index} // $t->registry_index)
            if ($r->{json}{health} // '') eq $want;
        sleep 0.05;
    }
    return (undef, undef);
}

# a check is given time to run a few probes, all passing
sub stays_passing {
    my ($svc, $id, $secs) = @_;
    my $t0 = time;
    while (time - $t0 < $secs) {
        return 0 unless (inst($svc, $id)->{json}{health} // '') eq 'passing';
        sleep 0.1;
    }
    return 1;
}

# the (health) state and the index before and after each transition

sub transitions {
    my (%o) = @_;
    my ($svc, $id, $name, $port, $check) = @o{qw(svc id name port check)};
    my %c = %$check;
    my $down_max = $c{interval_s} * $c{unhealthy_threshold}
                   + $c{timeout_s} + 1;
    my $up_max = $c{interval_s} * $c{healthy_threshold} + $c{timeout_s} + 1;

    ok stays_passing($svc, $id, 1.2), "$o{what}: passing while the backend "
        . "answers";

    my $before = $t->registry_index;
    $t->kill_backend($name);

    my ($took, $index) = wait_health($svc, $id, 'critical', $down_max + 2);
    ok defined $took, "$o{what}: critical after the backend was killed";
    note sprintf '%s: critical after %.2f s (bound %.2f s)', $o{what},
        $took // -1, $down_max;
    cmp_ok $took // 99, '<=', $down_max,
        "$o{what}: within interval x unhealthy_threshold + timeout + 1 s";
    cmp_ok $index // -1, '>', $before, "$o{what}: index moved";
    is snap_health($svc, $id), 'critical', "$o{what}: snapshot says critical";

    $before = $t->registry_index;
    $t->start_backend(name => $name, port => $port, events => 1);

    ($took, $index) = wait_health($svc, $id, 'passing', $up_max + 2);
    ok defined $took, "$o{what}: passing again after the backend is back";
    note sprintf '%s: passing after %.2f s (bound %.2f s)', $o{what},
        $took // -1, $up_max;
    cmp_ok $took // 99, '<=', $up_max,
        "$o{what}: within interval x healthy_threshold + timeout + 1 s";
    cmp_ok $index // -1, '>', $before, "$o{what}: index moved again";
    is snap_health($svc, $id), 'passing', "$o{what}: snapshot says passing";
}

# http

my $p1 = $t->start_backend(name => 'web', events => 1);
my $r = $t->api(PUT => '/v1/services/hc/instances/web',
                { address => '127.0.0.1', port => $p1,
                  check => { http => '/healthz', status => '200-299',
                             interval => '500ms', timeout => '300ms',
                             healthy_threshold => 2,
                             unhealthy_threshold => 2 } });
is $r->{status}, 201, 'registered an instance with an http check';
is $r->{json}{health}, 'passing', 'it starts passing';
is $r->{json}{check}{healthy_threshold}, 2, 'the check is served as given';

transitions(what => 'http', svc => 'hc', id => 'web', name => 'web',
            port => $p1,
            check => { interval_s => 0.5, timeout_s => 0.3,
                       healthy_threshold => 2, unhealthy_threshold => 2 });

# tcp

my $p2 = $t->start_backend(name => 'tcp', events => 1);
$r = $t->api(PUT => '/v1/services/hc/instances/tcp',
             { address => '127.0.0.1', port => $p2,
               check => { tcp => JSON::PP::true, interval => '400ms',
                          timeout => '200ms', unhealthy_threshold => 3 } });
is $r->{status}, 201, 'registered an instance with a tcp check';

transitions(what => 'tcp', svc => 'hc', id => 'tcp', name => 'tcp',
            port => $p2,
            check => { interval_s => 0.4, timeout_s => 0.2,
                       healthy_threshold => 1, unhealthy_threshold => 3 });

# an unexpected status

my $p3 = $t->start_backend(name => 'sick', events => 1, status => 503);
my $before = $t->registry_index;
$r = $t->api(PUT => '/v1/services/hc/instances/sick',
             { address => '127.0.0.1', port => $p3,
               check => { http => '/', status => '200', interval => '500ms',
                          timeout => '300ms' } });
is $r->{status}, 201, 'registered an instance answering 503';
my ($took, $index) = wait_health('hc', 'sick', 'critical', 4);
note sprintf 'a 503 turned critical after %.2f s', $took // -1;
cmp_ok $took // 99, '<=', 0.5 + 0.3 + 1,
    'expected 200, got 503: critical within interval + timeout + 1 s';
cmp_ok $index // -1, '>', $before + 1, 'index moved';
is snap_health('hc', 'sick'), 'critical', 'snapshot says critical';

my $s = $t->api(GET => '/v1/services')->{json};
my ($svc) = grep { $_->{name} eq 'hc' } @{ $s->{services} || [] };
is $svc && $svc->{healthy}, 2, 'services list: 2 of 3 healthy';

# a heartbeat does not override a failing check

$r = $t->api(PUT => '/v1/services/hc/instances/sick/heartbeat');
is $r->{status}, 200, 'heartbeat of an instance whose check fails';
is $r->{json}{health}, 'critical', 'it stays critical';

# a re-registration starts passing, then the check decides again

$r = $t->api(PUT => '/v1/services/hc/instances/sick',
             { address => '127.0.0.1', port => $p3,
               check => { http => '/', status => '500-599',
                          interval => '500ms', timeout => '300ms' } });
is $r->{status}, 200, 're-registered expecting 5xx';
is $r->{json}{health}, 'passing', 're-registration starts passing';
ok stays_passing('hc', 'sick', 1.2), 'and stays so: 503 is expected now';

# 200 instances whose backend hangs: probes time out, the API stays fast

my $p4 = $t->start_backend(name => 'hang', events => 1, delay => 60);
my $idx0 = $t->registry_index;
for my $i (1 .. 200) {
    my $r = $t->api(PUT => "/v1/services/hang/instances/h$i",
                    { address => '127.0.0.1', port => $p4,
                      check => { http => '/', interval => '500ms',
                                 timeout => '1s' } });
    die "register h$i: $r->{status}" unless $r->{status} == 201;
}

my ($n, $worst, $slow, $failed) = (0, 0, 0, 0);
my @lat;
my $t0 = time;
my $all_critical;
while (time - $t0 < 4) {
    my $a = time;
    my $r = $t->api(GET => '/v1/services');
    my $d = time - $a;
    $n++;
    $worst = $d if $d > $worst;
    push @lat, $d;
    $slow++ if $d >= 0.2;
    $failed++ if $r->{status} != 200;
    my ($h) = grep { $_->{name} eq 'hang' } @{ $r->{json}{services} || [] };
    $all_critical //= time - $t0 if $h && $h->{healthy} == 0;
    sleep 0.02;
}
@lat = sort { $a <=> $b } @lat;
my $median = $lat[@lat / 2] // 99;
note sprintf '%d GET /v1/services while 200 probes hang: median %.1f ms, '
    . 'worst %.1f ms, %d >= 200 ms', $n, $median * 1000, $worst * 1000, $slow;
ok $n > 20, "$n requests made";
is $failed, 0, 'every GET /v1/services answered 200';
# probes that held up the API would make every request wait for their
# timeouts (1 s); a busy test machine can delay the odd one
cmp_ok $median, '<', 0.05, 'GET /v1/services: median < 50 ms';
cmp_ok $slow, '<=', $n * 0.05, 'GET /v1/services: 95% in < 200 ms';
ok defined $all_critical, 'all 200 hanging instances turned critical';
note sprintf 'all critical after %.2f s', $all_critical // -1;
cmp_ok $all_critical // 99, '<=', 0.5 + 1 + 1,
    'concurrently: within interval + timeout + 1 s';
cmp_ok $t->registry_index - $idx0, '>=', 400,
    'the index rose once per registration and per transition at least';

# metrics

my $m = $t->http(GET => $t->registryd_url . '/metrics')->{content} // '';
my ($pass) = $m =~ /^registryd_health_probes_total\{result="pass"\} (\d+)$/m;
my ($fail) = $m =~ /^registryd_health_probes_total\{result="fail"\} (\d+)$/m;
my ($cnt) = $m =~ /^registryd_health_probe_duration_seconds_count (\d+)$/m;
cmp_ok $pass // 0, '>', 5, 'probes that passed are counted';
cmp_ok $fail // 0, '>=', 200, 'probes that failed are counted';
is $cnt, $pass + $fail, 'every probe is in the duration histogram';

# a prompt stop while 200 probes hang

$t0 = time;
is $t->stop_registryd, 0, 'registryd exits 0 on SIGTERM with probes in flight';
cmp_ok time - $t0, '<', 2, 'and promptly';

$t->done_checks;
done_testing;
