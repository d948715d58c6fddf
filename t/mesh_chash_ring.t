#!/usr/bin/perl

# A large consistent hash ring (100 instances of weight 500: 8,000,000
# points) is built a slice at a time: requests to another upstream of the
# same nginx flow on without a stall while it is built; the upstream goes
# on routing with its old state until the ring is there; a ring above the
# cap of 8,388,608 points is refused with one error line and the last ring
# keeps routing.

use strict;
use warnings;

use lib 't/lib';
use POSIX ();
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $b1 = $t->start_backend(name => 'b1', events => 1);
my $b2 = $t->start_backend(name => 'b2', events => 1);

is $t->register(quick => 'q1', $b2)->{status}, 201, 'quick: one instance';

# ring: b1 and 99 closed ports of 127.0.0.1, weight 500 each
sub many {
    my ($from, $to, $weight) = @_;
    my @kids;
    for my $k (0 .. 3) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $t->_reset_ua;
            for my $i (grep { $_ % 4 == $k } $from .. $to) {
                my $port = $i == 1 ? $b1 : 40000 + $i;
                my $r = $t->register(ring => "r$i", $port,
                                     weight => $weight);
                POSIX::_exit(1) unless $r->{status} =~ /^20/;
            }
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    my $bad = 0;
    for (@kids) { waitpid $_, 0; $bad++ if $? }
    return $bad == 0;
}

ok many(1, 100, 500), 'ring: 100 instances of weight 500';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream quick {
        mesh quick;
    }

    upstream ring {
        mesh ring;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /quick { proxy_pass http://quick; }
        location /ring { proxy_pass http://ring; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

# requests to /quick, one after another; the longest wait, in ms
sub longest {
    my ($seconds, $during) = @_;
    my $c = $t->client;
    my ($max, $n, $bad) = (0, 0, 0);
    my $end = time + $seconds;
    my $fired;
    while (time < $end) {
        if (!$fired && time > $end - $seconds / 2) {
            $during->();
            $fired = 1;
        }
        my $t0 = time;
        my $r = $c->get('/quick');
        my $ms = 1000 * (time - $t0);
        $max = $ms if $ms > $max;
        $n++;
        $bad++ unless ($r->{headers}{'x-backend'} // '') eq 'b2';
    }
    $c->close;
    return ($max, $n, $bad);
}

# the policy turns "ring" to a consistent hash: one change, one big ring

my $yaml = <<'EOF';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ring
spec:
  host: ring
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-key
EOF

my ($max, $n, $bad) = longest(4, sub {
    my $r = $t->apply_policy(ring => $yaml);
    die "policy: $r->{status}" unless $r->{status} =~ /^20/;
});
diag sprintf '%d requests while an 8,000,000-point ring was built: '
    . 'longest %.1f ms', $n, $max;
is $bad, 0, 'every request to the other upstream answered';
cmp_ok $max, '<', 50, 'none waited 50 ms or more';

# the ring is there: one key, one instance, again and again

my $st = $t->mesh_status;
my ($svc) = grep { $_->{name} eq 'ring' } @{ $st->{services} || [] };
is $svc && $svc->{balancer}, 'consistent_hash', 'ring: consistent hash now';

my $c = $t->client;
my %seen;
for (1 .. 5) {
    my $r = $c->get('/ring', { 'x-key' => 'k-b1-probe' });
    $seen{ $r->{status} }++;
}
$c->close;
is scalar keys %seen, 1, 'one key keeps one answer' or diag explain \%seen;

my $log = $t->read_file('error.log') // '';
unlike $log, qr/hash ring .* refused/, 'no ring refused so far';

# above the cap: refused, logged once, the last ring routes on

ok many(101, 106, 1000), 'six more instances of weight 1000';
my $end = time + 5;
while (time < $end) {
    $log = $t->read_file('error.log') // '';
    last if $log =~ /would have \d+ points, more than 8388608: refused/;
    sleep 0.1;
}
like $log, qr/upstream "ring" \(service "ring", 10\d instances\) would have \d+ points, more than 8388608: refused/,
    'a ring above 8,388,608 points is refused with the reason';
my $lines = () = $log =~ /more than 8388608: refused/g;
cmp_ok $lines, '<=', 2, "logged once per worker ($lines)";

$st = $t->mesh_status;
($svc) = grep { $_->{name} eq 'ring' } @{ $st->{services} || [] };
is scalar @{ $svc->{instances} || [] }, 100,
    'the upstream still routes on its 100 instances';

($max, $n, $bad) = longest(2, sub { });
cmp_ok $max, '<', 50, sprintf 'requests flow (longest %.1f ms)', $max;

$t->stop_nginx;
$t->done_checks;
done_testing;
