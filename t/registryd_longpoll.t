#!/usr/bin/perl

# GET /v1/snapshot?index=N&wait=D: with the current index it blocks until a
# change (answered within 50 ms of the write) or until the wait ends (200
# with the same index); hundreds of waiters are held and released together;
# another index answers at once.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

$t->start_registryd;
my $port = $t->registryd_port;

my $r = $t->api(PUT => '/v1/services/lp/instances/a',
                { address => '127.0.0.1', port => 8001 });
is $r->{status}, 201, 'registered one instance';

sub current { $t->api(GET => '/v1/snapshot')->{json}{index} }

# a raw waiter: a non-blocking socket with the request sent
sub waiter {
    my ($query) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5)
        or return undef;
    print $s "GET /v1/snapshot?$query HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Connection: close\r\n\r\n";
    $s->blocking(0);
    return { sock => $s, buf => '' };
}

# read what is there; true once the server closed the connection
sub pump {
    my ($w) = @_;
    while (1) {
        my $n = sysread($w->{sock}, $w->{buf}, 65536, length $w->{buf});
        return 0 if !defined $n && $!{EAGAIN};
        return 1 if !$n;
    }
}

# wait for waiters until they finish or $timeout passes; returns the time
# each finished, in order
sub collect {
    my ($timeout, @ws) = @_;
    my %left = map { $_ => $_ } @ws;
    my $end = time + $timeout;

    while (%left && time < $end) {
        my $sel = IO::Select->new(map { $_->{sock} } values %left);
        for my $fh ($sel->can_read(0.05)) {
            my ($w) = grep { $_->{sock} == $fh } values %left;
            next unless $w && pump($w);
            $w->{done} = time;
            $w->{resp} = MeshTest::parse_http($w->{buf});
            close $w->{sock};
            delete $left{$w};
        }
    }

    close $_->{sock} for values %left;
    return scalar(@ws) - scalar(keys %left);
}

# held: nothing arrives within $for seconds
sub held {
    my ($for, @ws) = @_;
    my $sel = IO::Select->new(map { $_->{sock} } @ws);
    my $end = time + $for;
    while (time < $end) {
        return 0 if $sel->can_read($end - time);
    }
    return 1;
}

###########################################################################
# a waiter on the current index returns soon after a write by another process

my $index = current();
like $index, qr/^\d+$/, "current index $index";

{
    my $w = waiter("index=$index&wait=30s");
    ok $w, 'waiter connected';
    ok held(0.3, $w), 'waiter on the current index is held';

    my $ackfile = $t->dir . '/ack';
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $ua = HTTP::Tiny->new(timeout => 10);
        my $sent = time;
        my $r = $ua->request(PUT => $t->registryd_url . '/v1/services/lp/instances/b',
            { content => '{"address": "127.0.0.1", "port": 8002}',
              headers => { 'Content-Type' => 'application/json' } });
        my $acked = time;
        $t->write_file($ackfile, "$r->{status} $acked $sent");
        POSIX::_exit(0);
    }

    collect(10, $w);
    waitpid $pid, 0;

    my ($status, $acked, $sent) = split ' ', $t->read_file($ackfile) // '0 0 0';
    is $status, 201, 'writer (another process) registered';
    ok $w->{done}, 'waiter returned after the write';

    my $resp = $w->{resp} || {};
    is $resp->{status}, 200, 'waiter: 200';
    cmp_ok $resp->{json}{index} // -1, '>', $index, 'waiter: a newer index';
    is $resp->{headers}{'x-mesh-index'}, $resp->{json}{index},
        'waiter: X-Mesh-Index matches';
    ok grep({ $_->{id} eq 'b' } map { @{ $_->{instances} } }
            @{ $resp->{json}{services} || [] }),
        'waiter: snapshot has the new instance';

    # the requirement is 50 ms; the bound here is generous against a slow
    # machine, the figure is reported
    my $lat = ($w->{done} // time) - $acked;
    note sprintf 'waiter answered %.1f ms after the write was sent, '
        . '%.1f ms after it was acknowledged',
        (($w->{done} // time) - $sent) * 1000, $lat * 1000;
    $lat = 0 if $lat < 0;
    cmp_ok $lat, '<', 0.5,
        sprintf('waiter answered %.1f ms after the write acknowledgement',
                $lat * 1000);
}

###########################################################################
# wait=1s without a change: 200 with the same index after about a second

$index = current();
{
    my $t0 = time;
    my $w = waiter("index=$index&wait=1s");
    collect(5, $w);
    my $el = ($w->{done} // time) - $t0;
    note sprintf 'wait=1s returned after %.3f s', $el;
    my $resp = $w->{resp} || {};
    is $resp->{status}, 200, 'wait timeout: 200';
    is $resp->{json}{index}, $index, 'wait timeout: same index';
    is $resp->{headers}{'x-mesh-index'}, $index, 'wait timeout: X-Mesh-Index';
    cmp_ok $el, '>=', 0.9, sprintf('wait timeout: held %.2f s (>= 0.9)', $el);
    cmp_ok $el, '<', 3, 'wait timeout: answered within 3 s';
}

###########################################################################
# 200 concurrent waiters are all held and all released by one write

$index = current();
{
    my @ws = grep { defined } map { waiter("index=$index&wait=30s") } 1 .. 200;
    is scalar @ws, 200, '200 waiters connected';

    ok held(0.5, @ws), 'all 200 held';

    # waiting requests hold no thread
    my ($threads) = ($t->read_file('/proc/' . $t->registryd_pid . '/status')
                     // '') =~ /^Threads:\s+(\d+)/m;
    note "registryd threads with 200 waiters: " . ($threads // '?');
    cmp_ok $threads // 0, '<', 100, 'waiters do not each cost a thread';

    # the daemon still answers other requests meanwhile
    my $t0 = time;
    $r = $t->api(GET => '/healthz');
    is $r->{status}, 200, 'healthz answered while 200 waiters wait';
    $r = $t->api(GET => '/v1/services/lp');
    is $r->{status}, 200, 'reads answered while 200 waiters wait';
    note sprintf 'healthz + read with 200 waiters: %.1f ms', (time - $t0) * 1000;

    $r = $t->api(PUT => '/v1/services/lp/instances/c',
                 { address => '127.0.0.1', port => 8003 });
    is $r->{status}, 201, 'one write';
    my $new = $r->{json}{index};

    my $n = collect(10, @ws);
    is $n, 200, 'all 200 waiters released';
    my @ok = grep { ($_->{resp}{status} // 0) == 200
                    && ($_->{resp}{json}{index} // -1) >= ($new // 0) } @ws;
    is scalar @ok, 200, 'all 200 got 200 with the new index';
}

###########################################################################
# an index other than the current one answers at once

$index = current();
for my $other ($index - 1, $index + 1000, 0) {
    my $t0 = time;
    my $w = waiter("index=$other&wait=30s");
    collect(5, $w);
    my $el = ($w->{done} // time) - $t0;
    is $w->{resp} && $w->{resp}{status}, 200, "index=$other (current $index): 200";
    is $w->{resp} && $w->{resp}{json}{index}, $index,
        "index=$other: current index";
    cmp_ok $el, '<', 2, sprintf('index=%s: immediate (%.1f ms)', $other, $el * 1000);
}

{
    my $t0 = time;
    my $w = waiter("wait=30s");
    collect(5, $w);
    is $w->{resp} && $w->{resp}{status}, 200, 'no index: 200';
    cmp_ok time - $t0, '<', 2, 'no index: immediate';
}

$t->done_checks;
done_testing;
