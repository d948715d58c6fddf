#!/usr/bin/perl

# registryctl watch: the changes after its start, each once, in order and
# with the indexes the API answered; SVC keeps that service's instance
# events and the policies naming it; --json prints the registry's events;
# missed events (a restart) and an index that went back are said; an
# outage is a line and a reconnection; SIGINT and SIGTERM exit 0; errors
# are one line and a non-zero exit.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep time);
use MeshTest;

my $t = MeshTest->new;

for my $bin (qw(registryd registryctl)) {
    plan skip_all => "no $bin at " . $t->bin($bin) unless -x $t->bin($bin);
}

$t->start_registryd;

sub wait_for {
    my ($cond, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.05;
    }
    return $cond->();
}

# registryd's long-polls and event waits (a watch waiting shows there)
sub waiters {
    my $r = $t->http(GET => $t->registryd_url . '/metrics');
    return $r->{content} =~ /^registryd_snapshot_waiters (\d+)$/m ? $1 : -1;
}

# a watch's output lines, as [index, type, what, reason]
sub lines {
    my ($pid) = @_;
    my ($out) = $t->registryctl_output($pid);
    return [map { /\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\d+) (\S+) (\S+)(?: reason=(\S+))?\z/
                  ? [$1 + 0, $2, $3, $4] : ['bad line', $_] }
            split /\n/, $out];
}

sub dr {
    my ($name, $host) = @_;
    return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
         . "metadata:\n  name: $name\nspec:\n  host: $host\n"
         . "  trafficPolicy:\n    loadBalancer:\n      simple: RANDOM\n";
}

###########################################################################
# three watches from now: everything as text, orders only, everything as
# JSON

$t->register('old', 'x1', 9001);
my $from = $t->registry_index;

my $all = $t->start_registryctl('watch');
my $ord = $t->start_registryctl(qw(watch orders));
my $json = $t->start_registryctl(qw(watch --json));
ok wait_for(sub { waiters() == 3 }), 'the three watches wait for events';

my @want;
my $idx = sub { $_[0]->{json}{index} };

push @want, [$idx->($t->register('orders', 'o1', 8001)), 'registered', 'orders/o1'];
push @want, [$idx->($t->register('payments', 'p1', 8002)), 'registered', 'payments/p1'];
push @want, [$idx->($t->register('orders', 'o1', 8001, weight => 2)), 'updated', 'orders/o1'];
push @want, [$idx->($t->apply_policy('orders-dr', dr('orders-dr', 'orders'))),
             'policy_applied', 'policy/orders-dr'];
push @want, [$idx->($t->apply_policy('pay-dr', dr('pay-dr', 'payments'))),
             'policy_applied', 'policy/pay-dr'];
push @want, [$idx->($t->deregister('orders', 'o1')), 'deregistered', 'orders/o1', 'api'];
push @want, [$idx->($t->delete_policy('orders-dr')), 'policy_deleted', 'policy/orders-dr'];
push @want, [$idx->($t->delete_policy('pay-dr')), 'policy_deleted', 'policy/pay-dr'];

ok !grep({ !defined $_->[0] } @want), 'eight changes made';
$_->[3] //= undef for @want;

ok wait_for(sub { @{ lines($all) } >= 8 && @{ lines($json) } >= 8
                  && @{ lines($ord) } >= 5 }),
    'the watches print as the changes come';

is_deeply lines($all), \@want,
    'watch: every change, in order, with the index the API answered';
is_deeply lines($ord), [@want[0, 2, 3, 5, 6]],
    'watch orders: its instances and the policy naming it';

my ($jout) = $t->registryctl_output($json);
my $events = $t->api(GET => "/v1/events?index=$from")->{json}{events};
is_deeply [map { $t->decode_json($_) } split /\n/, $jout], $events,
    'watch --json: one JSON object a line, the events as the registry has them';

kill 'INT', $all;
is $t->wait_registryctl($all, 5), 0, 'SIGINT: exit 0';
kill 'TERM', $ord;
is $t->wait_registryctl($ord, 5), 0, 'SIGTERM: exit 0';
kill 'INT', $json;
is $t->wait_registryctl($json, 5), 0, 'SIGINT: exit 0 (--json)';

for my $pid ($all, $ord, $json) {
    my (undef, $err) = $t->registryctl_output($pid);
    is $err, '', 'nothing on stderr';
}

###########################################################################
# --index N: from N on, with the policies that named SVC before the start

my $app = $t->apply_policy('orders-vs', <<'EOF')->{json}{index};
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders-vs
spec:
  hosts: [orders]
  http:
  - route:
    - destination:
        host: orders
EOF
ok wait_for(sub { waiters() == 0 }), 'their waits are gone';
my $w = $t->start_registryctl(qw(watch orders --index), $want[4][0]);
ok wait_for(sub { waiters() == 1 }), 'watch orders --index N waits';
my $del = $t->delete_policy('orders-vs')->{json}{index};
ok wait_for(sub { @{ lines($w) } >= 3 }), 'and prints';
# (orders-dr, deleted before the start, is not known to have named orders)
is_deeply lines($w), [$want[5],
                      [$app, 'policy_applied', 'policy/orders-vs', undef],
                      [$del, 'policy_deleted', 'policy/orders-vs', undef]],
    '--index N: the kept events after N, then a policy (a VirtualService '
    . 'host) deleted after the start';
kill 'INT', $w;
is $t->wait_registryctl($w, 5), 0, 'exit 0';

###########################################################################
# an outage: one line, then one when the registry is back; nothing missed
# (same data); then a registry that lost its data: the index went back

ok wait_for(sub { waiters() == 0 }), 'its wait is gone';
$w = $t->start_registryctl('watch');
ok wait_for(sub { waiters() == 1 }), 'watch waits';

$t->stop_registryd;
ok wait_for(sub { ($t->registryctl_output($w))[1] =~ /lost the registry/ }),
    'registry stopped: said';
sleep 1.5;                  # a few tries, with the backoff
ok kill(0, $w), 'watch goes on';

$t->start_registryd;
my $i1 = $t->register('back', 'b1', 8003)->{json}{index};
ok wait_for(sub { @{ lines($w) } >= 1 }), 'a change after the restart';
is_deeply lines($w), [[$i1, 'registered', 'back/b1', undef]],
    'is printed with its index';

# the registry's end reaches the watch as a refused connect, or, when
# registryd closes the long poll under it as it exits, as a reset
my (undef, $err) = $t->registryctl_output($w);
my $re = '\Aregistryctl: watch: lost the registry: (?:cannot reach registry '
       . 'http://127\.0\.0\.1:\d+: Connection refused|registry '
       . 'http://127\.0\.0\.1:\d+: Recv failure: Connection reset by peer)'
       . '; trying again\n'
       . 'registryctl: watch: the registry http://127\.0\.0\.1:\d+ answers '
       . 'again \(index \d+\)\n\z';
like $err, qr/$re/,
    'stderr: one line lost, one line back';

$t->stop_registryd;
$t->start_registryd(data_dir => $t->dir . '/registry-new');
my $i2 = $t->register('fresh', 'f1', 8004)->{json}{index};
ok $i2 < $i1, "a new registry's index ($i2) is below $i1";
ok wait_for(sub { @{ lines($w) } >= 2 }), 'a change in the new registry';
is_deeply lines($w)->[1], [$i2, 'registered', 'fresh/f1', undef],
    'is printed with the new index';
(undef, $err) = $t->registryctl_output($w);
like $err, qr/the registry's index went back from $i1 to \d+ \(another registry, or its data was lost\)/,
    'the index going back is said';

kill 'INT', $w;
is $t->wait_registryctl($w, 5), 0, 'exit 0';

###########################################################################
# events no longer kept (a restart begins an empty ring): said, then on

$t->register('fresh', 'f2', 8005);
$t->restart_registryd;
$w = $t->start_registryctl(qw(watch --index 0));
ok wait_for(sub { waiters() == 1 }), 'watch --index 0 waits';
my $i3 = $t->register('fresh', 'f3', 8006)->{json}{index};
ok wait_for(sub { @{ lines($w) } >= 1 }), 'and prints';
is_deeply lines($w), [[$i3, 'registered', 'fresh/f3', undef]],
    'what came after';
(undef, $err) = $t->registryctl_output($w);
like $err, qr/\Aregistryctl: watch: the changes after index 0 are no longer all kept by the registry .* some were missed; going on from index \d+\n\z/,
    'events missed before the restart: one line';
kill 'TERM', $w;
is $t->wait_registryctl($w, 5), 0, 'exit 0';

###########################################################################
# errors

my $free = $t->port;
my @bad = (
    [['--registry', "http://127.0.0.1:$free", 'watch'], 1,
     qr/watch: cannot reach registry http:\/\/127\.0\.0\.1:$free: Connection refused/],
    [['--registry', "ftp://127.0.0.1:$free", 'watch'], 1,
     qr/watch: registry ftp:.*(?i:protocol)/],
    [[qw(watch a b)], 2, qr/watch: too many arguments/],
    [[qw(watch b@d)], 2, qr/invalid service name "b\@d"/],
    [[qw(watch --index x)], 2, qr/invalid --index "x"/],
    [[qw(watch --index -1)], 2, qr/invalid --index "-1"/],
    [[qw(watch --json=1)], 2, qr/watch: unknown option "--json=1"/],
    [[qw(watch --bogus)], 2, qr/watch: unknown option "--bogus"/],
);

for my $b (@bad) {
    my ($args, $want, $re) = @$b;
    my ($code, $out, $e) = $t->registryctl({ timeout => 10 }, @$args);
    subtest "bad: @$args" => sub {
        is $code, $want, "exit $want";
        like $e, qr/\Aregistryctl: [^\n]*\n\z/, 'one line';
        like $e, $re, 'says why';
        is $out, '', 'nothing on stdout';
    };
}

$t->done_checks;
done_testing;
