#!/usr/bin/perl

# registryctl: register, list, get, heartbeat and deregister reach registryd
# (checked through the API), flags reach the store, and every failure exits
# non-zero with exactly one "registryctl: <reason>" line on stderr.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use Test::More;
use MeshTest;

my $t = MeshTest->new;

for my $bin (qw(registryd registryctl)) {
    plan skip_all => "no $bin at " . $t->bin($bin) unless -x $t->bin($bin);
}

$t->start_registryd(token => 's3cret');
my $tok = $t->token_file;

# runs registryctl with the right token; returns (code, stdout, stderr)
sub ctl { $t->registryctl('--token-file', $tok, @_) }

# a failure: non-zero exit $want (undef: any non-zero), one stderr line
# matching $re, nothing on stdout
sub fails {
    my ($args, $want, $re, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my ($code, $out, $err) = ref $args eq 'CODE' ? $args->() : ctl(@$args);

    subtest $name => sub {
        if (defined $want) {
            is $code, $want, "exit code $want";
        } else {
            ok $code > 0 && $code < 128, "non-zero exit ($code)";
        }
        like $err, qr/\A[^\n]*\n\z/, 'exactly one line on stderr';
        like $err, qr/\Aregistryctl: /, 'prefixed with "registryctl: "';
        like $err, $re, 'says why';
        is $out, '', 'nothing on stdout';
    };
}

sub instance { $t->api(GET => "/v1/services/$_[0]/instances/$_[1]") }

###########################################################################
# register with every flag: all of them reach the store

my ($code, $out, $err) = ctl(qw(register shop s1 127.0.0.1:8081
    --weight 5 --ttl 30s --zone eu-1 --deregister-after 1h
    --label version=v2 --label tier=web));
is $code, 0, 'register exits 0' or diag $err;
is $err, '', 'register prints nothing on stderr';
like $out, qr{\Aregistered shop/s1 127\.0\.0\.1:8081 \(index \d+\)\n\z},
    'register says what it did';

my $r = instance('shop', 's1');
is $r->{status}, 200, 'the instance is stored';
is $r->{json}{address}, '127.0.0.1', 'address';
is $r->{json}{port}, 8081, 'port';
is $r->{json}{weight}, 5, '--weight reaches the store';
is $r->{json}{zone}, 'eu-1', '--zone reaches the store';
is $r->{json}{ttl}, '30s', '--ttl reaches the store';
is_deeply $r->{json}{labels}, { version => 'v2', tier => 'web' },
    '--label reaches the store';
is $r->{json}{health}, 'passing', 'a fresh instance is passing';
is $r->{json}{deregister_after}, '1h', '--deregister-after reaches the store'
    if exists $r->{json}{deregister_after};

# registering again replaces the instance

($code, $out, $err) = ctl(qw(register shop s1 127.0.0.1:8081 --weight=7
    --zone=eu-1 --label version=v2 --label tier=web));
is $code, 0, 'register again exits 0' or diag $err;
like $out, qr{\Aupdated shop/s1 }, 'and says it updated';
is instance('shop', 's1')->{json}{weight}, 7, 'the new weight is stored';

# IPv6 and the default weight

($code, $out, $err) = ctl(qw(register shop s6 [::1]:9090));
is $code, 0, 'register [::1]:9090 exits 0' or diag $err;
like $out, qr{\[::1\]:9090}, 'and echoes the IPv6 address';
$r = instance('shop', 's6');
is $r->{json}{address}, '::1', 'IPv6 address stored without brackets';
is $r->{json}{port}, 9090, 'IPv6 port stored';
is $r->{json}{weight}, 1, 'weight defaults to 1';

($code, $out, $err) = ctl(qw(register cart c1 127.0.0.2:7000));
is $code, 0, 'register cart/c1 exits 0' or diag $err;

###########################################################################
# list, get

($code, $out, $err) = ctl('list');
is $code, 0, 'list exits 0' or diag $err;
my @lines = split /\n/, $out;
like $lines[0], qr/^NAME\s+INSTANCES\s+HEALTHY$/, 'list header';
like $out, qr/^cart\s+1\s+1$/m, 'list: cart has 1 instance, 1 healthy';
like $out, qr/^shop\s+2\s+2$/m, 'list: shop has 2 instances, 2 healthy';
is scalar(@lines), 3, 'one line per service';

($code, $out, $err) = ctl(qw(list shop));
is $code, 0, 'list SVC exits 0' or diag $err;
@lines = split /\n/, $out;
like $lines[0], qr/^ID\s+ADDRESS\s+PORT\s+WEIGHT\s+ZONE\s+HEALTH\s+LABELS$/,
    'list SVC header';
like $out, qr/^s1\s+127\.0\.0\.1\s+8081\s+7\s+eu-1\s+passing\s+tier=web,version=v2$/m,
    'list SVC shows s1 with its labels';
like $out, qr/^s6\s+::1\s+9090\s+1\s+-\s+passing\s+-$/m,
    'list SVC shows s6';

($code, $out, $err) = ctl(qw(list shop --json));
is $code, 0, 'list SVC --json exits 0';
my $j = eval { $t->decode_json($out) };
is_deeply [ map { $_->{id} } @{ $j->{instances} || [] } ], [qw(s1 s6)],
    'list --json prints the registry JSON';

($code, $out, $err) = ctl(qw(get shop s1));
is $code, 0, 'get exits 0' or diag $err;
$j = eval { $t->decode_json($out) };
is $j->{port}, 8081, 'get prints the instance as JSON';

# with a token configured, reads need it too

($code, $out, $err) = $t->registryctl('list');
is $code, 1, 'list without a token: exit 1';
like $err, qr/^registryctl: 401 Unauthorized: a bearer token is needed/,
    'list without a token: the reason';

# MESH_REGISTRY is the default registry URL

{
    local $ENV{MESH_REGISTRY} = $t->registryd_url;
    ($code, $out, $err) = $t->run($t->bin('registryctl'), '--token-file',
                                  $tok, 'list');
    is $code, 0, 'MESH_REGISTRY names the registry' or diag $err;
    like $out, qr/^shop\s/m, 'and list reads it';
}

###########################################################################
# heartbeat, deregister

($code, $out, $err) = ctl(qw(heartbeat shop s1));
is $code, 0, 'heartbeat exits 0' or diag $err;
like $out, qr{^heartbeat shop/s1: passing}, 'heartbeat reports the health';

($code, $out, $err) = ctl(qw(deregister shop s6));
is $code, 0, 'deregister exits 0' or diag $err;
like $out, qr{^deregistered shop/s6}, 'deregister says what it did';
is instance('shop', 's6')->{status}, 404, 'the instance is gone';
is instance('shop', 's1')->{status}, 200, 'its sibling stays';

###########################################################################
# failures: nothing changes

my $before = $t->api(GET => '/v1/services')->{json};

fails([qw(register shop s2 127.0.0.1:8082 --weight 0)], 2,
    qr/weight must be 1\.\.1000/, 'weight 0');
fails([qw(register shop s2 127.0.0.1:8082 --weight 1001)], 2,
    qr/weight must be 1\.\.1000/, 'weight 1001');
fails([qw(register shop s2 127.0.0.1:8082 --weight x)], 2,
    qr/weight must be 1\.\.1000/, 'weight x');
fails([qw(register shop s2 127.0.0.1)], 2, qr/ADDR:PORT/, 'no port');
fails([qw(register shop s2 127.0.0.1:0)], 2, qr/port must be 1\.\.65535/,
    'port 0');
fails([qw(register shop s2 127.0.0.1:65536)], 2,
    qr/port must be 1\.\.65535/, 'port 65536');
fails([qw(register shop s2 example.com:80)], 2, qr/not an IPv4 address/,
    'host name instead of an address');
fails([qw(register shop s2 ::1:80)], 2, qr/ADDR:PORT/,
    'IPv6 without brackets');
fails([qw(register shop s2 [::1]80)], 2, qr/ADDR:PORT/,
    'IPv6 without a colon before the port');
fails([qw(register shop s2 [::1]:80 --ttl 5)], 2, qr/--ttl/,
    'ttl without a unit');
fails([qw(register shop s2 [::1]:80 --label novalue)], 2, qr/--label/,
    'label without =');
fails([qw(register shop s2 [::1]:80 --weight)], 2, qr/needs a value/,
    'option without its value');
fails([qw(register shop s2 [::1]:80 --colour red)], 2,
    qr/unknown option "--colour"/, 'unknown option');
fails([qw(register sh/op s2 127.0.0.1:8082)], 2, qr/invalid service name/,
    'bad service name');
fails([qw(register shop .s2 127.0.0.1:8082)], 2, qr/invalid instance id/,
    'bad instance id');
fails([qw(frobnicate)], 2, qr/unknown command "frobnicate"/,
    'unknown command');
fails([], 2, qr/missing command/, 'no command');
fails([qw(register shop s2)], 2, qr/register: missing arguments/,
    'register without ADDR:PORT');
fails([qw(deregister shop)], 2, qr/deregister: missing arguments/,
    'deregister without ID');
fails([qw(heartbeat)], 2, qr/heartbeat: missing arguments/,
    'heartbeat without arguments');
fails([qw(get shop s1 extra)], 2, qr/too many arguments/,
    'get with an extra argument');
fails([qw(apply)], 2, qr/apply: missing -f FILE/, 'apply without -f');

# errors from the registry carry the status and the server's reason

fails([qw(deregister shop nosuch)], 1, qr/^registryctl: 404 Not Found\b/,
    'deregister of an unknown instance: 404');
fails([qw(heartbeat shop nosuch)], 1, qr/^registryctl: 404 Not Found\b/,
    'heartbeat of an unknown instance: 404');
fails([qw(get shop nosuch)], 1, qr/^registryctl: 404 Not Found\b/,
    'get of an unknown instance: 404');

my $bad = $t->write_file('bad-token', "  wrong\n");
fails(sub { $t->registryctl('--token-file', $bad,
                            qw(register shop s2 127.0.0.1:8082)) },
    1, qr/^registryctl: 401 Unauthorized\b/, 'wrong token: 401');
fails(sub { $t->registryctl(qw(deregister shop s1)) },
    1, qr/^registryctl: 401 Unauthorized\b/, 'no token: 401');
fails(sub { $t->registryctl('--token-file', $t->dir . '/nosuch',
                            qw(register shop s2 127.0.0.1:8082)) },
    1, qr/token file: cannot open .*nosuch/, 'missing token file');

is_deeply $t->api(GET => '/v1/services')->{json}, $before,
    'the failures changed nothing';
is instance('shop', 's1')->{json}{weight}, 7, 'shop/s1 is untouched';

# the token file's surrounding whitespace is ignored

my $spaced = $t->write_file('spaced-token', "\n  s3cret \t\n\n");
($code, $out, $err) = $t->registryctl('--token-file', $spaced,
                                      qw(heartbeat shop s1));
is $code, 0, 'token file content is trimmed' or diag $err;

###########################################################################
# registry down or silent

my $port = $t->port;
fails(sub { $t->run($t->bin('registryctl'), '--registry',
                    "http://127.0.0.1:$port", 'list') },
    1, qr{^registryctl: cannot reach registry http://127\.0\.0\.1:$port: Connection refused$},
    'registry down');

# several registries (replicas): one that cannot be reached is left for
# the next; all down names the last one tried
($code, $out, $err) = $t->run($t->bin('registryctl'), '--registry',
                              "http://127.0.0.1:$port,"
                              . $t->registryd_url, '--token-file', $tok,
                              'list');
is $code, 0, '--registry DOWN,UP: the second answers' or diag $err;
like $out, qr/^shop\s/m, 'with its services';

($code, $out, $err) = $t->run($t->bin('registryctl'), '--registry',
                              "127.0.0.1:$port," . $t->registryd_url . '/',
                              '--token-file', $tok,
                              qw(register shop s9 127.0.0.1:8089));
is $code, 0, 'a write through the list too' or diag $err;
is instance('shop', 's9')->{json}{port}, 8089, 'and it is there';

my $port2 = $t->port;
fails(sub { $t->run($t->bin('registryctl'), '--registry',
                    "http://127.0.0.1:$port,http://127.0.0.1:$port2",
                    'list') },
    1, qr{^registryctl: cannot reach registry http://127\.0\.0\.1:$port2: },
    'all down: the last one tried is named');
fails(sub { $t->run($t->bin('registryctl'), '--registry',
                    "http://127.0.0.1:$port,,x", 'list') },
    2, qr/--registry needs a URL/, 'an empty member of the list: usage');

# a listener that never answers: the timeout ends the wait

my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 8, Proto => 'tcp')
    or die "listen: $!";
my $sport = $silent->sockport;
my $t0 = time;
fails(sub { $t->run($t->bin('registryctl'), '--registry',
                    "http://127.0.0.1:$sport", '--timeout', '300ms',
                    'list') },
    1, qr/no answer within 300ms/, 'silent registry times out');
ok time - $t0 < 5, 'the timeout is honoured';
close $silent;

$t->done_checks;
done_testing;
