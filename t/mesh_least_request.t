#!/usr/bin/perl

# mesh_balancer least_request: power of two choices over the active
# requests shared by all workers.  Under concurrent load an instance that
# answers in 0.2 s gets far fewer requests than two fast ones, and once
# the load stops every active counter is back at 0.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port = (
    fast1 => $t->start_backend(name => 'fast1', events => 1),
    fast2 => $t->start_backend(name => 'fast2', events => 1),
    slow  => $t->start_backend(name => 'slow', events => 1, delay => 0.2),
);
for my $b (sort keys %port) {
    is $t->register(orders => $b, $port{$b})->{status}, 201,
        "register $b weight 1";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer least_request;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

# 20 concurrent clients for 5 s

my $r = $t->load(duration => 5, clients => 20, timeout => 20);
cmp_ok $r->{total}, '>', 0, 'load ran';
is $r->{failed}, 0, 'no failed request' or diag explain $r;

my %n = map { $_ => $r->{count}{$_} // 0 } qw(fast1 fast2 slow);
note "requests: fast1 $n{fast1}, fast2 $n{fast2}, slow $n{slow}";

cmp_ok $n{slow}, '>', 0, 'the slow instance still gets some requests';
cmp_ok $n{slow}, '<', $n{fast1} / 2, 'slow gets less than half of fast1';
cmp_ok $n{slow}, '<', $n{fast2} / 2, 'slow gets less than half of fast2';

# the fast ones share the rest about evenly

my ($lo, $hi) = sort { $a <=> $b } $n{fast1}, $n{fast2};
cmp_ok $lo, '>', $hi / 2, 'the fast instances share the load'
    or diag "fast1 $n{fast1}, fast2 $n{fast2}";

# active counters return to 0; requests in status match the traffic

my ($st, %active, %req);
for (1 .. 100) {
    $st = $t->mesh_status or next;
    %active = %req = ();
    for my $s (@{ $st->{services} || [] }) {
        next unless $s->{name} eq 'orders';
        for my $i (@{ $s->{instances} || [] }) {
            $active{ $i->{id} } = $i->{active};
            $req{ $i->{id} } = $i->{requests};
        }
    }
    last if %active && !grep { $_ } values %active;
    select undef, undef, undef, 0.05;
}
is_deeply \%active, { fast1 => 0, fast2 => 0, slow => 0 },
    'every active counter is back at 0' or diag explain $st;
is_deeply \%req, \%n, 'status requests equal the traffic per instance'
    or diag explain $st;

$t->done_checks;
done_testing;
