#!/usr/bin/perl

# Scoped tokens (tokens_file): each token may do what its scopes say and
# nothing else. A token without the scope gets 403 naming the missing
# scope, no or a wrong token 401, and nothing changes. SIGHUP reads the
# file again: a rotated secret works at once, the old one no more, a
# long-poll held across the reload is answered on its connection, and a
# bad file keeps the tokens in use.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my %S = (
    nginx  => 'nginx-0123456789abcdef',
    deploy => 'deploy-0123456789abcdef',
    policy => 'policy-0123456789abcdef',
    ops    => 'ops-0123456789abcdef',
);

sub tokens_yaml {
    my ($nginx) = @_;
    return "anonymous_read: false\n"
        . "tokens:\n"
        . "  - name: nginx\n    secret: $nginx\n    scopes: [read]\n"
        . "  - name: deploy-orders\n    secret: $S{deploy}\n"
        . "    scopes: [read, \"write:orders\", \"write:orders-*\"]\n"
        . "  - name: policy-bot\n    secret: $S{policy}\n"
        . "    scopes: [policies]\n"
        . "  - name: ops\n    secret: $S{ops}\n    scopes: [admin]\n";
}

# a tokens file others can read: registryd does not start
{
    my $f = $t->write_file('open-tokens.yaml', tokens_yaml($S{nginx}));
    chmod 0644, $f;
    my ($code, $out, $err) = $t->run($t->bin('registryd'), '--listen',
        '127.0.0.1:' . $t->port, '--data-dir', $t->dir . '/spare',
        '--tokens-file', $f);
    is $code, 1, 'a tokens file readable by others: registryd exits 1 (not on a signal)';
    like $err, qr/tokens file \S+open-tokens\.yaml can be read or written by group or others \(mode 0644\)/,
        '... naming the file and its mode';
}

$t->start_registryd(tokens => tokens_yaml($S{nginx}), bearer => $S{ops});

sub as {
    my ($who, $method, $path, $body, $h) = @_;
    return $t->api($method, $path, $body,
                   { Authorization => defined $who ? "Bearer $S{$who}"
                                                   : undef, %{ $h || {} } });
}

my $inst = { address => '127.0.0.1', port => 8081 };

is as(deploy => PUT => '/v1/services/orders/instances/o1', $inst)->{status},
    201, 'deploy-orders registers orders: 201';
is as(deploy => PUT => '/v1/services/orders-eu/instances/e1',
      $inst)->{status}, 201, 'deploy-orders registers orders-eu (pattern)';
is as(ops => PUT => '/v1/services/payments/instances/p1', $inst)->{status},
    201, 'ops (admin) registers payments: 201';

my $DR = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
    . "metadata:\n  name: orders\nspec:\n  host: orders\n  trafficPolicy:\n"
    . "    loadBalancer:\n      simple: RANDOM\n";
my %yaml = ('Content-Type' => 'application/yaml');

sub state { $t->api(GET => '/v1/export')->{content} }

my $before = state();
my $index = $t->api(GET => '/healthz')->{json}{index};

# each attack: who, request, the status and the reason it must get
my @attacks = (
    [ nginx => PUT => '/v1/services/orders/instances/evil', $inst, undef,
      403, qr/^token "nginx" lacks scope write:orders \(it has: read\)$/ ],
    [ nginx => DELETE => '/v1/services/orders/instances/o1', undef, undef,
      403, qr/lacks scope write:orders/ ],
    [ nginx => PUT => '/v1/policies/orders', $DR, \%yaml,
      403, qr/^token "nginx" lacks scope policies/ ],
    [ deploy => PUT => '/v1/services/payments/instances/evil', $inst, undef,
      403, qr/^token "deploy-orders" lacks scope write:payments \(it has: read, write:orders, write:orders-\*\)$/ ],
    [ deploy => PUT => '/v1/services/payments/instances/p1',
      { address => '127.0.0.9', port => 6666 }, undef,
      403, qr/lacks scope write:payments/ ],
    [ deploy => PUT => '/v1/services/payments/instances/p1/heartbeat', undef,
      undef, 403, qr/lacks scope write:payments/ ],
    [ deploy => DELETE => '/v1/services/payments/instances/p1', undef, undef,
      403, qr/lacks scope write:payments/ ],
    [ deploy => PUT => '/v1/services/ordersx/instances/x1', $inst, undef,
      403, qr/lacks scope write:ordersx/ ],
    # a health check is created with write scope for its service only
    [ deploy => PUT => '/v1/services/payments/instances/probe',
      { %$inst, check => { http => '/healthz', interval => '5s' } }, undef,
      403, qr/lacks scope write:payments/ ],
    [ deploy => PUT => '/v1/policies/orders', $DR, \%yaml,
      403, qr/lacks scope policies/ ],
    [ policy => PUT => '/v1/services/orders/instances/o9', $inst, undef,
      403, qr/^token "policy-bot" lacks scope write:orders \(it has: policies\)$/ ],
    [ undef, PUT => '/v1/services/orders/instances/o9', $inst, undef,
      401, qr/^a bearer token is needed$/ ],
    [ undef, PUT => '/v1/policies/orders', $DR, \%yaml,
      401, qr/a bearer token is needed/ ],
);

for my $a (@attacks) {
    my ($who, $method, $path, $body, $h, $status, $why) = @$a;
    my $r = as($who, $method, $path, $body, $h);
    my $name = ($who // 'no token') . " $method $path";
    is $r->{status}, $status, "$name: $status";
    like $r->{json}{error} // '', $why, "$name: the reason";
    if ($status == 401) {
        like $r->{headers}{'www-authenticate'} // '', qr/^Bearer /,
            "$name: WWW-Authenticate";
    }
}

is $t->api(GET => '/healthz')->{json}{index}, $index,
    'the index did not move';
is state(), $before, 'nothing changed after the refusals';

# what each token may do, it does

is as(deploy => PUT => '/v1/services/orders/instances/c1',
      { %$inst, check => { tcp => JSON::PP::true(), interval => '5s' } }
     )->{status}, 201, 'deploy-orders registers orders with a health check';
is as(deploy => PUT => '/v1/services/orders/instances/o1/heartbeat'
     )->{status}, 200, 'deploy-orders heartbeats orders';
is as(policy => PUT => '/v1/policies/orders', $DR, \%yaml)->{status}, 201,
    'policy-bot applies a policy: 201';
is as(policy => GET => '/v1/snapshot')->{status}, 403,
    'policy-bot cannot read (no read scope): 403';
is as(nginx => GET => '/v1/snapshot')->{status}, 200, 'nginx reads: 200';
is as(undef, GET => '/v1/snapshot')->{status}, 401,
    'no token reads nothing: 401';
is as(undef, GET => '/healthz')->{status}, 200, '/healthz needs no token';
is as(deploy => DELETE => '/v1/services/orders/instances/c1')->{status},
    200, 'deploy-orders deregisters orders';

# rotation by SIGHUP, with a long-poll held across it

my $idx = $t->api(GET => '/healthz')->{json}{index};
my $w = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->registryd_port, Proto => 'tcp',
                              Timeout => 5)
    or die "connect: $!";
print $w "GET /v1/snapshot?index=$idx&wait=20s HTTP/1.1\r\nHost: x\r\n"
    . "Authorization: Bearer $S{nginx}\r\nConnection: close\r\n\r\n";

# wait until registryd holds it
for (1 .. 50) {
    last if ($t->api(GET => '/metrics')->{content} // '')
        =~ /^registryd_snapshot_waiters 1$/m;
    select undef, undef, undef, 0.1;
}

my $new = 'nginx-rotated-fedcba9876543210';
$t->write_file('tokens.yaml', tokens_yaml($new));
chmod 0600, $t->tokens_file;
kill 'HUP', $t->registryd_pid;

my $ok = 0;
for (1 .. 50) {
    $ok = as(undef, GET => '/v1/snapshot', undef,
             { Authorization => "Bearer $new" })->{status} == 200;
    last if $ok;
    select undef, undef, undef, 0.1;
}
ok $ok, 'after SIGHUP the rotated secret reads: 200';
is as(nginx => GET => '/v1/snapshot')->{status}, 401,
    'the old secret: 401';

is as(deploy => PUT => '/v1/services/orders/instances/o2', $inst)->{status},
    201, 'a change while the long-poll waits';
my $resp = do { local $/; local $SIG{ALRM} = sub { die "timeout\n" };
                alarm 10; my $x = <$w>; alarm 0; $x };
close $w;
like $resp // '', qr{\AHTTP/1\.1 200}, 'the long-poll held across the '
    . 'reload is answered 200 on its connection';
like $resp // '', qr{"o2"}, '... with the change';

# a bad file on SIGHUP: the tokens in use stay
$t->write_file('tokens.yaml', "tokens:\n  - {name: x, secret: short, "
               . "scopes: [read]}\n");
chmod 0600, $t->tokens_file;
kill 'HUP', $t->registryd_pid;

my $logged = 0;
for (1 .. 50) {
    $logged = $t->read_file($t->registryd_log)
        =~ /reload: \S+tokens\.yaml:2: a secret has 16 .*; the 4 tokens in use stay/;
    last if $logged;
    select undef, undef, undef, 0.1;
}
ok $logged, 'a bad tokens file on SIGHUP: logged with FILE:LINE, kept';
is as(undef, GET => '/v1/snapshot', undef,
      { Authorization => "Bearer $new" })->{status}, 200,
    '... and the tokens in use still work';
like $t->read_file($t->registryd_log), qr/reload: 4 tokens in use/,
    'the good reload was logged';

$t->done_checks;
done_testing;
