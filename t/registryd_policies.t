#!/usr/bin/perl

# Traffic policies: PUT/GET/DELETE /v1/policies, strict validation (every
# refusal names field, line, column and document, and changes nothing,
# not even the index), normalized documents in the snapshot, durability
# across kill -9 and restart, and registryctl apply / policies.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time);
use MeshTest;

my $t = MeshTest->new;

for my $bin (qw(registryd registryctl)) {
    plan skip_all => "no $bin at " . $t->bin($bin) unless -x $t->bin($bin);
}

$t->start_registryd(token => 'pol-token');

my %YAML = ('Content-Type' => 'application/yaml');

sub put_policy {
    my ($name, $yaml, $h) = @_;
    return $t->api(PUT => "/v1/policies/$name", $yaml, $h || \%YAML);
}

sub index_now { $t->api(GET => '/healthz')->{json}{index} }

my $DR = <<'EOF';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
    connectionPool:
      tcp:
        maxConnections: 100
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
EOF

my $VS = <<'EOF';
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: orders
spec:
  hosts:
  - orders
  http:
  - match:
    - headers:
        x-canary:
          exact: "1"
    route:
    - destination:
        host: orders
        subset: v2
  - route:
    - destination:
        host: orders
        subset: v1
      weight: 90
    - destination:
        host: orders
        subset: v2
      weight: 10
    retries:
      attempts: 2
      perTryTimeout: 500ms
      retryOn: 5xx,connect-failure
    timeout: 1.5s
EOF

###########################################################################
# the request itself

my $r = put_policy('orders-routes', $VS);
is $r->{status}, 400, 'a route to a subset no DestinationRule defines: 400';
is $r->{json}{field}, 'spec.http[0].route[0].destination.subset',
    '... names the field';
is $r->{json}{line}, 16, '... its line';
is $r->{json}{column}, 17, '... its column';
is $r->{json}{document}, 0, '... and its document';
is index_now(), 0, '... and changes nothing';

$r = put_policy('orders', $DR, { 'Content-Type' => 'application/json' });
is $r->{status}, 415, 'Content-Type application/json: 415';
$r = $t->api(PUT => '/v1/policies/orders', $DR, { 'Content-Type' => undef });
is $r->{status}, 415, 'no Content-Type: 415';
$r = put_policy('orders', $DR, { 'Content-Type' => 'application/yaml',
                                 Authorization => 'Bearer wrong' });
is $r->{status}, 401, 'wrong token: 401';
$r = put_policy('bad%20name', $DR);
is $r->{status}, 400, 'an invalid policy name: 400';
is $r->{json}{field}, 'name', '... field name';
my $big = "# x\n" x 300_000;
$r = $t->raw_http("PUT /v1/policies/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    . "Content-Type: application/yaml\r\nAuthorization: Bearer pol-token\r\n"
    . "Content-Length: " . length($big) . "\r\nConnection: close\r\n\r\n"
    . $big);
is $r && $r->{status}, 413, 'a body over max_body: 413';
$r = $t->api(POST => '/v1/policies/orders', $DR, \%YAML);
is $r->{status}, 405, 'POST: 405';
is index_now(), 0, 'none of them changed anything';

# a long-poll waiting on the index wakes on a policy change

my $w = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->registryd_port, Proto => 'tcp')
    or die "connect: $!";
print $w "GET /v1/snapshot?index=0&wait=20s HTTP/1.1\r\nHost: x\r\n"
    . "Authorization: Bearer pol-token\r\nConnection: close\r\n\r\n";
select undef, undef, undef, 0.2;

my $t0 = time;
$r = put_policy('orders', $DR, { 'Content-Type' => 'text/yaml; charset=utf-8' });
is $r->{status}, 201, 'PUT a new policy: 201';
is_deeply [ @{ $r->{json} }{qw(name documents index)} ], [ 'orders', 1, 1 ],
    '... body {name, documents, index}';

my $resp = do { local $/; <$w> };
close $w;
my $waited = time - $t0;
like $resp, qr{\AHTTP/1\.1 200}, 'the waiting long-poll is answered';
like $resp, qr{"policy":"orders"}, '... with the policy';
cmp_ok $waited, '<', 5, '... at once';

$r = put_policy('orders-routes', $VS, { 'Content-Type' => 'application/x-yaml' });
is $r->{status}, 201, 'PUT the VirtualService routing to its subsets: 201';
is $r->{json}{index}, 2, '... index 2';

$r = put_policy('orders', $DR);
is $r->{status}, 200, 'PUT again: 200 (replaced)';
is $r->{json}{index}, 3, '... index rises';

###########################################################################
# reads

$r = $t->api(GET => '/v1/policies');
is $r->{status}, 200, 'GET /v1/policies';
is $r->{json}{index}, 3, '... index';
is_deeply [ map { $_->{name} } @{ $r->{json}{policies} } ],
    [ 'orders', 'orders-routes' ], '... sorted by name';
is_deeply $r->{json}{policies}[0]{documents},
    [ { kind => 'DestinationRule', name => 'orders', host => 'orders' } ],
    '... documents of the DestinationRule';
is_deeply $r->{json}{policies}[1]{documents},
    [ { kind => 'VirtualService', name => 'orders', hosts => ['orders'] } ],
    '... documents of the VirtualService';
is $r->{json}{policies}[0]{create_index}, 1, '... create_index';
is $r->{json}{policies}[0]{modify_index}, 3, '... modify_index';

$r = $t->api(GET => '/v1/policies/orders-routes');
is $r->{status}, 200, 'GET one policy';
like $r->{headers}{'content-type'}, qr{^application/yaml}, '... as YAML';
is $r->{content}, $VS, '... exactly as sent';

$r = $t->api(GET => '/v1/policies/orders-routes', undef,
             { Accept => 'application/json' });
like $r->{headers}{'content-type'}, qr{^application/json},
    'with Accept: application/json, JSON';
is $r->{json}{yaml}, $VS, '... holding the YAML';
is $r->{json}{normalized}[0]{kind}, 'VirtualService', '... and the documents';

is $t->api(GET => '/v1/policies/nope')->{status}, 404, 'unknown: 404';

###########################################################################
# the snapshot

my $snap = $t->api(GET => '/v1/snapshot')->{json};
is $snap->{index}, 3, 'snapshot index';
my @p = @{ $snap->{policies} };
is scalar @p, 2, 'snapshot: one object per document';

is_deeply $p[0], {
    policy => 'orders', kind => 'DestinationRule', name => 'orders',
    host => 'orders',
    trafficPolicy => {
        loadBalancer => { simple => 'LEAST_REQUEST' },
        outlierDetection => { consecutive5xxErrors => 5, intervalMs => 10000,
                              baseEjectionTimeMs => 30000 },
        connectionPool => { tcp => { maxConnections => 100 } },
    },
    subsets => [ { name => 'v1', labels => { version => 'v1' } },
                 { name => 'v2', labels => { version => 'v2' } } ],
}, 'snapshot: the DestinationRule, normalized';

is_deeply $p[1], {
    policy => 'orders-routes', kind => 'VirtualService', name => 'orders',
    hosts => ['orders'],
    http => [
        { match => [ { headers => { 'x-canary' => { exact => '1' } } } ],
          route => [ { destination => { host => 'orders', subset => 'v2' },
                       weight => 100 } ] },
        { match => [],
          route => [ { destination => { host => 'orders', subset => 'v1' },
                       weight => 90 },
                     { destination => { host => 'orders', subset => 'v2' },
                       weight => 10 } ],
          retries => { attempts => 2, perTryTimeoutMs => 500,
                       retryOn => [ '5xx', 'connect-failure' ] },
          timeoutMs => 1500 },
    ],
}, 'snapshot: the VirtualService, normalized';

###########################################################################
# 30+ bad documents: 400 with field, line and column; nothing changes

my $before = $t->api(GET => '/v1/policies')->{content};
my $snap_before = $t->api(GET => '/v1/snapshot')->{content};

my $D = "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
      . "spec:\n  host: carts\n";
my $V = "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
      . "spec:\n  hosts: [carts]\n  http:\n";
my $R = "  - route:\n    - destination: {host: carts}\n";
my $RT = "    route:\n    - destination: {host: carts}\n";

my @bad = (
    # [ yaml, field, line, column ]
    [ "a: [1, 2\n", undef, 2, 1 ],
    [ "x: &a 1\ny: *a\n", undef, 2, 4 ],
    [ "", undef ],
    [ "- 1\n", '', 1, 1 ],
    [ "apiVersion: v9\n", 'apiVersion', 1, 13 ],
    [ "apiVersion: mesh/v1\nkind: Sidecar\n", 'kind', 2, 7 ],
    [ "apiVersion: mesh/v1\nkind: DestinationRule\nspec: {host: a}\n",
      'metadata', 1, 1 ],
    [ "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: _x}\n"
      . "spec: {host: a}\n", 'metadata.name', 3, 18 ],
    [ $D . "  host: carts\n", 'spec.host', 6, 3 ],
    [ $D . "  exportTo: [\".\"]\n", 'spec.exportTo', 6, 3 ],
    [ $D . "  trafficPolicy: {loadBalancer: {simple: fast}}\n",
      'spec.trafficPolicy.loadBalancer.simple', 6, 42 ],
    [ $D . "  trafficPolicy: {loadBalancer: {}}\n",
      'spec.trafficPolicy.loadBalancer', 6, 33 ],
    [ $D . "  trafficPolicy: {loadBalancer: {consistentHash: "
      . "{httpCookie: {path: /}}}}\n",
      'spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name',
      6, 63 ],
    [ $D . "  trafficPolicy: {loadBalancer: {consistentHash: "
      . "{useSourceIp: yes}}}\n",
      'spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp', 6, 64 ],
    [ $D . "  trafficPolicy: {outlierDetection: {interval: 5}}\n",
      'spec.trafficPolicy.outlierDetection.interval', 6, 48 ],
    [ $D . "  trafficPolicy: {outlierDetection: {minHealthPercent: 200}}\n",
      'spec.trafficPolicy.outlierDetection.minHealthPercent', 6, 56 ],
    [ $D . "  trafficPolicy: {outlierDetection: {consecutiveErrors: x}}\n",
      'spec.trafficPolicy.outlierDetection.consecutiveErrors', 6, 57 ],
    [ $D . "  trafficPolicy: {connectionPool: {http: "
      . "{maxConcurrentStreams: 3}}}\n",
      'spec.trafficPolicy.connectionPool.http.maxConcurrentStreams', 6, 43 ],
    [ $D . "  trafficPolicy: {connectionPool: {tcp: {maxConnections: 0}}}\n",
      'spec.trafficPolicy.connectionPool.tcp.maxConnections', 6, 58 ],
    [ $D . "  subsets:\n  - name: v1\n", 'spec.subsets[0].labels', 7, 5 ],
    [ $D . "  subsets:\n  - {name: v1, labels: {}}\n",
      'spec.subsets[0].labels', 7, 24 ],
    [ $D . "  subsets:\n  - {name: v1, labels: {a: b}}\n"
      . "  - {name: v1, labels: {a: c}}\n", 'spec.subsets[1].name', 8, 12 ],
    [ $D . "  subsets:\n  - {name: v1, labels: {a: b}, weight: 3}\n",
      'spec.subsets[0].weight', 7, 32 ],
    [ $V . $R . "      weight: 50\n", 'spec.http[0].route[0].weight', 9, 15 ],
    [ $V . $R . "      weight: 50\n" . "    - destination: {host: carts}\n",
      'spec.http[0].route[1].weight', 10, 7 ],
    [ $V . $R . "      weight: 90\n"
      . "    - destination: {host: carts}\n      weight: 20\n",
      'spec.http[0].route[1].weight', 11, 15 ],
    [ $V . "  - route:\n    - destination: {host: carts, subset: v9}\n",
      'spec.http[0].route[0].destination.subset', 8, 42 ],
    [ $V . "  - route:\n    - destination: {host: 'or ders'}\n",
      'spec.http[0].route[0].destination.host', 8, 27 ],
    [ $V . "  - match: [{uri: {regex: '(a'}}]\n" . $RT,
      'spec.http[0].match[0].uri.regex', 7, 27 ],
    [ $V . "  - match: [{uri: {regex: '[z-a]'}}]\n" . $RT,
      'spec.http[0].match[0].uri.regex', 7, 27 ],
    [ $V . "  - match: [{headers: {'Coo kie': {exact: a}}}]\n" . $RT,
      'spec.http[0].match[0].headers.Coo kie', 7, 24 ],
    [ $V . "  - match: [{queryParams: {a: {exact: b}}}]\n" . $RT,
      'spec.http[0].match[0].queryParams', 7, 14 ],
    [ $V . $R . "    retries: {retryOn: 'deadline-exceeded'}\n",
      'spec.http[0].retries.retryOn', 9, 24 ],
    [ $V . $R . "    timeout: soon\n", 'spec.http[0].timeout', 9, 14 ],
    [ $V . $R . "    rewrite: {uriRegexRewrite: {match: a, rewrite: b}}\n",
      'spec.http[0].rewrite.uriRegexRewrite', 9, 15 ],
    [ $V . "  - redirect: {uri: /x}\n" . $RT, 'spec.http[0].route', 8, 5 ],
    [ "apiVersion: mesh/v1\nkind: VirtualService\nmetadata: {name: v}\n"
      . "spec:\n  hosts: [carts]\n", 'spec.http', 5, 3 ],
    [ $D . "---\n" . $D, 'metadata.name', 9, 18, 1 ],
    [ $D . "---\n" . $V . $R . "    timeout: 0s\n",
      'spec.http[0].timeout', 15, 14, 1 ],
    # a second DestinationRule for "orders", stored in policy "orders"
    [ "apiVersion: mesh/v1\nkind: DestinationRule\nmetadata: {name: o2}\n"
      . "spec: {host: orders}\n", 'spec.host', 4, 14 ],
);

my $i = 0;
for my $b (@bad) {
    my ($yaml, $field, $line, $col, $doc) = @$b;
    my $r2 = put_policy("bad$i", $yaml);
    subtest "bad document $i" . (defined $field ? " ($field)" : '') => sub {
        is $r2->{status}, 400, 'status 400';
        ok length($r2->{json}{error} // ''), 'error: ' . ($r2->{json}{error}
                                                         // '(none)');
        is $r2->{json}{field}, $field, 'field' if defined $field && $field ne '';
        is $r2->{json}{line}, $line, 'line' if defined $line;
        is $r2->{json}{column}, $col, 'column' if defined $col;
        is $r2->{json}{document}, $doc // 0, 'document'
            if defined $field;
    };
    $i++;
}
cmp_ok scalar @bad, '>=', 30, 'at least 30 bad documents';

is $t->api(GET => '/v1/policies')->{content}, $before,
    'the bad documents changed no policy and not the index';
is $t->api(GET => '/v1/snapshot')->{content}, $snap_before,
    '... nor the snapshot';

###########################################################################
# durability: kill -9, then a clean restart

$t->kill_registryd;
$t->start_registryd(token => 'pol-token', port => $t->registryd_port,
                    data_dir => $t->data_dir);
my $after = $t->api(GET => '/v1/snapshot')->{json};
is $after->{index}, 3, 'kill -9: index kept';
is_deeply $after->{policies}, $snap->{policies}, 'kill -9: policies kept';
is $t->api(GET => '/v1/policies/orders')->{content}, $DR,
    '... the YAML as sent';

$t->restart_registryd;
is_deeply $t->api(GET => '/v1/snapshot')->{json}{policies}, $snap->{policies},
    'restart: policies kept';

###########################################################################
# DELETE (a policy another one's routes rely on may go: documented)

$r = $t->api(DELETE => '/v1/policies/orders');
is $r->{status}, 200, 'DELETE: 200';
is $r->{json}{index}, 4, '... index rises';
is $t->api(DELETE => '/v1/policies/orders')->{status}, 404,
    'DELETE again: 404';
is $t->api(DELETE => '/v1/policies/orders', undef,
           { Authorization => undef })->{status}, 401, 'DELETE without token: 401';
is_deeply [ map { $_->{policy} } @{ $t->api(GET => '/v1/snapshot')->{json}{policies} } ],
    ['orders-routes'], 'the snapshot drops it';

# with it gone, the VirtualService cannot be stored again as it is
$r = put_policy('orders-routes', $VS);
is $r->{status}, 400, 'a route to a subset now undefined: 400';

###########################################################################
# registryctl

my $tok = $t->token_file;
my $file = $t->write_file('orders-dest.yaml', $DR);
my ($code, $out, $err) = $t->registryctl('--token-file', $tok, 'apply', '-f',
                                         $file, '--name', 'orders-dest');
is $code, 0, 'registryctl apply -f --name exits 0' or diag $err;
like $out, qr/^applied policy orders-dest/, '... a policy of that name';

($code, $out, $err) = $t->registryctl('--token-file', $tok, 'policies');
is $code, 0, 'registryctl policies exits 0';
like $out, qr/"orders-dest"/, '... lists it';

($code, $out, $err) = $t->registryctl('--token-file', $tok, 'policies',
                                      'orders-dest');
is $code, 0, 'registryctl policies NAME exits 0';
my $one = eval { JSON::PP->new->decode($out) } || {};
is $one->{yaml}, $DR, '... prints the policy, its YAML as sent';
is $one->{normalized}[0]{host}, 'orders', '... and its normalized documents';

my $badfile = $t->write_file('broken.yaml', $D . "  trafficPolicy: 3\n");
($code, $out, $err) = $t->registryctl('--token-file', $tok, 'apply', '-f',
                                      $badfile);
ok $code > 0 && $code < 128, 'registryctl apply of a bad file fails';
like $err, qr/\Aregistryctl: [^\n]*spec\.trafficPolicy[^\n]*\n\z/,
    '... with one line naming the field';
is $out, '', '... and nothing on stdout';

$t->done_checks;
done_testing;
