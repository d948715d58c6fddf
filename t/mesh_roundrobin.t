#!/usr/bin/perl

# mesh_balancer round_robin: weighted round robin over one schedule whose
# position is shared by all workers, so the split is exact per full cycle
# whichever worker serves a request.  With no mesh_balancer an upstream
# balances by round robin too.

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
$port{$_} = $t->start_backend(name => $_, events => 1)
    for qw(b1 b2 b3 e1 e2 e3);

my %w = (b1 => 1, b2 => 2, b3 => 3);
for my $b (qw(b1 b2 b3)) {
    is $t->register(orders => "o-$b", $port{$b}, weight => $w{$b})->{status},
        201, "register orders/o-$b weight $w{$b}";
}
for my $b (qw(e1 e2 e3)) {
    is $t->register(equal => "i-$b", $port{$b})->{status}, 201,
        "register equal/i-$b weight 1";
}

# reuseport: the kernel spreads new connections over both workers

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
    }

    upstream equal {
        mesh equal;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;
        add_header X-Worker $pid always;

        location /       { proxy_pass http://orders; }
        location /equal/ { proxy_pass http://equal; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

# 600 sequential requests, a new connection each: 100 cycles of 6

my $r = $t->load(requests => 600, clients => 1, keepalive => 0,
                 headers => [qw(x-backend x-worker)]);
is $r->{ok}, 600, '600 sequential requests succeed' or diag explain $r;
is_deeply $r->{count}, { b1 => 100, b2 => 200, b3 => 300 },
    'weights 1:2:3 give exactly 100/200/300' or diag explain $r->{count};
cmp_ok scalar(keys %{ $r->{by}{'x-worker'} || {} }), '==', 2,
    'both workers served' or diag explain $r->{by};

# the same from three concurrent clients: still exact, as the state is
# shared and every pick takes the next position (an atomic add)

$r = $t->load(requests => 600, clients => 3, keepalive => 0,
              headers => [qw(x-backend x-worker)]);
is $r->{ok}, 600, '600 concurrent requests succeed' or diag explain $r;
is_deeply $r->{count}, { b1 => 100, b2 => 200, b3 => 300 },
    'concurrent: exactly 100/200/300' or diag explain $r->{count};

# smooth: one cycle of 6 holds 1, 2 and 3 picks, and b3 is spread out

my $c = $t->client;
my @seq = map { $c->get('/')->{headers}{'x-backend'} // '-' } 1 .. 12;
$c->close;
my %first;
$first{$_}++ for @seq[0 .. 5];
is_deeply \%first, { b1 => 1, b2 => 2, b3 => 3 },
    'one cycle of 6 holds 1, 2 and 3 picks' or diag "@seq";
my $runs = grep { $seq[$_] eq 'b3' && $seq[$_ - 1] eq 'b3' } 1 .. $#seq;
cmp_ok $runs, '<=', 2, 'smooth: b3 is interleaved, not sent in a burst'
    or diag "@seq";

# equal weights, the default balancer: an even spread

$r = $t->load(path => '/equal/', requests => 300, clients => 2,
              keepalive => 0);
is $r->{ok}, 300, '300 requests to the default balancer succeed'
    or diag explain $r;
is_deeply $r->{count}, { e1 => 100, e2 => 100, e3 => 100 },
    'equal weights: exactly 100 each' or diag explain $r->{count};

$t->done_checks;
done_testing;
