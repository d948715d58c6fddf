#!/usr/bin/perl

# Two registryd replicas over one 3-member etcd cluster, both active.
# Four clients register through the two replicas in turn; in the middle
# one etcd member is killed (kill -9), then one replica. Every
# registration that was answered 2xx is then on the surviving replica,
# and on the killed one once it is started again, at the same index, with
# the same events. A write on one replica is served by the other within
# a second.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use POSIX ();
use Time::HiRes qw(time sleep);
use MeshTest;

my $a = MeshTest->new;
my $b = MeshTest->new;

plan skip_all => 'no registryd at ' . $a->bin('registryd')
    unless -x $a->bin('registryd');

$a->start_etcd_cluster(members => 3);
my @store = $a->etcd_store_args(prefix => '/replicas/');

my $url_a = $a->start_registryd(args => \@store);
my $url_b = $b->start_registryd(args => \@store);

my $CLIENTS = 4;
my $EACH = 150;
my $dir = $a->dir;

# client c registers c*EACH .. (c+1)*EACH-1, even ones through A, odd
# ones through B; the acknowledged ones go to a file
my @pids;
for my $c (0 .. $CLIENTS - 1) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        my %ua = map { $_ => HTTP::Tiny->new(timeout => 10, keep_alive => 1) }
                 ($url_a, $url_b);
        open my $out, '>', "$dir/acked-$c" or POSIX::_exit(2);

        for my $n ($c * $EACH .. ($c + 1) * $EACH - 1) {
            my $url = $n % 2 ? $url_b : $url_a;
            my $r = $ua{$url}->request(PUT =>
                "$url/v1/services/svc" . ($n % 5) . "/instances/i$n",
                { content => "{\"address\":\"127.0.0.1\",\"port\":"
                             . (10000 + $n) . "}",
                  headers => { 'Content-Type' => 'application/json' } });
            print $out "$n\n" if $r->{status} =~ /^2/;
            sleep 0.002;
        }

        close $out;
        POSIX::_exit(0);
    }

    push @pids, $pid;
}

sleep 0.4;
$a->kill_etcd_member(0);
note 'etcd member e1 killed';

sleep 0.4;
$b->kill_registryd;
note 'replica B killed';

for my $pid (@pids) {
    waitpid $pid, 0;
    is $?, 0, "client $pid finished";
}

my %acked;
for my $c (0 .. $CLIENTS - 1) {
    open my $in, '<', "$dir/acked-$c" or die "acked-$c: $!";
    chomp(my @n = <$in>);
    $acked{$_} = 1 for @n;
}

my $n_acked = keys %acked;
ok $n_acked > $CLIENTS * $EACH / 2,
    "$n_acked of " . $CLIENTS * $EACH . ' registrations acknowledged';

# every acknowledged one is on replica $t
sub all_there {
    my ($t, $what) = @_;
    my $r = $t->api(GET => '/v1/snapshot');
    my %have;
    for my $s (@{ $r->{json}{services} || [] }) {
        $have{ $_->{id} } = $_->{port} for @{ $s->{instances} || [] };
    }
    my @missing = grep { ($have{"i$_"} // 0) != 10000 + $_ } sort keys %acked;
    ok !@missing, "$what: every acknowledged registration is there"
        or diag "missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]";
    return $r->{json}{index};
}

my $index_a = all_there($a, 'replica A, after both kills');

# B again: it reads etcd, and lands on A's state
$b->start_registryd(args => \@store);

my $end = time + 10;
my $index_b = 0;
while (time < $end) {
    $index_b = $b->api(GET => '/healthz')->{json}{index} // 0;
    last if $index_b >= $index_a;
    sleep 0.05;
}
is $index_b, $index_a, "replica B started again: index $index_b, as A's";
all_there($b, 'replica B, started again');

# the same events on both (B keeps those after its start only)
my $ea = $a->api(GET => "/v1/events?index=$index_a&wait=0s")->{json};
my $eb = $b->api(GET => "/v1/events?index=$index_a&wait=0s")->{json};
is_deeply $eb->{events}, $ea->{events}, 'the same events from there on';

# a write on one is served by the other, within 1 s
for my $pair ([ $a, $b, 'A', 'B' ], [ $b, $a, 'B', 'A' ]) {
    my ($w, $r, $wn, $rn) = @$pair;
    my $t0 = time;
    my $put = $w->api(PUT => "/v1/services/late/instances/from$wn",
                      { address => '127.0.0.1', port => 9999 });
    is $put->{status}, 201, "a registration through $wn";

    my $seen;
    while (time - $t0 < 5) {
        $seen = $r->api(GET => "/v1/services/late/instances/from$wn");
        last if $seen->{status} == 200;
        sleep 0.005;
    }
    my $took = time - $t0;
    is $seen->{status}, 200, "is served by $rn";
    ok $took < 1, sprintf("within 1 s (%.0f ms)", $took * 1000);
    is $seen->{json}{index}, $put->{json}{index}, 'at the same index';
}

# and on both the events of those two writes are the same
$ea = $a->api(GET => "/v1/events?index=$index_a&wait=0s")->{json};
$eb = $b->api(GET => "/v1/events?index=$index_a&wait=0s")->{json};
is scalar(@{ $ea->{events} }), 2, 'two events on A';
is_deeply $eb->{events}, $ea->{events}, 'the same two on B';

# objects applied through A as one group (one etcd transaction, an index
# each): B serves them, with the same events
my $index_g = $a->api(GET => '/healthz')->{json}{index};
my $yaml = join "---\n", map { <<"EOF" } qw(r1 r2 r3);
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: $_
spec:
  host: $_
EOF
my $g = $a->api(POST => '/v1/objects', $yaml,
                { 'Content-Type' => 'application/yaml' });
is $g->{status}, 200, 'three objects applied through A';
is_deeply [ map { "$_->{name} $_->{result}" } @{ $g->{json}{objects} } ],
    [ 'r1 created', 'r2 created', 'r3 created' ], '... created';
is $g->{json}{index}, $index_g + 3, '... an index each';
my $t0 = time;
my $objs;
while (time - $t0 < 5) {
    $objs = $b->api(GET => '/v1/objects?kind=dr')->{json}{objects} // [];
    last if @$objs == 3;
    sleep 0.005;
}
is_deeply [ map { $_->{name} } @$objs ], [qw(r1 r2 r3)], '... served by B';
$ea = $a->api(GET => "/v1/events?index=$index_g&wait=0s")->{json};
$eb = $b->api(GET => "/v1/events?index=$index_g&wait=0s")->{json};
is scalar(@{ $ea->{events} }), 3, '... three events on A';
is_deeply $eb->{events}, $ea->{events}, '... the same on B';

$b->done_checks;
$a->done_checks;
done_testing;
