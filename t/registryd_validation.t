#!/usr/bin/perl

# registryd rejects bad requests with the documented status and a JSON
# error, and a rejected request changes nothing (docs/registryd.md).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

$t->start_registryd;

# a store with something in it

for my $reg (['web', 'w1', 8001], ['web', 'w2', 8002], ['db', 'd1', 5432]) {
    my ($svc, $id, $port) = @$reg;
    my $r = $t->api(PUT => "/v1/services/$svc/instances/$id",
                    { address => '127.0.0.1', port => $port, weight => 2,
                      labels => { v => '1' } });
    is $r->{status}, 201, "baseline $svc/$id registered";
}

sub state {
    my $svcs = $t->api(GET => '/v1/services');
    my $snap = $t->api(GET => '/v1/snapshot');
    my %each = map { $_->{name} => $t->api(GET => "/v1/services/$_->{name}")->{json} }
               @{ $svcs->{json}{services} || [] };
    return { services => $svcs->{json}, snapshot => $snap->{json},
             each => \%each };
}

my $before = state();
ok $before->{services}{index}, 'baseline index ' . ($before->{services}{index} // '');

my $I = '/v1/services/web/instances/w9';
my %ok = (address => '127.0.0.1', port => 8009);
my $long = 'a' x 129;
my $J = { 'Content-Type' => 'application/json' };

# [ name, method, path, body (ref: JSON-encoded; string: as is), status,
#   headers, field named in the error (optional) ]

my @bad = (
    [ 'malformed JSON', PUT => $I, '{"address": "127.0.0.1", "port": 80', 400 ],
    [ 'trailing garbage', PUT => $I, '{"address": "127.0.0.1", "port": 80} x', 400 ],
    [ 'empty body', PUT => $I, '', 400, $J ],
    [ 'JSON array', PUT => $I, '[]', 400 ],
    [ 'JSON string', PUT => $I, '"127.0.0.1:80"', 400 ],
    [ 'JSON null', PUT => $I, 'null', 400 ],
    [ 'missing address', PUT => $I, { port => 80 }, 400, undef, 'address' ],
    [ 'missing port', PUT => $I, { address => '127.0.0.1' }, 400, undef, 'port' ],
    [ 'port 0', PUT => $I, { %ok, port => 0 }, 400, undef, 'port' ],
    [ 'port 65536', PUT => $I, { %ok, port => 65536 }, 400, undef, 'port' ],
    [ 'port -1', PUT => $I, { %ok, port => -1 }, 400, undef, 'port' ],
    [ 'port "80"', PUT => $I, { %ok, port => '80' }, 400, undef, 'port' ],
    [ 'port 1.5', PUT => $I, '{"address": "127.0.0.1", "port": 1.5}', 400,
      undef, 'port' ],
    [ 'port null', PUT => $I, '{"address": "127.0.0.1", "port": null}', 400,
      undef, 'port' ],
    [ 'bad IPv4', PUT => $I, { %ok, address => '300.1.1.1' }, 400, undef,
      'address' ],
    [ 'bad IPv6', PUT => $I, { %ok, address => '::1::2' }, 400, undef,
      'address' ],
    [ 'hostname', PUT => $I, { %ok, address => 'localhost' }, 400, undef,
      'address' ],
    [ 'address with port', PUT => $I, { %ok, address => '127.0.0.1:80' },
      400, undef, 'address' ],
    [ 'empty address', PUT => $I, { %ok, address => '' }, 400, undef,
      'address' ],
    [ 'address a number', PUT => $I, { %ok, address => 2130706433 }, 400,
      undef, 'address' ],
    [ 'weight 0', PUT => $I, { %ok, weight => 0 }, 400, undef, 'weight' ],
    [ 'weight 1001', PUT => $I, { %ok, weight => 1001 }, 400, undef, 'weight' ],
    [ 'weight "x"', PUT => $I, { %ok, weight => 'x' }, 400, undef, 'weight' ],
    [ 'weight 1.5', PUT => $I, '{"address": "127.0.0.1", "port": 80, "weight": 1.5}',
      400, undef, 'weight' ],
    [ 'service name with leading dot', PUT => '/v1/services/.web/instances/w9',
      {%ok}, 400 ],
    [ 'service name of 129 chars', PUT => "/v1/services/$long/instances/w9",
      {%ok}, 400 ],
    [ 'service name with encoded slash',
      PUT => '/v1/services/we%2Fb/instances/w9', {%ok}, 400 ],
    [ 'service name with encoded space',
      PUT => '/v1/services/we%20b/instances/w9', {%ok}, 400 ],
    [ 'instance id with leading dash', PUT => '/v1/services/web/instances/-w9',
      {%ok}, 400 ],
    [ 'instance id of 129 chars', PUT => "/v1/services/web/instances/$long",
      {%ok}, 400 ],
    [ 'instance id with a colon', PUT => '/v1/services/web/instances/w:9',
      {%ok}, 400 ],
    [ 'unknown top-level field', PUT => $I, { %ok, colour => 'red' }, 400,
      undef, 'colour' ],
    [ 'unknown field in check', PUT => $I,
      { %ok, check => { http => '/h', interval => '5s', bogus => 1 } }, 400 ],
    [ 'check not an object', PUT => $I, { %ok, check => 'yes' }, 400 ],
    [ 'check interval without unit', PUT => $I,
      { %ok, check => { http => '/h', interval => '5' } }, 400 ],
    [ 'labels not an object', PUT => $I, { %ok, labels => ['v'] }, 400,
      undef, 'labels' ],
    [ 'label value not a string', PUT => $I, { %ok, labels => { v => 2 } },
      400 ],
    [ 'label key not a name', PUT => $I, { %ok, labels => { 'a b' => 'x' } },
      400 ],
    [ 'ttl "10x"', PUT => $I, { %ok, ttl => '10x' }, 400, undef, 'ttl' ],
    [ 'ttl "-1s"', PUT => $I, { %ok, ttl => '-1s' }, 400, undef, 'ttl' ],
    [ 'ttl "0s"', PUT => $I, { %ok, ttl => '0s' }, 400, undef, 'ttl' ],
    [ 'ttl "25h"', PUT => $I, { %ok, ttl => '25h' }, 400, undef, 'ttl' ],
    [ 'ttl a number', PUT => $I, { %ok, ttl => 10 }, 400, undef, 'ttl' ],
    [ 'deregister_after "soon"', PUT => $I,
      { %ok, deregister_after => 'soon' }, 400, undef, 'deregister_after' ],
    [ 'zone of 129 bytes', PUT => $I, { %ok, zone => $long }, 400, undef,
      'zone' ],
    [ 'zone a number', PUT => $I, { %ok, zone => 5 }, 400, undef, 'zone' ],
    [ 'Content-Type text/plain', PUT => $I, $t->encode_json({%ok}), 415,
      { 'Content-Type' => 'text/plain' } ],
    [ 'Content-Type form', PUT => $I, $t->encode_json({%ok}), 415,
      { 'Content-Type' => 'application/x-www-form-urlencoded' } ],
    [ 'POST on an instance', POST => $I, {%ok}, 405 ],
    [ 'PATCH on an instance', PATCH => $I, {%ok}, 405 ],
    [ 'DELETE on /v1/services', DELETE => '/v1/services', undef, 405 ],
    [ 'PUT on /v1/services', PUT => '/v1/services', {%ok}, 405 ],
    [ 'DELETE on a service', DELETE => '/v1/services/web', undef, 405 ],
    [ 'POST on /v1/snapshot', POST => '/v1/snapshot', {}, 405 ],
    [ 'GET on a heartbeat', GET => "/v1/services/web/instances/w1/heartbeat",
      undef, 405 ],
    [ 'snapshot index "abc"', GET => '/v1/snapshot?index=abc', undef, 400 ],
    [ 'snapshot index -1', GET => '/v1/snapshot?index=-1', undef, 400 ],
    [ 'snapshot wait "forever"', GET => '/v1/snapshot?index=1&wait=forever',
      undef, 400 ],
    [ 'snapshot wait "-1s"', GET => '/v1/snapshot?index=1&wait=-1s', undef,
      400 ],
    [ 'heartbeat with a bad name',
      PUT => '/v1/services/.web/instances/w1/heartbeat', undef, 400 ],
    [ 'heartbeat of an unknown instance',
      PUT => '/v1/services/web/instances/w9/heartbeat', undef, 404 ],
    [ 'DELETE of an unknown instance', DELETE => $I, undef, 404 ],
    [ 'DELETE with a bad name', DELETE => '/v1/services/web/instances/.w1',
      undef, 400 ],
);

cmp_ok scalar @bad, '>=', 30, scalar(@bad) . ' bad requests';

for my $case (@bad) {
    my ($name, $method, $path, $body, $status, $headers, $field) = @$case;
    my $r = $t->api($method, $path, $body, $headers);

    is $r->{status}, $status, "$name: $status"
        or diag "$method $path: $r->{status} $r->{content}";
    ok ref $r->{json} eq 'HASH' && defined $r->{json}{error}
       && !ref $r->{json}{error} && length $r->{json}{error},
       "$name: JSON error string"
        or diag "body: $r->{content}";

    if (defined $field && ref $r->{json} eq 'HASH'
        && defined $r->{json}{field})
    {
        is $r->{json}{field}, $field, "$name: field $field";
    }

    if ($status == 405) {
        ok $r->{headers}{allow}, "$name: Allow header"
            . (defined $r->{headers}{allow} ? " ($r->{headers}{allow})" : '');
    }
}

# a body over 1 MiB (the default max_body); sent raw, since the server may
# answer before it has read it all

{
    my $big = $t->encode_json({ %ok, labels => { v => 'x' x (1024 * 1024) } });
    my $r = $t->raw_http("PUT $I HTTP/1.1\r\n"
        . "Host: 127.0.0.1\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($big) . "\r\n"
        . "Connection: close\r\n\r\n" . $big);
    is $r && $r->{status}, 413, 'body over 1 MiB: 413';
    ok $r && ref $r->{json} eq 'HASH' && defined $r->{json}{error},
        'body over 1 MiB: JSON error';
}

# nothing changed

my $after = state();
is $after->{services}{index}, $before->{services}{index}, 'index did not move';
is_deeply $after->{services}, $before->{services}, '/v1/services unchanged';
is_deeply $after->{each}, $before->{each}, '/v1/services/{svc} unchanged';
is_deeply $after->{snapshot}, $before->{snapshot}, 'snapshot unchanged';

my $r = $t->api(GET => '/v1/services/web/instances/w9');
is $r->{status}, 404, 'no w9 stored';

# and a good request still works afterwards

$r = $t->api(PUT => $I, {%ok});
is $r->{status}, 201, 'a good request after the bad ones: 201';
cmp_ok $r->{json}{index} // -1, '>', $before->{services}{index},
    'and moves the index';

$t->done_checks;
done_testing;
