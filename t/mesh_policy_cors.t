#!/usr/bin/perl

# VirtualService corsPolicy (docs/policies.md "Request shaping"), on the
# traffic nginx sends, as Envoy's CORS filter behaves in Istio: a
# preflight from an allowed origin (exact, prefix, regex) is answered by
# nginx (the backend never sees it) with the policy's headers; an actual
# request from an allowed origin reaches the backend and its response
# carries Access-Control-Allow-Origin (the origin), -Allow-Credentials and
# -Expose-Headers, replacing what the route's header operations set; an
# origin not allowed gets none, and its preflight goes to the backend
# (or, with unmatchedPreflights: IGNORE, is answered without them); an
# exact "*" allows every origin; nginx's own answers (directResponse)
# carry the headers, a fault's abort (before the CORS filter) does not.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info', workers => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $port = $t->start_backend(name => 'a');
is $t->register(orders => 'a', $port)->{status}, 201, 'register a';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / {
            proxy_pass http://orders;
        }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

my $r = $t->api(POST => '/v1/objects', <<'EOF',
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders
spec:
  hosts:
  - orders
  http:
  - match:
    - uri:
        prefix: /api/
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example
      - prefix: "http://localhost:"
      - regex: "https://[a-z]+\\.shop\\.example"
      allowMethods:
      - GET
      - POST
      allowHeaders:
      - content-type
      - X-Token
      exposeHeaders:
      - x-backend
      - x-request-uri
      maxAge: 10m
      allowCredentials: true
    route:
    - destination:
        host: orders
  - match:
    - uri:
        prefix: /over/
    corsPolicy:
      allowOrigin:
      - https://shop.example
      exposeHeaders:
      - x-backend
    headers:
      response:
        set:
          access-control-allow-origin: "*"
          access-control-expose-headers: x-old
          access-control-allow-credentials: "true"
    route:
    - destination:
        host: orders
  - match:
    - uri:
        prefix: /ignore/
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example
      allowMethods:
      - PUT
      unmatchedPreflights: IGNORE
    route:
    - destination:
        host: orders
  - match:
    - uri:
        prefix: /any/
    corsPolicy:
      allowOrigins:
      - exact: "*"
    route:
    - destination:
        host: orders
  - match:
    - uri:
        prefix: /gone/
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example
    directResponse:
      status: 410
      body:
        string: gone
  - match:
    - uri:
        prefix: /abort/
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example
    fault:
      abort:
        httpStatus: 503
    route:
    - destination:
        host: orders
  - route:
    - destination:
        host: orders
EOF
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 200, 'POST /v1/objects: the CORS routes'
    or diag explain $r->{json};
ok $t->wait_mesh_index, '... nginx has them' or diag explain $t->mesh_status;

my $c = $t->client(keepalive => 1);

# the Access-Control-* headers of a response, as one line to compare
sub cors {
    my ($r) = @_;
    my $h = $r->{headers};
    return join ' | ', map { "$_: $h->{$_}" } sort grep { /^access-control-/ }
        keys %$h;
}

sub preflight {
    my ($path, $origin, %more) = @_;
    return $c->request(OPTIONS => $path,
                       { Origin => $origin,
                         'Access-Control-Request-Method' => 'POST',
                         %more });
}

###########################################################################
# preflights from allowed origins: answered by nginx

$r = preflight('/api/x', 'https://shop.example',
               'Access-Control-Request-Headers' => 'content-type');
is $r->{status}, 200, 'preflight from an exact origin: 200';
ok !defined $r->{headers}{'x-backend'}, '... answered by nginx, not sent';
is cors($r), 'access-control-allow-credentials: true'
    . ' | access-control-allow-headers: content-type,X-Token'
    . ' | access-control-allow-methods: GET,POST'
    . ' | access-control-allow-origin: https://shop.example'
    . ' | access-control-max-age: 600',
    '... the origin, credentials, methods, headers, max-age (no expose)';
is $r->{headers}{'content-length'}, '0', '... no body';
is $r->{content}, '', '... none sent';

$r = preflight('/api/x', 'https://eu.shop.example');
is $r->{status}, 200, 'preflight from a regex origin: 200';
ok !defined $r->{headers}{'x-backend'}, '... answered by nginx';
is $r->{headers}{'access-control-allow-origin'}, 'https://eu.shop.example',
    '... Access-Control-Allow-Origin: that origin';

$r = preflight('/api/x', 'http://localhost:3000');
ok !defined $r->{headers}{'x-backend'} && $r->{status} == 200,
    'preflight from a prefix origin: answered by nginx';
is $r->{headers}{'access-control-allow-origin'}, 'http://localhost:3000',
    '... with that origin';

###########################################################################
# actual requests from allowed origins: sent, the response marked

$r = $c->get('/api/x', { Origin => 'https://shop.example' });
is $r->{status}, 200, 'GET from an allowed origin: 200';
is $r->{headers}{'x-backend'}, 'a', '... from the backend';
is cors($r), 'access-control-allow-credentials: true'
    . ' | access-control-allow-origin: https://shop.example'
    . ' | access-control-expose-headers: x-backend,x-request-uri',
    '... the origin, credentials, exposed headers (no preflight ones)';

$r = $c->request(POST => '/api/x', { Origin => 'https://a.shop.example',
                                     'Content-Length' => 0 });
is $r->{headers}{'x-backend'}, 'a', 'POST from a regex origin: sent';
is $r->{headers}{'access-control-allow-origin'}, 'https://a.shop.example',
    '... marked with that origin';

# an OPTIONS without Access-Control-Request-Method is no preflight
$r = $c->request(OPTIONS => '/api/x', { Origin => 'https://shop.example' });
is $r->{headers}{'x-backend'}, 'a',
    'OPTIONS without Access-Control-Request-Method: sent';
is $r->{headers}{'access-control-allow-origin'}, 'https://shop.example',
    '... and marked as an actual request';

# what the route's header operations set, the CORS headers replace
$r = $c->get('/over/x', { Origin => 'https://shop.example' });
is $r->{headers}{'x-backend'}, 'a', 'GET /over/ from an allowed origin';
is cors($r), 'access-control-allow-credentials: true'
    . ' | access-control-allow-origin: https://shop.example'
    . ' | access-control-expose-headers: x-backend',
    '... the origin and exposed headers replace the route\'s, its '
    . 'credentials (the policy has none) stay';

###########################################################################
# origins not allowed: no CORS headers

$r = $c->get('/api/x', { Origin => 'https://evil.example' });
is $r->{headers}{'x-backend'}, 'a', 'GET from an origin not allowed: sent';
is cors($r), '', '... no CORS headers';

$r = $c->get('/api/x', { Origin => 'https://SHOP.example' });
is cors($r), '', 'exact is case-sensitive: no CORS headers';

$r = $c->get('/api/x', { Origin => 'https://shop.example.org' });
is cors($r), '', 'the regex matches the whole origin: none';

$r = $c->get('/api/x');
is $r->{headers}{'x-backend'}, 'a', 'GET without Origin: sent';
is cors($r), '', '... no CORS headers';

$r = preflight('/api/x', 'https://evil.example');
is $r->{headers}{'x-backend'}, 'a',
    'preflight from an origin not allowed: sent to the backend';
is cors($r), '', '... no CORS headers';

$r = $c->get('/over/x', { Origin => 'https://evil.example' });
is cors($r), 'access-control-allow-credentials: true'
    . ' | access-control-allow-origin: *'
    . ' | access-control-expose-headers: x-old',
    '/over/ from an origin not allowed: the route\'s own headers only';

###########################################################################
# unmatchedPreflights: IGNORE

$r = preflight('/ignore/x', 'https://evil.example');
is $r->{status}, 200, 'IGNORE: a preflight from an origin not allowed: 200';
ok !defined $r->{headers}{'x-backend'}, '... answered by nginx';
is cors($r), 'access-control-allow-methods: PUT',
    '... without Access-Control-Allow-Origin';

$r = preflight('/ignore/x', 'https://shop.example');
ok !defined $r->{headers}{'x-backend'}, 'IGNORE: an allowed one answered';
is cors($r), 'access-control-allow-methods: PUT'
    . ' | access-control-allow-origin: https://shop.example',
    '... with the origin';

###########################################################################
# exact "*": every origin

$r = $c->get('/any/x', { Origin => 'https://whoever.example' });
is $r->{headers}{'x-backend'}, 'a', 'exact "*": sent';
is cors($r), 'access-control-allow-origin: https://whoever.example',
    '... marked with the origin itself';

$r = preflight('/any/x', 'null');
ok !defined $r->{headers}{'x-backend'}, 'exact "*": a preflight answered';
is cors($r), 'access-control-allow-origin: null', '... any origin';

###########################################################################
# nginx's own answers

$r = $c->get('/gone/x', { Origin => 'https://shop.example' });
is $r->{status}, 410, 'directResponse from an allowed origin: 410';
is $r->{headers}{'access-control-allow-origin'}, 'https://shop.example',
    '... marked (the router answers after the CORS filter)';

$r = preflight('/gone/x', 'https://shop.example');
is $r->{status}, 200, 'a preflight to a directResponse route: 200';
is $r->{headers}{'access-control-allow-origin'}, 'https://shop.example',
    '... the preflight\'s answer';

$r = preflight('/abort/x', 'https://shop.example');
is $r->{status}, 503, 'a preflight to an aborting route: the abort';
is $r->{content}, 'fault filter abort', '... the fault\'s body';
is cors($r), '', '... no CORS headers (the fault filter runs first)';

$r = $c->get('/abort/x', { Origin => 'https://shop.example' });
is $r->{status}, 503, 'GET to an aborting route: 503';
is cors($r), '', '... no CORS headers';

$r = $c->get('/plain', { Origin => 'https://shop.example' });
is $r->{headers}{'x-backend'}, 'a', 'a route without corsPolicy: sent';
is cors($r), '', '... no CORS headers';

$c->close;

$t->done_checks;
done_testing;
