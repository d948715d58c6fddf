#!/usr/bin/perl

# Retries and timeout per route (docs/policies.md, http[].retries and
# http[].timeout):
# - one instance hangs (answers after 5 s), two answer: a route with
#   retries {attempts: 2, perTryTimeout: 200ms, retryOn: connect-failure,5xx}
#   answers every request 200 from a healthy instance, each well under 5 s;
# - a route with timeout 300ms and attempts 0 to the hanging instance only
#   answers 504 in about 0.3 s;
# - an instance answering 503: without a policy the client sees the 503
#   (nginx retries only on error and timeout by default); with retryOn 5xx
#   it gets 200 from another instance;
# - retryOn retriable-4xx is refused (nginx cannot retry a 409).

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port = (
    hang => $t->start_backend(name => 'hang', events => 1, delay => 5),
    ok1  => $t->start_backend(name => 'ok1', events => 1),
    ok2  => $t->start_backend(name => 'ok2', events => 1),
    bad  => $t->start_backend(name => 'bad', events => 1, status => 503),
    pok1 => $t->start_backend(name => 'pok1', events => 1),
    pok2 => $t->start_backend(name => 'pok2', events => 1),
    c409 => $t->start_backend(name => 'c409', events => 1, status => 409),
    cok  => $t->start_backend(name => 'cok', events => 1),
);

for my $b (qw(hang ok1 ok2)) {
    is $t->register(orders => $b, $port{$b},
                    labels => { speed => $b eq 'hang' ? 'slow' : 'fast' })
        ->{status}, 201, "register orders/$b";
}
for my $b (qw(bad pok1 pok2)) {
    is $t->register(pay => $b, $port{$b})->{status}, 201, "register pay/$b";
}
for my $b (qw(c409 cok)) {
    is $t->register(cart => $b, $port{$b})->{status}, 201, "register cart/$b";
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

    upstream pay {
        mesh pay;
        mesh_balancer round_robin;
        # the 503 instance must stay in: this file tests retries, not
        # outlier ejection
        mesh_outlier consecutive_5xx=0;
    }

    upstream cart {
        mesh cart;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /     { proxy_pass http://orders; }
        location /pay/ { proxy_pass http://pay; }
        location /cart/ { proxy_pass http://cart; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

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

# [status, backend, seconds] per request; a fresh connection each time
sub timed {
    my ($n, $path, $headers) = @_;
    my @out;
    for (1 .. $n) {
        my $c = $t->client(keepalive => 0, timeout => 8);
        my $t0 = time;
        my $r = $c->get($path, $headers);
        push @out, [ $r->{status}, $r->{headers}{'x-backend'} // '',
                     time - $t0 ];
        $c->close;
    }
    return @out;
}

# requests + failures of an instance in the status; undef without one
sub instance_requests {
    my ($svc, $id) = @_;
    my $st = $t->mesh_status or return undef;
    my ($s) = grep { $_->{name} eq $svc } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq $id } @{ $s ? $s->{instances} : [] };
    return $i ? ($i->{requests} // 0) + ($i->{failures} // 0) : undef;
}

apply('orders-dr', <<'EOF', 'subset slow');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  subsets:
  - name: slow
    labels:
      speed: slow
EOF

apply('orders-vs', <<'EOF', 'retries on the default route, timeout on slow');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders
spec:
  hosts:
  - orders
  http:
  - name: slow-only
    match:
    - headers:
        x-route:
          exact: slow
    route:
    - destination:
        host: orders
        subset: slow
    retries:
      attempts: 0
    timeout: 300ms
  - name: default
    route:
    - destination:
        host: orders
    retries:
      attempts: 2
      perTryTimeout: 200ms
      retryOn: connect-failure,5xx
EOF

# retries past the hanging instance

my $before = instance_requests(orders => 'hang') // 0;
my @r = timed(20, '/');
my @bad = grep { $_->[0] != 200 || $_->[1] !~ /^ok[12]$/ } @r;
is scalar(@bad), 0, '20 requests: 200 from ok1 or ok2'
    or diag explain \@bad;
my ($max) = sort { $b <=> $a } map { $_->[2] } @r;
my $retried = grep { $_->[2] >= 0.15 } @r;
diag sprintf 'retries: slowest %.0f ms, %d of 20 waited for a try to time out',
    1000 * $max, $retried;
cmp_ok $max, '<', 1.5, 'each answers in well under 5 s (< 1.5 s)';
cmp_ok $retried, '>', 0, 'some requests tried the hanging instance first';
my $after = instance_requests(orders => 'hang');
ok !defined $after || $after > $before,
    'the status counts tries on the hanging instance'
    or diag "hang requests: $before -> $after";

# timeout on a route that reaches only the hanging instance

@r = timed(3, '/', { 'X-Route' => 'slow' });
is_deeply [ map { $_->[0] } @r ], [ 504, 504, 504 ],
    'timeout 300ms, attempts 0, subset slow: 504'
    or diag explain \@r;
my @dt = map { $_->[2] } @r;
diag sprintf 'timeout: %s ms', join ', ', map { sprintf '%.0f', 1000 * $_ } @dt;
ok !grep({ $_ < 0.25 || $_ > 1 } @dt), '... after about 0.3 s (0.25-1 s)';

# 503 from one instance

my %st;
$st{ $_->[0] }++ for timed(9, '/pay/x');
ok $st{503}, 'no policy on pay: the client sees the 503s'
    or diag explain \%st;

apply('pay-vs', <<'EOF', 'pay: retries on 5xx');
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: pay
spec:
  hosts:
  - pay
  http:
  - route:
    - destination:
        host: pay
    retries:
      attempts: 2
      perTryTimeout: 1s
      retryOn: 5xx
EOF

$before = instance_requests(pay => 'bad') // 0;
@r = timed(20, '/pay/x');
@bad = grep { $_->[0] != 200 || $_->[1] !~ /^pok[12]$/ } @r;
is scalar(@bad), 0, 'retryOn 5xx: 20 requests, 200 from pok1 or pok2'
    or diag explain \@bad;
$after = instance_requests(pay => 'bad');
ok !defined $after || $after > $before,
    '... while the 503 instance was tried' or diag "bad: $before -> $after";

# gateway-error covers 503 too; reset does not
(my $gw = <<'EOF') =~ s/RETRYON/gateway-error/;
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: pay
spec:
  hosts:
  - pay
  http:
  - route:
    - destination:
        host: pay
    retries:
      attempts: 2
      retryOn: RETRYON
EOF
apply('pay-vs', $gw, 'pay: retryOn gateway-error');
%st = ();
$st{ $_->[0] }++ for timed(9, '/pay/x');
is_deeply \%st, { 200 => 9 }, 'retryOn gateway-error: 200 every time'
    or diag explain \%st;

$gw =~ s/gateway-error/reset/;
apply('pay-vs', $gw, 'pay: retryOn reset');
%st = ();
$st{ $_->[0] }++ for timed(9, '/pay/x');
ok $st{503}, 'retryOn reset: a 503 is not retried' or diag explain \%st;

# retriable-4xx (Envoy: retry a 409) is refused: nginx has no 409 retry
# condition, and a policy never says what nginx will not do

%st = ();
$st{ $_->[0] }++ for timed(6, '/cart/x');
ok $st{409}, 'no policy on cart: the client sees the 409s'
    or diag explain \%st;

$gw =~ s/\bpay\b/cart/g;
$gw =~ s/reset/retriable-4xx/;
my $r = $t->apply_policy('cart-vs', $gw);
is $r->{status}, 400, 'retryOn retriable-4xx is refused';
like $r->{json}{error} // '', qr/409/, '... saying nginx cannot retry a 409';
%st = ();
$st{ $_->[0] }++ for timed(6, '/cart/x');
ok $st{409}, '... and nothing changed: the 409s still reach the client'
    or diag explain \%st;

$t->done_checks;
done_testing;
