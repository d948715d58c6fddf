#!/usr/bin/perl

# mesh_status: the JSON document (index, registry sync state, services,
# upstreams, balancer, instances with server, weight, state, active,
# requests, failures), per-instance request counts equal to the requests
# sent, and the variables $mesh_service, $mesh_instance, $mesh_index.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my (%port, %w);
for my $n (1 .. 3) {
    $port{"b$n"} = $t->start_backend(name => "b$n", events => 1);
    $w{"o$n"} = $n;
    is $t->register(orders => "o$n", $port{"b$n"}, weight => $n)->{status},
        201, "register orders/o$n weight $n";
}
is $t->register(payments => 'p1', $port{b1})->{status}, 201,
    'register payments/p1';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
    }

    upstream payments {
        mesh payments;
        mesh_balancer least_request;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        add_header X-Mesh-Service  $mesh_service  always;
        add_header X-Mesh-Instance $mesh_instance always;
        add_header X-Mesh-Index    $mesh_index    always;

        location /          { proxy_pass http://orders; }
        location /payments/ { proxy_pass http://payments; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

my $index = $t->registry_index;
ok $t->wait_mesh_index(index => $index), 'nginx has the registry index';

# the document before any traffic

my $resp = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP')
                           . '/mesh/status');
is $resp->{status}, 200, 'GET /mesh/status: 200';
like $resp->{headers}{'content-type'} // '', qr{application/json},
    'content type JSON';
my $st = eval { $t->decode_json($resp->{content}) };
ok $st, 'the body is JSON' or diag $resp->{content};
$st //= {};

is $st->{index}, $index, 'index: the registry index';
my $reg = $st->{registry} || {};
is $reg->{url}, $t->registryd_url, 'registry.url';
is $reg->{state}, 'synced', 'registry.state synced';
my $now_ms = time * 1000;
cmp_ok $reg->{last_sync_ms} // 0, '>', $now_ms - 60_000,
    'registry.last_sync_ms: recent unix ms';
cmp_ok $reg->{last_sync_ms} // 0, '<=', $now_ms + 1000,
    'registry.last_sync_ms: not in the future';
ok exists $reg->{last_error} && !defined $reg->{last_error},
    'registry.last_error: null';

my %svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
ok $svc{orders}, 'service orders listed';
ok $svc{payments}, 'service payments listed';
is_deeply $svc{orders}{upstreams}, ['orders'], 'orders: upstreams';
is $svc{orders}{balancer}, 'round_robin', 'orders: balancer';
is $svc{payments}{balancer}, 'least_request', 'payments: balancer';

my %inst = map { $_->{id} => $_ } @{ $svc{orders}{instances} || [] };
is_deeply [ sort keys %inst ], [qw(o1 o2 o3)], 'orders: three instances';
for my $n (1 .. 3) {
    my $i = $inst{"o$n"} || {};
    is_deeply { map { $_ => $i->{$_} }
                qw(server weight state active requests failures) },
        { server => "127.0.0.1:" . $port{"b$n"}, weight => $n,
          state => 'healthy', active => 0, requests => 0, failures => 0 },
        "o$n: server, weight, state, counters";
}

# traffic: requests per instance equal what the backends saw

my $r = $t->load(requests => 120, clients => 3,
                 headers => [qw(x-backend x-mesh-service x-mesh-instance
                                x-mesh-index)]);
is $r->{ok}, 120, '120 requests succeed';
is_deeply $r->{count}, { b1 => 20, b2 => 40, b3 => 60 }, 'split 1:2:3';
is_deeply $r->{by}{'x-mesh-service'}, { orders => 120 },
    '$mesh_service: orders';
is_deeply $r->{by}{'x-mesh-instance'}, { o1 => 20, o2 => 40, o3 => 60 },
    '$mesh_instance: the instance id';
is_deeply $r->{by}{'x-mesh-index'}, { $index => 120 },
    '$mesh_index: the snapshot index';

$r = $t->load(path => '/payments/', requests => 7, clients => 1);
is $r->{ok}, 7, '7 requests to payments';

$st = $t->mesh_status;
%svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
%inst = map { $_->{id} => $_ } @{ $svc{orders}{instances} || [] };
is_deeply { map { $_ => $inst{$_}{requests} } keys %inst },
    { o1 => 20, o2 => 40, o3 => 60 },
    'status requests equal the requests sent, per instance';
is_deeply { map { $_ => $inst{$_}{active} } keys %inst },
    { o1 => 0, o2 => 0, o3 => 0 }, 'active back to 0';
is $svc{payments}{instances}[0]{requests}, 7, 'payments/p1: 7 requests';

# a change shows up in the document

my $x = $t->deregister(orders => 'o3');
is $x->{status}, 200, 'deregister o3';
$st = $t->wait_mesh_index(index => $x->{json}{index});
ok $st, 'status reaches the new index';
%svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
is_deeply [ sort map { $_->{id} } @{ $svc{orders}{instances} || [] } ],
    [qw(o1 o2)], 'o3 is gone from the status';

$t->done_checks;
done_testing;
