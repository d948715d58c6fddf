#!/usr/bin/perl

# registryd stops cleanly on SIGTERM and SIGINT (exit code 0, in bounded
# time, even with long-poll waiters), keeps data and index across a clean
# restart, and refuses a bad config file naming the file and line.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

$t->start_registryd;

for my $n (1 .. 5) {
    my $r = $t->api(PUT => "/v1/services/keep/instances/k$n",
                    { address => '127.0.0.1', port => 9000 + $n, weight => $n,
                      labels => { n => "$n" } });
    is $r->{status}, 201, "registered k$n";
}
my $r = $t->api(DELETE => '/v1/services/keep/instances/k5');
is $r->{status}, 200, 'deregistered k5';

my $snap = $t->api(GET => '/v1/snapshot')->{json};
my $index = $snap->{index};

# SIGTERM with a long-poll waiter held

my $w = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->registryd_port, Proto => 'tcp')
    or die "connect: $!";
print $w "GET /v1/snapshot?index=$index&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n";
select undef, undef, undef, 0.3;

my $t0 = time;
my $st = $t->stop_registryd(signal => 'TERM', timeout => 10);
my $el = time - $t0;
note sprintf 'SIGTERM to exit: %.2f s', $el;
is $st, 0, 'SIGTERM: exit code 0 (status ' . ($st // 'undef') . ')';
cmp_ok $el, '<', 10, 'SIGTERM: stopped in bounded time, waiter held';
close $w;

# data and index survive

$t->start_registryd;
my $again = $t->api(GET => '/v1/snapshot')->{json};
is $again->{index}, $index, 'index survived the restart';
is_deeply $again->{services}, $snap->{services}, 'data survived the restart';

$r = $t->api(PUT => '/v1/services/keep/instances/k6',
             { address => '127.0.0.1', port => 9006 });
cmp_ok $r->{json}{index} // -1, '>', $index, 'next write: higher index';
$index = $r->{json}{index} // $index;

# SIGINT also stops cleanly

$t0 = time;
$st = $t->stop_registryd(signal => 'INT', timeout => 10);
is $st, 0, 'SIGINT: exit code 0 (status ' . ($st // 'undef') . ')';
cmp_ok time - $t0, '<', 10, 'SIGINT: stopped in bounded time';

$t->start_registryd;
is $t->api(GET => '/healthz')->{json}{index}, $index,
    'index survived the second restart';
is $t->api(GET => '/v1/services/keep/instances/k6')->{status}, 200,
    'k6 survived';
$t->stop_registryd;

# config files: a good one is accepted

my $port = $t->port;
my $good = $t->write_file('good.yaml', <<"EOF");
# registryd test config
listen: 127.0.0.1:$port
data_dir: @{[ $t->dir ]}/registry
log_level: info
max_body: 2m
ttl_scan_interval: 100ms
EOF

$t->start_registryd(args => [ '--config', $good ]);
is $t->api(GET => '/v1/services/keep/instances/k1')->{status}, 200,
    'registryd with a good --config file serves the same data';
$t->stop_registryd;

# bad ones stop it at start with FILE:LINE: reason

my @badconf = (
    [ 'unknown key', "log_level: info\nlisten: 127.0.0.1:$port\nbogus_key: 1\n", 3 ],
    [ 'bad log level', "listen: 127.0.0.1:$port\nlog_level: loud\n", 2 ],
    [ 'bad listen', "log_level: info\nlisten: nowhere\n", 2 ],
    [ 'bad duration', "listen: 127.0.0.1:$port\nttl_scan_interval: soon\n", 2 ],
);

for my $c (@badconf) {
    my ($what, $yaml, $line) = @$c;
    (my $name = $what) =~ s/\W+/-/g;
    my $file = $t->write_file("bad-$name.yaml", $yaml);

    my ($code, $out, $err) = $t->run({ timeout => 10 }, $t->bin('registryd'),
        '--config', $file, '--data-dir', $t->dir . '/bad-data');

    ok $code > 0, "$what: exit code non-zero ($code)";
    isnt $code, -1, "$what: exits by itself";
    like $out . $err, qr/\Q$file\E:$line\b/, "$what: message names $file:$line"
        or diag $out . $err;
}

$t->done_checks;
done_testing;
