#!/usr/bin/perl

# A DestinationRule's trafficPolicy.loadBalancer overrides the upstream's
# mesh_balancer (docs/policies.md, TrafficPolicy): with "mesh_balancer
# round_robin;", a rule hashing on the x-user header keeps every x-user
# value on one instance, while requests without the header spread (an
# empty key falls back to round robin); replacing the rule with simple:
# ROUND_ROBIN spreads evenly again; deleting the policy gives the upstream
# back to mesh_balancer.  Two workers, real traffic, no reload.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

for my $b (qw(b1 b2 b3)) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port)->{status}, 201, "register $b";
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

# backend => count over $n requests; keepalive => 0 opens a connection per
# request, so both workers take a share
sub spread {
    my ($n, $headers, %copt) = @_;
    my $c = $t->client(%copt);
    my %seen;
    $seen{ answer($c->get('/', $headers)) }++ for 1 .. $n;
    $c->close;
    return \%seen;
}

sub even {
    my ($seen, $n, $what) = @_;
    my $each = $n / 3;
    my @bad = grep { abs(($seen->{$_} // 0) - $each) > 2 } qw(b1 b2 b3);
    push @bad, grep { !/^b[123]$/ } keys %$seen;
    ok !@bad, $what or diag explain $seen;
}

# x-user value => { backend => count }, $per requests per key
sub by_key {
    my ($keys, $per, %copt) = @_;
    my %map;
    my $c = $t->client(%copt);
    for my $k (@$keys) {
        $map{$k}{ answer($c->get('/', { 'X-User' => $k })) }++ for 1 .. $per;
    }
    $c->close;
    return \%map;
}

# every key on one instance, the keys over all three; key => instance
sub sticky {
    my ($map, $what) = @_;
    my @split = grep { keys %{ $map->{$_} } != 1
                       || (keys %{ $map->{$_} })[0] !~ /^b[123]$/ }
                sort keys %$map;
    is scalar(@split), 0, "$what: every key lands on one instance"
        or diag explain { map { $_ => $map->{$_} } @split[0 .. 4] };
    my %per;
    $per{ (keys %{ $map->{$_} })[0] }++ for keys %$map;
    note "$what: keys per instance: "
        . join ', ', map { "$_ $per{$_}" } sort keys %per;
    is scalar(grep { /^b[123]$/ } keys %per), 3,
        "$what: the keys use all three instances" or diag explain \%per;
    return { map { $_ => (keys %{ $map->{$_} })[0] } keys %$map };
}

# without a policy: mesh_balancer round_robin, whatever the header

even(spread(30, { 'X-User' => 'alice' }), 30,
    'no policy: round robin, 10 each, x-user ignored');

# consistentHash on x-user (given in mixed case: stored lowercase)

my $CHASH = <<'EOF';
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: X-User
EOF

apply(lb => $CHASH, 'consistentHash httpHeaderName X-User');

my @keys = map { "user-$_" } 1 .. 100;
my $m1 = sticky(by_key(\@keys, 5), '100 keys x 5, keep-alive');

# the same keys on fresh connections (either worker): the same instances
my $m2 = sticky(by_key(\@keys, 1, keepalive => 0),
                '100 keys, a connection per request');
my @moved = grep { $m1->{$_} ne $m2->{$_} } @keys;
is scalar(@moved), 0, 'both workers map every key to the same instance'
    or diag explain { map { $_ => [ $m1->{$_}, $m2->{$_} ] } @moved[0 .. 4] };

# no header: empty key, round robin
my $nohdr = spread(30, undef);
note 'no x-user: ' . join ', ', map { "$_ $nohdr->{$_}" } sort keys %$nohdr;
even($nohdr, 30, 'consistentHash without the header: round robin spreads');

# a constant key stays put on fresh connections
is_deeply spread(20, { 'X-User' => 'user-7' }, keepalive => 0),
    { $m1->{'user-7'} => 20 }, "user-7 always on $m1->{'user-7'}";

# replace the rule: simple ROUND_ROBIN, weights 1:1:1

(my $RR = $CHASH)
    =~ s/consistentHash:\n\s+httpHeaderName: X-User/simple: ROUND_ROBIN/
    or die 'bad substitution';
apply(lb => $RR, 'simple ROUND_ROBIN');
even(spread(30, { 'X-User' => 'user-7' }), 30,
    'ROUND_ROBIN: a constant x-user spreads 10/10/10');
even(spread(60, undef), 60, 'ROUND_ROBIN: 20/20/20 without the header');

# hash again, then delete the policy: mesh_balancer round_robin is back

apply(lb => $CHASH, 'consistentHash again');
is_deeply spread(15, { 'X-User' => 'user-7' }),
    { $m1->{'user-7'} => 15 }, 'consistentHash again: user-7 sticks';

my $r = $t->delete_policy('lb');
is $r->{status}, 200, 'DELETE policy lb';
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
    '... nginx has its index';
even(spread(30, { 'X-User' => 'user-7' }), 30,
    'policy deleted: mesh_balancer round_robin again, user-7 spreads');

is_deeply [ $t->nginx_workers ], \@workers, 'the same workers: no reload';

$t->done_checks;
done_testing;
