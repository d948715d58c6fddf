#!/usr/bin/perl

# Subsets (docs/policies.md, DestinationRule subsets and VirtualService
# route[].destination.subset): a route to a subset reaches only the
# instances whose registry labels hold all the subset's labels; an
# instance registered later with those labels joins it; a subset whose
# labels match no instance answers 502 at once.

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

my %labels = (
    b1 => { version => 'v1', zone => 'a' },
    b2 => { version => 'v1', zone => 'b' },
    b3 => { version => 'v2', zone => 'a' },
);
my %port;
for my $b (qw(b1 b2 b3 b4)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
}
for my $b (qw(b1 b2 b3)) {
    is $t->register(orders => $b, $port{$b}, labels => $labels{$b})->{status},
        201, "register $b, version $labels{$b}{version}";
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

sub answer {
    my ($r) = @_;
    return $r->{status} == 200 ? $r->{headers}{'x-backend'} // 'none'
                               : "status $r->{status}";
}

# backend => count; half on a kept-alive connection, half on fresh ones
sub spread {
    my ($n) = @_;
    my %seen;
    for my $ka (1, 0) {
        my $c = $t->client(keepalive => $ka);
        $seen{ answer($c->get('/')) }++ for 1 .. $n / 2;
        $c->close;
    }
    return \%seen;
}

sub route_to {
    my ($subset) = @_;
    apply('orders-vs', <<"EOF", "all traffic to subset $subset");
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
        subset: $subset
EOF
}

apply('orders-dr', <<'EOF', 'subsets v1, v2, v1a, v3');
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
  - name: v1a
    labels:
      version: v1
      zone: a
  - name: v3
    labels:
      version: v3
EOF

# a DestinationRule alone routes to the whole service
my $s = spread(30);
ok $s->{b1} && $s->{b2} && $s->{b3} && !grep({ !/^b[123]$/ } keys %$s),
    'subsets without a VirtualService: all three instances serve'
    or diag explain $s;

route_to('v2');
is_deeply spread(30), { b3 => 30 }, 'subset v2: only b3 (version v2) answers';

route_to('v1');
$s = spread(30);
is_deeply [ sort keys %$s ], [qw(b1 b2)],
    'subset v1: only b1 and b2 (version v1) answer' or diag explain $s;
cmp_ok abs(($s->{b1} // 0) - ($s->{b2} // 0)), '<=', 4,
    '... round robin within the subset' or diag explain $s;

route_to('v1a');
is_deeply spread(20), { b1 => 20 },
    'subset v1a (version v1, zone a): only b1, which has both labels';

# an instance registered later joins its subset, no policy change
route_to('v2');
my $r = $t->register(orders => 'b4', $port{b4},
                     labels => { version => 'v2', zone => 'b' });
is $r->{status}, 201, 'register b4, version v2';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
    '... nginx has its index';
$s = spread(30);
is_deeply [ sort keys %$s ], [qw(b3 b4)], 'subset v2 now b3 and b4'
    or diag explain $s;

# labels that match no instance: 502, fast
route_to('v3');
my ($slow, %st) = (0);
for my $ka (1, 0) {
    my $c = $t->client(keepalive => $ka);
    for (1 .. 5) {
        my $t0 = time;
        my $x = $c->get('/');
        my $dt = time - $t0;
        $slow = $dt if $dt > $slow;
        $st{ $x->{status} }++;
    }
    $c->close;
}
is_deeply \%st, { 502 => 10 }, 'subset v3 matches no instance: 502'
    or diag explain \%st;
cmp_ok $slow, '<', 0.5, sprintf('... at once (slowest %.1f ms)', 1000 * $slow);

# back to v1: traffic resumes
route_to('v1');
$s = spread(20);
is_deeply [ sort keys %$s ], [qw(b1 b2)], 'subset v1 again: b1 and b2'
    or diag explain $s;

$t->done_checks;
done_testing;
