#!/usr/bin/perl

# nginx sends a read token (mesh_registry ... token_file=) to a registryd
# whose tokens need one, and the secret is rotated under load without a
# failed request: the new secret is added to registryd's tokens file
# (SIGHUP), nginx is reloaded with it, the old one is removed (SIGHUP),
# and the poll goes on: a registration made after reaches traffic. An
# nginx without a token is turned away with the reason in its status.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my %S = (a => 'nginx-old-0123456789abcdef', b => 'nginx-new-0123456789abcdef',
         ops => 'ops-0123456789abcdef');

sub tokens {
    my (@nginx) = @_;
    return "tokens:\n"
        . "  - {name: ops, secret: $S{ops}, scopes: [admin]}\n"
        . join '', map { "  - {name: nginx-$_, secret: $S{$_}, "
                         . "scopes: [read]}\n" } @nginx;
}

$t->start_registryd(tokens => tokens('a'), bearer => $S{ops});

my %port;
$port{$_} = $t->start_backend(name => $_) for qw(b1 b2 b3);
is $t->register(orders => $_, $port{$_})->{status}, 201, "register $_"
    for qw(b1 b2);

sub conf {
    my ($token_line) = @_;
    return "%%PRELUDE%%\n"
        . "http {\n"
        . "%%HTTP_PRELUDE%%\n"
        . "    mesh_registry %%REGISTRY%%$token_line;\n"
        . "    mesh_cache_file %%TESTDIR%%/mesh.json;\n"
        . "    upstream orders {\n"
        . "        mesh orders;\n"
        . "        mesh_balancer round_robin;\n"
        . "    }\n"
        . "    server {\n"
        . "        listen 127.0.0.1:%%PORT_HTTP%%;\n"
        . "        location / { proxy_pass http://orders; }\n"
        . "        location = /mesh/status { mesh_status; }\n"
        . "    }\n"
        . "}\n";
}

sub token_file {
    my ($name, $secret) = @_;
    my $f = $t->write_file($name, "$secret\n");
    chmod 0600, $f;
    return $f;
}

# write registryd's tokens file with these nginx tokens and SIGHUP it;
# true once it logged the reload with that many tokens
sub hup_registryd {
    my (@nginx) = @_;
    my $n = 1 + @nginx;
    $t->write_file('tokens.yaml', tokens(@nginx));
    chmod 0600, $t->tokens_file;
    my $before = () = ($t->read_file($t->registryd_log) // '')
                      =~ /reload: \d+ tokens in use/g;
    kill 'HUP', $t->registryd_pid;
    my $end = time + 5;
    while (time < $end) {
        my @all = ($t->read_file($t->registryd_log) // '')
                  =~ /reload: (\d+) tokens in use/g;
        return $all[-1] == $n if @all > $before;
        sleep 0.02;
    }
    return 0;
}

# without a token: turned away, and the status says why
$t->nginx_conf(conf(''));
$t->start_nginx;

my ($st, $end) = (undef, time + 5);
while (time < $end) {
    $st = $t->mesh_status;
    last if ($st->{registry}{last_error} // '') =~ /401/;
    sleep 0.05;
}
is $st->{registry}{last_error},
    'the registry answered 401: a bearer token is needed (also for reads: '
    . 'anonymous_read is off)',
    'no token: the registry answered 401, the status says why';
isnt $st->{registry}{state}, 'synced', '... and nginx is not synced';

# with the old secret
$t->nginx_conf(conf(' token_file=' . token_file('a.token', $S{a})));
$t->reload_nginx;
ok $t->wait_mesh_index(timeout => 5), 'with a read token nginx is synced';

my $load = $t->load_start(clients => 4, duration => 5, keepalive => 1);
sleep 0.5;

ok hup_registryd('a', 'b'), 'the new secret added to registryd (SIGHUP): 3 tokens';

$t->nginx_conf(conf(' token_file=' . token_file('b.token', $S{b})));
$t->reload_nginx;
sleep 1;                        # the new workers poll with the new secret

ok hup_registryd('b'), 'the old secret removed (SIGHUP): 2 tokens';

is $t->register(orders => 'b3', $port{b3})->{status}, 201, 'register b3';
ok $t->wait_mesh_index(timeout => 5),
    'the change reaches nginx after the rotation';
$st = $t->mesh_status;
is $st->{registry}{state}, 'synced', 'nginx is synced';

my $res = $t->load_wait($load);
ok $res->{total} > 100, "load: $res->{total} requests";
is $res->{failed}, 0, 'no request failed during the rotation'
    or diag explain $res->{statuses}, $res->{errors};

$res = $t->load(requests => 30, clients => 2);
is join(',', sort keys %{ $res->{count} }), 'b1,b2,b3',
    'b3 gets traffic';

# the old secret is refused now
is $t->api(GET => '/v1/snapshot', undef,
           { Authorization => "Bearer $S{a}" })->{status}, 401,
    'the old secret: 401';

$t->done_checks;
done_testing;
