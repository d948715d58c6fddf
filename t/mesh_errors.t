#!/usr/bin/perl

# Errors.  A mesh upstream naming an unknown service answers 502 quickly
# and logs an [error] naming the service; a service whose instances are
# all critical answers 502; bad directives fail "nginx -t" with an
# [emerg] naming the directive and the value.  Never a crash.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $b1 = $t->start_backend(name => 'b1', events => 1);
is $t->register(orders => 'o1', $b1)->{status}, 201, 'register orders/o1';
is $t->register(expiring => 'x1', $b1, ttl => '1s')->{status}, 201,
    'register expiring/x1 with ttl 1s and no heartbeat';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders   { mesh orders; }
    upstream ghost    { mesh nosuchservice; }
    upstream expiring { mesh expiring; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /         { proxy_pass http://orders; }
        location /ghost/   { proxy_pass http://ghost; }
        location /expiring/ { proxy_pass http://expiring; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

my $c = $t->client;
is $c->get('/')->{status}, 200, 'a known service serves';

# unknown service: 502, fast, one [error] naming it

my $t0 = time;
my @st = map { $c->get('/ghost/')->{status} } 1 .. 5;
my $took = (time - $t0) / 5;
is_deeply \@st, [ (502) x 5 ], 'unknown service: 502';
cmp_ok $took, '<', 1, 'the 502 comes quickly';
note sprintf 'unknown service: 502 in %.1f ms', 1000 * $took;

my @err = grep { /\[error\].*nosuchservice/ }
          split /\n/, $t->read_file('error.log') // '';
cmp_ok scalar(@err), '>=', 1, 'an [error] line names the service'
    or diag $t->read_file('error.log');
note scalar(@err) . " [error] lines for 5 requests; first: "
    . ($err[0] // 'none');
my @named = grep { /mesh: no instances of service "nosuchservice" for upstream/ }
            @err;
ok @named, '... saying so once: no instances of service "nosuchservice" '
    . 'for upstream' or diag join "\n", @err;

is $c->get('/')->{status}, 200, 'the known service still serves';

# all instances critical (ttl expired, no heartbeat): 502

my ($state, $end) = ('', time + 10);
while (time < $end) {
    my $s = $t->mesh_status;
    my ($svc) = grep { $_->{name} eq 'expiring' } @{ $s->{services} || [] };
    $state = $svc->{instances}[0]{state} // '' if $svc;
    last if $state eq 'unhealthy';
    sleep 0.1;
}
is $state, 'unhealthy', 'status: the expired instance is unhealthy';

$t0 = time;
my $x = $c->get('/expiring/');
$took = time - $t0;
is $x->{status}, 502, 'no healthy instance: 502';
cmp_ok $took, '<', 1, 'the 502 comes quickly';
isnt $x->{headers}{'x-backend'}, 'b1', 'the critical instance got nothing';

# a heartbeat brings it back

is $t->api(PUT => '/v1/services/expiring/instances/x1/heartbeat')->{status},
    200, 'heartbeat';
ok $t->wait_mesh_index, 'nginx has the index';
is $c->get('/expiring/')->{status}, 200, 'passing again: 200';
$c->close;

$t->stop_nginx;

my @log = split /\n/, $t->read_file('error.log') // '';
ok !grep({ /exited on signal/ } @log), 'no worker crashed';

###########################################################################
# bad directives: nginx -t fails with [emerg] naming directive and value

my @cases = (
    [ 'mesh_balancer foo',
      "upstream u { mesh orders; mesh_balancer foo; }",
      qr/mesh_balancer/, qr/foo/ ],
    [ 'consistent_hash without a key',
      "upstream u { mesh orders; mesh_balancer consistent_hash; }",
      qr/mesh_balancer/, qr/consistent_hash/ ],
    [ 'mesh outside upstream',
      "server { listen 127.0.0.1:%%PORT_X%%; "
        . "location / { mesh orders; } }",
      qr/"mesh"/, qr/not allowed here/ ],
    [ 'mesh twice',
      "upstream u { mesh orders; mesh payments; }",
      qr/"mesh"/, qr/duplicate|payments/ ],
    [ 'mesh_zone 1k',
      "mesh_zone 1k;",
      qr/mesh_zone/, qr/1k/ ],
    [ 'mesh_zone junk',
      "mesh_zone lots;",
      qr/mesh_zone/, qr/lots/ ],
    [ 'mesh_registry without a scheme',
      "mesh_registry 127.0.0.1:7770;",
      qr/mesh_registry/, qr/127\.0\.0\.1:7770/ ],
    [ 'mesh_registry with a bad port',
      "mesh_registry http://127.0.0.1:notaport;",
      qr/mesh_registry/, qr/notaport/ ],
);

my $n = 0;
for my $case (@cases) {
    my ($what, $snippet, $directive, $value) = @$case;
    my $name = 'bad' . ++$n . '.conf';
    my $registry = $snippet =~ /mesh_registry/ ? ''
        : "    mesh_registry http://127.0.0.1:7770;\n";

    $t->nginx_conf(<<"EOF", $name);
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
$registry    $snippet
}
EOF

    my ($code, $out) = $t->nginx_test($name);
    isnt $code, 0, "$what: nginx -t fails";
    my ($emerg) = grep { /\[emerg\]/ } split /\n/, $out;
    ok $emerg, "$what: [emerg]" or diag $out;
    $emerg //= '';
    like $emerg, $directive, "$what: names the directive" or diag $out;
    like $emerg, $value, "$what: names the value" or diag $out;
}

$t->done_checks;
done_testing;
