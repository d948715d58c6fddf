#!/usr/bin/perl

# mesh_metrics_exact: the status counts every request exactly, in JSON and
# in Prometheus text.  Two services (orders: 3 instances, pay: 2) take 300
# and 200 requests, some concurrent, some on new connections; a third
# (err) answers 503.  JSON: per-service requests, per-instance requests
# summing to it, responses by class, the latency histogram (count equal to
# requests, cumulative buckets, +Inf = count).  Prometheus: promtool check
# metrics passes, HELP and TYPE for every family, no label "instance",
# service totals and member sums equal to what was sent, code="5xx" for
# the 503s, cumulative histogram buckets.

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

my %members = (orders => [qw(o1 o2 o3)], pay => [qw(p1 p2)], err => ['e1']);
my %sent = (orders => 300, pay => 200, err => 40);

for my $svc (sort keys %members) {
    for my $id (@{ $members{$svc} }) {
        my $port = $t->start_backend(name => $id, events => 1,
            $id eq 'p2' ? (delay => 0.03) : (),
            $id eq 'e1' ? (status => 503) : ());
        is $t->register($svc => $id, $port)->{status}, 201,
            "register $svc/$id";
    }
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders { mesh orders; }
    upstream pay    { mesh pay; mesh_balancer least_request; }
    upstream err    { mesh err; mesh_outlier consecutive_5xx=0; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        location /orders/ { proxy_pass http://orders; }
        location /pay/    { proxy_pass http://pay; }
        location /err/    { proxy_pass http://err; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

my $index = $t->registry_index;
ok $t->wait_mesh_index(index => $index), 'nginx has the registry index';


# the Prometheus text: parses, HELP and TYPE for every family, promtool

sub prom_checks {
    my ($what) = @_;
    my $m = $t->mesh_prometheus;
    is $m->{status}, 200, "$what: GET ?format=prometheus 200";
    like $m->{type}, qr{^text/plain; version=0\.0\.4},
        "$what: content type text/plain; version=0.0.4";

    my $p = $t->parse_prometheus($m->{text});
    is_deeply $p->{bad}, [], "$what: every line parses";
    ok @{ $p->{samples} } > 0, "$what: samples";

    my (%nohelp, %notype, %badname, %inst);
    for my $s (@{ $p->{samples} }) {
        my $fam = $s->[0];
        $fam =~ s/_(?:bucket|sum|count)$//
            if $fam =~ /_(?:bucket|sum|count)$/
               && ($p->{type}{ $fam =~ s/_(?:bucket|sum|count)$//r } // '')
                  eq 'histogram';
        $nohelp{$fam}++ unless defined $p->{help}{$fam};
        $notype{$fam}++ unless defined $p->{type}{$fam};
        $badname{$fam}++ unless $fam =~ /^nginx_mesh_/;
        $inst{ $s->[0] }++ if exists $s->[1]{instance};
    }
    is_deeply [ sort keys %nohelp ], [], "$what: a HELP line for every family";
    is_deeply [ sort keys %notype ], [], "$what: a TYPE line for every family";
    is_deeply [ sort keys %badname ], [], "$what: every name begins nginx_mesh_";
    is_deeply [ sort keys %inst ], [], "$what: no label named instance";
    is_deeply [ grep { !defined $p->{type}{$_} } sort keys %{ $p->{help} } ],
        [], "$what: every HELP has its TYPE";

    my ($rc, $out) = $t->promtool_check($m->{text});
    is $rc, 0, "$what: promtool check metrics passes" or diag $out;

    return $p;
}

sub services {
    my $st = $t->mesh_status || {};
    return map { $_->{name} => $_ } @{ $st->{services} || [] };
}

# before any traffic

my $p = prom_checks('no traffic');
is $t->prom_sum($p, 'nginx_mesh_registry_index'), $index,
    'nginx_mesh_registry_index';
is $t->prom_sum($p, 'nginx_mesh_registry_stale'), 0,
    'nginx_mesh_registry_stale 0';
is $t->prom_sum($p, 'nginx_mesh_service_requests_total',
                { service => 'orders' }), 0, 'orders: 0 requests';
is $t->prom_sum($p, 'nginx_mesh_instances',
                { service => 'orders', state => 'healthy' }), 3,
    'nginx_mesh_instances orders healthy 3';

my $bad = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP')
                          . '/mesh/status?format=xml');
is $bad->{status}, 400, '?format=xml: 400';

# traffic: all three services at once

my @h = (
    $t->load_start(path => '/orders/', requests => $sent{orders},
                   clients => 4),
    $t->load_start(path => '/pay/', requests => $sent{pay}, clients => 3,
                   keepalive => 0),
    $t->load_start(path => '/err/', requests => $sent{err}, clients => 2),
);
my @r = map { $t->load_wait($_) } @h;
is $r[0]{ok}, $sent{orders}, "orders: $sent{orders} requests succeed"
    or diag explain $r[0]{errors};
is $r[1]{ok}, $sent{pay}, "pay: $sent{pay} requests succeed"
    or diag explain $r[1]{errors};
is_deeply $r[2]{statuses}, { 503 => $sent{err} }, "err: $sent{err} x 503";

# JSON. A client has its response before the worker that proxied it
# counts the response (free_peer runs as the upstream request ends, which
# may be after the last byte went out), and the status may be read in the
# other worker: wait until every service has counted a response per
# request (at most 5 s), then check.

my %svc;
my $end = time + 5;
while (1) {
    %svc = services();
    last if time > $end;
    last unless grep {
        my $s = $svc{$_} || {};
        ($s->{latency_ms}{count} // -1) != ($s->{requests} // 0)
            || ($s->{active} // 1) != 0
    } qw(orders pay err);
    sleep 0.05;
}

for my $name (qw(orders pay err)) {
    my $s = $svc{$name} || {};
    my $n = $sent{$name};
    is $s->{requests}, $n, "JSON $name: requests $n";

    my @inst = @{ $s->{instances} || [] };
    is_deeply [ sort map { $_->{id} } @inst ], $members{$name},
        "JSON $name: instances";
    my $sum = 0;
    $sum += $_->{requests} for @inst;
    is $sum, $n, "JSON $name: instance requests sum to $n";

    my $class = $name eq 'err' ? '5xx' : '2xx';
    is_deeply $s->{responses},
        { '1xx' => 0, '2xx' => 0, '3xx' => 0, '4xx' => 0, '5xx' => 0,
          $class => $n },
        "JSON $name: responses.$class $n, other classes 0";
    $sum = 0;
    $sum += $_->{responses}{$class} // 0 for @inst;
    is $sum, $n, "JSON $name: instance responses.$class sum to $n";

    is $s->{failures}, 0, "JSON $name: failures 0";
    is $s->{retries}, 0, "JSON $name: retries 0";
    is $s->{active}, 0, "JSON $name: active 0";

    for my $x ($s, @inst) {
        my $what = "JSON $name" . ($x == $s ? '' : "/$x->{id}");
        my $l = $x->{latency_ms} || {};
        my @b = @{ $l->{buckets} || [] };
        is_deeply [ map { $_->{le} } @b ],
            [ 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, '+Inf' ],
            "$what: latency bucket bounds";
        is $l->{count}, $x->{requests}, "$what: latency count = requests";
        is $b[-1]{count}, $l->{count}, "$what: +Inf bucket = count";
        ok !grep({ $b[$_]{count} < $b[ $_ - 1 ]{count} } 1 .. $#b),
            "$what: buckets cumulative";
    }
}

is $svc{orders}{instances_by_state}{healthy}, 3, 'JSON orders: 3 healthy';
is_deeply { map { $_->{id} => $_->{requests} }
            @{ $svc{orders}{instances} || [] } },
    { o1 => 100, o2 => 100, o3 => 100 }, 'JSON orders: round robin 100 each';

# p2 answers after 30 ms: none of its answers in the 25 ms bucket, its
# latency sum at least 30 ms each
my ($p2) = grep { $_->{id} eq 'p2' } @{ $svc{pay}{instances} || [] };
$p2 //= {};
ok $p2->{requests}, 'JSON pay/p2 took requests';
is $p2->{latency_ms}{buckets}[2]{count}, 0, 'JSON pay/p2: le 25 ms: 0';
cmp_ok $p2->{latency_ms}{sum}, '>=', 30 * ($p2->{requests} // 0),
    'JSON pay/p2: latency sum >= 30 ms x requests';

# Prometheus

$p = prom_checks('after traffic');

for my $name (qw(orders pay err)) {
    my $n = $sent{$name};
    my $class = $name eq 'err' ? '5xx' : '2xx';

    is $t->prom_sum($p, 'nginx_mesh_service_requests_total',
                    { service => $name }), $n,
        "prom $name: service_requests_total $n";
    is $t->prom_sum($p, 'nginx_mesh_requests_total', { service => $name }),
        $n, "prom $name: sum of requests_total over members $n";
    is_deeply [ sort map { $_->[1]{member} }
                grep { $_->[0] eq 'nginx_mesh_requests_total'
                       && $_->[1]{service} eq $name } @{ $p->{samples} } ],
        $members{$name}, "prom $name: one requests_total per member";
    is $t->prom_sum($p, 'nginx_mesh_service_responses_total',
                    { service => $name, code => $class }), $n,
        "prom $name: service_responses_total code=$class $n";
    is $t->prom_sum($p, 'nginx_mesh_service_responses_total',
                    { service => $name }), $n,
        "prom $name: no response in another class";
    is $t->prom_sum($p, 'nginx_mesh_responses_total',
                    { service => $name, code => $class }), $n,
        "prom $name: sum of responses_total code=$class $n";

    # the histogram
    my @b = sort { $a->[0] <=> $b->[0] }
            map { [ $_->[1]{le} eq '+Inf' ? 9**9**9 : $_->[1]{le}, $_->[2] ] }
            grep { $_->[0] eq 'nginx_mesh_upstream_latency_seconds_bucket'
                   && $_->[1]{service} eq $name } @{ $p->{samples} };
    is scalar @b, 12, "prom $name: 12 latency buckets";
    ok !grep({ $b[$_][1] < $b[ $_ - 1 ][1] } 1 .. $#b),
        "prom $name: buckets non-decreasing";
    my $count = $t->prom_sum($p, 'nginx_mesh_upstream_latency_seconds_count',
                             { service => $name });
    is $count, $n, "prom $name: latency _count = requests";
    is $b[-1][1], $count, "prom $name: +Inf bucket = _count";
    is_deeply [ map { $_->[1] } @b ],
        [ map { $_->{count} } @{ $svc{$name}{latency_ms}{buckets} || [] } ],
        "prom $name: buckets equal the JSON ones";
    my $psum = $t->prom_sum($p, 'nginx_mesh_upstream_latency_seconds_sum',
                            { service => $name });
    ok defined $psum
       && abs($psum - ($svc{$name}{latency_ms}{sum} // 0) / 1000) < 0.0015,
        "prom $name: latency _sum = JSON sum / 1000";

    is $t->prom_sum($p, 'nginx_mesh_instances',
                    { service => $name, state => 'healthy' }),
        scalar @{ $members{$name} }, "prom $name: instances healthy";
    is $t->prom_sum($p, 'nginx_mesh_retries_total', { service => $name }),
        0, "prom $name: retries_total 0";
}

is $t->prom_sum($p, 'nginx_mesh_responses_total',
                { service => 'err', member => 'e1', code => '5xx' }),
    $sent{err}, 'prom err/e1: code="5xx" 40';
is $t->prom_sum($p, 'nginx_mesh_member_weight',
                { service => 'orders', member => 'o1',
                  server => '127.0.0.1:' . $t->backend_port('o1') }), 1,
    'prom orders/o1: member_weight with its server';
is $t->prom_sum($p, 'nginx_mesh_member_state',
                { service => 'pay', member => 'p1', state => 'healthy' }), 1,
    'prom pay/p1: member_state healthy';

$t->done_checks;
done_testing;
