#!/usr/bin/perl

# Panic threshold: four instances of "pan", three of them turned critical
# in the registry by a lapsed ttl while the fourth heartbeats.  All four
# backends still answer, so where the traffic goes shows the balancer's
# choice:
# - mesh_panic_threshold 50 (and the default, which is 50): 1 of 4 healthy
#   is under 50%, so the balancer uses all four (panic);
# - mesh_panic_threshold 0: no panic, only the healthy instance;
# - 2 of 4 healthy is not under 50%: no panic, only the two healthy ones.

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

my %port;
for my $b (qw(p1 p2 p3 p4)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream p50 {
        mesh pan;
        mesh_panic_threshold 50;
    }

    upstream p0 {
        mesh pan;
        mesh_panic_threshold 0;
    }

    upstream pdef {
        mesh pan;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location /p50/  { proxy_pass http://p50; }
        location /p0/   { proxy_pass http://p0; }
        location /pdef/ { proxy_pass http://pdef; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

sub beat {
    my ($id) = @_;
    my $r = $t->api(PUT => "/v1/services/pan/instances/$id/heartbeat");
    return $r->{status} == 200;
}

sub health {
    my $r = $t->api(GET => '/v1/services/pan');
    return { map { $_->{id} => $_->{health} }
             @{ $r->{json} ? $r->{json}{instances} : [] } };
}

# p1-p3: ttl 1s, never renewed; p4: ttl 10s, renewed as we go
for my $b (qw(p1 p2 p3)) {
    is $t->register(pan => $b, $port{$b}, ttl => '1s')->{status}, 201,
        "register pan/$b with ttl 1s";
}
is $t->register(pan => 'p4', $port{p4}, ttl => '10s')->{status}, 201,
    'register pan/p4 with ttl 10s';

ok $t->wait_mesh_index, 'nginx has the registry index';
my $r = $t->load(path => '/p0/', requests => 40, clients => 2);
is_deeply $r->{count}, { p1 => 10, p2 => 10, p3 => 10, p4 => 10 },
    'all passing: round robin over the four';

# let the ttl lapse for p1-p3
my $h;
my $end = time + 5;
while (time < $end) {
    beat('p4');
    $h = health();
    last if 3 == grep { ($h->{$_} // '') eq 'critical' } qw(p1 p2 p3);
    sleep 0.2;
}
is_deeply $h, { p1 => 'critical', p2 => 'critical', p3 => 'critical',
                p4 => 'passing' },
    'registry: p1-p3 critical (ttl lapsed), p4 passing';
my $st = $t->wait_mesh_index;
ok $st, 'nginx has the new index';
my ($svc) = grep { $_->{name} eq 'pan' } @{ $st->{services} || [] };
is_deeply { map { $_->{id} => $_->{state} } @{ $svc->{instances} || [] } },
    { p1 => 'unhealthy', p2 => 'unhealthy', p3 => 'unhealthy',
      p4 => 'healthy' },
    'status: p1-p3 unhealthy, p4 healthy';

beat('p4');
$r = $t->load(path => '/p50/', requests => 80, clients => 2);
is $r->{ok}, 80, 'mesh_panic_threshold 50: 80 requests succeed';
is_deeply [ sort keys %{ $r->{count} } ], [qw(p1 p2 p3 p4)],
    '... 1 of 4 healthy: panic, traffic over all four'
    or diag explain $r->{count};
ok !grep({ $_ < 10 } values %{ $r->{count} }),
    '... each gets a fair share (>= 10 of 80)' or diag explain $r->{count};

$r = $t->load(path => '/pdef/', requests => 80, clients => 2);
is_deeply [ sort keys %{ $r->{count} } ], [qw(p1 p2 p3 p4)],
    'default threshold (50): panic too' or diag explain $r->{count};

$r = $t->load(path => '/p0/', requests => 80, clients => 2);
is_deeply $r->{count}, { p4 => 80 },
    'mesh_panic_threshold 0: only the healthy p4' or diag explain $r;

# p1 back to passing (re-registered, with a ttl that will not lapse during
# the test): 2 of 4 healthy, not under 50%
is $t->register(pan => 'p1', $port{p1}, ttl => '10s')->{status}, 200,
    're-register pan/p1 with ttl 10s';
ok beat('p4'), 'heartbeat p4';
$h = health();
is $h->{p1}, 'passing', 'registry: p1 passing again';
ok $t->wait_mesh_index, 'nginx has the new index';

$r = $t->load(path => '/p50/', requests => 40, clients => 2);
is_deeply $r->{count}, { p1 => 20, p4 => 20 },
    'mesh_panic_threshold 50, 2 of 4 healthy: no panic, p1 and p4 only'
    or diag explain $r;

$t->done_checks;
done_testing;
