#!/usr/bin/perl

# A VirtualService route whose destination is another service than the
# one its hosts name (docs/policies.md, "Destinations of other services"):
# the requests of the upstream of `reviews` that the route sends to
# `dev.reviews.com` reach that service's instances, picked by the view of
# the mesh upstream that routes it (its subsets, its balancer), counted
# under that service; a registration of the other service reaches them
# without reload; a destination no mesh upstream of this nginx routes
# fails with 502 and says why in the error log.

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

for my $b (qw(r1 r2)) {
    $port{$b} = $t->start_backend(name => $b);
    is $t->register(reviews => $b, $port{$b})->{status}, 201, "register $b";
}

for my $b (qw(d1 d2 d3)) {
    $port{$b} = $t->start_backend(name => $b);
}

is $t->register('dev.reviews.com' => 'd1', $port{d1},
                labels => { version => 'v1' })->{status}, 201, 'register d1';
is $t->register('dev.reviews.com' => 'd2', $port{d2},
                labels => { version => 'v2' })->{status}, 201, 'register d2';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream reviews {
        mesh reviews;
    }

    upstream dev {
        mesh dev.reviews.com;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            proxy_pass http://reviews;
            add_header X-Service $mesh_service always;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF
$t->start_nginx;


is $t->apply_objects(<<'EOF')->{status}, 200, 'subsets of dev.reviews.com';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: dev-reviews
spec:
  host: dev.reviews.com
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
EOF

# Istio's own example (the VirtualService reference, "two domains"),
# with a header route to a subset of the other service in front
is $t->apply_objects(<<'EOF')->{status}, 200, 'a VirtualService for reviews routing to another host';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-route-two-domains
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        x-dev: {exact: v2}
    route:
    - destination:
        host: dev.reviews.com
        subset: v2
  - route:
    - destination:
        host: dev.reviews.com
      weight: 25
    - destination:
        host: reviews
      weight: 75
EOF
ok $t->wait_mesh_index, 'nginx has both';

my (%seen, %service);
my $n = 2000;
my $c = $t->client(keepalive => 1);

for (1 .. $n) {
    my $r = $c->get('/');
    $seen{ $r->{headers}{'x-backend'} // "status $r->{status}" }++;
    $service{ $r->{headers}{'x-service'} // 'none' }++;
}

my $dev = ($seen{d1} // 0) + ($seen{d2} // 0);
my $rev = ($seen{r1} // 0) + ($seen{r2} // 0);
my $sigma = sqrt($n * 0.25 * 0.75);

is $dev + $rev, $n, "all $n requests answered by an instance"
    or diag explain \%seen;
cmp_ok abs($dev - $n * 0.25), '<=', 4 * $sigma,
       "weight 25 to dev.reviews.com: $dev of $n (500 +- 4 sigma)";
ok $seen{d1} && $seen{d2}, '... over both of its instances (its upstream\'s '
   . 'round robin)';
is $service{'dev.reviews.com'}, $dev, '$mesh_service names the destination';
is $service{reviews}, $rev, '... and reviews for the others';

my ($st) = grep { $_->{name} eq 'dev.reviews.com' }
               @{ $t->mesh_status->{services} || [] };
is $st->{requests}, $dev, 'the status counts them under dev.reviews.com'
    or diag explain $st;

%seen = ();
$seen{ $c->get('/', { 'X-Dev' => 'v2' })->{headers}{'x-backend'} // 'none' }++
    for 1 .. 20;
is join(' ', sort keys %seen), 'd2', 'x-dev: v2 reaches subset v2 of the '
   . 'other service only';

is $t->register('dev.reviews.com' => 'd3', $port{d3},
                labels => { version => 'v2' })->{status}, 201,
   'register d3 (v2) in dev.reviews.com';
ok $t->wait_mesh_index, '... nginx has it';

%seen = ();
$seen{ $c->get('/', { 'X-Dev' => 'v2' })->{headers}{'x-backend'} // 'none' }++
    for 1 .. 20;
is join(' ', sort keys %seen), 'd2 d3', '... and the route reaches it, '
   . 'no reload';

# a destination no mesh upstream of this nginx routes
is $t->apply_objects(<<'EOF')->{status}, 200, 'a route to carts, which no upstream routes';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-route-two-domains
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: carts
EOF
ok $t->wait_mesh_index, 'nginx has it';
is $c->get('/')->{status}, 502, 'a request routed to carts: 502';
$c->close;

like $t->read_file('error.log'),
     qr/VirtualService "reviews-route-two-domains" routes requests of upstream "reviews" to service "carts", which no mesh upstream of this nginx routes/,
     '... and the error log says why';

$t->done_checks;
done_testing;
