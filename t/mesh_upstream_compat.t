#!/usr/bin/perl

# A mesh upstream works with nginx's own upstream companions: "keepalive"
# reuses connections to the instances, and "proxy_next_upstream" retries a
# request on another instance when one does not accept connections.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port;
$port{$_} = $t->start_backend(name => $_, events => 1) for qw(b1 b2);
my $closed = $t->port;                  # nothing listens there

for my $b (qw(b1 b2)) {
    is $t->register(orders => $b, $port{$b})->{status}, 201,
        "register orders/$b";
}
is $t->register(flaky => 'good1', $port{b1})->{status}, 201,
    'register flaky/good1';
is $t->register(flaky => 'dead', $closed)->{status}, 201,
    "register flaky/dead at closed port $closed";
is $t->register(flaky => 'good2', $port{b2})->{status}, 201,
    'register flaky/good2';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
        keepalive 16;
    }

    upstream plain {
        mesh orders;
    }

    upstream flaky {
        mesh flaky;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        location / {
            proxy_pass http://orders;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location /plain/ {
            proxy_pass http://plain;
        }

        location /flaky/ {
            proxy_pass http://flaky;
            proxy_next_upstream error timeout http_502;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

# keepalive: 400 requests from 4 clients open only a few connections to
# the instances; X-Conn-Requests is the request's number on its backend
# connection

my $r = $t->load(requests => 400, clients => 4,
                 headers => [qw(x-backend x-conn-requests)]);
is $r->{ok}, 400, 'keepalive upstream: 400 requests succeed'
    or diag explain $r;
is_deeply $r->{count}, { b1 => 200, b2 => 200 }, 'round robin over both';

my $conns = $r->{by}{'x-conn-requests'}{1} // 0;
my ($max) = sort { $b <=> $a } keys %{ $r->{by}{'x-conn-requests'} || {} };
note "400 requests over $conns backend connections, up to $max on one";
cmp_ok $conns, '>', 0, 'some backend connections were opened';
cmp_ok $conns, '<=', 40, 'keepalive: at most 40 connections for 400 requests';
cmp_ok $max // 0, '>', 10, 'a connection carried more than 10 requests';

# without keepalive, every request has its own connection (the header
# works)

$r = $t->load(path => '/plain/', requests => 50, clients => 2,
              headers => [qw(x-backend x-conn-requests)]);
is $r->{ok}, 50, 'plain upstream: 50 requests succeed';
is_deeply $r->{by}{'x-conn-requests'}, { 1 => 50 },
    'no keepalive: one request per backend connection';

# proxy_next_upstream: one instance refuses connections; every request
# still succeeds through another one

$r = $t->load(path => '/flaky/', requests => 60, clients => 2);
is $r->{ok}, 60, 'next upstream: all 60 requests succeed'
    or diag explain $r;
is_deeply [ sort keys %{ $r->{count} } ], [qw(b1 b2)],
    'served by the two live instances';

my $st = $t->mesh_status;
my ($svc) = grep { $_->{name} eq 'flaky' } @{ $st->{services} || [] };
my ($dead) = grep { $_->{id} eq 'dead' } @{ $svc->{instances} || [] };
cmp_ok $dead->{failures} // 0, '>', 0, 'status counts failures of "dead"'
    or diag explain $svc;

$t->done_checks;
done_testing;
