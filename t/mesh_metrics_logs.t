#!/usr/bin/perl

# mesh_metrics_logs: $mesh_service, $mesh_instance and $mesh_index in an
# access log (the instance that answered, by its upstream address and by
# the backend's X-Backend), and the module's own log lines, one each and
# naming service and instance: an ejection and the return after it
# (mesh_outlier consecutive_5xx=2 base_ejection_time=1s, a backend that
# answers 503), a registry outage and its end (registryd stopped and
# started again).

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

# backend name => registered instance id
my %id_of = (b1 => 'o1', b2 => 'o2', b3 => 'o3', g1 => 'f-good',
             x1 => 'f-bad');
my %svc_of = (b1 => 'orders', b2 => 'orders', b3 => 'orders',
              g1 => 'flaky', x1 => 'flaky');
my (%port, %id_by_addr);
for my $b (sort keys %id_of) {
    $port{$b} = $t->start_backend(name => $b, events => 1,
                                  $b eq 'x1' ? (status => 503) : ());
    $id_by_addr{"127.0.0.1:$port{$b}"} = $id_of{$b};
    is $t->register($svc_of{$b} => $id_of{$b}, $port{$b})->{status}, 201,
        "register $svc_of{$b}/$id_of{$b}";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    log_format mesh '$mesh_service $mesh_instance $mesh_index '
                    '$upstream_addr $upstream_status';

    upstream orders { mesh orders; }
    upstream flaky {
        mesh flaky;
        mesh_outlier consecutive_5xx=2 base_ejection_time=1s;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;

        location /orders/ {
            proxy_pass http://orders;
            access_log %%TESTDIR%%/mesh_access.log mesh;
        }
        location /flaky/ {
            proxy_pass http://flaky;
            access_log %%TESTDIR%%/mesh_access.log mesh;
        }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

my $index = $t->registry_index;
ok $t->wait_mesh_index(index => $index), 'nginx has the registry index';

my $err_log = $t->dir . '/error.log';

sub lines {
    my ($re) = @_;
    my $text = $t->read_file($err_log) // '';
    return grep { /$re/ } split /\n/, $text;
}

sub wait_lines {
    my ($re, $n, $timeout) = @_;
    my $end = time + ($timeout // 5);
    my @l;
    while (1) {
        @l = lines($re);
        return @l if @l >= $n || time >= $end;
        sleep 0.05;
    }
}

# 1. the access log

my $r = $t->load(path => '/orders/', requests => 90, clients => 3);
is $r->{ok}, 90, '90 requests to orders';

my @log;
my $end = time + 5;
while (1) {
    @log = grep { /^orders / } split /\n/,
           $t->read_file('mesh_access.log') // '';
    last if @log >= 90 || time >= $end;
    sleep 0.05;
}
is scalar @log, 90, 'the access log has one mesh line per request';

my (%by_id, @bad);
for my $l (@log) {
    my ($svc, $inst, $idx, $addr, $status) = split / /, $l;
    push @bad, $l unless $svc eq 'orders' && $idx eq $index
                         && ($status // '') eq '200'
                         && defined $addr && defined $id_by_addr{$addr}
                         && $id_by_addr{$addr} eq $inst;
    $by_id{$inst}++;
}
is_deeply \@bad, [], '$mesh_service orders, $mesh_instance the id registered '
    . 'at $upstream_addr, $mesh_index the registry index, status 200'
    or diag join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)];
is_deeply \%by_id, { map { $id_of{$_} => $r->{count}{$_} } keys %{ $r->{count} } },
    '$mesh_instance counts equal the X-Backend counts seen by the clients';
is_deeply \%by_id, { o1 => 30, o2 => 30, o3 => 30 }, '30 each';

# 2. an ejection and the return: f-bad answers 503; round robin gives it
# every other request; after two 503s in a row it is ejected for 1 s

my $c = $t->client;
my @st;
for my $i (1 .. 8) {
    my $x = $c->get('/flaky/');
    push @st, $x->{status};
}
is scalar(grep { $_ == 503 } @st), 2, 'two 503s from f-bad, then it is out'
    or diag "@st";

my @ej = wait_lines(qr/mesh: ejected instance/, 1);
is scalar @ej, 1, 'one "ejected instance" line' or diag join "\n", @ej;
like $ej[0] // '', qr/\[notice\].*mesh: ejected instance "f-bad" \(127\.0\.0\.1:$port{x1}\) of service "flaky"/,
    'notice, names instance, address and service';

my $st = $t->mesh_status || {};
my %svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
my %inst = map { $_->{id} => $_ } @{ $svc{flaky}{instances} || [] };
is $inst{'f-bad'}{state}, 'ejected', 'status: f-bad ejected';
is $svc{flaky}{ejections}, 1, 'status: flaky ejections 1';
is $inst{'f-bad'}{ejections}, 1, 'status: f-bad ejections 1';
is $svc{flaky}{instances_by_state}{ejected}, 1,
    'status: instances_by_state.ejected 1';

# the time is up after 1 s; the next request notices the return
sleep 1.3;
my $x = $c->get('/flaky/');
ok $x->{status} == 200 || $x->{status} == 503, 'a request after 1.3 s';

my @ret = wait_lines(qr/returns after its ejection/, 1);
is scalar @ret, 1, 'one "returns after its ejection" line'
    or diag join "\n", @ret;
like $ret[0] // '', qr/\[notice\].*mesh: instance "f-bad" \(127\.0\.0\.1:$port{x1}\) of service "flaky" returns after its ejection/,
    'notice, names instance, address and service';

$st = $t->mesh_status || {};
%svc = map { $_->{name} => $_ } @{ $st->{services} || [] };
%inst = map { $_->{id} => $_ } @{ $svc{flaky}{instances} || [] };
isnt $inst{'f-bad'}{state}, 'ejected', 'status: f-bad back';

my $p = $t->parse_prometheus($t->mesh_prometheus->{text});
is $t->prom_sum($p, 'nginx_mesh_ejections_total',
                { service => 'flaky', member => 'f-bad' }), 1,
    'prom: ejections_total flaky/f-bad 1';
is $t->prom_sum($p, 'nginx_mesh_service_ejections_total',
                { service => 'flaky' }), 1,
    'prom: service_ejections_total flaky 1';

# the flaky lines in the access log: 503s from f-bad, and the index
my @fl = grep { /^flaky / } split /\n/, $t->read_file('mesh_access.log') // '';
is scalar @fl, 9, 'nine flaky lines in the access log';
is scalar(grep { / 503$/ && /^flaky f-bad $index 127\.0\.0\.1:$port{x1} 503$/ }
          @fl), scalar(grep { $_ == 503 } @st, $x->{status}),
    'each 503 logged with $mesh_instance f-bad';

# 3. the registry goes away and comes back

is scalar(lines(qr/mesh: registry .*routing on index/)), 0,
    'no registry loss line yet';

$t->stop_registryd;

my @lost = wait_lines(qr/mesh: registry .*routing on index/, 1, 5);
is scalar @lost, 1, 'registry lost: one line';
my $url = quotemeta $t->registryd_url;
like $lost[0] // '', qr/\[warn\].*mesh: registry $url: .*; routing on index $index/,
    'warn, names the registry and the index routed on';

$st = $t->mesh_status || {};
is $st->{registry}{state}, 'stale', 'status: registry stale';
ok $st->{registry}{stale}, 'status: registry.stale true';
ok defined $st->{registry}{last_error}, 'status: registry.last_error set';

# routing goes on; a few retries of the poll add no line
$r = $t->load(path => '/orders/', requests => 30, clients => 2);
is $r->{ok}, 30, 'routing goes on without the registry';
sleep 1.5;
is scalar(lines(qr/mesh: registry .*routing on index/)), 1,
    'still one loss line after retries';

$t->restart_registryd;

my @back = wait_lines(qr/mesh: registry .* is back/, 1, 5);
is scalar @back, 1, 'registry back: one line';
like $back[0] // '', qr/\[notice\].*mesh: registry $url is back, index \d+/,
    'notice, names the registry and the index';

$end = time + 5;
while (time < $end) {
    $st = $t->mesh_status || {};
    last if ($st->{registry}{state} // '') eq 'synced';
    sleep 0.05;
}
is $st->{registry}{state}, 'synced', 'status: registry synced again';
ok !$st->{registry}{stale}, 'status: registry.stale false';

sleep 0.5;
is scalar(lines(qr/mesh: registry .*routing on index/)), 1,
    'in all: one loss line';
is scalar(lines(qr/mesh: registry .* is back/)), 1, 'in all: one back line';
is scalar(lines(qr/mesh: ejected instance/)), 1, 'in all: one ejection line';
is scalar(lines(qr/returns after its ejection/)), 1, 'in all: one return line';

$t->done_checks;
done_testing;
