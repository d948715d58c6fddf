#!/usr/bin/perl

# mesh_balancer random: weighted random choice.  Over 30,000 requests from
# concurrent clients (both workers), a chi-square goodness-of-fit test with
# 2 degrees of freedom does not reject the weights 1:2:3 at p = 0.001.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $N = 30_000;
my $CRITICAL = 13.816;          # chi-square, 2 dof, p = 0.001

$t->start_registryd;

my %w = (b1 => 1, b2 => 2, b3 => 3);
for my $b (sort keys %w) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => "o-$b", $port, weight => $w{$b})->{status},
        201, "register o-$b weight $w{$b}";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer random;
        keepalive 8;            # only to make 30,000 requests faster
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;
        location / {
            proxy_pass http://orders;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

my $r = $t->load(requests => $N, clients => 4, timeout => 90);
is $r->{ok}, $N, "$N requests succeed" or diag explain $r;
note sprintf '%d requests in %.1f s (%.0f/s)', $r->{total}, $r->{elapsed},
    $r->{total} / ($r->{elapsed} || 1);

my $total = 0;
$total += $_ for values %w;

my $chi2 = 0;
for my $b (sort keys %w) {
    my $expect = $r->{ok} * $w{$b} / $total;
    my $got = $r->{count}{$b} // 0;
    $chi2 += ($got - $expect) ** 2 / ($expect || 1);
    note sprintf '%s: weight %d, %d requests, expected %.0f', $b, $w{$b},
        $got, $expect;
}
note sprintf 'chi-square %.3f (critical %.3f)', $chi2, $CRITICAL;

is_deeply [ sort keys %{ $r->{count} } ], [qw(b1 b2 b3)],
    'every instance was picked';
cmp_ok $chi2, '<', $CRITICAL,
    'chi-square does not reject 1:2:3 at p = 0.001';

# random, not round robin: an exact 1:2:3 split of 30,000 is all but
# impossible for a random choice

ok !(($r->{count}{b1} // 0) == $N / 6 && ($r->{count}{b2} // 0) == $N / 3),
    'the split is not the exact round-robin one';

$t->done_checks;
done_testing;
