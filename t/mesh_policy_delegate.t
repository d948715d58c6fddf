#!/usr/bin/perl

# Delegate VirtualServices (docs/policies.md, Delegation), on traffic: a
# root for host shop sends /productpage/ and /reviews/ to two delegates
# in other namespaces, applied with registryctl; each request reaches
# the subset its delegate's route names; changing a delegate changes the
# traffic with no reload; a delegate route outside the root's match
# matches nothing; deleting a delegate leaves its requests to the root's
# next routes (none: 404, as Istio answers); a delegate with gateways is
# refused and changes nothing.

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
for my $v (qw(v1 v2 v3)) {
    $port{$v} = $t->start_backend(name => "shop-$v");
    is $t->register(shop => "shop-$v", $port{$v},
                    labels => { version => $v })->{status},
        201, "register shop-$v";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream shop {
        mesh shop;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://shop; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index';

# registryctl apply -f FILE: exit 0, then nginx has the index
sub apply {
    my ($file, $what) = @_;
    my ($code, $out, $err) = $t->registryctl('apply', '-f', $file);
    is $code, 0, "apply $what" or diag "$out$err";
    ok $t->wait_mesh_index, '... nginx has the new index'
        or diag explain $t->mesh_status;
}

# path => "shop-vN" or "status N"
sub where {
    my ($path) = @_;
    my $r = $t->client->get($path);
    return $r->{status} == 200 ? $r->{headers}{'x-backend'} // 'none'
                               : "status $r->{status}";
}

sub routes {
    return join ' ', map { "$_=" . where($_) } @_;
}

my @paths = qw(/productpage/a /productpage/v2/a /reviews/1 /ratings/1
               /other);

apply($t->write_file('dr.yaml', <<'EOF'), 'the subsets v1, v2, v3');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop
spec:
  host: shop
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
EOF

# the root first: its delegates are not there yet, nothing is routed
apply($t->write_file('root.yaml', <<'EOF'), 'the root');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts:
  - shop.default.svc.cluster.local
  http:
  - match:
    - uri:
        prefix: /productpage
    delegate:
      name: productpage
      namespace: nsA
  - match:
    - uri:
        prefix: /reviews
    - uri:
        prefix: /ratings
    delegate:
      name: reviews
      namespace: nsB
EOF

is routes(@paths),
    '/productpage/a=status 404 /productpage/v2/a=status 404 '
    . '/reviews/1=status 404 /ratings/1=status 404 /other=status 404',
    'the root without its delegates routes nothing: 404';

my $productpage = <<'EOF';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage
  namespace: nsA
spec:
  http:
  - match:
    - uri:
        prefix: /productpage/v2/
    route:
    - destination:
        host: shop
        subset: v2
  - route:
    - destination:
        host: shop
        subset: SUBSET
EOF

(my $pp = $productpage) =~ s/SUBSET/v1/;
apply($t->write_file('productpage.yaml', $pp), 'delegate nsA/productpage');

# reviews: /reviews/ to v3; its /ratings/ route is within the root's
# match, its /elsewhere/ one is not and matches nothing (Istio leaves it
# out)
apply($t->write_file('reviews.yaml', <<'EOF'), 'delegate nsB/reviews');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: nsB
spec:
  http:
  - match:
    - uri:
        prefix: /elsewhere/
    route:
    - destination:
        host: shop
        subset: v1
  - match:
    - uri:
        prefix: /ratings/
    route:
    - destination:
        host: shop
        subset: v2
  - route:
    - destination:
        host: shop.nsB.svc.cluster.local
        subset: v3
EOF

is routes(@paths, '/elsewhere/1'),
    '/productpage/a=shop-v1 /productpage/v2/a=shop-v2 /reviews/1=shop-v3 '
    . '/ratings/1=shop-v2 /other=status 404 /elsewhere/1=status 404',
    'each path reaches the subset its delegate names; '
    . 'a route outside the root\'s match matches nothing';

my %n;
$n{ where('/productpage/a') }++ for 1 .. 20;
is_deeply \%n, { 'shop-v1' => 20 }, '... every time';

# registryctl get: the delegates are objects like any other
my ($code, $out, $err) = $t->registryctl('get', 'vs');
is $code, 0, 'get vs';
like $out, qr/^nsA\s+productpage\s+virtualservice\.nsA\.productpage$/m,
    '... lists nsA/productpage, without hosts' or diag $out;
like $out, qr/^nsB\s+reviews\s+virtualservice\.nsB\.reviews$/m,
    '... and nsB/reviews' or diag $out;
($code, $out, $err) = $t->registryctl('get', 'vs', 'productpage', '-n',
                                      'nsA');
is $code, 0, 'get vs productpage -n nsA';
like $out, qr/subset: v2/, '... prints it' or diag "$out$err";

# a delegate changed: the traffic follows, no reload
($pp = $productpage) =~ s/SUBSET/v3/;
apply($t->write_file('productpage.yaml', $pp),
      'nsA/productpage: default route to v3');
is routes('/productpage/a', '/productpage/v2/a', '/reviews/1'),
    '/productpage/a=shop-v3 /productpage/v2/a=shop-v2 /reviews/1=shop-v3',
    '/productpage/a now reaches v3, the rest as before';

# a delegate with gateways (Istio refuses them too): refused, nothing
# changes
my $index = $t->registry_index;
($code, $out, $err) = $t->registryctl('apply', '-f',
    $t->write_file('bad.yaml', <<'EOF'));
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: nsB
spec:
  gateways:
  - mesh
  http:
  - route:
    - destination:
        host: shop
        subset: v1
EOF
isnt $code, 0, 'a delegate with gateways: refused';
like $err, qr/\Aregistryctl: .*spec\.gateways.*has no gateways.*\n\z/,
    '... in one line naming the field' or diag $err;
is $t->registry_index, $index, '... the index unchanged';
is where('/reviews/1'), 'shop-v3', '... /reviews/ still reaches v3';

# a delegate deleted: its routes go with it
($code, $out, $err) = $t->registryctl('delete', '-f',
                                      $t->dir . '/reviews.yaml');
is $code, 0, 'delete -f reviews.yaml' or diag "$out$err";
like $out, qr{virtualservice nsB/reviews deleted}, '... says so';
ok $t->wait_mesh_index, '... nginx has the new index';
is routes('/reviews/1', '/ratings/1', '/productpage/a'),
    '/reviews/1=status 404 /ratings/1=status 404 /productpage/a=shop-v3',
    '/reviews/ and /ratings/ answered 404, /productpage/ still routed';

# and applied again
apply($t->dir . '/productpage.yaml', 'nsA/productpage unchanged');
($code, $out, $err) = $t->registryctl('apply', '-f', $t->dir . '/reviews.yaml');
is $code, 0, 'apply nsB/reviews again';
ok $t->wait_mesh_index, '... nginx has the new index';
is where('/reviews/1'), 'shop-v3', '/reviews/ reaches v3 again';

$t->done_checks;
done_testing;
