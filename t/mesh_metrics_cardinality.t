#!/usr/bin/perl

# mesh_metrics_cardinality: mesh_status_instances.  Off in one upstream
# drops that service's member entries (JSON "instances" empty, no
# member= series) while its totals stay; off in http{} drops them for every
# service; "on" in an upstream overrides the http{} default.  The counts
# stay exact either way.  Then mesh_metrics off: responses and latency
# are no longer counted.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %members = (orders => [qw(o1 o2 o3)], pay => [qw(p1 p2)],
               misc => [qw(m1 m2)]);
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
    %%HTTP_INSTANCES%%

    upstream orders { mesh orders; %%ORDERS_INSTANCES%% }
    upstream pay    { mesh pay; %%PAY_INSTANCES%% }
    upstream misc   { mesh misc; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        location /orders/ { proxy_pass http://orders; }
        location /pay/    { proxy_pass http://pay; }
        location /misc/   { proxy_pass http://misc; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

sub conf {
    my (%o) = @_;
    my $c = $conf;
    for my $k (qw(http orders pay)) {
        my $v = $o{$k} ? "mesh_status_instances $o{$k};" : '';
        my $tag = uc($k) . '_INSTANCES';
        $c =~ s/%%$tag%%/$v/;
    }
    $t->nginx_conf($c);
}

my %total = (orders => 0, pay => 0, misc => 0);

sub traffic {
    my ($what) = @_;
    my %n = (orders => 30, pay => 20, misc => 10);
    for my $svc (sort keys %n) {
        my $r = $t->load(path => "/$svc/", requests => $n{$svc},
                         clients => 2);
        is $r->{ok}, $n{$svc}, "$what: $n{$svc} requests to $svc";
        $total{$svc} += $n{$svc};
    }
}

# %shown: service => 1 if its members should be listed
sub check {
    my ($what, %shown) = @_;
    my $st = $t->mesh_status || {};
    my %svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
    my $m = $t->mesh_prometheus;
    my $p = $t->parse_prometheus($m->{text});

    for my $name (sort keys %total) {
        my $s = $svc{$name} || {};
        my $n = $total{$name};
        my $k = @{ $members{$name} };

        is $s->{requests}, $n, "$what: JSON $name requests $n";
        is $s->{responses}{'2xx'}, $n, "$what: JSON $name responses.2xx $n";
        is $s->{instances_by_state}{healthy}, $k,
            "$what: JSON $name instances_by_state.healthy $k";
        is $t->prom_sum($p, 'nginx_mesh_service_requests_total',
                        { service => $name }), $n,
            "$what: prom $name service_requests_total $n";
        is $t->prom_sum($p, 'nginx_mesh_upstream_latency_seconds_count',
                        { service => $name }), $n,
            "$what: prom $name latency _count $n";
        is $t->prom_sum($p, 'nginx_mesh_instances',
                        { service => $name, state => 'healthy' }), $k,
            "$what: prom $name instances healthy $k";

        my @series = sort map { $_->[0] }
                     grep { $_->[1]{service} && $_->[1]{service} eq $name
                            && exists $_->[1]{member} } @{ $p->{samples} };

        if ($shown{$name}) {
            is_deeply [ sort map { $_->{id} } @{ $s->{instances} || [] } ],
                $members{$name}, "$what: JSON $name lists its instances";
            is $t->prom_sum($p, 'nginx_mesh_requests_total',
                            { service => $name }), $n,
                "$what: prom $name member requests sum to $n";
            is_deeply [ sort map { $_->[1]{member} }
                        grep { $_->[0] eq 'nginx_mesh_requests_total'
                               && $_->[1]{service} eq $name }
                        @{ $p->{samples} } ],
                $members{$name}, "$what: prom $name member series";
        } else {
            is_deeply $s->{instances}, [],
                "$what: JSON $name instances empty";
            is_deeply \@series, [], "$what: prom no member= series for $name";
        }
    }

    my ($rc, $out) = $t->promtool_check($m->{text});
    is $rc, 0, "$what: promtool check metrics passes" or diag $out;
}

# 1. off in one upstream: orders loses its member series, the others keep
conf(orders => 'off');
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';
traffic('upstream off');
check('upstream off', pay => 1, misc => 1);

# 2. off in http{}: nobody has member series
conf(http => 'off');
# old workers answer with the old configuration until they exit
ok $t->reload_nginx(wait_old => 1), 'reload: http{} off';
ok $t->wait_mesh_index, 'status answers after the reload';
traffic('http off');
check('http off');

# 3. off in http{}, on in the pay upstream: only pay has them
conf(http => 'off', pay => 'on');
ok $t->reload_nginx(wait_old => 1), 'reload: http{} off, pay on';
ok $t->wait_mesh_index, 'status answers after the reload';
traffic('http off, pay on');
check('http off, pay on', pay => 1);

# 4. mesh_metrics off: no more per-request counting (responses, latency),
# the rest of the document stays
my $before = $t->mesh_status || {};
my ($ob) = grep { $_->{name} eq 'orders' } @{ $before->{services} || [] };
my $c0 = $t->read_file('nginx.conf');
$c0 =~ s/(%%MESH_PRELUDE%%|mesh_registry )/mesh_metrics off;\n    $1/;
$t->write_file('nginx.conf', $c0);
ok $t->reload_nginx(wait_old => 1), 'reload: mesh_metrics off';
ok $t->wait_mesh_index, 'status answers after the reload';
my $r = $t->load(path => '/orders/', requests => 10, clients => 1);
is $r->{ok}, 10, 'mesh_metrics off: 10 requests to orders';
my $after = $t->mesh_status || {};
my ($oa) = grep { $_->{name} eq 'orders' } @{ $after->{services} || [] };
is $oa->{responses}{'2xx'}, $ob->{responses}{'2xx'},
    'mesh_metrics off: responses.2xx no longer counted';
is $oa->{latency_ms}{count}, $ob->{latency_ms}{count},
    'mesh_metrics off: latency no longer counted';
is $oa->{instances_by_state}{healthy}, 3,
    'mesh_metrics off: instances_by_state still there';
{
    my ($rc, $out) = $t->promtool_check($t->mesh_prometheus->{text});
    is $rc, 0, 'mesh_metrics off: promtool check metrics passes'
        or diag $out;
}

# 5. a duplicate is refused
conf(http => 'off', orders => 'off');
my $c = $t->read_file('nginx.conf');
$c =~ s/(mesh_status_instances off;)/$1 $1/;
$t->write_file('bad.conf', $c);
my ($rc, $out) = $t->nginx_test('bad.conf');
isnt $rc, 0, 'mesh_status_instances twice in http{}: nginx -t fails';
like $out, qr/"mesh_status_instances" directive is duplicate/,
    'and says it is a duplicate';

$t->done_checks;
done_testing;
