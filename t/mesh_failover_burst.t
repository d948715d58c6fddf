#!/usr/bin/perl

# kill -9 of an instance while many requests are in flight on it: three
# instances that answer after 1 s, 24 requests at once (8 on each), two
# workers, "proxy_next_upstream error timeout http_502", keepalive to
# the instances.  At 0.5 s one instance is killed and its 8 requests fail
# together.
#
# Retries are bounded by a budget of 20% of the active requests, at least
# 3 at once.  A retry after a refused connection is exempt (the request
# never reached an instance), but these 8 requests were connected when
# their instance died: the instance may have done their work, so their
# retries count.  8 of 24 is more than 20%, and the budget refuses some:
# by design those clients get a 502 ("no live upstreams") and nginx logs
# "retry budget ... exhausted" (docs/module.md, Retries).  Asserted: the
# budget lets at least 3 through, every 502 is a refused retry (one
# warning each), every other request succeeds, the dead instance is
# ejected.  t/mesh_failover.t covers the ordinary case: a kill under a
# steady load, with zero client errors.

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
for my $b (qw(s1 s2 s3)) {
    $port{$b} = $t->start_backend(name => $b, events => 1, delay => 1);
    is $t->register(burst => $b, $port{$b})->{status}, 201,
        "register burst/$b";
}

$t->nginx_conf(<<'EOF2');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream burst {
        mesh burst;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=3 base_ejection_time=10s;
        keepalive 32;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            proxy_pass http://burst;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF2

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

my $h = $t->load_start(requests => 24, clients => 24, timeout => 10);
sleep 0.5;
$t->kill_backend('s2');
my $r = $t->load_wait($h);

my $log = $t->read_file('error.log') // '';
my $refused = () = $log =~ /mesh: retry budget of service "burst" exhausted/g;
diag sprintf '24 requests, s2 killed with its requests in flight: %s; '
    . '%d retries refused by the budget',
    join(', ', map { "$_ x$r->{statuses}{$_}" } sort keys %{ $r->{statuses} }),
    $refused;

is $r->{total}, 24, '24 answers';
is $r->{failed}, $r->{statuses}{502} // 0, 'every failure is a 502';
is $refused, $r->{statuses}{502} // 0,
    '... one "retry budget exhausted" warning for each';
is_deeply [ grep { $_ ne 's2' } sort keys %{ $r->{count} } ], [qw(s1 s3)],
    'the others answered from s1 and s3';
like $log, qr/mesh: ejected instance "s2" .* of service "burst"/,
    's2 is ejected';

cmp_ok $r->{failed}, '<=', 8 - 3, 'the budget let at least 3 retries through';

$t->done_checks;
done_testing;
