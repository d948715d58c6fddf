#!/usr/bin/perl

# portLevelSettings (docs/policies.md; docs/module.md, mesh ... port=N),
# on traffic: three upstreams of one service, standing for port 80, for
# port 9080 and for no port, each balance as the rule's entry for their
# port says (or as its trafficPolicy, without port=); an entry replaces
# the trafficPolicy, inheriting nothing from it; a subset's entry for a
# port applies to the requests routed to the subset through that port's
# upstream; a policy change is followed with no reload; a bad port= is
# refused by nginx -t.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %ver = (r1 => 'v1', r2 => 'v1', r3 => 'v2');
for my $b (sort keys %ver) {
    my $port = $t->start_backend(name => $b);
    is $t->register(ratings => $b, $port,
                    labels => { version => $ver{$b} })->{status},
        201, "register $b";
}

my $conf = <<'EOF';
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream ratings_80 {
        mesh ratings port=80;
    }

    upstream ratings_9080 {
        mesh ratings port=9080;
    }

    upstream ratings {
        mesh ratings;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /p80/   { proxy_pass http://ratings_80; }
        location /p9080/ { proxy_pass http://ratings_9080; }
        location /       { proxy_pass http://ratings; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

# a port outside 1..65535, or another parameter: refused
for my $bad ('port=0', 'port=65536', 'port=x', 'weight=80') {
    (my $c = $conf) =~ s/mesh ratings port=80;/mesh ratings $bad;/;
    $t->nginx_conf($c);
    my ($code, $err) = $t->nginx_test;
    isnt $code, 0, "nginx -t refuses \"mesh ratings $bad\"";
    like $err, qr/\[emerg\].*"\Q$bad\E"/, '... naming it' or diag $err;
}

$t->nginx_conf($conf);
$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index';

sub apply {
    my ($name, $yaml, $what) = @_;
    my $r = $t->apply_policy($name, $yaml);
    like $r->{status}, qr/^20[01]$/, "PUT policy $name: $what"
        or diag explain $r->{json} // $r->{content};
    ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
        '... nginx has its index' or diag explain $t->mesh_status;
}

# the backends that answer n requests of one user on PATH, as "r1 r2"
sub spread {
    my ($path, $n) = @_;
    my %seen;
    my $c = $t->client(keepalive => 1);
    for (1 .. $n) {
        my $r = $c->get($path, { 'x-user' => 'alice' });
        $seen{ $r->{status} == 200 ? $r->{headers}{'x-backend'}
                                   : "status $r->{status}" }++;
    }
    $c->close;
    return join ' ', sort keys %seen;
}

# the backend count for each upstream: 1 when the user's requests all go
# to one instance (consistent hash), more when they are spread
sub counts {
    return join ' ', map { scalar(split / /, spread($_, 12)) }
                     '/p80/', '/p9080/', '/';
}

apply('ratings-dr', <<'EOF', 'hash on x-user; port 80 round robin');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        simple: ROUND_ROBIN
    - port:
        number: 9080
      connectionPool:
        http:
          http2MaxRequests: 100
EOF

is counts(), '3 3 1',
    'port 80: round robin over 3; port 9080: an entry without '
    . 'loadBalancer balances as mesh_balancer (nothing inherited); '
    . 'no port: the rule\'s hash, one instance';
is spread('/', 12), spread('/', 12), '... the hash keeps alice on one';

# a subset's own entry for port 9080: hash, within the subset
apply('ratings-dr', <<'EOF', 'subset v1 with an entry for 9080');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
  subsets:
  - name: v1
    labels:
      version: v1
    trafficPolicy:
      portLevelSettings:
      - port:
          number: 9080
        loadBalancer:
          consistentHash:
            httpHeaderName: x-user
EOF

is counts(), '1 3 3',
    'the whole service: port 80 hashes, 9080 and no port round robin';

apply('ratings-vs', <<'EOF', 'every request to subset v1');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: v1
EOF

like spread('/p9080/', 12), qr/^r[12]$/,
    'subset v1 through port 9080: its own entry, hash: one of r1, r2';
is spread('/p80/', 12), spread('/p80/', 12),
    'subset v1 through port 80: the rule\'s entry for 80, hash';
like spread('/p80/', 12), qr/^r[12]$/, '... within the subset';
is spread('/', 12), 'r1 r2', 'subset v1, no port: round robin over r1, r2';

$t->done_checks;
done_testing;
