#!/usr/bin/perl

# Reload safety: ten "nginx -s reload" (SIGHUP), 0.3 s apart, while
# concurrent clients send requests: no request fails, no [alert] is
# logged, the shared state (index, per-instance counters) survives, old
# workers do not linger on the registry long-poll, and the new workers
# still follow the registry.

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

my %port;
$port{$_} = $t->start_backend(name => $_, events => 1) for qw(b1 b2 b3 b4);
for my $b (qw(b1 b2 b3)) {
    is $t->register(orders => $b, $port{$b})->{status}, 201, "register $b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
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

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

sub counters {
    my $st = $t->mesh_status or return;
    my %req;
    for my $s (@{ $st->{services} || [] }) {
        next unless $s->{name} eq 'orders';
        $req{ $_->{id} } = $_->{requests} for @{ $s->{instances} || [] };
    }
    return ($st, \%req);
}

sub sum { my $n = 0; $n += $_ // 0 for values %{ $_[0] }; $n }

my $r = $t->load(requests => 300, clients => 2);
is $r->{ok}, 300, 'warm-up: 300 requests succeed';

my ($st0, $req0) = counters();
is sum($req0), 300, 'status counts the 300 requests' or diag explain $st0;

# load: a new connection per request, so every request is a real one
# (no reuse race on keep-alive connections that a retiring worker closes)

my $h = $t->load_start(duration => 6, clients => 4, keepalive => 0,
                       timeout => 30);
sleep 0.5;

my $reloaded = 0;
for (1 .. 10) {
    $reloaded++ if $t->reload_nginx;
    sleep 0.3;
}
is $reloaded, 10, 'ten reloads, each brought up new workers';

$r = $t->load_wait($h);
cmp_ok $r->{total}, '>', 100, "load ran ($r->{total} requests)";
is $r->{failed}, 0, 'no failed request during the reloads'
    or diag explain { %$r, by => undef };
note sprintf '%d requests in %.1f s during 10 reloads', $r->{total},
    $r->{elapsed};

# old workers exit: none holds on to a long-poll

my $end = time + 10;
my @w;
while (time < $end) {
    @w = $t->nginx_workers;
    last if @w == 2;
    sleep 0.1;
}
is scalar(@w), 2, 'old workers are gone, two workers run';

my ($st1, $req1) = counters();
is $st1->{index}, $st0->{index}, 'index kept across reloads';
cmp_ok sum($req1), '>=', sum($req0) + $r->{ok},
    'request counters were not reset';
is sum($req1), sum($req0) + $r->{ok},
    'request counters count every request exactly once'
    or diag explain { before => $req0, after => $req1, sent => $r->{ok} };

# the new generation follows the registry

my $x = $t->register(orders => 'b4', $port{b4});
is $x->{status}, 201, 'register b4 after the reloads';
ok $t->wait_mesh_index(index => $x->{json}{index}),
    'new workers see the new index' or diag explain $t->mesh_status;
$r = $t->load(requests => 40, clients => 1);
cmp_ok $r->{count}{b4} // 0, '>=', 8, 'b4 gets traffic'
    or diag explain $r->{count};

my @alert = grep { /\[alert\]/ } split /\n/, $t->read_file('error.log') // '';
is scalar(@alert), 0, 'no [alert] in the error log'
    or diag join "\n", @alert[0 .. ($#alert < 4 ? $#alert : 4)];

$t->done_checks;
done_testing;
