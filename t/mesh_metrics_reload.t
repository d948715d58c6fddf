#!/usr/bin/perl

# mesh_metrics_reload: the counters live in the shared zone and survive
# nginx -s reload.  N requests, a reload (same configuration), M more:
# requests == N + M in JSON and Prometheus, per service, per instance and
# for the latency histogram; then a reload with a changed configuration
# (another balancer, one more upstream) and K more: N + M + K.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %members = (orders => [qw(o1 o2 o3)], pay => [qw(p1 p2)]);
for my $svc (sort keys %members) {
    for my $id (@{ $members{$svc} }) {
        my $port = $t->start_backend(name => $id, events => 1);
        is $t->register($svc => $id, $port)->{status}, 201,
            "register $svc/$id";
    }
}

my $conf = <<'EOF';
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders { mesh orders; }
    upstream pay    { mesh pay; %%PAY_BALANCER%% }
    %%EXTRA%%

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        location /orders/ { proxy_pass http://orders; }
        location /pay/    { proxy_pass http://pay; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

sub conf {
    my (%o) = @_;
    my $c = $conf;
    $c =~ s/%%PAY_BALANCER%%/$o{balancer} ? "mesh_balancer $o{balancer};" : ''/e;
    $c =~ s/%%EXTRA%%/$o{extra} ? "upstream extra { mesh extra; }" : ''/e;
    $t->nginx_conf($c);
}

conf();
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

my %total = (orders => 0, pay => 0);

sub send_load {
    my ($what, %n) = @_;
    my @h = map {
        $t->load_start(path => "/$_/", requests => $n{$_},
                       clients => $_ eq 'orders' ? 4 : 2)
    } sort keys %n;
    my @r = map { $t->load_wait($_) } @h;
    my $i = 0;
    for my $svc (sort keys %n) {
        is $r[$i]{ok}, $n{$svc}, "$what: $n{$svc} requests to $svc succeed"
            or diag explain $r[$i]{errors};
        $total{$svc} += $n{$svc};
        $i++;
    }
}

sub check_counts {
    my ($what) = @_;
    my $st = $t->mesh_status || {};
    my %svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
    my $p = $t->parse_prometheus($t->mesh_prometheus->{text});

    for my $name (sort keys %total) {
        my $n = $total{$name};
        my $s = $svc{$name} || {};
        is $s->{requests}, $n, "$what: JSON $name requests $n";
        my $sum = 0;
        $sum += $_->{requests} for @{ $s->{instances} || [] };
        is $sum, $n, "$what: JSON $name instance requests sum to $n";
        is $s->{responses}{'2xx'}, $n, "$what: JSON $name responses.2xx $n";
        is $s->{latency_ms}{count}, $n, "$what: JSON $name latency count $n";
        is $t->prom_sum($p, 'nginx_mesh_service_requests_total',
                        { service => $name }), $n,
            "$what: prom $name service_requests_total $n";
        is $t->prom_sum($p, 'nginx_mesh_requests_total',
                        { service => $name }), $n,
            "$what: prom $name sum of requests_total $n";
        is $t->prom_sum($p, 'nginx_mesh_upstream_latency_seconds_count',
                        { service => $name }), $n,
            "$what: prom $name latency _count $n";
    }

    return \%svc;
}

# wait until only the new generation of workers is left
sub reload {
    my ($what) = @_;
    my %old = map { $_ => 1 } $t->nginx_workers;
    ok $t->reload_nginx, "$what: new workers run";
    my $end = time + 10;
    my @w;
    while (time < $end) {
        @w = $t->nginx_workers;
        last if !grep { $old{$_} } @w;
        sleep 0.05;
    }
    ok @w && !grep({ $old{$_} } @w), "$what: old workers gone";
    ok $t->wait_mesh_index, "$what: status answers at the registry index";
}

send_load('before the reload', orders => 300, pay => 200);
my $before = check_counts('before the reload');
my %per = map { $_->{id} => $_->{requests} }
          map { @{ $before->{$_}{instances} || [] } } keys %$before;

reload('reload');
my $same = check_counts('right after the reload');
is_deeply { map { $_->{id} => $_->{requests} }
            map { @{ $same->{$_}{instances} || [] } } keys %$same },
    \%per, 'right after the reload: per-instance counts unchanged';

send_load('after the reload', orders => 150, pay => 100);
check_counts('after the reload');

# a changed configuration: the zone and its counters stay
conf(balancer => 'least_request', extra => 1);
reload('reload with a new configuration');
my $svc = check_counts('right after the second reload');
is $svc->{pay}{balancer}, 'least_request', 'pay now balances least_request';
ok $svc->{extra}, 'the new upstream is listed';
is $svc->{extra}{requests}, 0, 'extra: 0 requests';

send_load('after the second reload', orders => 60, pay => 40);
check_counts('after the second reload');

$t->done_checks;
done_testing;
