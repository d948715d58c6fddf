#!/usr/bin/perl

# An nginx binary upgrade under load (USR2, then QUIT to the old master):
# no client request fails, the new generation routes from the first
# request (its zone starts from mesh_cache_file, which the old one kept:
# each generation writes it through a temporary file of its own pid, so
# the two never write one file at once), it takes over the poll, and a
# registration made after the upgrade reaches its traffic.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new(log_level => 'info', daemon => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port;
$port{$_} = $t->start_backend(name => $_) for qw(b1 b2 b3 b4);
is $t->register(orders => $_, $port{$_})->{status}, 201, "register $_"
    for qw(b1 b2 b3);

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';
my $old = $t->nginx_pid;

# the cache file the new generation starts from
my $end = time + 5;
sleep 0.05 while !-s $t->cache_file && time < $end;
ok -s $t->cache_file, 'the old generation wrote mesh_cache_file';

my $load = $t->load_start(clients => 4, duration => 5, keepalive => 0);
sleep 1;

my $t0 = time;
my $new = $t->upgrade_nginx;
ok $new, "binary upgrade: new master $new, old $old gone";
diag sprintf 'upgrade (USR2 to the old master exiting): %.2f s', time - $t0;
isnt $new, $old, '... another master';

my $st = $t->mesh_status;
is $st->{registry}{state}, 'synced', 'the new generation polls, synced'
    or diag explain $st->{registry};
is $st->{index}, $t->registry_index, '... at the registry index';
is $st->{registry}{poller_pid} && (grep { $_ == $st->{registry}{poller_pid} }
    $t->nginx_workers) ? 1 : 0, 1, '... the poll is a new worker\'s';

# a change after the upgrade reaches the new generation's traffic
is $t->register(orders => 'b4', $port{b4})->{status}, 201, 'register b4';
ok $t->wait_mesh_index, 'the new generation follows the change';

my $res = $t->load_wait($load);
ok $res->{total} > 100, "load: $res->{total} requests";
is $res->{failed}, 0, 'no request failed through the upgrade'
    or diag explain $res->{statuses}, $res->{errors};

$res = $t->load(requests => 40, clients => 2);
is join(',', sort keys %{ $res->{count} }), 'b1,b2,b3,b4',
    'the four instances get traffic';

my $log = $t->read_file('error.log') // '';
unlike $log, qr/cannot (?:write|rename) cache file/,
    'no generation failed to write the cache file';

$t->done_checks;
done_testing;
