#!/usr/bin/perl

# registryctl export and import: a registry on SQLite (instances with
# every field, two policies that refer to each other) exported, imported
# into a registryd on etcd (a move from one store to the other), and the
# two exports compared; bad input refused with a reason.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP ();
use MeshTest;

my $s = MeshTest->new;          # SQLite
my $e = MeshTest->new;          # etcd

for my $bin (qw(registryd registryctl)) {
    plan skip_all => "no $bin" unless -x $s->bin($bin);
}

$s->start_registryd(token => 'tok');
$e->start_etcd_cluster(members => 1);
$e->start_registryd(token => 'tok2', args => [ $e->etcd_store_args ]);

# the source: instances with every field, policies

for my $n (1 .. 20) {
    my $r = $s->register('svc' . ($n % 3), "i$n", 9000 + $n,
                         weight => $n, zone => 'z' . ($n % 2),
                         labels => { version => "v$n", tier => 'web' },
                         ($n % 4 == 0 ? (ttl => '30s',
                                         deregister_after => '1h') : ()),
                         ($n % 5 == 0 ? (check => { tcp => JSON::PP::true,
                                                    interval => '10s' })
                                      : ()));
    is $r->{status}, 201, "register i$n" if $n == 1;
}

my %YAML = ('Content-Type' => 'application/yaml');

# "b-rule" routes to a subset that "a-subsets" defines: in name order the
# import must retry it
is $s->api(PUT => '/v1/policies/z-subsets', <<'EOF', \%YAML)->{status}, 201,
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc1
spec:
  host: svc1
  subsets:
  - name: v1
    labels:
      version: v1
EOF
    'a DestinationRule with a subset';
is $s->api(PUT => '/v1/policies/b-route', <<'EOF', \%YAML)->{status}, 201,
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc1
spec:
  hosts: [svc1]
  http:
  - route:
    - destination:
        host: svc1
        subset: v1
EOF
    'a VirtualService routing to it';

# export

my $file = $s->dir . '/backup.json';
my ($code, $out, $err) = $s->registryctl('--token-file', $s->token_file,
                                        'export');
is $code, 0, 'export exits 0' or diag $err;
$s->write_file('backup.json', $out);

my $doc = JSON::PP->new->decode($out);
is $doc->{format}, 'ngx-mesh-export/1', 'format';
is scalar(@{ $doc->{instances} }), 20, '20 instances';
is scalar(@{ $doc->{policies} }), 2, '2 policies';
ok !grep({ !defined $_->{health} } @{ $doc->{instances} }),
    'each with its health (not imported)';

# import into the etcd registryd

($code, $out, $err) = $e->registryctl('--token-file', $e->token_file,
                                      'import', $file);
is $code, 0, 'import exits 0' or diag $err;
like $out, qr/^imported 20 instances and 2 policies into \S+ \(index \d+\)$/,
    "says what it did: $out";

# what the etcd registry exports now is the same registry

my ($code2, $out2) = $e->registryctl('--token-file', $e->token_file,
                                     'export');
my $doc2 = JSON::PP->new->decode($out2);

sub by_key { my ($l, @k) = @_; return { map { my $x = $_;
             (join('/', map { $x->{$_} } @k) => $x) } @$l } }

# health is the registry's own verdict (checks run on both sides), not
# what is imported
delete $_->{health} for @{ $doc->{instances} }, @{ $doc2->{instances} };
is_deeply by_key($doc2->{instances}, qw(service id)),
          by_key($doc->{instances}, qw(service id)),
    'the same instances, every field but health';
is_deeply by_key($doc2->{policies}, 'name'),
          by_key($doc->{policies}, 'name'),
    'the same policies, the YAML as applied';
isnt $doc2->{registry}, $doc->{registry}, 'in another registry';

# and it routes: the snapshot has them
is scalar(map { @{ $_->{instances} } }
          @{ $e->api(GET => '/v1/snapshot')->{json}{services} }), 20,
    'the etcd registry serves the 20 instances';

# again: the same answer, nothing new (PUT of the same is an update)
($code, $out, $err) = $e->registryctl('--token-file', $e->token_file,
                                      'import', $file);
is $code, 0, 'importing twice is fine' or diag $err;

# bad input

my $bad = $s->write_file('bad.json', '{"instances": []}');
($code, $out, $err) = $e->registryctl('--token-file', $e->token_file,
                                      'import', $bad);
is $code, 1, 'not an export: exit 1';
like $err, qr/not an export of registryctl export/, 'says so';

my $half = $s->write_file('half.json', JSON::PP->new->encode({
    format => 'ngx-mesh-export/1', registry => '1', index => 1,
    instances => [ { service => 'ok', id => 'a', address => '127.0.0.1',
                     port => 1 },
                   { service => 'bad', id => 'b', address => 'nowhere',
                     port => 1 } ],
    policies => [] }));
($code, $out, $err) = $e->registryctl('--token-file', $e->token_file,
                                      'import', $half);
is $code, 1, 'an instance refused: exit 1';
like $err, qr/1 of 2 not imported, the first: 400 Bad Request: .*address/,
    'names how many and the first reason';
is $e->api(GET => '/v1/services/ok/instances/a')->{status}, 200,
    'the good one is in';

($code, $out, $err) = $e->registryctl('import');
is $code, 2, 'import without a file: usage';

$s->done_checks;
$e->done_checks;
done_testing;
