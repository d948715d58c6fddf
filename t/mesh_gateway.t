#!/usr/bin/perl

# nginx as an Istio ingress gateway (docs/policies.md, "Gateway";
# docs/module.md, mesh_gateway): Istio's bookinfo gateway file as it is
# (a Gateway on port 80 for "*" and a VirtualService bound to it routing
# five paths to productpage, port 9080) routes the requests of a
# `mesh_gateway bookinfo-gateway port=80;` location to productpage's
# instances through its mesh upstream for port 9080 (`mesh productpage
# port=9080;`, named by $mesh_upstream), other paths 404; a server's hosts
# and the most specific VirtualService host decide, case-insensitive and
# without the port; httpsRedirect answers 301; an HTTPS server takes
# requests over TLS (nginx's certificate) and not the same requests
# without it; a VirtualService of the
# mesh does not apply at the gateway, nor one of the gateway in the mesh;
# a mesh VirtualService for "*" routes the upstreams without their own,
# and a DestinationRule for "*.shop.local" balances a service without one
# of its own; a Gateway naming no server or no VirtualService: 404.

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

for my $b (qw(pp1 pp2 web1 rev1 rev2 cart1 cart2)) {
    $port{$b} = $t->start_backend(name => $b);
}

my $auditlog = $t->dir . '/audit-requests.log';
$port{audit} = $t->start_backend(name => 'audit', requests => $auditlog);
is $t->register(audit => 'audit1', $port{audit})->{status}, 201, 'audit1';

is $t->register(productpage => 'pp1', $port{pp1})->{status}, 201, 'pp1';
is $t->register(productpage => 'pp2', $port{pp2})->{status}, 201, 'pp2';
is $t->register(web => 'web1', $port{web1})->{status}, 201, 'web1';
is $t->register(reviews => 'rev1', $port{rev1},
                labels => { version => 'v1' })->{status}, 201, 'rev1';
is $t->register(reviews => 'rev2', $port{rev2},
                labels => { version => 'v2' })->{status}, 201, 'rev2';
is $t->register('cart.shop.local' => 'cart1', $port{cart1},
                labels => { v => '1' })->{status}, 201, 'cart1';
is $t->register('cart.shop.local' => 'cart2', $port{cart2},
                labels => { v => '2' })->{status}, 201, 'cart2';

my $gw2 = $t->named_port('GW2');
my $gw3 = $t->named_port('GW3');
my $gw4 = $t->named_port('GW4');

my $pki = $t->make_certs(certs => [
    [ 'gw', '/CN=gateway.example', 'DNS:gateway.example,IP:127.0.0.1' ],
]);

my $conf = <<'EOF';
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream productpage { mesh productpage; }
    upstream productpage_9080 { mesh productpage port=9080; }
    upstream web { mesh web; }
    upstream reviews { mesh reviews; }
    upstream cart {
        mesh cart.shop.local;
        mesh_balancer round_robin;
    }
    upstream audit { mesh audit; }

    # the gateway of bookinfo's file: its server is port 80
    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            mesh_gateway bookinfo-gateway port=80;
            proxy_pass http://$mesh_upstream;
            add_header X-Service $mesh_service always;
            add_header X-Upstream $mesh_upstream always;
        }

        location = /mesh/status { mesh_status; }
    }

    # a gateway whose servers are this port (the request's)
    server {
        listen 127.0.0.1:%%PORT_GW2%%;

        location / {
            mesh_gateway default/hosts-gw;
            proxy_pass http://$mesh_upstream;
            add_header X-Upstream $mesh_upstream always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_GW3%%;

        location / {
            mesh_gateway redirect-gw;
            proxy_pass http://$mesh_upstream;
        }

        location /nogw/ {
            mesh_gateway shop/none;
            proxy_pass http://$mesh_upstream;
        }
    }

    # a gateway whose route copies the requests to another service
    server {
        listen 127.0.0.1:%%PORT_GW6%%;

        location / {
            mesh_gateway mirror-gw;
            proxy_pass http://$mesh_upstream;
            proxy_set_header Host $mesh_authority;
        }
    }

    # an HTTPS server's Gateway: TLS by nginx, with its own certificate;
    # the same Gateway without TLS on another port
    server {
        listen 127.0.0.1:%%PORT_GW4%% ssl;
        ssl_certificate %%PKI%%/gw.crt;
        ssl_certificate_key %%PKI%%/gw.key;

        location / {
            mesh_gateway tls-gw;
            proxy_pass http://$mesh_upstream;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_GW5%%;

        location / {
            mesh_gateway tls-gw port=%%PORT_GW4%%;
            proxy_pass http://$mesh_upstream;
        }
    }

    # the mesh: sidecar locations
    server {
        listen 127.0.0.1:%%PORT_MESH%%;

        location /pp/ { proxy_pass http://productpage; }
        location /web/ { proxy_pass http://web; }
        location /reviews/ { proxy_pass http://reviews; }
        location /cart/ { proxy_pass http://cart; }
    }
}
EOF
$conf =~ s/%%PKI%%/$pki/g;
$t->nginx_conf($conf);
$t->start_nginx;


# Istio's samples/bookinfo/networking/bookinfo-gateway.yaml, as it is
is $t->apply_objects(<<'EOF')->{status}, 200, "bookinfo's gateway file";
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  # If you installed Istio using Helm following the standard documentation, this would be "istio=ingress"
  selector:
    istio: ingressgateway # use istio default controller
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
EOF
ok $t->wait_mesh_index, 'nginx has them';

my $c = $t->client(keepalive => 1);
my %seen;

for my $path (qw(/productpage /static/css/a.css /login /logout
                 /api/v1/products /api/v1/products/0/reviews))
{
    for (1 .. 4) {
        my $r = $c->get($path);
        $seen{ $r->{headers}{'x-backend'} // "status $r->{status}" }++;
        is $r->{headers}{'x-request-uri'}, $path, "$path reaches productpage"
            if $_ == 1;
        is $r->{headers}{'x-service'}, 'productpage',
           '... $mesh_service is productpage' if $_ == 1;
        is $r->{headers}{'x-upstream'}, 'productpage_9080',
           '... through the upstream for port 9080 ($mesh_upstream)'
            if $_ == 1;
    }
}

is join(' ', sort keys %seen), 'pp1 pp2', '... over both of its instances '
   . '(its upstream balances them)' or diag explain \%seen;

for my $path (qw(/ /productpagex /api/v2/products /reviews/1)) {
    is $c->get($path)->{status}, 404, "$path: no route fits, 404";
}

like $t->read_file('error.log'),
     qr/gateway: no route of VirtualService "bookinfo" fits the request: 404/,
     '... said at [info]';

# hosts: the server's, then the most specific VirtualService host

is $t->apply_objects(<<"EOF")->{status}, 200, 'a Gateway for two hosts, three VirtualServices';
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: hosts-gw
spec:
  servers:
  - port: {number: $gw2, name: http, protocol: HTTP}
    hosts: ["bookinfo.com", "*.shop.example"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: any-host
spec:
  hosts: ["*"]
  gateways: [hosts-gw]
  http:
  - route:
    - destination: {host: web}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo-com
spec:
  hosts: [bookinfo.com]
  gateways: [default/hosts-gw]
  http:
  - route:
    - destination: {host: productpage}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts: ["*.shop.example"]
  gateways: [hosts-gw]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
EOF
ok $t->wait_mesh_index, 'nginx has them';

my $g2 = $t->client(port => $gw2, keepalive => 1);

sub backend_of {
    my ($client, $host) = @_;
    my $r = $client->get('/x', { Host => $host });
    return $r->{headers}{'x-backend'} // "status $r->{status}";
}

like backend_of($g2, 'bookinfo.com'), qr/^pp[12]$/,
     'Host bookinfo.com: its own VirtualService beats "*"';
like backend_of($g2, 'BookInfo.COM:8080'), qr/^pp[12]$/,
     '... in any case, with a port';
is $g2->get('/', { Host => 'bookinfo.com' })->{headers}{'x-upstream'},
   'productpage', '... a destination without a port: the first upstream';
is backend_of($g2, 'a.shop.example'), 'rev2',
   'Host a.shop.example: "*.shop.example", to subset v2';
is backend_of($g2, 'x.y.shop.example'), 'rev2', '... at any depth';
is backend_of($g2, 'shop.example'), 'status 404',
   'Host shop.example: no server of the Gateway takes it, 404';
is backend_of($g2, 'other.com'), 'status 404', 'Host other.com: 404';

# a server for "*" takes every host; "*" is then the VirtualService left

is $t->apply_objects(<<"EOF")->{status}, 200, 'the Gateway for every host';
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: hosts-gw
spec:
  servers:
  - port: {number: $gw2, name: http, protocol: HTTP}
    hosts: ["*"]
EOF
ok $t->wait_mesh_index, 'nginx has it';
is backend_of($g2, 'other.com'), 'web1', 'Host other.com: "*", to web';
like backend_of($g2, 'bookinfo.com'), qr/^pp[12]$/,
     'Host bookinfo.com: still its own';

# httpsRedirect; a Gateway that does not exist

is $t->apply_objects(<<"EOF")->{status}, 200, 'a Gateway that redirects to https';
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: redirect-gw
spec:
  servers:
  - port: {number: $gw3, name: http, protocol: HTTP}
    hosts: ["*"]
    tls:
      httpsRedirect: true
EOF
ok $t->wait_mesh_index, 'nginx has it';

my $g3 = $t->client(port => $gw3, keepalive => 1);
my $r = $g3->get('/a/b?c=d', { Host => 'shop.example:' . $gw3 });
is $r->{status}, 301, 'httpsRedirect: 301';
is $r->{headers}{location}, 'https://shop.example/a/b?c=d',
   '... to https://, the port dropped';
is $g3->get('/nogw/x')->{status}, 404, 'a Gateway not stored: 404';

# an HTTPS server takes requests over TLS only

is $t->apply_objects(<<"EOF")->{status}, 200, 'a Gateway with an HTTPS server';
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tls-gw
spec:
  servers:
  - port: {number: $gw4, name: https, protocol: HTTPS}
    hosts: ["127.0.0.1"]
    tls:
      mode: SIMPLE
      credentialName: gateway-cert
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: over-tls
spec:
  hosts: ["127.0.0.1"]
  gateways: [tls-gw]
  http:
  - route:
    - destination: {host: web}
EOF
ok $t->wait_mesh_index, 'nginx has them';

$r = $t->http(GET => "https://127.0.0.1:$gw4/x", undef, undef,
              { ca => "$pki/ca.crt" });
is $r->{status}, 200, 'over TLS: 200' or diag $r->{content};
is $r->{headers}{'x-backend'}, 'web1', '... routed to web';
is $t->http(GET => 'http://127.0.0.1:' . $t->named_port('GW5') . '/x')
       ->{status}, 404,
   'the same port and host without TLS: no server takes it, 404';

# the mesh and the gateways do not share VirtualServices

is $t->apply_objects(<<'EOF')->{status}, 200, 'a VirtualService of the mesh for productpage';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage-mesh
spec:
  hosts: [productpage]
  http:
  - directResponse:
      status: 418
      body: {string: "mesh"}
EOF
ok $t->wait_mesh_index, 'nginx has it';

my $m = $t->client(port => $t->named_port('MESH'), keepalive => 1);

is $m->get('/pp/x')->{status}, 418, 'in the mesh, productpage answers 418';
like $c->get('/productpage')->{headers}{'x-backend'} // '', qr/^pp[12]$/,
     '... at the gateway its instances answer: not the mesh\'s';
is $m->get('/web/x')->{headers}{'x-backend'}, 'web1',
   'the gateway\'s "*" VirtualServices do not route web in the mesh';
is $m->get('/reviews/x')->{status}, 200,
   '... nor reviews';

# a DestinationRule for *.shop.local: cart.shop.local has none of its own

%seen = ();
$seen{ $m->get('/cart/x', { 'X-User' => 'u1' })->{headers}{'x-backend'} }++
    for 1 .. 6;
is scalar(keys %seen), 2, 'cart.shop.local by round robin: both instances '
   . 'for one user' or diag explain \%seen;

is $t->apply_objects(<<'EOF')->{status}, 200, 'a DestinationRule for *.shop.local';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop-local
spec:
  host: "*.shop.local"
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
EOF
ok $t->wait_mesh_index, 'nginx has it';

my %users;
for my $u (1 .. 20) {
    my %one;
    $one{ $m->get('/cart/x', { 'X-User' => "u$u" })->{headers}{'x-backend'}
          // 'none' }++ for 1 .. 5;
    is scalar(keys %one), 1, "user u$u stays on one instance"
        or diag explain \%one;
    $users{$_}++ for keys %one;
}
is join(' ', sort keys %users), 'cart1 cart2',
   '... the users spread over both (consistent hash by x-user)';

# a subset of the wildcard rule: a route of cart.shop.local to it
is $t->apply_objects(<<'EOF')->{status}, 200, 'subset "one" of *.shop.local, a route of cart to it';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: shop-local
spec:
  host: "*.shop.local"
  subsets:
  - name: one
    labels: {v: "1"}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: cart
spec:
  hosts: [cart.shop.local]
  http:
  - route:
    - destination: {host: cart.shop.local, subset: one}
EOF
ok $t->wait_mesh_index, 'nginx has it';

%seen = ();
$seen{ $m->get('/cart/x', { 'X-User' => "u$_" })->{headers}{'x-backend'}
       // 'none' }++ for 1 .. 10;
is join(' ', map { "$_=$seen{$_}" } sort keys %seen), 'cart1=10',
   '... every request to cart1, the instance of subset one';

is $t->api(DELETE => '/v1/objects/virtualservice/default/cart')->{status},
   200, 'the route of cart deleted';

# mirroring at a gateway: each request answered by web, a copy to audit
my $gw6 = $t->named_port('GW6');
is $t->apply_objects(<<"EOF")->{status}, 200, 'a gateway route to web, mirrored to audit';
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mirror-gw
spec:
  servers:
  - port: {number: $gw6, name: http, protocol: HTTP}
    hosts: ["mirror.example"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: mirrored
spec:
  hosts: ["mirror.example"]
  gateways: [mirror-gw]
  http:
  - route:
    - destination: {host: web}
    mirror: {host: audit}
    mirrorPercentage: {value: 100}
EOF
ok $t->wait_mesh_index, 'nginx has it';

my $g6 = $t->client(port => $gw6, keepalive => 1);
my %answered;
$answered{ $g6->get("/m$_", { Host => 'mirror.example' })->{headers}
           {'x-backend'} // 'none' }++ for 1 .. 5;
is join(' ', map { "$_=$answered{$_}" } sort keys %answered), 'web1=5',
   '... the 5 requests answered by web';

my @copies;
for (1 .. 250) {
    @copies = -f $auditlog ? split /\n/, $t->read_file('audit-requests.log')
                           : ();
    last if @copies >= 5;
    select undef, undef, undef, 0.02;
}
is join(',', sort @copies),
   join(',', map { "GET /m$_ mirror.example-shadow 0" } 1 .. 5),
   '... and audit got a copy of each, its Host with -shadow';
$g6->close;

# a VirtualService with tcp routes alone is for the stream gateways: an
# HTTP request for its host goes on to the "*" one
is $t->apply_objects(<<'EOF')->{status}, 200, 'a tcp-only VirtualService at the bookinfo gateway';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: db-tcp
spec:
  hosts: [db.example]
  gateways: [bookinfo-gateway]
  tcp:
  - route:
    - destination: {host: web}
EOF
ok $t->wait_mesh_index, 'nginx has it';
like $c->get('/productpage', { Host => 'db.example' })->{headers}
     {'x-backend'} // '', qr/^pp[12]$/,
     '... Host db.example over http: routed by "*" (productpage), not 404';
is $t->api(DELETE => '/v1/objects/virtualservice/default/db-tcp')->{status},
   200, 'db-tcp deleted';

# a mesh VirtualService for "*": every mesh upstream without its own

is $t->apply_objects(<<'EOF')->{status}, 200, 'a VirtualService of the mesh for "*"';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: everything
spec:
  hosts: ["*"]
  http:
  - match:
    - headers:
        x-wild: {exact: "1"}
    directResponse:
      status: 203
      body: {string: "wild"}
  - route:
    - destination: {host: web}
EOF
ok $t->wait_mesh_index, 'nginx has it';

is $m->get('/reviews/x')->{headers}{'x-backend'}, 'web1',
   'reviews (no VirtualService of its own): routed by "*", to web';
is $m->get('/cart/x', { 'X-Wild' => 1 })->{status}, 203,
   '... cart.shop.local too';
is $m->get('/pp/x')->{status}, 418,
   'productpage keeps its own VirtualService';
is $c->get('/')->{status}, 404, 'the gateway keeps its own';

# the example of conf/policies applies
my $example = do {
    local $/;
    open my $fh, '<', 'conf/policies/demo-gateway.yaml' or die $!;
    <$fh>;
};
is $t->apply_objects($example)->{status}, 200, 'conf/policies/demo-gateway.yaml applies';

# registryctl knows the kind

my ($code, $out) = $t->registryctl('get', 'gateways');
is $code, 0, 'registryctl get gateways';
like $out, qr/^default\s+bookinfo-gateway\s+\*\s+gateway\.default\.bookinfo-gateway$/m,
     '... lists bookinfo-gateway' or diag $out;

$c->close;
$g2->close;
$g3->close;
$m->close;

# nginx -t refuses a bad mesh_gateway

$t->nginx_conf(<<'EOF', 'bad.conf');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    server {
        listen 127.0.0.1:%%PORT_BAD%%;
        location / { mesh_gateway a/b/c; proxy_pass http://$mesh_upstream; }
    }
}
EOF
my ($tc, $tout) = $t->nginx_test('bad.conf');
isnt $tc, 0, 'nginx -t: mesh_gateway a/b/c refused';
like $tout, qr/\[emerg\] .*invalid Gateway "a\/b\/c" in "mesh_gateway"/,
     '... naming the directive and the value';

$t->done_checks;
done_testing;
