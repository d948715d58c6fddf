#!/usr/bin/perl

# Locally originated failures (connect refused, timeouts) with Istio's
# outlierDetection.splitExternalLocalOriginErrors: counted apart, against
# consecutiveLocalOriginFailures. Service "split" has the policy; service
# "joint" the same without the split, where consecutiveLocalOriginFailures
# has no effect (as in Envoy) and connect failures count as 5xx, whose
# threshold (mesh_outlier consecutive_5xx=100) is far. One instance of each
# listens nowhere; retries hide it from the clients.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port = (ok1 => $t->start_backend(name => 'ok1', events => 1),
            ok2 => $t->start_backend(name => 'ok2', events => 1),
            dead => $t->port);

for my $svc (qw(split joint)) {
    for my $b (qw(ok1 dead ok2)) {
        is $t->register($svc => $b, $port{$b})->{status}, 201,
            "register $svc/$b";
    }
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream split {
        mesh split;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=100;
    }

    upstream joint {
        mesh joint;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=100;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /split/ { proxy_pass http://split; }
        location /joint/ { proxy_pass http://joint; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

for my $svc (qw(split joint)) {
    my $split = $svc eq 'split' ? 'true' : 'false';
    my $r = $t->apply_policy("$svc-outlier", <<"EOF");
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: $svc
spec:
  host: $svc
  trafficPolicy:
    outlierDetection:
      splitExternalLocalOriginErrors: $split
      consecutiveLocalOriginFailures: 2
      baseEjectionTime: 30s
EOF
    like $r->{status}, qr/^20[01]$/, "policy of $svc";
    ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
        '... in nginx';
}

sub statuses {
    my ($path, $n) = @_;
    my $c = $t->client;
    my %st;
    $st{ $c->get($path)->{status} }++ for 1 .. $n;
    $c->close;
    return \%st;
}

sub tries {
    my ($svc, $id) = @_;
    my $st = $t->mesh_status or return -1;
    my ($s) = grep { $_->{name} eq $svc } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq $id } @{ $s ? $s->{instances} : [] };
    return $i ? $i->{requests} : -1;
}

is_deeply statuses('/split/x', 30), { 200 => 30 },
    'split: every request answered (retried past the dead instance)';
is tries(split => 'dead'), 2, '... which was tried twice, then ejected';
like $t->read_file('error.log') // '',
    qr/ejected instance "dead" \(127\.0\.0\.1:$port{dead}\) of service "split" for 30000ms after 2 consecutive errors/,
    '... after 2 consecutive local failures';

is_deeply statuses('/joint/x', 30), { 200 => 30 },
    'joint: every request answered too';
cmp_ok tries(joint => 'dead'), '>=', 9,
    '... but the dead instance keeps its share of tries';
unlike $t->read_file('error.log') // '', qr/ejected instance "dead" .* "joint"/,
    '... not ejected: without the split, local failures count as 5xx';

$t->done_checks;
done_testing;
