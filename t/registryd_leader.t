#!/usr/bin/perl

# Two registryd replicas over a 3-member etcd: one leads (an etcd lease):
# it alone runs the health checks and the TTL expiry. Heartbeats through
# the other one keep a TTL alive; without them the TTL runs out. Kill -9
# of the leader: the other takes over within the bound docs/registryd.md
# states (5 s), and an instance whose check then fails turns critical.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);
use MeshTest;

my $a = MeshTest->new;
my $b = MeshTest->new;

plan skip_all => 'no registryd at ' . $a->bin('registryd')
    unless -x $a->bin('registryd');

$a->start_etcd_cluster(members => 3);
my @store = $a->etcd_store_args(prefix => '/leader/');

$a->start_registryd(args => \@store);
$b->start_registryd(args => \@store);

sub leads { ($_[0]->api(GET => '/healthz')->{json}{leader} // 0) ? 1 : 0 }

# exactly one leads, soon
my $end = time + 10;
my @leaders;
while (time < $end) {
    @leaders = grep { leads($_) } ($a, $b);
    last if @leaders;
    sleep 0.05;
}
is scalar(@leaders), 1, 'one replica leads';
my ($lead, $other) = leads($a) ? ($a, $b) : ($b, $a);
is leads($other), 0, 'the other does not';

sub health {
    my ($t, $id) = @_;
    my $r = $t->api(GET => "/v1/services/web/instances/$id");
    return $r->{status} == 200 ? $r->{json}{health} : "status $r->{status}";
}

# a TTL kept alive by heartbeats through the replica that does not lead

# (a heartbeat every 0.5 s against a TTL of 3 s: room for a slow etcd
# commit on a loaded machine, none for a heartbeat that does not count)
my $r = $other->api(PUT => '/v1/services/web/instances/ttl1',
                    { address => '127.0.0.1', port => 1, ttl => '3s' });
is $r->{status}, 201, 'an instance with a 3 s TTL, through the follower';

my $t0 = time;
my @bad;
while (time - $t0 < 5) {
    my $hb = $other->api(PUT => '/v1/services/web/instances/ttl1/heartbeat');
    push @bad, sprintf('%.1f s: heartbeat %s', time - $t0, $hb->{status})
        unless $hb->{status} == 200;
    my $h = health($lead, 'ttl1');
    push @bad, sprintf('%.1f s: %s', time - $t0, $h) unless $h eq 'passing';
    sleep 0.5;
}
is scalar @bad, 0, 'heartbeats through the follower keep it passing for 5 s'
    or diag join "\n", @bad;

# without them it turns critical on both
$t0 = time;
my $took;
while (time - $t0 < 8) {
    if (health($lead, 'ttl1') eq 'critical'
        && health($other, 'ttl1') eq 'critical')
    {
        $took = time - $t0;
        last;
    }
    sleep 0.05;
}
ok defined $took, 'no heartbeats: critical on both replicas';
ok $took && $took > 1.5 && $took < 4,
    sprintf('after %.1f s (TTL 2 s)', $took // -1);

# an instance with a health check on a real backend

my $port = $a->start_backend(name => 'web1');
$r = $other->api(PUT => '/v1/services/web/instances/chk1',
                 { address => '127.0.0.1', port => $port,
                   check => { http => '/', interval => '200ms',
                              timeout => '150ms', unhealthy_threshold => 2,
                              healthy_threshold => 1 } });
is $r->{status}, 201, 'an instance with an http check (every 200 ms)';
sleep 1;
is health($other, 'chk1'), 'passing', 'it passes';

# the leader dies: the other takes over

$lead->kill_registryd;
$t0 = time;
my $takeover;
while (time - $t0 < 10) {
    if (leads($other)) {
        $takeover = time - $t0;
        last;
    }
    sleep 0.05;
}
ok defined $takeover, 'the leader killed: the other replica leads';
ok $takeover && $takeover < 5,
    sprintf('within %.2f s (bound: 5 s)', $takeover // -1);
diag sprintf('takeover of the lead: %.2f s', $takeover // -1);

# the new leader probes: a dead backend turns critical
$a->kill_backend('web1');
$t0 = time;
my $critical;
while (time - $t0 < 10) {
    if (health($other, 'chk1') eq 'critical') {
        $critical = time - $t0;
        last;
    }
    sleep 0.05;
}
ok defined $critical, 'the backend killed: the new leader marks it critical';
ok $critical && $critical < 2,
    sprintf('within %.2f s (2 failed probes 200 ms apart)', $critical // -1);

my $ev = $other->api(GET => '/v1/events')->{json}{events};
ok scalar(grep { ($_->{id} // '') eq 'chk1' && $_->{type} eq 'critical'
                 && ($_->{reason} // '') eq 'check' } @$ev),
    'its event says: critical, reason check';

$b->done_checks;
$a->done_checks;
done_testing;
