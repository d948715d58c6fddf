#!/usr/bin/perl

# A bad policy never reaches nginx: registryd validates every PUT and a
# refused one changes nothing (docs/policies.md, Errors).  With traffic
# routed to subset v2, PUTs of invalid replacements (and of new policies
# that conflict) answer 400 (or 415), the index and the stored YAML stay,
# and nginx keeps routing exactly as before.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

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
my @workers = $t->nginx_workers;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

my $DR = <<'EOF';
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

my $VS = <<'EOF';
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
        prefix: /
    route:
    - destination:
        host: orders
        subset: v2
      weight: 100
EOF

is $t->apply_policy('orders-dr', $DR)->{status}, 201, 'PUT the DestinationRule';
my $r = $t->apply_policy('orders-vs', $VS);
is $r->{status}, 201, 'PUT the VirtualService: all to v2';
my $index = $r->{json}{index};
ok $t->wait_mesh_index(index => $index // 1e9), 'nginx has its index';

sub traffic {
    my ($what) = @_;
    my %seen;
    for my $ka (1, 0) {
        my $c = $t->client(keepalive => $ka);
        for (1 .. 10) {
            my $x = $c->get('/');
            $seen{ $x->{status} == 200 ? $x->{headers}{'x-backend'} // 'none'
                                       : "status $x->{status}" }++;
        }
        $c->close;
    }
    is_deeply \%seen, { b3 => 20 }, "$what: only b3 (v2) answers"
        or diag explain \%seen;
}

traffic('before');

# [what, policy name, body, expected status, field (or undef)]
(my $weights = $VS) =~ s/      weight: 100\n/      weight: 60\n/ or die;
$weights .= "    - destination:\n        host: orders\n        subset: v1\n"
          . "      weight: 50\n";
(my $unknown = $VS) =~ s/(  hosts:)/  colour: blue\n$1/ or die;
(my $regex = $VS) =~ s/prefix: \//regex: "\/(v1"/ or die;
(my $nosub = $VS) =~ s/subset: v2/subset: v9/ or die;
(my $badtype = $VS) =~ s/weight: 100/weight: "all"/ or die;
(my $syntax = $VS) =~ s/  hosts:\n  - orders/  hosts: [orders\n/ or die;
(my $v1 = $VS) =~ s/subset: v2/subset: v1/ or die;
(my $unsup = $DR) =~ s/(  subsets:)/  trafficPolicy:\n    connectionPool:\n      http:\n        maxConcurrentStreams: 10\n$1/ or die;

my @bad = (
    [ 'weights add up to 110', 'orders-vs', $weights, 400,
      'spec.http[0].route[1].weight' ],
    [ 'unknown field', 'orders-vs', $unknown, 400, 'spec.colour' ],
    [ 'a regex PCRE2 refuses', 'orders-vs', $regex, 400,
      'spec.http[0].match[0].uri.regex' ],
    [ 'a subset the rule does not define', 'orders-vs', $nosub, 400,
      'spec.http[0].route[0].destination.subset' ],
    [ 'a weight of the wrong type', 'orders-vs', $badtype, 400,
      'spec.http[0].route[0].weight' ],
    [ 'a YAML syntax error', 'orders-vs', $syntax, 400, undef ],
    [ 'a second VirtualService for the host, in another policy',
      'orders-vs2', $v1, 400, undef ],
    [ 'an unsupported DestinationRule field', 'orders-dr', $unsup, 400,
      'spec.trafficPolicy.connectionPool.http.maxConcurrentStreams' ],
    [ 'an empty body', 'orders-vs', '', 400, undef ],
);

for my $b (@bad) {
    my ($what, $name, $body, $want, $field) = @$b;
    my $x = $t->apply_policy($name, $body);
    is $x->{status}, $want, "PUT $name with $what: $want"
        or diag explain $x->{json} // $x->{content};
    ok defined $x->{json}{error}, '... with an error: '
        . ($x->{json}{error} // 'none');
    is $x->{json}{field}, $field, "... naming $field" if defined $field;
}

# a valid body with the wrong content type
$r = $t->api(PUT => '/v1/policies/orders-vs', $v1,
             { 'Content-Type' => 'application/json' });
is $r->{status}, 415, 'PUT the VirtualService as application/json: 415';

is $t->registry_index, $index, 'the index did not move';
$r = $t->api(GET => '/v1/policies/orders-vs');
is $r->{content}, $VS, 'the stored VirtualService is the good one';
is $t->api(GET => '/v1/policies/orders-vs2')->{status}, 404,
    'no policy orders-vs2 was stored';

my $st = $t->mesh_status;
is $st && $st->{index}, $index, 'nginx is on the same index';
is $st && $st->{registry}{state}, 'synced', 'and synced';

traffic('after the refused PUTs');

# a good change still goes through
$r = $t->apply_policy('orders-vs', $v1);
is $r->{status}, 200, 'PUT a valid VirtualService: all to v1';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
    'nginx has its index';
my %seen;
my $c = $t->client;
$seen{ $c->get('/')->{headers}{'x-backend'} // 'none' }++ for 1 .. 20;
$c->close;
is_deeply [ sort keys %seen ], [qw(b1 b2)], 'now b1 and b2 (v1) answer'
    or diag explain \%seen;

is_deeply [ $t->nginx_workers ], \@workers, 'the same workers: no reload';

$t->done_checks;
done_testing;
