#!/usr/bin/perl

# Objects as Kubernetes keeps them (docs/policies.md "Objects"): Istio's
# request-routing task replayed file by file with registryctl, each file
# checked on the traffic nginx sends. An object is known by kind,
# namespace and metadata.name: applying a file replaces the objects of
# the same identity, leaves unchanged what is unchanged, takes a file all
# or none; delete -f removes what a file names; get lists and prints
# them; they survive a restart.

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
    $port{$v} = $t->start_backend(name => "reviews-$v", events => 1);
    is $t->register(reviews => "reviews-$v", $port{$v},
                    labels => { version => $v })->{status}, 201,
        "register reviews-$v";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream reviews {
        mesh reviews;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://reviews; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

# which versions answer N requests (as user, or anonymous)
sub versions {
    my ($n, $user) = @_;
    my %seen;
    my $c = $t->client(keepalive => 1);
    for (1 .. $n) {
        my $r = $c->get('/', $user ? { 'end-user' => $user } : undef);
        my $b = $r->{status} == 200 ? $r->{headers}{'x-backend'}
                                    : "status $r->{status}";
        $b =~ s/^reviews-//;
        $seen{$b}++;
    }
    $c->close;
    return join ' ', map { "$_=$seen{$_}" } sort keys %seen;
}

sub ctl {
    my ($code, $out, $err) = $t->registryctl(@_);
    return ($code, $out, $err);
}

sub settle {
    ok $t->wait_mesh_index, '... nginx has the new index'
        or diag explain $t->mesh_status;
}

is versions(30), 'v1=10 v2=10 v3=10', 'no policy: round robin over v1-v3';

###########################################################################
# destination-rule-all + virtual-service-all-v1, as the task applies them

my $dr_all = $t->write_file('destination-rule-all.yaml', <<'EOF');
# the subsets of reviews
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
EOF

my $vs_all_v1 = <<'EOF';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
EOF
my $all_v1 = $t->write_file('virtual-service-all-v1.yaml', $vs_all_v1);

my ($code, $out, $err) = ctl('apply', '-f', $dr_all);
is $code, 0, 'apply -f destination-rule-all.yaml' or diag $err;
like $out, qr{^destinationrule default/reviews created \(index \d+\)$}m,
    '... destinationrule default/reviews created';

($code, $out, $err) = ctl('apply', '-f', $all_v1);
is $code, 0, 'apply -f virtual-service-all-v1.yaml' or diag $err;
like $out, qr{^virtualservice default/reviews created}m,
    '... virtualservice default/reviews created';
settle();
is versions(20), 'v1=20', 'every request to v1';

###########################################################################
# virtual-service-reviews-test-v2: the object "reviews" replaced

my $test_v2 = $t->write_file('virtual-service-reviews-test-v2.yaml', <<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
EOF

($code, $out, $err) = ctl('apply', '-f', $test_v2);
is $code, 0, 'apply -f virtual-service-reviews-test-v2.yaml: replaces '
    . 'the object, not refused as a second VirtualService' or diag $err;
like $out, qr{^virtualservice default/reviews configured}m,
    '... virtualservice default/reviews configured';
settle();
is versions(20, 'jason'), 'v2=20', 'end-user jason: v2';
is versions(20), 'v1=20', 'anyone else: v1';

my $index = $t->registry_index;
($code, $out, $err) = ctl('apply', '-f', $test_v2);
like $out, qr{^virtualservice default/reviews unchanged$}m,
    'applied again: unchanged';
is $t->registry_index, $index, '... and the index did not move';

###########################################################################
# a file is taken whole or not at all

my $bad = $t->write_file('two.yaml', <<'EOF');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      simple: SOMETIMES
EOF

($code, $out, $err) = ctl('apply', '-f', $bad);
ok $code > 0 && $code < 128, 'a file with a bad second document is refused';
like $err, qr/\Aregistryctl: .*spec\.trafficPolicy\.loadBalancer\.simple.*\n\z/,
    '... in one line naming the field';
my $r = $t->api(POST => '/v1/objects', do { local $/; open my $f, '<', $bad;
                                              <$f> },
                { 'Content-Type' => 'application/yaml' });
is $r->{status}, 400, '... 400 from the API';
is $r->{json}{document}, 1, '... document 1';
is $r->{json}{line}, 22, '... line 22 of the file, not of the document';
is $t->registry_index, $index, '... nothing changed: the index is the same';
is versions(10, 'jason'), 'v2=10', '... and the first document was not taken';

$r = $t->api(POST => '/v1/objects', $vs_all_v1 . "---\n" . $vs_all_v1,
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 400, 'the same object twice in a file: 400';
like $r->{json}{error}, qr{duplicate VirtualService default/reviews},
    '... named';

# another namespace is another object, but the host keeps one
# VirtualService
(my $other_ns = $vs_all_v1) =~ s/  name: reviews\n/  name: reviews\n  namespace: test\n/;
$r = $t->api(POST => '/v1/objects', $other_ns,
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 400, 'VirtualService test/reviews for the same host: 400';
like $r->{json}{error}, qr/host "reviews" already has a VirtualService/,
    '... the host has one';

###########################################################################
# get

($code, $out, $err) = ctl('get', 'virtualservices');
is $code, 0, 'get virtualservices';
like $out, qr/^NAMESPACE\s+NAME\s+HOSTS\s+POLICY\n/, '... a table';
like $out, qr/^default\s+reviews\s+reviews\s+virtualservice\.default\.reviews$/m,
    '... with reviews';
unlike $out, qr/destinationrule/, '... and no DestinationRule';

($code, $out, $err) = ctl('get', 'vs', 'reviews', '-o', 'yaml');
is $out, $t->read_file($test_v2), 'get vs reviews -o yaml: the YAML as applied';

($code, $out, $err) = ctl('get', 'dr', 'reviews', '-o', 'json');
my $j = eval { JSON::PP->new->decode($out) } || {};
is_deeply [ map { $_->{name} } @{ $j->{normalized}{subsets} || [] } ],
    [qw(v1 v2 v3)], 'get dr reviews -o json: the normalized subsets';

($code, $out, $err) = ctl('get', 'vs', 'nope');
is $code, 1, 'get of an unknown object exits 1';
like $err, qr/\Aregistryctl: 404 .*unknown object/, '... saying so';

# a policy of several documents, applied under a name, is listed by its
# documents too
$r = $t->apply_policy('ratings-bundle', <<'EOF');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: details
  namespace: shop
spec:
  host: details
EOF
is $r->{status}, 201, 'PUT /v1/policies/ratings-bundle (two documents)';
$r = $t->api(GET => '/v1/objects?kind=DestinationRule');
is_deeply [ map { "$_->{namespace}/$_->{name} $_->{policy}" }
            @{ $r->{json}{objects} } ],
    [ 'default/reviews destinationrule.default.reviews',
      'default/ratings ratings-bundle', 'shop/details ratings-bundle' ],
    'GET /v1/objects?kind=DestinationRule: every rule, with its policy';
$r = $t->api(GET => '/v1/objects/destinationrule/shop/details');
like $r->{content}, qr/\A---\napiVersion.*name: details\n  namespace: shop\n/s,
    '... one document of it by identity';

###########################################################################
# restart: still there, still routed

$t->restart_registryd;
($code, $out, $err) = ctl('get', 'vs');
like $out, qr/^default\s+reviews\s/m, 'after a restart the object is there';
settle();
is versions(10, 'jason'), 'v2=10', '... and routes';

###########################################################################
# delete -f

($code, $out, $err) = ctl('delete', '-f', $test_v2);
is $code, 0, 'delete -f virtual-service-reviews-test-v2.yaml' or diag $err;
like $out, qr{^virtualservice default/reviews deleted \(index \d+\)$}m,
    '... deleted';
settle();
is versions(30, 'jason'), 'v1=10 v2=10 v3=10',
    'no VirtualService: round robin again';

($code, $out, $err) = ctl('delete', '-f', $test_v2);
is $code, 0, 'delete -f again exits 0';
like $out, qr{^virtualservice default/reviews not found$}m, '... not found';

($code, $out, $err) = ctl('delete', 'dr', 'reviews');
is $code, 0, 'delete dr reviews';
($code, $out, $err) = ctl('delete', 'dr', 'reviews');
is $code, 1, '... again: exits 1';

($code, $out, $err) = ctl('delete', 'pods', 'x');
is $code, 2, 'delete of another kind: usage error';
like $err, qr/not a kind/, '... saying so';

###########################################################################
# hosts as Kubernetes names them: NAME.NAMESPACE.svc.cluster.local is
# the service NAME (domain_suffixes, default *.svc.cluster.local)

my $fqdn = $t->write_file('reviews-fqdn.yaml', <<'EOF');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
spec:
  host: reviews.prod.svc.cluster.local
  subsets:
  - name: v3
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  http:
  - route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v3
EOF
($code, $out, $err) = ctl('apply', '-f', $fqdn);
is $code, 0, 'apply -f with FQDN hosts' or diag $err;
like $out, qr{^virtualservice prod/reviews created}m, '... prod/reviews';
settle();
is versions(20), 'v3=20', '... routes the service reviews to v3';
($code, $out, $err) = ctl('get', 'vs', '-n', 'prod');
like $out, qr/^prod\s+reviews\s+reviews\s/m, '... its host is the service';

$r = $t->api(POST => '/v1/objects', <<'EOF',
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: any
spec:
  host: "a*.example.com"
EOF
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 400, 'a host with "*" inside: 400';
like $r->{json}{error}, qr/is not a valid host: .*"\*\." and a name, or "\*"/,
     '... saying why';
is $r->{json}{field}, 'spec.host', '... naming the field';

$t->done_checks;
done_testing;
