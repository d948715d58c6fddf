#!/usr/bin/perl

# TTL health: an instance not heard from within its ttl turns critical
# within ttl + 1 s (in reads and in the snapshot), heartbeats keep it
# passing, deregister_after removes one that stayed critical, and every
# transition moves the index.

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

sub inst { $t->api(GET => "/v1/services/ttl/instances/$_[0]") }
sub snap_health {
    my ($id) = @_;
    my $s = $t->api(GET => '/v1/snapshot')->{json} || {};
    for my $svc (@{ $s->{services} || [] }) {
        next unless $svc->{name} eq 'ttl';
        for (@{ $svc->{instances} || [] }) {
            return ($_->{health}, $s->{index}) if $_->{id} eq $id;
        }
    }
    return (undef, $s->{index});
}

# quiet: ttl 1s, never heartbeated; beat: ttl 1s, heartbeated every 300 ms;
# gone: ttl 1s and deregister_after 1s

my %reg;
for my $id (qw(quiet beat gone)) {
    my $r = $t->api(PUT => "/v1/services/ttl/instances/$id",
                    { address => '127.0.0.1', port => 9000, ttl => '1s',
                      $id eq 'gone' ? (deregister_after => '1s') : () });
    is $r->{status}, 201, "registered $id with ttl 1s";
    is $r->{json}{health}, 'passing', "$id starts passing";
    $reg{$id} = { at => time, index => $r->{json}{index} };
}

my %critical;     # id => [seconds after registration, index seen]
my @beat_health;  # health of "beat" after each heartbeat and read
my ($gone_at, $gone_index);
my $last_beat = 0;

my $t0 = time;
while (time - $t0 < 4) {
    if (time - $last_beat >= 0.3) {
        my $r = $t->api(PUT => '/v1/services/ttl/instances/beat/heartbeat');
        push @beat_health, "hb:$r->{status}:" . ($r->{json}{health} // '?');
        $last_beat = time;
    }

    my $r = inst('beat');
    push @beat_health, 'get:' . ($r->{json}{health} // '?');

    for my $id (qw(quiet gone)) {
        next if $critical{$id};
        my $r = inst($id);
        if (($r->{json}{health} // '') eq 'critical') {
            my $s = $t->api(GET => '/v1/services/ttl')->{json} || {};
            $critical{$id} = [ time - $reg{$id}{at}, $s->{index} ];
        }
    }

    if ($critical{gone} && !defined $gone_at) {
        my $r = inst('gone');
        if ($r->{status} == 404) {
            $gone_at = time - $reg{gone}{at};
            $gone_index = $t->api(GET => '/v1/services/ttl')->{json}{index};
        }
    }

    sleep 0.05;
}

# the quiet one turned critical in time, and not before its ttl

ok $critical{quiet}, 'quiet instance turned critical';
my $after = $critical{quiet} ? $critical{quiet}[0] : 99;
note sprintf 'quiet turned critical %.2f s after registration', $after;
cmp_ok $after, '>=', 0.9, 'not before its ttl';
cmp_ok $after, '<=', 2.1, 'within ttl + 1 s';
cmp_ok $critical{quiet} ? $critical{quiet}[1] : -1, '>', $reg{quiet}{index},
    'index moved when it turned critical';

my ($h) = snap_health('quiet');
is $h, 'critical', 'snapshot says critical';

my $r = $t->api(GET => '/v1/services');
my ($svc) = grep { $_->{name} eq 'ttl' } @{ $r->{json}{services} || [] };
is $svc && $svc->{healthy}, 1, 'services list counts one healthy (beat)';

# the heartbeated one stayed passing throughout

my @bad = grep { !/:passing$/ && !/^hb:200:passing$/ } @beat_health;
ok @beat_health > 20, scalar(@beat_health) . ' heartbeats and reads of beat';
ok !@bad, 'heartbeated instance stayed passing for 4 s' or diag "@bad";
is((snap_health('beat'))[0], 'passing', 'snapshot says passing for beat');

# deregister_after removed the critical one

ok $critical{gone}, 'deregister_after instance turned critical first';
ok defined $gone_at, 'deregister_after instance was removed';
note sprintf 'gone: critical after %.2f s, removed after %.2f s',
    $critical{gone} ? $critical{gone}[0] : -1, $gone_at // -1;
cmp_ok $gone_at // 99, '>=', ($critical{gone} ? $critical{gone}[0] : 0) + 0.5,
    'removed about deregister_after after turning critical';
cmp_ok $gone_index // -1, '>', $critical{gone} ? $critical{gone}[1] : 0,
    'index moved when it was removed';
is((snap_health('gone'))[0], undef, 'snapshot no longer has it');

# a heartbeat brings a critical instance back to passing, moving the index

my $before = $t->api(GET => '/v1/services/ttl')->{json}{index};
$r = $t->api(PUT => '/v1/services/ttl/instances/quiet/heartbeat');
is $r->{status}, 200, 'heartbeat of the critical instance';
is $r->{json}{health}, 'passing', 'it is passing again';
cmp_ok $r->{json}{index} // -1, '>', $before, 'index moved on recovery';
is inst('quiet')->{json}{health}, 'passing', 'read says passing';
is((snap_health('quiet'))[0], 'passing', 'snapshot says passing');

$t->done_checks;
done_testing;
