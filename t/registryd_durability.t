#!/usr/bin/perl

# Every write registryd answered 2xx survives kill -9: 1,000 registrations
# from 4 concurrent keep-alive clients, SIGKILL right after the last answer,
# restart on the same data dir, all 1,000 are there.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use POSIX ();
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

my $url = $t->start_registryd;

my $CLIENTS = 4;
my $EACH = 250;
my $N = $CLIENTS * $EACH;

# instance $n: service svc<n % 10>, id i<n>, fields derived from n
sub want {
    my ($n) = @_;
    return {
        service => 'svc' . ($n % 10),
        id      => "i$n",
        address => '127.0.' . int($n / 250) . '.' . ($n % 250 + 1),
        port    => 10000 + $n,
        weight  => $n % 1000 + 1,
        zone    => 'z' . ($n % 3),
        labels  => { n => "$n", client => 'c' . int($n / $EACH) },
    };
}

my @pids;
for my $c (0 .. $CLIENTS - 1) {
    my $pid = fork;
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        my $ua = HTTP::Tiny->new(timeout => 10, keep_alive => 1);
        my ($ok, $max, $err) = (0, 0, '');

        for my $n ($c * $EACH .. ($c + 1) * $EACH - 1) {
            my $w = want($n);
            my %body = %$w;
            delete @body{qw(service id)};
            my $r = $ua->request(PUT =>
                "$url/v1/services/$w->{service}/instances/$w->{id}",
                { content => $t->encode_json(\%body),
                  headers => { 'Content-Type' => 'application/json' } });
            if ($r->{status} =~ /^2/) {
                $ok++;
                my $idx = eval { $t->decode_json($r->{content})->{index} };
                $max = $idx if defined $idx && $idx > $max;
            } else {
                $err ||= "$n: $r->{status} $r->{content}";
            }
        }

        $t->write_file("client$c", "$ok $max $err");
        POSIX::_exit(0);
    }

    push @pids, $pid;
}

waitpid $_, 0 for @pids;

# right after the last acknowledged write
$t->kill_registryd;

my ($acked, $last) = (0, 0);
for my $c (0 .. $CLIENTS - 1) {
    my ($ok, $max, $err) = split / /, $t->read_file("client$c") // '0 0 lost', 3;
    is $ok, $EACH, "client $c: all $EACH writes acknowledged"
        or diag "first error: $err";
    $acked += $ok;
    $last = $max if $max > $last;
}

$t->start_registryd;

my $r = $t->api(GET => '/v1/snapshot');
is $r->{status}, 200, 'snapshot after restart';
my $snap = $r->{json} || {};
cmp_ok $snap->{index} // -1, '>=', $last,
    "index $snap->{index} >= last acknowledged $last";

my %got;
for my $s (@{ $snap->{services} || [] }) {
    for my $i (@{ $s->{instances} || [] }) {
        $got{"$s->{name}/$i->{id}"} = { %$i, service => $s->{name} };
    }
}

is scalar keys %got, $N, "$N instances after kill -9 and restart";

my @wrong;
for my $n (0 .. $N - 1) {
    my $w = want($n);
    my $g = $got{"$w->{service}/$w->{id}"};
    if (!$g) {
        push @wrong, "$w->{service}/$w->{id} missing";
        next;
    }
    for my $k (qw(address port weight zone)) {
        push @wrong, "$w->{id}.$k: " . ($g->{$k} // 'undef') . " != $w->{$k}"
            if ($g->{$k} // '') ne $w->{$k};
    }
    push @wrong, "$w->{id}.labels differ"
        unless $t->encode_json($g->{labels} // {}) eq $t->encode_json($w->{labels});
}
ok !@wrong, 'every instance has its fields'
    or diag join "\n", @wrong[0 .. ($#wrong < 9 ? $#wrong : 9)];

$r = $t->api(GET => '/v1/services');
is_deeply [ map { "$_->{name}=$_->{instances}" } @{ $r->{json}{services} || [] } ],
    [ map { "svc$_=100" } 0 .. 9 ], 'services list agrees';

# the index keeps rising after the restart
$r = $t->api(DELETE => '/v1/services/svc0/instances/i0');
cmp_ok $r->{json}{index} // -1, '>', $snap->{index}, 'next write has a higher index';

$t->done_checks;
done_testing;
