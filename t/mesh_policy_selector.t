#!/usr/bin/perl

# DestinationRule workloadSelector (docs/policies.md): the rule applies to
# the nginx whose mesh_labels hold every matchLabels pair, and to no
# other; a reload that changes mesh_labels changes whether it applies.
# Seen on traffic: the rule hashes on a header (one user, one instance);
# where it does not apply, the upstream's round robin spreads that user.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

for my $b (qw(a b)) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port)->{status}, 201, "register $b";
}

sub conf {
    my ($labels) = @_;
    $t->nginx_conf(<<"EOF");
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
$labels
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
}

# which instances one user reaches over 20 requests
sub spread {
    my %seen;
    my $c = $t->client(keepalive => 1);
    $seen{ $c->get('/', { 'X-User' => 'ann' })->{headers}{'x-backend'}
           // 'none' }++ for 1 .. 20;
    $c->close;
    return join ' ', sort keys %seen;
}

conf('    mesh_labels app=web tier=front;');
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx (mesh_labels app=web tier=front) has the index';

my $r = $t->api(POST => '/v1/objects', <<'EOF',
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  workloadSelector:
    matchLabels:
      app: web
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
EOF
                { 'Content-Type' => 'application/yaml' });
is $r->{status}, 200, 'a DestinationRule with workloadSelector app=web'
    or diag explain $r->{json};
ok $t->wait_mesh_index, '... nginx has it';
like spread(), qr/^[ab]$/, 'mesh_labels hold app=web: one user, one instance';

conf('    mesh_labels app=api;');
ok $t->reload_nginx(wait_old => 1), 'reload with mesh_labels app=api';
ok $t->wait_mesh_index, '... synced';
is spread(), 'a b', 'the rule is not for this nginx: round robin';

conf('');
ok $t->reload_nginx(wait_old => 1), 'reload without mesh_labels';
ok $t->wait_mesh_index, '... synced';
is spread(), 'a b', 'no mesh_labels: not for this nginx either';

conf('    mesh_labels app=web;');
ok $t->reload_nginx(wait_old => 1), 'reload with mesh_labels app=web';
ok $t->wait_mesh_index, '... synced';
like spread(), qr/^[ab]$/, 'app=web again: hashed again';

# a selector is a mapping of labels, not empty
$r = $t->api(POST => '/v1/objects', <<'EOF',
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: pay
spec:
  host: pay
  workloadSelector:
    matchLabels: {}
EOF
             { 'Content-Type' => 'application/yaml' });
is $r->{status}, 400, 'workloadSelector with no label: 400';
is $r->{json}{field}, 'spec.workloadSelector.matchLabels', '... naming it';

$t->done_checks;
done_testing;
