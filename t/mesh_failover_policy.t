#!/usr/bin/perl

# Outlier detection set by a policy: a DestinationRule with
# outlierDetection {consecutive5xxErrors: 2, baseEjectionTime: 1s} on
# service "pol", whose upstream turns ejection off by directive
# (mesh_outlier consecutive_5xx=0: the policy wins).  One of its three
# instances answers every request with 503, and no retry hides it:
# - the 503 instance is ejected after 2 of its 503s, for 1 s; the clients
#   see exactly those two 503s;
# - after 1 s it returns, fails twice more and is ejected again, now for
#   2 s (base time x times ejected);
# - service "ctl", the same backends without a policy, keeps sending the
#   503 instance its share: the directive's consecutive_5xx=0 is in force.

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

my %port = (
    bad => $t->start_backend(name => 'bad', events => 1, status => 503),
    ok1 => $t->start_backend(name => 'ok1', events => 1),
    ok2 => $t->start_backend(name => 'ok2', events => 1),
);
for my $svc (qw(pol ctl)) {
    for my $b (qw(ok1 bad ok2)) {
        is $t->register($svc => $b, $port{$b})->{status}, 201,
            "register $svc/$b";
    }
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream pol {
        mesh pol;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=0;
    }

    upstream ctl {
        mesh ctl;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=0;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /pol/ { proxy_pass http://pol; }
        location /ctl/ { proxy_pass http://ctl; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

my $r = $t->apply_policy('pol-outlier', <<'EOF');
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: pol
spec:
  host: pol
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 2
      baseEjectionTime: 1s
EOF
like $r->{status}, qr/^20[01]$/, 'PUT policy pol-outlier'
    or diag explain $r->{json} // $r->{content};
ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
    'nginx has its index' or diag explain $t->mesh_status;

sub statuses {
    my ($path, $n) = @_;
    my $c = $t->client;
    my %st;
    $st{ $c->get($path)->{status} }++ for 1 .. $n;
    $c->close;
    return \%st;
}

sub inst {
    my ($svc, $id) = @_;
    my $st = $t->mesh_status or return {};
    my ($s) = grep { $_->{name} eq $svc } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq $id } @{ $s ? $s->{instances} : [] };
    return $i // {};
}

# the control: no policy, ejection off by directive
my $st = statuses('/ctl/x', 30);
is_deeply $st, { 200 => 20, 503 => 10 },
    'ctl (no policy, consecutive_5xx=0): the 503 instance keeps its share';
unlike $t->read_file('error.log') // '', qr/ejected instance "bad" .* "ctl"/,
    '... and is never ejected';

my $t0 = time;
$st = statuses('/pol/x', 15);
is_deeply $st, { 200 => 13, 503 => 2 },
    'pol (policy consecutive5xxErrors 2): two 503s, then 200 only'
    or diag explain $st;
like $t->read_file('error.log'),
    qr/\[notice\].*mesh: ejected instance "bad" \(127\.0\.0\.1:$port{bad}\) of service "pol" for 1000ms after 2 consecutive errors/,
    'notice: ejected for 1000ms (baseEjectionTime) after 2 consecutive errors';
is inst(pol => 'bad')->{requests}, 2, 'status: "bad" of pol tried twice';

my $i = inst(pol => 'bad');
is $i->{state}, 'ejected', 'status: "bad" of pol is ejected'
    or diag explain $i;

# its ejection (1 s) ends
my $wait = $t0 + 1.3 - time;
sleep $wait if $wait > 0;
$st = statuses('/pol/x', 15);
is_deeply $st, { 200 => 13, 503 => 2 },
    'after 1 s: back, two 503s, ejected again' or diag explain $st;
like $t->read_file('error.log'),
    qr/mesh: instance "bad" .* of service "pol" returns after its ejection/,
    'notice: "bad" returns after its ejection';
like $t->read_file('error.log'),
    qr/mesh: ejected instance "bad" .* of service "pol" for 2000ms after 2 consecutive errors/,
    'notice: ejected again, for 2000ms (1 s x 2)';

$t->done_checks;
done_testing;
