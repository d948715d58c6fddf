#!/usr/bin/perl

# Weighted traffic split (docs/policies.md, route[].weight): a
# VirtualService sending 90 % to subset v1 (two instances) and 10 % to
# subset v2 (one) lands within +-2 percentage points over 10,000 requests
# from parallel clients through two workers; then 50/50 and 0/100.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $N = 10_000;

$t->start_registryd;

my %version = (b1 => 'v1', b2 => 'v1', b3 => 'v2');
for my $b (sort keys %version) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port,
                    labels => { version => $version{$b} })->{status},
        201, "register $b, version $version{$b}";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
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

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

sub apply {
    my ($name, $yaml, $what) = @_;
    my $r = $t->apply_policy($name, $yaml);
    like $r->{status}, qr/^20[01]$/, "PUT policy $name: $what"
        or diag explain $r->{json} // $r->{content};
    ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
        '... nginx has its index' or diag explain $t->mesh_status;
}

sub split_vs {
    my ($w1, $w2) = @_;
    apply('orders-vs', <<"EOF", "v1 $w1 / v2 $w2");
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders
spec:
  hosts:
  - orders
  http:
  - route:
    - destination:
        host: orders
        subset: v1
      weight: $w1
    - destination:
        host: orders
        subset: v2
      weight: $w2
EOF
}

apply('orders-dr', <<'EOF', 'subsets v1 and v2');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
EOF

# $n requests from 8 clients (keep-alive: the connections spread over the
# workers); the share of v2 in percent
sub run_split {
    my ($n, $want_v2, $tol) = @_;
    my $r = $t->load(requests => $n, clients => 8, timeout => 60);
    is $r->{ok}, $n, "$n requests succeed"
        or diag explain { %$r, results => undef };
    my %c = %{ $r->{count} };
    my $v1 = ($c{b1} // 0) + ($c{b2} // 0);
    my $v2 = $c{b3} // 0;
    my $pct = $n ? 100 * $v2 / $n : 0;
    diag sprintf 'split: v1 %d (b1 %d, b2 %d), v2 %d = %.2f %% in %.1f s',
        $v1, $c{b1} // 0, $c{b2} // 0, $v2, $pct, $r->{elapsed};
    is $v1 + $v2, $n, 'every answer from b1, b2 or b3' or diag explain \%c;
    cmp_ok abs($pct - $want_v2), '<=', $tol,
        "v2 gets $want_v2 % +- $tol points";
    return \%c;
}

split_vs(90, 10);
my $c = run_split($N, 10, 2);
my ($b1, $b2) = ($c->{b1} // 0, $c->{b2} // 0);
cmp_ok abs($b1 - $b2), '<=', 0.05 * ($b1 + $b2),
    'within v1, b1 and b2 share evenly';

split_vs(50, 50);
run_split(2_000, 50, 4);

split_vs(0, 100);
$c = run_split(500, 100, 0);

$t->done_checks;
done_testing;
