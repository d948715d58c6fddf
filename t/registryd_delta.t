#!/usr/bin/perl

# GET /v1/snapshot for clients that subscribe (?services=a,b) and apply
# deltas (?delta=1&index=N&registry=ID): only the subscribed services and
# the policies naming them; per service, the instances changed since N and
# the ids removed; an empty delta when a long-poll ends with nothing new;
# a complete answer when N is no longer kept, is ahead of the registry, or
# belongs to another registry (another data dir); the registry id survives
# a restart; bad arguments are refused with the field named.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use IO::Uncompress::Gunzip qw(gunzip);
use Test::More;
use POSIX ();
use Time::HiRes qw(time);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

my $conf = $t->write_file('registryd.yaml', "events_keep: 20\n");
$t->start_registryd(args => ['--config', $conf]);

sub reg {
    my ($svc, $id, $port, %more) = @_;
    my $r = $t->api(PUT => "/v1/services/$svc/instances/$id",
                    { address => '127.0.0.1', port => $port, %more });
    die "register $svc/$id: $r->{status}" unless $r->{status} =~ /^20/;
    return $r->{json}{index};
}

sub snap {
    my ($query) = @_;
    my $r = $t->api(GET => "/v1/snapshot?$query");
    return $r->{status} == 200 ? $r->{json} : $r;
}

sub names { [ map { $_->{name} } @{ $_[0]{services} } ] }

sub ids { [ sort map { $_->{id} } @{ $_[0]{instances} } ] }

reg('alpha', "a$_", 8000 + $_) for 1 .. 3;
reg('beta', "b$_", 8100 + $_) for 1 .. 2;
reg('gamma', 'g1', 8201);

my $yaml = <<'EOF';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: beta
spec:
  host: beta
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
EOF
my $r = $t->api(PUT => '/v1/policies/beta', $yaml,
                { 'Content-Type' => 'application/yaml' });
is $r->{status}, 201, 'a policy for beta';

# a subscription: the complete answer holds what is routed, nothing else

my $full = snap('services=gamma,alpha,nosuch&delta=1');
is_deeply names($full), [qw(alpha gamma)], 'subscription: its services only';
is_deeply ids($full->{services}[0]), [qw(a1 a2 a3)], '... all instances';
is_deeply $full->{policies}, [], '... no policy names them';
ok !$full->{delta}, '... a complete answer ("delta": false)';
like $full->{registry}, qr/^[0-9a-f]{16}$/, '... with the registry id';
my $id = $full->{registry};
my $n = $full->{index};

my $all = snap('');
is $all->{registry}, $id, 'the plain snapshot has the same id';
is_deeply names($all), [qw(alpha beta gamma)], '... and every service';

my $b = snap('services=beta');
is scalar @{ $b->{policies} }, 1, 'beta subscribed: its policy comes along';

# deltas

reg('alpha', 'a2', 9002, weight => 7);
$t->api(DELETE => '/v1/services/alpha/instances/a3');
reg('beta', 'b1', 9101);
reg('alpha', 'a4', 9004);

my $d = snap("services=alpha,gamma&delta=1&index=$n&registry=$id");
ok $d->{delta}, 'delta since N';
is $d->{index}, $n + 4, '... at the current index';
is_deeply names($d), ['alpha'], '... only the changed, subscribed service';
is_deeply ids($d->{services}[0]), [qw(a2 a4)], '... changed and new';
is_deeply $d->{services}[0]{removed}, ['a3'], '... removed';
my ($a2) = grep { $_->{id} eq 'a2' } @{ $d->{services}[0]{instances} };
is $a2->{weight}, 7, '... as they are now';
ok !exists $d->{policies}, '... no policies when none changed';

# one instance changed in a service of 200: bytes follow the change

reg('big', "i$_", 10000 + $_) for 1 .. 200;
my $now = snap('services=big&delta=1')->{index};
reg('big', 'i7', 10007, weight => 3);
$r = $t->api(GET => "/v1/snapshot?services=big&delta=1&index=$now"
                    . "&registry=$id");
ok length($r->{content}) < 400,
    'one instance changed in 200: ' . length($r->{content}) . ' bytes';
is_deeply ids($r->{json}{services}[0]), ['i7'], '... that instance alone';

# nothing new: the long-poll ends with an empty delta, not a download

$now = $r->{json}{index};
my $t0 = time;
$d = snap("services=alpha&delta=1&index=$now&registry=$id&wait=500ms");
my $took = time - $t0;
ok $took >= 0.45 && $took < 3, sprintf 'waited %.2f s', $took;
ok $d->{delta}, '... then a delta';
is $d->{index}, $now, '... at the same index';
is_deeply $d->{services}, [], '... with nothing in it';

# a change elsewhere does not end the wait: nothing to do for the client;
# when the wait ends, the answer is empty at the new index

sub later {
    my ($delay, $code) = @_;
    my $pid = fork // die;
    if ($pid == 0) {
        $t->_reset_ua;
        select undef, undef, undef, $delay;
        $code->();
        POSIX::_exit(0);
    }
    return $pid;
}

my $pid = later(0.2, sub { reg('gamma', 'g2', 8202) });
$t0 = time;
$d = snap("services=alpha&delta=1&index=$now&registry=$id&wait=1s");
$took = time - $t0;
waitpid $pid, 0;
ok $took >= 0.9, sprintf 'a change to gamma: alpha waited on (%.2f s)',
    $took;
is $d->{index}, $now + 1, '... then an answer at the new index';
is_deeply $d->{services}, [], '... with nothing about alpha';

# a change to a subscribed service ends it at once, even after others

$now = $d->{index};
$pid = later(0.2, sub { reg('gamma', 'g3', 8203); reg('alpha', 'a1', 9001) });
$t0 = time;
$d = snap("services=alpha&delta=1&index=$now&registry=$id&wait=10s");
$took = time - $t0;
waitpid $pid, 0;
ok $took < 3, sprintf 'a change to alpha: woken after %.2f s', $took;
is $d->{index}, $now + 2, '... at the new index';
is_deeply names($d), ['alpha'], '... with alpha alone';

# without a subscription every change ends the wait

$now = $d->{index};
$pid = later(0.2, sub { reg('gamma', 'g4', 8204) });
$t0 = time;
$d = snap("delta=1&index=$now&registry=$id&wait=10s");
$took = time - $t0;
waitpid $pid, 0;
ok $took < 3, sprintf 'no subscription: woken after %.2f s', $took;
is_deeply names($d), ['gamma'], '... by gamma';

# a policy change carries the policies of the subscription

$t->api(DELETE => '/v1/policies/beta');
$now = $d->{index};
$d = snap("services=beta&delta=1&index=" . ($now - 1) . "&registry=$id");
ok $d->{delta}, 'policy deleted: a delta';
is_deeply $d->{policies}, [], '... with the policies now (none)';

# complete answers: another registry, an index ahead, an index not kept

$d = snap("services=alpha&delta=1&index=$now&registry=0000000000000001");
ok !$d->{delta}, 'another registry id: complete answer';
is_deeply ids($d->{services}[0]), [qw(a1 a2 a4)], '... with every instance';

$d = snap("services=alpha&delta=1&index=" . ($now + 100) . "&registry=$id");
ok !$d->{delta}, 'an index ahead of the registry: complete answer';

reg('gamma', 'g1', 8300 + $_) for 1 .. 25;      # more than events_keep
$d = snap("services=alpha&delta=1&index=$now&registry=$id");
ok !$d->{delta}, 'an index older than the events kept: complete answer';
is_deeply ids($d->{services}[0]), [qw(a1 a2 a4)], '... with every instance';

# gzip when asked for and worth it

$r = $t->api(GET => '/v1/snapshot?services=big&delta=1', undef,
             { 'Accept-Encoding' => 'gzip' });
is $r->{headers}{'content-encoding'}, 'gzip', 'a large answer is gzipped';
my $plain;
gunzip(\$r->{content} => \$plain);
is scalar @{ MeshTest->decode_json($plain)->{services}[0]{instances} }, 200,
    '... and inflates to the whole service';

# bad arguments: 400, the field named

for my $case (['services=alpha,-x', 'services'],
              ['services=alpha&delta=yes', 'delta'],
              ['delta=1&index=1&registry=xyz', 'registry'],
              ['delta=1&index=-1', 'index'])
{
    $r = $t->api(GET => "/v1/snapshot?$case->[0]");
    is $r->{status}, 400, "$case->[0]: 400";
    is $r->{json}{field}, $case->[1], "... field $case->[1]";
}

# the id survives a restart; changes before it are not kept

$now = snap('')->{index};
$t->restart_registryd;
$d = snap("services=alpha&delta=1&index=" . ($now - 1) . "&registry=$id");
is $d->{registry}, $id, 'restart: the same registry id';
ok !$d->{delta}, '... and a complete answer for an index before it';

$t0 = time;
$d = snap("services=alpha&delta=1&index=$now&registry=$id&wait=300ms");
ok time - $t0 >= 0.25, '... the current index waits as before';
ok $d->{delta}, '... then an empty delta';

# another data dir is another registry

$t->stop_registryd;
$t->start_registryd(data_dir => $t->dir . '/other');
my $other = snap('');
isnt $other->{registry}, $id, 'a new data dir: another registry id';
$d = snap("services=alpha&delta=1&index=0&registry=$id");
ok !$d->{delta}, '... a delta asked of the old id gets a complete answer';

$t->stop_registryd;
$t->done_checks;

done_testing;
