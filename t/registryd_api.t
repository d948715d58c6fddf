#!/usr/bin/perl

# registryd's HTTP API v1 for services and instances: register, update,
# read, list, heartbeat, deregister, the index, the snapshot, /healthz and
# /metrics (docs/registryd.md).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

$t->start_registryd;

my $r = $t->api(GET => '/healthz');
is $r->{status}, 200, 'healthz 200';
is $r->{json}{status}, 'ok', 'healthz says ok';
like $r->{json}{index}, qr/^\d+$/, 'healthz carries the index';
my $index = $r->{json}{index};

###########################################################################
# register

my %o1 = (
    address => '127.0.0.1', port => 8081, weight => 5, zone => 'a',
    labels => { version => 'v2', tier => 'gold' }, ttl => '10s',
    # nothing listens on its port: 100 failed probes 5 s apart (over 8
    # minutes) before it could turn critical, so that it stays passing
    # whenever the prober's first probe comes during this test
    check => { http => '/healthz', interval => '5s', timeout => '1s',
               unhealthy_threshold => 100 },
);

$r = $t->api(PUT => '/v1/services/orders/instances/o1', \%o1);
is $r->{status}, 201, 'register new: 201';
my $i = $r->{json} || {};
is $i->{service}, 'orders', 'echo: service';
is $i->{id}, 'o1', 'echo: id';
is $i->{address}, '127.0.0.1', 'echo: address';
is $i->{port}, 8081, 'echo: port';
is $i->{weight}, 5, 'echo: weight';
is $i->{zone}, 'a', 'echo: zone';
is_deeply $i->{labels}, { version => 'v2', tier => 'gold' }, 'echo: labels';
is $i->{ttl}, '10s', 'echo: ttl';
is $i->{health}, 'passing', 'echo: health passing';
cmp_ok $i->{index} // -1, '>', $index, 'echo: index rose';
$index = $i->{index} // $index;

$r = $t->api(GET => '/v1/services/orders/instances/o1');
is $r->{status}, 200, 'GET instance: 200';
$i = $r->{json} || {};
is_deeply [ @$i{qw(service id address port weight zone ttl health)} ],
    [ 'orders', 'o1', '127.0.0.1', 8081, 5, 'a', '10s', 'passing' ],
    'GET instance: fields';
is_deeply $i->{labels}, $o1{labels}, 'GET instance: labels';
is_deeply $i->{check}, $o1{check}, 'GET instance: check stored and served';
is $i->{index}, $index, 'GET instance: current index';

# update: 200, index rises, fields replaced

$r = $t->api(PUT => '/v1/services/orders/instances/o1',
             { %o1, port => 8082, weight => 7, labels => { version => 'v3' } });
is $r->{status}, 200, 'register existing: 200';
is $r->{json}{port}, 8082, 'update: new port echoed';
is $r->{json}{weight}, 7, 'update: new weight echoed';
is_deeply $r->{json}{labels}, { version => 'v3' }, 'update: labels replaced';
cmp_ok $r->{json}{index} // -1, '>', $index, 'update: index rose';
$index = $r->{json}{index} // $index;

$r = $t->api(GET => '/v1/services/orders/instances/o1');
is $r->{json}{port}, 8082, 'GET after update: new port';

# only address and port are required; weight defaults to 1; IPv6 literal;
# a charset parameter on the content type is fine

$r = $t->api(PUT => '/v1/services/orders/instances/o0',
             { address => '::1', port => 9000 },
             { 'Content-Type' => 'application/json; charset=utf-8' });
is $r->{status}, 201, 'minimal register: 201';
is $r->{json}{weight}, 1, 'weight defaults to 1';
is $r->{json}{address}, '::1', 'IPv6 address stored';
cmp_ok $r->{json}{index} // -1, '>', $index, 'index rose';
$index = $r->{json}{index} // $index;

for my $reg (['payments', 'p1', 7001], ['billing', 'b2', 7102],
             ['billing', 'b1', 7101], ['billing', 'b10', 7110])
{
    my ($svc, $id, $port) = @$reg;
    $r = $t->api(PUT => "/v1/services/$svc/instances/$id",
                 { address => '127.0.0.2', port => $port });
    is $r->{status}, 201, "register $svc/$id: 201";
    cmp_ok $r->{json}{index} // -1, '>', $index, "register $svc/$id: index rose";
    $index = $r->{json}{index} // $index;
}

###########################################################################
# lists

$r = $t->api(GET => '/v1/services');
is $r->{status}, 200, 'GET /v1/services: 200';
is $r->{json}{index}, $index, 'services: current index';
is_deeply $r->{json}{services}, [
    { name => 'billing', instances => 3, healthy => 3 },
    { name => 'orders', instances => 2, healthy => 2 },
    { name => 'payments', instances => 1, healthy => 1 },
], 'services: counts, sorted by name';

$r = $t->api(GET => '/v1/services/billing');
is $r->{status}, 200, 'GET /v1/services/billing: 200';
is $r->{json}{name}, 'billing', 'service: name';
is $r->{json}{index}, $index, 'service: current index';
is_deeply [ map { $_->{id} } @{ $r->{json}{instances} || [] } ],
    [ 'b1', 'b10', 'b2' ], 'service: instances sorted by id';
is_deeply [ map { $_->{port} } @{ $r->{json}{instances} || [] } ],
    [ 7101, 7110, 7102 ], 'service: ports';
is_deeply [ map { $_->{health} } @{ $r->{json}{instances} || [] } ],
    [ ('passing') x 3 ], 'service: health';

$r = $t->api(GET => '/v1/services/orders');
my ($so1) = grep { $_->{id} eq 'o1' } @{ $r->{json}{instances} || [] };
is_deeply [ map { $so1->{$_} } qw(id address port weight zone health) ],
    [ 'o1', '127.0.0.1', 8082, 7, 'a', 'passing' ], 'service: instance fields';
is_deeply $so1->{labels}, { version => 'v3' }, 'service: instance labels';

$r = $t->api(GET => '/v1/services/nosuch');
is $r->{status}, 404, 'unknown service: 404';
ok defined $r->{json}{error}, 'unknown service: error body';

$r = $t->api(GET => '/v1/services/orders/instances/nosuch');
is $r->{status}, 404, 'unknown instance: 404';

###########################################################################
# heartbeat

$r = $t->api(PUT => '/v1/services/orders/instances/o1/heartbeat');
is $r->{status}, 200, 'heartbeat: 200';
is $r->{json}{health}, 'passing', 'heartbeat: passing';
like $r->{json}{index} // '', qr/^\d+$/, 'heartbeat: index';
cmp_ok $r->{json}{index} // -1, '>=', $index, 'heartbeat: index not lower';
$index = $r->{json}{index} if ($r->{json}{index} // 0) > $index;

$r = $t->api(PUT => '/v1/services/orders/instances/nosuch/heartbeat');
is $r->{status}, 404, 'heartbeat unknown: 404';

###########################################################################
# snapshot

$r = $t->api(GET => '/v1/snapshot');
is $r->{status}, 200, 'snapshot: 200';
my $snap = $r->{json} || {};
is $snap->{index}, $index, 'snapshot: current index';
is $r->{headers}{'x-mesh-index'}, $index, 'snapshot: X-Mesh-Index header';
is_deeply $snap->{policies}, [], 'snapshot: no policies';
is_deeply [ map { $_->{name} } @{ $snap->{services} || [] } ],
    [ 'billing', 'orders', 'payments' ], 'snapshot: services sorted';
my ($sorders) = grep { $_->{name} eq 'orders' } @{ $snap->{services} || [] };
is_deeply [ map { $_->{id} } @{ $sorders->{instances} || [] } ],
    [ 'o0', 'o1' ], 'snapshot: instances sorted by id';
my ($snap1) = grep { $_->{id} eq 'o1' } @{ $sorders->{instances} || [] };
is_deeply [ map { $snap1->{$_} } qw(id address port weight zone health) ],
    [ 'o1', '127.0.0.1', 8082, 7, 'a', 'passing' ], 'snapshot: instance fields';
is_deeply $snap1->{labels}, { version => 'v3' }, 'snapshot: labels';

$r = $t->http(GET => $t->registryd_url . '/v1/snapshot', undef,
              { 'Accept-Encoding' => 'gzip' });
is $r->{status}, 200, 'gzip snapshot: 200';
like $r->{headers}{'content-encoding'} // '', qr/gzip/,
    'gzip snapshot: Content-Encoding gzip';
my $plain;
ok gunzip(\$r->{content} => \$plain), 'gzip snapshot: gunzips'
    or diag $GunzipError;
my $gz = eval { $t->decode_json($plain) };
is_deeply $gz, $snap, 'gzip snapshot: same content';
is $r->{headers}{'x-mesh-index'}, $index, 'gzip snapshot: X-Mesh-Index';

###########################################################################
# deregister

$r = $t->api(DELETE => '/v1/services/billing/instances/b10');
is $r->{status}, 200, 'deregister: 200';
cmp_ok $r->{json}{index} // -1, '>', $index, 'deregister: index rose';
$index = $r->{json}{index} // $index;

$r = $t->api(DELETE => '/v1/services/billing/instances/b10');
is $r->{status}, 404, 'deregister again: 404';
ok defined $r->{json}{error}, 'deregister again: error body';

$r = $t->api(GET => '/v1/services/billing/instances/b10');
is $r->{status}, 404, 'deregistered instance is gone';

$r = $t->api(DELETE => '/v1/services/payments/instances/p1');
is $r->{status}, 200, 'deregister last instance of a service';
$index = $r->{json}{index} // $index;

$r = $t->api(GET => '/v1/services/payments');
is $r->{status}, 404, 'service without instances: 404';

$r = $t->api(GET => '/v1/services');
is $r->{json}{index}, $index, 'services: index after deregistrations';
is_deeply [ map { "$_->{name}=$_->{instances}" } @{ $r->{json}{services} || [] } ],
    [ 'billing=2', 'orders=2' ], 'services after deregistrations';

$r = $t->api(GET => '/healthz');
is $r->{json}{index}, $index, 'healthz: current index';

###########################################################################
# metrics, unknown routes

$r = $t->http(GET => $t->registryd_url . '/metrics');
is $r->{status}, 200, 'metrics: 200';
like $r->{headers}{'content-type'} // '', qr{^text/plain}, 'metrics: text/plain';
like $r->{content}, qr/^# TYPE registryd_\w+ (?:counter|gauge|histogram|summary|untyped)$/m,
    'metrics: a # TYPE line';
like $r->{content}, qr/^registryd_\w+(?:\{[^}]*\})? [0-9.eE+-]+$/m,
    'metrics: a registryd_ sample';

for my $path ('/', '/v2/services', '/v1/nosuch', '/v1/services/orders/foo',
              '/v1/services/orders/instances/o1/bar')
{
    $r = $t->api(GET => $path);
    is $r->{status}, 404, "GET $path: 404";
    ok defined $r->{json} && defined $r->{json}{error},
        "GET $path: JSON error";
}

$t->done_checks;
done_testing;
