#!/usr/bin/perl

# registryctl run: the instance is registered while its command lives
# (heartbeats keep it past many TTLs), the signals run gets reach the
# command once each, the command's exit status is run's, the instance is
# deregistered when it exits, a registry restarted (or one that lost its
# data) has the instance back, a registry that hangs holds up neither a
# signal nor the exit, and bad arguments start nothing.

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

# the command: records each signal it gets in a file, one a line; TERM
# makes it exit with the code given; it ends by itself after 60 s
my $child = $t->write_file('child.pl', <<'EOF');
use strict;
use warnings;
use Time::HiRes qw(sleep time);
my ($log, $code) = @ARGV;
sub rec { open my $f, '>>', $log or die "$log: $!"; print $f "$_[0]\n"; close $f }
for my $s (qw(USR1 USR2 HUP INT QUIT)) { $SIG{$s} = sub { rec($s) } }
$SIG{TERM} = sub { rec('TERM'); exit $code };
rec("start $$");
my $end = time + 60;
sleep 0.05 while time < $end;
exit 99;
EOF

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

sub instance { $t->api(GET => "/v1/services/$_[0]/instances/$_[1]") }
sub signals { my $s = $t->read_file($_[0]) // ''; [grep { !/^start/ } split /\n/, $s] }

# the events of one instance since index $from, as "type:reason"
sub events_of {
    my ($svc, $id, $from) = @_;
    my $r = $t->api(GET => "/v1/events?index=$from&wait=0s");
    return [map { $_->{type} . ($_->{reason} ? ":$_->{reason}" : '') }
            grep { ($_->{service} // '') eq $svc && ($_->{id} // '') eq $id }
            @{ $r->{json}{events} }];
}

###########################################################################
# registered with its options, heartbeated past several TTLs, signals
# passed on once each, TERM's exit code, deregistered at the end

# the instance's address: a backend, which its health check finds up
my $bport = $t->start_backend(name => 'o1');
my $log = $t->dir . '/sigs-1';
my $from = $t->registry_index;
my $t0 = time;

my $pid = $t->start_registryctl('run', 'orders', 'o1', "127.0.0.1:$bport",
    qw(--ttl 1s --weight 3 --label version=v2 --zone z1 --check),
    'http:/healthz,interval=1s,timeout=500ms', '--',
    $^X, $child, $log, 7);

my $r = wait_for(sub { my $r = instance('orders', 'o1');
                       $r->{status} == 200 ? $r : undef });
ok $r, 'run registers the instance' or diag join '', $t->registryctl_output($pid);
is $r->{json}{port}, $bport, 'at its port';
is $r->{json}{weight}, 3, 'with --weight';
is $r->{json}{ttl}, '1s', 'with --ttl';
is $r->{json}{zone}, 'z1', 'with --zone';
is_deeply $r->{json}{labels}, { version => 'v2' }, 'with --label';
is_deeply $r->{json}{check},
    { http => '/healthz', interval => '1s', timeout => '500ms' },
    '--check http:PATH,... is the registration\'s check';
ok time - $t0 < 3, 'registered within 3 s of the start';

my $svc = $t->api(GET => '/v1/services/orders');
is scalar @{ $svc->{json}{instances} }, 1, 'visible in GET /v1/services/orders';

# 3.5 TTLs of 1 s: only heartbeats keep it passing
sleep 3.5;
$r = instance('orders', 'o1');
is $r->{json}{health}, 'passing', 'passing after 3.5 TTLs';
is_deeply events_of('orders', 'o1', $from), ['registered'],
    'never critical meanwhile: heartbeats came every TTL/3';
ok kill(0, $pid), 'run still runs';

for my $sig (qw(USR1 HUP USR2 INT QUIT)) {
    kill $sig, $pid;
    wait_for(sub { grep { $_ eq $sig } @{ signals($log) } }, 3);
}
is_deeply signals($log), [qw(USR1 HUP USR2 INT QUIT)],
    'USR1, HUP, USR2, INT, QUIT reach the command, once each, in order';

kill 'TERM', $pid;
my $code = $t->wait_registryctl($pid, 10);
is $code, 7, 'TERM: run exits with the command\'s exit code (7)';
is signals($log)->[-1], 'TERM', 'the command got TERM';
is instance('orders', 'o1')->{status}, 404, 'deregistered when it exits';
is_deeply events_of('orders', 'o1', $from), ['registered', 'deregistered:api'],
    'events: registered, deregistered by the API';

my ($out, $err) = $t->registryctl_output($pid);
is $out, '', 'run prints nothing on stdout (it is the command\'s)';
my $re = '\Aregistryctl: run: orders/o1: registered \(index \d+\)\n'
       . 'registryctl: run: orders/o1: deregistered \(index \d+\)\n\z';
like $err, qr/$re/,
    'stderr: registered, then deregistered';

###########################################################################
# exit codes: a plain exit, and death by a signal (128 + N)

($code, $out, $err) = $t->registryctl(qw(run orders o2 127.0.0.1:18082 --),
                                      'sh', '-c', 'sleep 0.3; exit 3');
is $code, 3, 'exit 3 of the command is run\'s exit code';
is instance('orders', 'o2')->{status}, 404, 'deregistered after exit 3';

($code) = $t->registryctl(qw(run orders o3 127.0.0.1:18083 --),
                          'sh', '-c', 'sleep 0.3; kill -KILL $$');
is $code, 128 + 9, 'command killed by SIGKILL: exit 137';
is instance('orders', 'o3')->{status}, 404, 'deregistered after SIGKILL';

###########################################################################
# the registry goes away for 2.5 TTLs and comes back (same data), then
# comes back having lost its data: the instance is back both times, the
# command untouched, and the outage is a line, not a line a second

$log = $t->dir . '/sigs-2';
$pid = $t->start_registryctl(qw(run pay p1 127.0.0.1:18090 --ttl 1s
    --weight 2 --), $^X, $child, $log, 0);
ok wait_for(sub { instance('pay', 'p1')->{status} == 200 }),
    'pay/p1 registered';

$t->stop_registryd;
sleep 2.5;
ok kill(0, $pid), 'registry down for 2.5 TTLs: run still runs';
like $t->read_file($log), qr/\Astart \d+\n\z/, 'and its command was not touched';

$t->start_registryd;
$r = wait_for(sub { my $r = instance('pay', 'p1');
                    $r->{status} == 200 && $r->{json}{health} eq 'passing'
                    ? $r : undef }, 5);
ok $r, 'registry back (same data): pay/p1 passing again';

# (a restarted registry gives every instance a TTL: passing says little)
ok wait_for(sub { ($t->registryctl_output($pid))[1]
                  =~ /the registry answers again after \d+s \(\d+ failed attempts\)/ }),
    'one line when the registry is back';
($out, $err) = $t->registryctl_output($pid);
my @fail = $err =~ /failed/g;
is scalar @fail, 2, 'the outage is one "failed" line (and the one above)'
    or diag $err;

# a registry that lost its data: the heartbeat gets 404, run registers again
$t->stop_registryd;
$t->start_registryd(data_dir => $t->dir . '/registry-new');
$r = wait_for(sub { my $r = instance('pay', 'p1');
                    $r->{status} == 200 ? $r : undef }, 5);
ok $r, 'registry without its data: pay/p1 registered again';
is $r->{json}{weight}, 2, 'with its options';
($out, $err) = $t->registryctl_output($pid);
$re = 'pay/p1: the registry no longer has it .*\n'
    . 'registryctl: run: pay/p1: registered again \(index \d+\)';
like $err, qr/$re/,
    'says it registers again';

kill 'TERM', $pid;
is $t->wait_registryctl($pid, 10), 0, 'TERM: exit 0 as the command';
is instance('pay', 'p1')->{status}, 404, 'pay/p1 deregistered';

###########################################################################
# --wait-port: not registered before ADDR:PORT accepts connections

my $port = $t->port;
$log = $t->dir . '/sigs-3';
$pid = $t->start_registryctl('run', 'web', 'w1', "127.0.0.1:$port",
                             '--wait-port', '--', $^X, $child, $log, 0);
wait_for(sub { -s $log }, 3);
sleep 1;
is instance('web', 'w1')->{status}, 404,
    '--wait-port: not registered while the port is closed';

my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                               Listen => 5, ReuseAddr => 1)
    or die "listen $port: $!";
ok wait_for(sub { instance('web', 'w1')->{status} == 200 }, 3),
    '--wait-port: registered once the port accepts';
close $ls;

kill 'TERM', $pid;
is $t->wait_registryctl($pid, 10), 0, '--wait-port run ends';

###########################################################################
# a registry that accepts connections and never answers: signals still
# pass at once, and the exit is bounded by --timeout

my $hang = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 64,
                                 ReuseAddr => 1) or die "listen: $!";
my $hurl = 'http://127.0.0.1:' . $hang->sockport;

$log = $t->dir . '/sigs-4';
$pid = $t->_spawn('run hang', sub {
    MeshTest::_redirect($t->dir . '/hang.out', $t->dir . '/hang.err');
    exec $t->bin('registryctl'), '--registry', $hurl, '--timeout', '2s',
        qw(run hang h1 127.0.0.1:18099 --), $^X, $child, $log, 5;
});
wait_for(sub { -s $log }, 3);
sleep 0.3;

my $ts = time;
kill 'USR1', $pid;
ok wait_for(sub { grep { $_ eq 'USR1' } @{ signals($log) } }, 1),
    'registry hangs: USR1 still reaches the command at once';
ok time - $ts < 0.5, 'within 0.5 s';

$ts = time;
kill 'TERM', $pid;
$code = $t->wait_registryctl($pid, 10);
is $code, 5, 'registry hangs: the command\'s exit code all the same';
ok time - $ts < 2 * 2 + 1.5,
    'exit bounded by --timeout (a registration, then a deregistration)';
like $t->read_file('hang.err'), qr/cannot deregister: registry \S+: no answer/,
    'the deregistration that got no answer is said';
close $hang;

###########################################################################
# refused registration (401): the command is stopped, exit 1, one line

$t->stop_registryd;
$t->start_registryd(token => 's3cret');
$log = $t->dir . '/sigs-5';
$ts = time;
($code, $out, $err) = $t->registryctl(qw(run orders o9 127.0.0.1:18089 --),
                                      $^X, $child, $log, 0);
is $code, 1, 'registration refused (no token): exit 1';
like $err, qr{\Aregistryctl: run: orders/o9: the registration is refused \(401 [^\n]*\); the command was stopped\n\z},
    'one line saying why';
ok time - $ts < 5, 'the command (which would live 60 s) was stopped';

###########################################################################
# bad arguments and commands: one line, nothing started or registered

my $mark = $t->dir . '/started';
my @touch = ('sh', '-c', "touch $mark");
my @bad = (
    [[qw(run orders o1 127.0.0.1:1), @touch], 2, qr/run: missing -- COMMAND/],
    [[qw(run orders o1 127.0.0.1:1 --)], 2, qr/run: missing -- COMMAND/],
    [[qw(run orders 127.0.0.1:1 --), @touch], 2, qr/run: missing arguments/],
    [[qw(run orders o1 127.0.0.1 --), @touch], 2, qr/invalid ADDR:PORT/],
    [[qw(run orders o/1 127.0.0.1:1 --), @touch], 2, qr/invalid instance id/],
    [[qw(run orders o1 127.0.0.1:1 --ttl 0s --), @touch], 2, qr/invalid --ttl/],
    [[qw(run orders o1 127.0.0.1:1 --check udp --), @touch], 2,
     qr/invalid --check "udp": expected tcp or http/],
    [['run', 'orders', 'o1', '127.0.0.1:1', '--check', 'tcp,interval=1x', '--',
      @touch], 2,
     qr/invalid --check interval "1x"/],
    [['run', 'orders', 'o1', '127.0.0.1:1', '--check', 'tcp,status=200', '--',
      @touch], 2,
     qr/status is for http checks/],
    [['run', 'orders', 'o1', '127.0.0.1:1', '--check', 'http:/h,nope=1', '--',
      @touch], 2,
     qr/unknown key "nope"/],
    [[qw(run orders o1 127.0.0.1:1 --wait-port=1 --), @touch], 2,
     qr/unknown option|needs|doesn't allow|option/],
    [[qw(run orders o1 127.0.0.1:1 --bogus --), @touch], 2,
     qr/run: unknown option "--bogus"/],
    [[qw(--token-file /nonexistent run orders o1 127.0.0.1:1 --), @touch], 1,
     qr/nonexistent/],
    [[qw(run orders o1 127.0.0.1:1 -- /nonexistent/cmd)], 1,
     qr{run: cannot run "/nonexistent/cmd": No such file or directory}],
);

for my $b (@bad) {
    my ($args, $want, $re) = @$b;
    ($code, $out, $err) = $t->registryctl(@$args);
    subtest "bad: @$args" => sub {
        is $code, $want, "exit $want";
        like $err, qr/\Aregistryctl: [^\n]*\n\z/, 'one line';
        like $err, $re, 'says why';
        is $out, '', 'nothing on stdout';
    };
}
ok !-e $mark, 'no bad invocation started its command';
is instance('orders', $_)->{status}, 404, "and orders/$_ is not registered"
    for qw(o1 o9);

$t->done_checks;
done_testing;
