#!/usr/bin/perl

# With --token-file, every request but GET /healthz needs the right bearer
# token (401 otherwise, and nothing changes): the token has every scope.
# Scoped tokens: t/registryd_scopes.t.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd at ' . $t->bin('registryd')
    unless -x $t->bin('registryd');

# the harness writes the token with a trailing newline: surrounding
# whitespace is not part of it
$t->start_registryd(token => 'Zm9vYmFy-s3cret');

my $I = '/v1/services/auth/instances/a1';
my %body = (address => '127.0.0.1', port => 8001);

my $r = $t->api(PUT => $I, \%body);
is $r->{status}, 201, 'PUT with the right bearer: 201';

sub state {
    return [ $t->api(GET => '/v1/services')->{json},
             $t->api(GET => '/v1/snapshot')->{json} ];
}
my $before = state();

my @creds = (
    [ 'no Authorization', undef ],
    [ 'wrong token', 'Bearer wrong' ],
    [ 'token with a suffix', 'Bearer Zm9vYmFy-s3cretX' ],
    [ 'token prefix', 'Bearer Zm9vYmFy' ],
    [ 'empty bearer', 'Bearer ' ],
    [ 'Basic scheme', 'Basic Zm9vYmFy-s3cret' ],
    [ 'token without scheme', 'Zm9vYmFy-s3cret' ],
);

my @mutations = (
    [ 'register new', PUT => '/v1/services/auth/instances/a2', \%body ],
    [ 'update', PUT => $I, { %body, port => 8002 } ],
    [ 'heartbeat', PUT => "$I/heartbeat", undef ],
    [ 'deregister', DELETE => $I, undef ],
);

for my $m (@mutations) {
    my ($what, $method, $path, $data) = @$m;
    for my $c (@creds) {
        my ($how, $auth) = @$c;
        $r = $t->api($method, $path, $data, { Authorization => $auth });
        is $r->{status}, 401, "$what with $how: 401";
        ok ref $r->{json} eq 'HASH' && defined $r->{json}{error},
            "$what with $how: JSON error";
    }
}

is_deeply state(), $before, 'nothing changed after the 401s';

# reads need the token too (the topology is no one else's business); the
# health check of a load balancer does not

for my $path ('/v1/services', '/v1/services/auth', $I, '/v1/snapshot',
              '/v1/events', '/v1/proxies', '/v1/export', '/metrics')
{
    $r = $t->json_req(GET => $t->registryd_url . $path);
    is $r->{status}, 401, "GET $path without a token: 401";
    like $r->{headers}{'www-authenticate'} // '', qr/^Bearer realm=/,
        "GET $path without a token: WWW-Authenticate";
    like $r->{json}{error} // '', qr/anonymous_read is off/,
        "GET $path without a token: says why";
    $r = $t->http(GET => $t->registryd_url . $path, undef,
                  { Authorization => 'Bearer wrong' });
    is $r->{status}, 401, "GET $path with a wrong token: 401";
    $r = $t->api(GET => $path);
    is $r->{status}, 200, "GET $path with the token: 200";
}

$r = $t->http(GET => $t->registryd_url . '/healthz');
is $r->{status}, 200, 'GET /healthz without a token: 200';

# the right bearer works for every mutation

$r = $t->api(PUT => '/v1/services/auth/instances/a2', \%body);
is $r->{status}, 201, 'register with the token: 201';
$r = $t->api(PUT => $I, { %body, port => 8002 });
is $r->{status}, 200, 'update with the token: 200';
is $r->{json}{port}, 8002, 'update stored';
$r = $t->api(PUT => "$I/heartbeat");
is $r->{status}, 200, 'heartbeat with the token: 200';
$r = $t->api(DELETE => $I);
is $r->{status}, 200, 'deregister with the token: 200';
$r = $t->api(GET => $I);
is $r->{status}, 404, 'deregistered';

$t->done_checks;
done_testing;
