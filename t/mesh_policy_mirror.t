#!/usr/bin/perl

# VirtualService mirroring (docs/policies.md, "Mirroring"): Istio's
# mirroring task file on real traffic. Every request the route sends to
# v1 is copied to v2, whose backend logs what it got (method, path, the
# Host with "-shadow" as Envoy sends it, the body); mirrorPercentage
# takes its share within 4 sigma; `mirrors` copies to another service's
# upstream; a mirror that is slow or refuses connections neither holds
# nor fails the request it copies.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $v1 = $t->start_backend(name => 'v1', events => 1);
my $v2log = $t->dir . '/v2-requests.log';
my $v2 = $t->start_backend(name => 'v2', requests => $v2log);
my $auditlog = $t->dir . '/audit-requests.log';
my $audit = $t->start_backend(name => 'audit', requests => $auditlog);
my $slow = $t->start_backend(name => 'slow', delay => 1);

is $t->register(httpbin => 'v1', $v1, labels => { version => 'v1' })
   ->{status}, 201, 'register httpbin v1';
is $t->register(httpbin => 'v2', $v2, labels => { version => 'v2' })
   ->{status}, 201, 'register httpbin v2';
is $t->register(audit => 'a1', $audit)->{status}, 201, 'register audit';
is $t->register(slow => 's1', $slow)->{status}, 201, 'register slow';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream httpbin { mesh httpbin; }
    upstream audit   { mesh audit; }
    upstream slow    { mesh slow; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            proxy_pass http://httpbin;
            proxy_set_header Host $mesh_authority;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF
$t->start_nginx;


sub lines {
    my ($file) = @_;
    my $text = $t->read_file($file) // '';
    return [ split /\n/, $text ];
}

# the copies are in flight after the answers: wait (bounded) for n lines
sub wait_lines {
    my ($file, $n) = @_;
    my $end = time + 5;
    my $l;
    while (1) {
        $l = lines($file);
        return $l if @$l >= $n || time >= $end;
        sleep 0.02;
    }
}

is $t->apply_objects(<<'EOF')->{status}, 200, 'subsets v1 and v2 of httpbin';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
EOF

# istio.io, "Mirroring", step "Mirroring traffic to v2", as it is
is $t->apply_objects(<<'EOF')->{status}, 200, 'the mirroring task\'s VirtualService';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 100.0
EOF
ok $t->wait_mesh_index, 'nginx has it';

my $c = $t->client(keepalive => 1);
my %by;

for my $i (1 .. 50) {
    my $r = $c->get("/headers?n=$i");
    $by{ $r->{headers}{'x-backend'} // "status $r->{status}" }++;
}

is_deeply \%by, { v1 => 50 }, 'the 50 answers all come from v1';

my $l = wait_lines('v2-requests.log', 50);
is scalar @$l, 50, 'v2 got a copy of each' or diag explain $l;
is $l->[0], "GET /headers?n=1 127.0.0.1-shadow 0",
   '... with its method, path and query, and the Host with -shadow';

my $body = 'x' x 3000;
my $r = $c->request(POST => '/post', { 'Content-Length' => length $body },
                    $body);
is $r->{headers}{'x-backend'}, 'v1', 'a POST with a 3000-byte body: v1 '
   . 'answers';
$l = wait_lines('v2-requests.log', 51);
is $l->[50], "POST /post 127.0.0.1-shadow 3000",
   '... and v2 gets the copy, body and all';

# mirrorPercentage: 25% of 2,000
is $t->apply_objects(<<'EOF')->{status}, 200, 'mirrorPercentage 25';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 25
EOF
ok $t->wait_mesh_index, 'nginx has it';

my $before = @{ lines('v2-requests.log') };
my $n = 2000;
my $ok = 0;
for (1 .. $n) {
    $ok++ if $c->get('/p')->{status} == 200;
}
is $ok, $n, "$n requests answered";
sleep 0.3;
my $copies = @{ lines('v2-requests.log') } - $before;
my $sigma = sqrt($n * 0.25 * 0.75);
cmp_ok abs($copies - $n * 0.25), '<=', 4 * $sigma,
       "v2 got $copies copies of $n (500 +- 4 sigma)";

# mirrors[]: to another service's upstream, with a slow and a dead one
is $t->apply_objects(<<'EOF')->{status}, 200, 'mirrors: audit, slow and dead v2';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
    mirrors:
    - destination:
        host: audit
    - destination:
        host: slow
      percentage:
        value: 100
    - destination:
        host: httpbin
        subset: v2
EOF
ok $t->wait_mesh_index, 'nginx has it';
$t->stop_backend('v2');
$c->close;

my @took;
for my $i (1 .. 3) {
    # a new connection each time: a copy in flight holds the connection's
    # next request, as nginx's mirror directive does (docs)
    my $one = $t->client(keepalive => 0);
    my $t0 = time;
    $r = $one->get("/m$i");
    push @took, time - $t0;
    is $r->{status}, 200, "request $i: 200 from v1 while v2 is down and "
       . 'slow takes 1 s';
}
cmp_ok((sort { $b <=> $a } @took)[0], '<', 0.5,
       'none waited for the slow copy: ' . join(', ',
       map { sprintf '%.3f s', $_ } @took));

$l = wait_lines('audit-requests.log', 3);
is_deeply [ sort map { (split ' ')[1] } @$l ], [qw(/m1 /m2 /m3)],
   'audit, another service, got its copies (in any order: the copies '
   . 'run at once)';

# bad input
$r = $t->apply_objects(<<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts: [httpbin]
  http:
  - route:
    - destination: {host: httpbin}
    mirror: {host: audit}
    mirrors:
    - destination: {host: audit}
EOF
is $r->{status}, 400, 'mirror and mirrors together: 400';
is $r->{json}{field}, 'spec.http[0].mirrors', '... naming mirrors';

my $conf = do { local $/; open my $fh, '<', 'conf/policies/httpbin-mirror.yaml'
                or die $!; <$fh> };
is $t->apply_objects($conf)->{status}, 200, 'conf/policies/httpbin-mirror.yaml applies';

$t->done_checks;
done_testing;
