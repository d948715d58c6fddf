#!/usr/bin/perl

# Protected mode: without a token, registryd takes writes only from
# trusted_networks. Here trusted_networks is 127.0.0.1/32 and a client
# bound to 127.0.0.2 stands in for a remote host: each of its writes is
# refused with 403 and a reason, and changes nothing; its reads answer.
# The default (127.0.0.0/8, ::1) trusts every loopback address; a token
# configured replaces the network check.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $cfg = $t->write_file('registryd.yaml',
                         "trusted_networks: [127.0.0.1/32, \"::1\"]\n");
my $url = $t->start_registryd(args => [ '--config', $cfg ]);

my $json = JSON::PP->new;

# a client from another address
sub from {
    my ($addr, $method, $path, $body, $h) = @_;
    my $ua = HTTP::Tiny->new(timeout => 5, keep_alive => 0,
                             local_address => $addr);
    my $r = $ua->request($method, "$url$path", {
        defined $body ? (content => $body) : (),
        headers => { 'Content-Type' => 'application/json', %{ $h || {} } },
    });
    $r->{json} = eval { $json->decode($r->{content}) };
    return $r;
}

my $inst = '{"address":"127.0.0.1","port":8081}';

my $r = from('127.0.0.1', PUT => '/v1/services/web/instances/w1', $inst);
is $r->{status}, 201, 'a write from 127.0.0.1 (trusted): 201';
my $index = $t->api(GET => '/healthz')->{json}{index};

my %yaml = ('Content-Type' => 'application/yaml');
my @attacks = (
    [ PUT => '/v1/services/web/instances/evil', $inst ],
    [ PUT => '/v1/services/web/instances/w1',
      '{"address":"127.0.0.9","port":6666}' ],
    [ DELETE => '/v1/services/web/instances/w1', undef ],
    [ PUT => '/v1/services/web/instances/w1/heartbeat', '' ],
    [ PUT => '/v1/policies/p', "apiVersion: networking.istio.io/v1\n"
      . "kind: DestinationRule\nmetadata:\n  name: web\nspec:\n  host: web\n",
      \%yaml ],
);

for my $a (@attacks) {
    my ($m, $p, $b, $h) = @$a;
    $r = from('127.0.0.2', $m, $p, $b, $h);
    is $r->{status}, 403, "$m $p from 127.0.0.2: 403";
    like $r->{json}{error} // '',
        qr/no token is configured: writes are taken from trusted_networks only \(127\.0\.0\.1\/32,::1\), not from 127\.0\.0\.2:\d+/,
        'the reason names the networks and the client';
}

is $t->api(GET => '/healthz')->{json}{index}, $index,
    'nothing changed: the index is the same';
$r = $t->api(GET => '/v1/services/web/instances/w1');
is $r->{json}{address}, '127.0.0.1', 'w1 is as registered';
is $t->api(GET => '/v1/services/web/instances/evil')->{status}, 404,
    'evil is not there';
is $t->api(GET => '/v1/policies/p')->{status}, 404, 'no policy';

# reads from the untrusted address answer
$r = from('127.0.0.2', GET => '/v1/services/web');
is $r->{status}, 200, 'a read from 127.0.0.2: 200';
is scalar(@{ $r->{json}{instances} }), 1, 'with the one instance';

# the default trusts all of loopback
$t->stop_registryd;
$url = $t->start_registryd;
$r = from('127.0.0.2', PUT => '/v1/services/web/instances/w2', $inst);
is $r->{status}, 201, 'default trusted_networks (127.0.0.0/8): 201 from 127.0.0.2';

# a token replaces the network check
$t->stop_registryd;
$url = $t->start_registryd(token => 'tok3', args => [ '--config', $cfg ]);
$r = from('127.0.0.2', PUT => '/v1/services/web/instances/w3', $inst,
          { Authorization => 'Bearer tok3' });
is $r->{status}, 201, 'with the token: 201 from 127.0.0.2';
$r = from('127.0.0.2', PUT => '/v1/services/web/instances/w4', $inst);
is $r->{status}, 401, 'without it: 401';

my ($code, $out, $err);

# health checks are not an open proxy: with probe_networks, a check may
# only probe an instance inside them

$t->stop_registryd;
my $probe = $t->write_file('probe.yaml', "probe_networks: [127.0.0.1/32]\n");
$url = $t->start_registryd(args => [ '--config', $probe ]);
my $bport = $t->start_backend(name => 'p1');

$r = $t->api(PUT => '/v1/services/p/instances/out',
             { address => '127.0.0.5', port => $bport,
               check => { tcp => JSON::PP::true, interval => '200ms' } });
is $r->{status}, 400, 'a check on 127.0.0.5, outside probe_networks: 400';
is $r->{json}{field}, 'check', 'field check';
like $r->{json}{error}, qr/would probe 127\.0\.0\.5, outside probe_networks \(127\.0\.0\.1\/32\)/,
    'the reason names the address and the networks';
is $t->api(GET => '/v1/services/p/instances/out')->{status}, 404,
    'nothing stored';

# the same address without a check is fine; inside, a check is too
is $t->api(PUT => '/v1/services/p/instances/nocheck',
           { address => '127.0.0.5', port => 1 })->{status}, 201,
    'without a check: 201';
$r = $t->api(PUT => '/v1/services/p/instances/in',
             { address => '127.0.0.1', port => $bport,
               check => { tcp => JSON::PP::true, interval => '200ms' } });
is $r->{status}, 201, 'a check on 127.0.0.1, inside: 201';

# a token file others can read is refused at start
my $loose = $t->write_file('loose-token', "s3cret\n");
chmod 0644, $loose;
($code, $out, $err) = $t->run($t->bin('registryd'), '--token-file', $loose,
                               '--listen', '127.0.0.1:' . $t->port);
is $code, 1, 'a token file of mode 0644: registryd does not start (exit 1)';
like $err, qr/token file \S+ can be read or written by group or others \(mode 0644\): chmod 600 it/,
    'and says so';

# a bad network stops registryd at start, naming it
$t->stop_registryd;
my $bad = $t->write_file('bad.yaml', "trusted_networks: [10.0.0.0/33]\n");
($code, $out, $err) = $t->run($t->bin('registryd'), '--config', $bad);
is $code, 2, 'a bad trusted_networks: registryd does not start (exit 2, a configuration error)';
like $err, qr/trusted_networks: "10\.0\.0\.0\/33" is not a network/,
    'and says why';

$t->done_checks;
done_testing;
