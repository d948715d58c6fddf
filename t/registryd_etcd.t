#!/usr/bin/perl

# registryd on the etcd store: a real 3-member etcd cluster on loopback.
# What it acknowledges is in etcd (kill -9 and a restart find it all, the
# same index, nothing in the data dir); one member killed leaves a quorum
# and writes go on; two members down: writes are refused with 503 and a
# reason naming the store, reads still answer; the members back: writes
# work again without a restart of registryd.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

my $endpoints = $t->start_etcd_cluster(members => 3);
ok $endpoints =~ /^(http:\/\/127\.0\.0\.1:\d+,?){3}$/,
    "a 3-member etcd cluster on loopback: $endpoints";

my $data = $t->dir . '/unused-data';
$t->start_registryd(data_dir => $data, args => [ $t->etcd_store_args ]);

my %acked;          # "svc/id" => port, every 2xx-acknowledged registration

sub register {
    my ($svc, $id, $port) = @_;
    my $r = $t->api(PUT => "/v1/services/$svc/instances/$id",
                    { address => '127.0.0.1', port => $port });
    $acked{"$svc/$id"} = $port if $r->{status} =~ /^2/;
    return $r;
}

sub index_now { $t->api(GET => '/healthz')->{json}{index} }

# every acknowledged registration is served, with its port
sub all_acked_present {
    my ($what) = @_;
    my @missing;
    for my $k (sort keys %acked) {
        my ($svc, $id) = split m{/}, $k;
        my $r = $t->api(GET => "/v1/services/$svc/instances/$id");
        push @missing, $k
            unless $r->{status} == 200 && $r->{json}{port} == $acked{$k};
    }
    ok !@missing, "$what: all " . scalar(keys %acked)
        . ' acknowledged registrations are there'
        or diag "missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]";
}

# writes: index counts each one, as on SQLite

my $r = register('orders', 'o1', 9001);
is $r->{status}, 201, 'first registration: 201';
is $r->{json}{index}, 1, 'index 1';
$r = register('orders', 'o1', 9002);
is $r->{status}, 200, 'the same instance again: 200';
is $r->{json}{index}, 2, 'index 2';

for my $n (1 .. 40) {
    register('svc' . ($n % 4), "i$n", 10000 + $n);
}
is scalar(keys %acked), 41, '41 registrations acknowledged';
is index_now(), 42, 'index 42 after 42 writes';

$r = $t->api(PUT => '/v1/policies/orders', <<'EOF',
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
EOF
    { 'Content-Type' => 'application/yaml' });
is $r->{status}, 201, 'a policy: 201' or diag $r->{content};

$r = $t->api(DELETE => '/v1/services/svc1/instances/i1');
is $r->{status}, 200, 'a deregistration: 200';
delete $acked{'svc1/i1'};

my $before = index_now();
my $id_before = $t->api(GET => '/v1/snapshot')->{json}{registry};
ok $id_before, "the registry's id: $id_before";

# kill -9 and start again: everything comes back from etcd

$t->kill_registryd;
$t->start_registryd(data_dir => $data, args => [ $t->etcd_store_args ]);

is index_now(), $before, "after kill -9 and restart: the same index $before";
all_acked_present('after kill -9 and restart');
is $t->api(GET => '/v1/services/svc1/instances/i1')->{status}, 404,
    'the deregistered instance stays gone';
is $t->api(GET => '/v1/policies/orders')->{status}, 200,
    'the policy is there';
is $t->api(GET => '/v1/snapshot')->{json}{registry}, $id_before,
    'the registry id is the one etcd keeps';
ok !-e "$data/registry.db", 'nothing was written to the data dir';

# one member killed (the first endpoint registryd uses): 2 of 3 is a quorum

$t->kill_etcd_member(0);

my ($ok, $bad) = (0, 0);
for my $n (1 .. 30) {
    my $r = register('after', "a$n", 20000 + $n);
    if ($r->{status} =~ /^2/) {
        $ok++;
    } else {
        $bad++;
        diag "after/a$n: $r->{status} $r->{content}";
    }
}
is $bad, 0, 'member e1 killed: 30 writes, none refused';
is $ok, 30, '30 acknowledged';

# a second member down: no quorum

$t->kill_etcd_member(1);

# until the last member knows it has no leader (a leader that has lost its
# quorum steps down within an election timeout)
my $wait = time + 10;
sleep 0.1 while $t->etcd_healthy(2) && time < $wait;
ok !$t->etcd_healthy(2), 'the last member reports no quorum';

my $t0 = time;
$r = register('lost', 'l1', 30001);
my $took = time - $t0;
is $r->{status}, 503, 'no quorum: a write gets 503'
    or diag "$r->{status} $r->{content}";
like $r->{json}{error} // '', qr/store etcd/, 'the reason names the store'
    or diag $r->{content};
ok $took < 15, sprintf('and is answered in %.1f s', $took);

$r = $t->api(GET => '/v1/services/orders/instances/o1');
is $r->{status}, 200, 'reads still answer';
is $r->{json}{port}, 9002, 'with the last state this replica knew';

# marked stale once the watch is gone too (the last member is killed)
$t->kill_etcd_member(2);
$wait = time + 10;
my $hz;
while (time < $wait) {
    $hz = $t->api(GET => '/healthz');
    last if ($hz->{json}{status} // '') eq 'stale';
    sleep 0.1;
}
is $hz->{json}{status}, 'stale', 'etcd gone: /healthz says stale';
like $hz->{json}{store} // '', qr/store etcd/, 'and why';
$r = $t->api(GET => '/v1/services/orders/instances/o1');
is $r->{status}, 200, 'reads answer';
is $r->{headers}{'x-mesh-stale'}, '1', 'marked X-Mesh-Stale: 1';
$r = $t->api(GET => '/v1/snapshot');
is $r->{status}, 200, 'the snapshot answers';
is $r->{json}{index}, index_now(), 'at the last index known';

# the members back: writes work again, registryd not restarted

$t->start_etcd_member(0);
$t->start_etcd_member(1);
$t->start_etcd_member(2);

my $end = time + 30;
my $st = 0;
while (time < $end) {
    $st = register('back', 'b1', 30002)->{status};
    last if $st =~ /^2/;
    sleep 0.2;
}
like $st, qr/^2/, 'etcd has a quorum again: writes succeed, no restart';

$end = time + 10;
while (time < $end) {
    $hz = $t->api(GET => '/healthz');
    last if ($hz->{json}{status} // '') eq 'ok';
    sleep 0.1;
}
is $hz->{json}{status}, 'ok', '/healthz says ok again: the watch is back';
ok !defined $t->api(GET => '/healthz')->{headers}{'x-mesh-stale'},
    'no X-Mesh-Stale any more';

# and what was acknowledged across all of it is in etcd

$t->kill_registryd;
$t->start_registryd(data_dir => $data, args => [ $t->etcd_store_args ]);
all_acked_present('after the outage and a restart');
is $t->api(GET => '/v1/services/lost/instances/l1')->{status}, 404,
    'the write refused with 503 was not applied';

# the leader compacts etcd's history (etcd_history: 1s here)

$t->kill_registryd;
$t->start_registryd(data_dir => $data,
                    args => [ $t->etcd_store_args, '--etcd-history', '1s' ]);
register('compact', 'c1', 40001);

my $ep = $t->etcd_endpoint(0);
my $compacted;
$end = time + 15;
while (time < $end) {
    my $x = $t->json_req(POST => "$ep/v3/kv/range",
                         '{"key":"AA==","revision":"2"}');
    if (($x->{content} // '') =~ /compacted/) {
        $compacted = 1;
        last;
    }
    sleep 0.2;
}
ok $compacted, 'the history before the last etcd_history is compacted away';
all_acked_present('after a compaction');

# objects applied together are one etcd transaction: a body of more than
# the transaction takes is refused whole, with the reason (etcd_max_txn_ops
# 5 here: 3 keys a commit)
$t->kill_registryd;
my $conf = $t->write_file('txn.yaml', "etcd_max_txn_ops: 5\n");
$t->start_registryd(data_dir => $data,
                    args => [ '--config', $conf, $t->etcd_store_args ]);
my $dr = sub { join "---\n", map { <<"EOF" } @_ };
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: $_
spec:
  host: $_
EOF
my $index = $t->registry_index;
$r = $t->api(POST => '/v1/objects', $dr->(qw(t1 t2 t3 t4)),
                { 'Content-Type' => 'application/yaml' });
is $r->{status}, 400, 'four objects, three keys a transaction: 400';
like $r->{json}{error}, qr/4 objects in one body: .* at most 3/, '... saying so';
is $t->registry_index, $index, '... nothing applied';
$r = $t->api(POST => '/v1/objects', $dr->(qw(t1 t2 t3)),
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 200, 'three: applied';
my $got = $t->api(GET => '/v1/objects?kind=dr');
is_deeply [ grep { /^t\d$/ } map { $_->{name} }
            @{ $got->{json}{objects} || [] } ], [qw(t1 t2 t3)],
    '... all three stored' or diag explain $got;

$t->done_checks;
done_testing;
