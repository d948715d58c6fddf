#!/usr/bin/perl

# nginx follows registryd replicas: `mesh_registry URL_A URL_B` over two
# replicas on a 3-member etcd. Under concurrent load, kill -9 of the
# replica nginx polls: no client request fails, the poll moves to the
# other replica (status and Prometheus say which), and a registration
# made through it reaches traffic within 1 s.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $a = MeshTest->new(log_level => 'info');
my $b = MeshTest->new;

plan skip_all => 'no module at ' . $a->module_path unless -f $a->module_path;
plan skip_all => 'no registryd' unless -x $a->bin('registryd');

$a->start_etcd_cluster(members => 3);
my @store = $a->etcd_store_args(prefix => '/nginx-replicas/');
my $url_a = $a->start_registryd(args => \@store);
my $url_b = $b->start_registryd(args => \@store);

my %port;
$port{$_} = $a->start_backend(name => $_) for qw(b1 b2 b3 b4);
for my $n (qw(b1 b2 b3)) {
    is $a->register(orders => $n, $port{$n})->{status}, 201, "register $n";
}

my $conf = <<'EOF';
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    mesh_registry %%REGISTRY%% URL_B;
    mesh_cache_file %%TESTDIR%%/mesh.json;

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
$conf =~ s/URL_B/$url_b/;
$a->nginx_conf($conf);
$a->start_nginx;

ok $a->wait_mesh_index, 'nginx has the registry index'
    or diag explain $a->mesh_status;
is $a->mesh_status->{registry}{url}, $url_a, 'it polls the first replica';

# load through the kill of the replica polled

my $load = $a->load_start(clients => 4, duration => 4, keepalive => 1);
sleep 1;
$a->kill_registryd;
my $killed = time;

# the poll moves on
my ($moved, $st);
while (time - $killed < 5) {
    $st = $a->mesh_status;
    if (($st->{registry}{url} // '') eq $url_b
        && ($st->{registry}{state} // '') eq 'synced')
    {
        $moved = time - $killed;
        last;
    }
    sleep 0.02;
}
ok defined $moved, 'the poll moved to the second replica, synced';
diag sprintf 'poll failover to the other replica: %.0f ms',
    1000 * ($moved // 5);

# a registration through the other replica reaches traffic within 1 s
my $r = $b->register(orders => 'b4', $port{b4});
my $t0 = time;
is $r->{status}, 201, 'b4 registered through the second replica';

my $c = $a->client;
my $hit;
while (time - $t0 < 5) {
    my $x = $c->get('/');
    if (($x->{headers}{'x-backend'} // '') eq 'b4') {
        $hit = time - $t0;
        last;
    }
}
ok defined $hit && $hit < 1,
    sprintf('b4 receives traffic %.0f ms after its 201', 1000 * ($hit // 5));

my $res = $a->load_wait($load);
ok $res->{total} > 100, "load: $res->{total} requests";
is $res->{failed}, 0, 'no client request failed while the replica died'
    or diag explain $res->{statuses}, $res->{errors};

# status and Prometheus say which replica is in use
$st = $a->mesh_status;
is $st->{registry}{url}, $url_b, 'status: registry.url is the second one';
is $st->{index}, $b->api(GET => '/healthz')->{json}{index},
    "at the second replica's index";

my $prom = $a->mesh_prometheus;
like $prom->{text}, qr/^nginx_mesh_registry_info\{url="\Q$url_b\E"\} 1$/m,
    'Prometheus: nginx_mesh_registry_info names it';

my $log = $a->read_file($a->dir . '/error.log') // '';
like $log, qr/registry \Q$url_a\E cannot be reached, polling \Q$url_b\E/,
    'the move is logged';

$a->done_checks;
$b->done_checks;
done_testing;
