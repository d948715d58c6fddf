#!/usr/bin/perl

# Bounded clients: one address cannot hold more than
# connections_per_address connections (the others are closed at once, the
# rest of the world is served), and clients that go away mid-request are
# not worth a warning each.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new;

plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $cfg = $t->write_file('registryd.yaml',
                         "connections_per_address: 4\nwaits_per_address: 2\n");
my $url = $t->start_registryd(args => [ '--config', $cfg ]);
my $port = $t->registryd_port;

sub get_from {
    my ($addr) = @_;
    return HTTP::Tiny->new(timeout => 3, keep_alive => 0,
                           local_address => $addr)->get("$url/healthz");
}

my $warns = sub { scalar(() = ($t->read_file($t->registryd_log) // '')
                                   =~ /\[warn\]/g) };
my $warns0 = $warns->();

# 127.0.0.2 takes its four connections and holds them
my @held;
for (1 .. 4) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  LocalAddr => '127.0.0.2', Proto => 'tcp')
        or die "connect: $!";
    push @held, $s;
}
sleep 0.5;

# (once registryd has taken the four in: tried a few times)
my $r;
for (1 .. 10) {
    $r = get_from('127.0.0.2');
    last if $r->{status} != 200;
    sleep 0.2;
}
isnt $r->{status}, 200, 'a fifth connection from 127.0.0.2 is refused'
    or diag $r->{content};
is get_from('127.0.0.1')->{status}, 200, '127.0.0.1 is served meanwhile';
is get_from('127.0.0.3')->{status}, 200, 'and 127.0.0.3';

# 200 more from it: turned away, and said once
for (1 .. 200) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  LocalAddr => '127.0.0.2', Proto => 'tcp');
    close $s if $s;
}
sleep 0.3;
my $said = $warns->() - $warns0;
ok $said >= 1 && $said <= 2,
    "201 connections turned away: $said warning line(s), not 201";

close $_ for @held;
@held = ();
sleep 0.3;
is get_from('127.0.0.2')->{status}, 200,
    'its connections closed, 127.0.0.2 is served again';

# 200 clients that send half a request and go away

my $before = () = ($t->read_file($t->registryd_log) // '') =~ /\[warn\]/g;
for my $i (1 .. 200) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  LocalAddr => '127.0.0.' . (10 + $i % 50),
                                  Proto => 'tcp') or next;
    print $s "PUT /v1/services/a/instances/b HTTP/1.1\r\nHost: x\r\n"
           . "Content-Length: 100\r\n\r\n{\"addr";
    close $s;
}
sleep 1;
is get_from('127.0.0.1')->{status}, 200, 'registryd serves after them';
my $after = () = ($t->read_file($t->registryd_log) // '') =~ /\[warn\]/g;
is $after - $before, 0, 'and wrote no warning about them';

# waits_per_address: one host's long-polls and event streams are bounded

my $index = $t->api(GET => '/healthz')->{json}{index};
my @polls;
for my $path ("/v1/snapshot?index=$index&wait=30s",
              "/v1/events?index=$index&wait=30s") {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  LocalAddr => '127.0.0.4', Proto => 'tcp')
        or die "connect: $!";
    print $s "GET $path HTTP/1.1\r\nHost: x\r\n\r\n";
    push @polls, $s;
}

# until registryd holds both (its waiters gauge), 5 s at most
my $end = time + 5;
while (time < $end) {
    last if ($t->http(GET => "$url/metrics")->{content} // '')
            =~ /^registryd_snapshot_waiters (\d+)$/m && $1 >= 2;
    sleep 0.05;
}
my $third = HTTP::Tiny->new(timeout => 5, local_address => '127.0.0.4')
    ->get("$url/v1/snapshot?index=$index&wait=30s");
is $third->{status}, 429, 'a third long-poll from 127.0.0.4: 429';
like $third->{content}, qr/waits_per_address/, 'naming the setting';
my $other = HTTP::Tiny->new(timeout => 5, local_address => '127.0.0.5')
    ->get("$url/v1/snapshot?index=$index&wait=0s");
is $other->{status}, 200, 'another address still polls';
close $_ for @polls;
sleep 0.5;
$r = HTTP::Tiny->new(timeout => 5, local_address => '127.0.0.4')
    ->get("$url/v1/snapshot?index=$index&wait=0s");
is $r->{status}, 200, 'its polls ended: 127.0.0.4 polls again';

# a body over max_body sent whole, without Expect: 100-continue (as
# Python's http.client does): the 413 can be read, every time

my $big = '{"address":"127.0.0.1","port":1,"labels":{"v":"'
          . ('x' x (3 * 1024 * 1024)) . '"}}';
my $read413 = 0;
for (1 .. 5) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Proto => 'tcp') or die "connect: $!";
    my $req = "PUT /v1/services/big/instances/b1 HTTP/1.1\r\nHost: x\r\n"
            . "Content-Type: application/json\r\nContent-Length: "
            . length($big) . "\r\nConnection: close\r\n\r\n" . $big;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($s, $req, 65536, $off);
        last unless $n;
        $off += $n;
    }
    my $ans = '';
    while (sysread($s, my $buf, 65536)) { $ans .= $buf }
    close $s;
    $read413++ if $off == length($req) && $ans =~ m{^HTTP/1\.1 413 }
                  && $ans =~ /request body too large/;
}
is $read413, 5, 'a 3 MB body sent whole: the 413 read 5 times of 5';
is $t->api(GET => '/v1/services/big/instances/b1')->{status}, 404,
    'and nothing stored';

# two Content-Length headers that disagree: 400, nothing stored
my $r2 = $t->raw_http("PUT /v1/services/two/instances/t1 HTTP/1.1\r\n"
    . "Host: x\r\nContent-Type: application/json\r\n"
    . "Content-Length: 33\r\nContent-Length: 5\r\nConnection: close\r\n"
    . "\r\n" . '{"address":"127.0.0.1","port":1}');
ok $r2 && ($r2->{status} // 0) == 400,
    'two different Content-Length headers: 400'
    or diag explain $r2;
is $t->api(GET => '/v1/services/two/instances/t1')->{status}, 404,
    'nothing stored';

# 300 malformed requests (not HTTP at all): one warning line, not 300
$before = $warns->();
for my $i (1 .. 300) {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  LocalAddr => '127.0.0.' . (10 + $i % 50),
                                  Proto => 'tcp') or next;
    print $s "\x16\x03\x01 not http at all\r\n\r\n";
    sysread $s, my $buf, 512;
    close $s;
}
is get_from('127.0.0.1')->{status}, 200, 'registryd serves after them';
$said = $warns->() - $before;
ok $said >= 1 && $said <= 2,
    "300 malformed requests: $said warning line(s), not 300";

$t->done_checks;
done_testing;
