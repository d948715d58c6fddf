#!/usr/bin/perl

# An ejection ends early when the registry sees the instance pass again,
# as an active health check un-ejects in Envoy: an instance that answers
# 503 is ejected for 30 s; its TTL lapses (critical in the registry); it
# comes back answering 200 and heartbeats (passing): nginx ends the
# ejection at once, with a notice, and it gets traffic again long before
# the 30 s are up.

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
);
is $t->register(orders => 'ok1', $port{ok1})->{status}, 201, 'register ok1';
is $t->register(orders => 'bad', $port{bad}, ttl => '1s')->{status}, 201,
    'register bad, with a TTL of 1 s';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=3 base_ejection_time=30s;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

sub bad {
    my $st = $t->mesh_status or return {};
    my ($s) = grep { $_->{name} eq 'orders' } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq 'bad' } @{ $s ? $s->{instances} : [] };
    return $i // {};
}

sub heartbeat {
    $t->api(PUT => '/v1/services/orders/instances/bad/heartbeat');
}

# its three 503s eject it
heartbeat();
my $res = $t->load(requests => 10, clients => 1);
is bad()->{state}, 'ejected', 'bad answered 503 three times: ejected'
    or diag explain bad();

# its TTL lapses: critical in the registry
my $end = time + 5;
my $h;
while (time < $end) {
    $h = $t->api(GET => '/v1/services/orders/instances/bad')->{json}{health};
    last if ($h // '') eq 'critical';
    sleep 0.05;
}
is $h, 'critical', 'no heartbeat for 1 s: critical in the registry';
ok $t->wait_mesh_index, 'nginx has that';

# back, answering 200, and passing again: the ejection ends now
$t->stop_backend('bad');
$t->start_backend(name => 'bad', port => $port{bad}, events => 1);
my $t0 = time;
is heartbeat()->{status}, 200, 'bad heartbeats again: passing';
ok $t->wait_mesh_index, 'nginx has that';

my ($back, $state);
$end = time + 5;
while (time < $end) {
    $state = bad()->{state};
    if (($state // '') eq 'healthy') {
        $back = time - $t0;
        last;
    }
    sleep 0.02;
}
ok defined $back, sprintf 'the ejection of 30 s ended %.2f s after the '
    . 'heartbeat', $back // 5;

$res = $t->load(requests => 20, clients => 1);
is $res->{count}{bad} // 0, 10, 'bad gets its share of traffic again';
is $res->{failed}, 0, '... and no request fails';
like $t->read_file('error.log') // '',
    qr/mesh: instance "bad" \(127\.0\.0\.1:$port{bad}\) of service "orders" passes its health check again: ejection ended/,
    'a notice says the ejection ended';

$t->done_checks;
done_testing;
