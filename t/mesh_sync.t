#!/usr/bin/perl

# How nginx follows registryd: it asks only for the services its mesh
# upstreams route (a registry of 600 instances in other services costs it
# nothing), takes changes as deltas over one kept-alive connection, and
# the changes reach traffic without a reload.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use POSIX ();
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port;
for my $b (qw(b1 b2 b3)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
}
for my $b (qw(b1 b2)) {
    is $t->register(orders => $b, $port{$b})->{status}, 201, "register $b";
}

# services nginx does not route: 600 instances from 6 clients at once
my @kids;
for my $k (0 .. 5) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $t->_reset_ua;
        for my $i (map { $k * 100 + $_ } 1 .. 100) {
            my $r = $t->register('other' . ($i % 3) => "x$i", 20000 + $i,
                labels => { version => 'v1', team => 'payments' });
            POSIX::_exit(1) unless $r->{status} == 201;
        }
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad++ if $? }
is $bad, 0, '600 instances of other services registered';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

sub metric {
    my ($name) = @_;
    my $text = $t->api(GET => '/metrics')->{content} // '';
    my ($v) = $text =~ /^\Q$name\E (\d+)/m;
    return $v // 0;
}

sub spread {
    my ($n) = @_;
    my $c = $t->client;
    my %seen;
    $seen{ $c->get('/')->{headers}{'x-backend'} // 'none' }++ for 1 .. $n;
    $c->close;
    return \%seen;
}

# the connections nginx's workers hold to registryd (their local ports)
sub registry_conns {
    my $rport = sprintf '%04X', $t->registryd_port;
    my %mine;
    for my $pid ($t->nginx_workers) {
        for my $fd (glob "/proc/$pid/fd/*") {
            my $l = readlink($fd) // next;
            $mine{$1} = 1 if $l =~ /^socket:\[(\d+)\]$/;
        }
    }
    my @ports;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my @f = split ' ';
            next unless @f > 9 && $f[3] eq '01' && $mine{ $f[9] };
            push @ports, hex((split /:/, $f[1])[1])
                if (split /:/, $f[2])[1] eq $rport;
        }
    }
    return sort { $a <=> $b } @ports;
}

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

is_deeply spread(20), { b1 => 10, b2 => 10 }, 'orders: b1 and b2 serve';

my $full = metric('registryd_snapshot_answer_bytes_total{kind="full"}');
ok $full > 0 && $full < 2000,
    "nginx downloaded $full bytes for 2 of 602 instances";

# changes: each one a delta on the same connection

my @conns = registry_conns();
is scalar @conns, 1, "one connection to registryd" or diag "ports: @conns";

my $deltas = metric('registryd_snapshot_answers_total{kind="delta"}');
my $dbytes = metric('registryd_snapshot_answer_bytes_total{kind="delta"}');

for my $i (1 .. 10) {
    $t->register(other1 => 'x1', 30000 + $i);
    my $r = $t->register(orders => 'b1', $port{b1}, weight => 1 + $i % 2);
    ok $t->wait_mesh_index(index => $r->{json}{index}),
        "change $i reached nginx" or last;
}

my $nd = metric('registryd_snapshot_answers_total{kind="delta"}') - $deltas;
my $nb = metric('registryd_snapshot_answer_bytes_total{kind="delta"}')
    - $dbytes;
cmp_ok $nd, '>=', 10, "$nd deltas for 20 changes";
cmp_ok $nb / ($nd || 1), '<', 400,
    sprintf 'a delta is %.0f bytes on average', $nb / ($nd || 1);
is_deeply [ registry_conns() ], \@conns, '... all over the same connection';
is metric('registryd_snapshot_answers_total{kind="full"}'), 1,
    '... and no complete answer after the first';

# a registration and a removal reach traffic

my $r = $t->register(orders => 'b3', $port{b3});
is $r->{status}, 201, 'register b3';
my $end = time + 5;
my $hit;
while (time < $end) {
    last if $hit = spread(3)->{b3};
}
ok $hit, 'b3 receives traffic';

$r = $t->deregister(orders => 'b1');
ok $t->wait_mesh_index(index => $r->{json}{index}), 'b1 removed';
my $seen = spread(30);
ok !$seen->{b1}, 'b1 gets no more requests' or diag explain $seen;
ok $seen->{b2} && $seen->{b3}, 'b2 and b3 do';

my $st = $t->mesh_status;
is $st->{registry}{state}, 'synced', 'status: synced';
my ($svc) = grep { $_->{name} eq 'orders' } @{ $st->{services} || [] };
is_deeply [ sort map { $_->{id} } @{ $svc->{instances} || [] } ],
    [qw(b2 b3)], 'status: b2 and b3';

# the cache file holds what is routed (written off the event loop, at
# most once a second), and reads back at start

my ($cache, $doc, $ids);
$end = time + 5;
while (time < $end) {
    $cache = $t->read_file($t->cache_file) // '';
    $doc = eval { MeshTest->decode_json($cache) };
    $ids = join ',', sort map { $_->{id} }
        map { @{ $_->{instances} || [] } } @{ $doc ? $doc->{services} : [] };
    last if $ids eq 'b2,b3';
    sleep 0.1;
}
ok $doc, 'the cache file is JSON' or diag $cache;
is $ids, 'b2,b3', '... and follows the changes while nginx runs';
is_deeply [ map { $_->{name} } @{ $doc->{services} || [] } ], ['orders'],
    '... with the routed service only';
like $doc->{registry} // '', qr/^[0-9a-f]{16}$/, '... and the registry id';

$t->stop_nginx;
$t->stop_registryd;

$t->start_nginx;
$seen = spread(20);
is_deeply $seen, { b2 => 10, b3 => 10 },
    'registry down: nginx starts from the cache file';

$t->stop_nginx;
$t->done_checks;
done_testing;
