#!/usr/bin/perl

# Request shaping and faults (docs/policies.md "Request shaping"), on the
# traffic nginx sends: directResponse and redirect answered by nginx;
# fault.abort on its share of the requests (within 4 sigma over 2,000),
# fault.delay on its share and by its length (within 10%), without
# holding up the worker's other requests; rewrite of the path prefix and
# the authority; request headers set, added and removed on the route and
# on the destination; response headers likewise.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use IO::Socket::INET;
use Time::HiRes qw(time);

my $t = MeshTest->new(log_level => 'info', workers => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port;
for my $b (qw(a b)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
}
is $t->register(orders => 'a', $port{a}, labels => { version => 'v1' })
    ->{status}, 201, 'register a (v1)';
is $t->register(orders => 'b', $port{b}, labels => { version => 'v2' })
    ->{status}, 201, 'register b (v2)';

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
            proxy_set_header Host $mesh_authority;
        }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

my $r = $t->api(POST => '/v1/objects', <<'EOF',
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
---
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
        prefix: /direct
    directResponse:
      status: 418
      body:
        string: teapot
  - match:
    - uri:
        prefix: /redirect
    redirect:
      uri: /new
      authority: example.org
      redirectCode: 302
  - match:
    - uri:
        prefix: /abort
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 50
    route:
    - destination:
        host: orders
        subset: v1
  - match:
    - uri:
        prefix: /delay-some
    fault:
      delay:
        fixedDelay: 10ms
        percentage:
          value: 25
    route:
    - destination:
        host: orders
        subset: v1
  - match:
    - uri:
        prefix: /delay
    fault:
      delay:
        fixedDelay: 300ms
        percentage:
          value: 100
    route:
    - destination:
        host: orders
        subset: v1
  - match:
    - uri:
        prefix: /api/v1/
    rewrite:
      uri: /v2/
      authority: api.internal
    headers:
      request:
        set:
          x-a: "1"
        add:
          x-b: "2"
        remove:
        - x-drop
      response:
        set:
          x-r: "yes"
        remove:
        - x-conn-requests
    route:
    - destination:
        host: orders
        subset: v2
      headers:
        request:
          set:
            x-dest: v2
        response:
          add:
            x-dest-resp: v2
  - route:
    - destination:
        host: orders
        subset: v1
EOF
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 200, 'POST /v1/objects: the shaping routes'
    or diag explain $r->{json};
ok $t->wait_mesh_index, '... nginx has them' or diag explain $t->mesh_status;

my $c = $t->client(keepalive => 1);

###########################################################################
# answered by nginx

$r = $c->get('/direct/x');
is $r->{status}, 418, 'directResponse: 418';
is $r->{content}, 'teapot', '... the body';
like $r->{headers}{'content-type'} // '', qr{^text/plain}, '... text/plain';
ok !defined $r->{headers}{'x-backend'}, '... no backend saw it';

$r = $c->get('/redirect/old?q=1');
is $r->{status}, 302, 'redirect: 302';
is $r->{headers}{location}, 'http://example.org/new?q=1',
    '... to the authority and path, with the query';

###########################################################################
# faults

my (%abort, $other);
for (1 .. 2000) {
    $r = $c->get('/abort');
    if ($r->{status} == 503 && $r->{content} eq 'fault filter abort') {
        $abort{aborted}++;
    } elsif ($r->{status} == 200 && $r->{headers}{'x-backend'} eq 'a') {
        $abort{passed}++;
    } else {
        $other = "$r->{status} $r->{content}";
    }
}
my $sigma = sqrt(2000 * 0.5 * 0.5);
ok abs(($abort{aborted} // 0) - 1000) <= 4 * $sigma,
    "abort 50%: $abort{aborted} of 2,000 aborted (1000 +- "
    . int(4 * $sigma) . ')';
is(($abort{aborted} // 0) + ($abort{passed} // 0), 2000,
   '... the rest went to v1') or diag $other;

my ($slow, $fast, $slowest_fast) = (0, 0, 0);
for (1 .. 2000) {
    my $t0 = time;
    $r = $c->get('/delay-some');
    my $dt = time - $t0;
    $r->{status} == 200 or next;
    if ($dt >= 0.009) {
        $slow++;
    } else {
        $fast++;
        $slowest_fast = $dt if $dt > $slowest_fast;
    }
}
$sigma = sqrt(2000 * 0.25 * 0.75);
ok abs($slow - 500) <= 4 * $sigma,
    "delay 25%: $slow of 2,000 delayed by 10 ms (500 +- " . int(4 * $sigma)
    . ')';
is $slow + $fast, 2000, '... every one answered';

# the length of a delay: the mean over 10, against the same requests
# without the fault
my ($base, $delayed) = (0, 0);
for (1 .. 10) {
    my $t0 = time;
    $c->get('/plain');
    $base += time - $t0;
    $t0 = time;
    $r = $c->get('/delay');
    $delayed += time - $t0;
}
my $added = ($delayed - $base) / 10;
ok $added >= 0.3 && $added <= 0.33,
    sprintf('delay 300ms: %.1f ms added on average (within 10%%)',
            1000 * $added);

# one worker: the delay is a timer, not a blocked worker
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->named_port('HTTP'),
                              Timeout => 5) or die "connect: $!";
print $s "GET /delay HTTP/1.0\r\nHost: x\r\n\r\n";
my $t0 = time;
$r = $c->get('/plain');
my $during = time - $t0;
is $r->{status}, 200, 'a request while another is delayed';
cmp_ok $during, '<', 0.2,
    sprintf('... is answered at once (%.1f ms), the worker is not held',
            1000 * $during);
my $resp = do { local $/; <$s> } // '';
like $resp, qr{^HTTP/1\.\d 200}, '... and the delayed one ends with 200';
cmp_ok time - $t0, '>=', 0.25, '... after its delay';
close $s;

###########################################################################
# rewrite and headers

$r = $c->get('/api/v1/items?id=7', { 'X-B' => '0', 'X-Drop' => 'me',
                                     'X-A' => 'old', 'X-Keep' => 'k' });
is $r->{status}, 200, 'GET /api/v1/items';
is $r->{headers}{'x-backend'}, 'b', '... to v2';
is $r->{headers}{'x-request-uri'}, '/v2/items?id=7',
    '... the prefix /api/v1/ rewritten to /v2/, the query kept';
is $r->{headers}{'x-request-host'}, 'api.internal',
    '... Host: the rewritten authority ($mesh_authority)';
is $r->{headers}{'x-seen-x-a'}, '1', '... x-a set (the old value gone)';
is $r->{headers}{'x-seen-x-b'}, '0, 2', '... x-b added to the one it had';
ok !defined $r->{headers}{'x-seen-x-drop'}, '... x-drop removed';
is $r->{headers}{'x-seen-x-keep'}, 'k', '... others kept';
is $r->{headers}{'x-seen-x-dest'}, 'v2', "... the destination's x-dest set";
is $r->{headers}{'x-r'}, 'yes', 'response: x-r set';
ok !defined $r->{headers}{'x-conn-requests'},
    '... x-conn-requests removed';
is $r->{headers}{'x-dest-resp'}, 'v2',
    "... the destination's x-dest-resp added";

$r = $c->get('/plain');
is $r->{headers}{'x-request-host'}, '127.0.0.1',
    'no rewrite: $mesh_authority is the request\'s Host';
is $r->{headers}{'x-request-uri'}, '/plain', '... and the path as it came';
ok defined $r->{headers}{'x-conn-requests'},
    '... and the response headers untouched';

$c->close;

$t->done_checks;
done_testing;
