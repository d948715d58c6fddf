#!/usr/bin/perl

# Requests in flight held by a worker that dies: killed with requests to an
# instance in flight, the worker's share of "active" would count forever
# (least_request would shun the instance, maxConnections would cap it, its
# counters could never be freed). The poll owner notices the dead process
# and the stats sweep takes its requests back: active returns to 0.

use strict;
use warnings;

use lib 't/lib';
use IO::Socket::INET;
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info', workers => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $slow = $t->start_backend(name => 'slow', events => 1, delay => 30);
is $t->register(orders => 'slow', $slow)->{status}, 201, 'register slow';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / {
            proxy_pass http://orders;
            proxy_read_timeout 60s;
        }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

sub active {
    my $st = $t->mesh_status or return (-1, -1);
    my ($s) = grep { $_->{name} eq 'orders' } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq 'slow' } @{ $s ? $s->{instances} : [] };
    return ($i ? $i->{active} : -1, $s ? $s->{active} // -1 : -1);
}

# five requests that will wait 30 s for their answer
my @socks;
for (1 .. 5) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->named_port('HTTP'), Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    print $s "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    push @socks, $s;
}

my ($end, $a) = (time + 5, -1);
while (time < $end) {
    ($a) = active();
    last if $a == 5;
    sleep 0.05;
}
is $a, 5, 'five requests in flight on "slow"';

my ($worker) = $t->nginx_workers;
kill 'KILL', $worker;

# the master starts another worker; the dead one's requests are taken back
my $took;
my ($ia, $sa);
$end = time + 10;
my $t0 = time;
while (time < $end) {
    my @w = $t->nginx_workers;
    if (@w && $w[0] != $worker) {
        ($ia, $sa) = active();
        if ($ia == 0) {
            $took = time - $t0;
            last;
        }
    }
    sleep 0.05;
}
ok defined $took, sprintf 'active back to 0 after the worker died (%.2f s)',
    $took // 10;
is $ia, 0, '... for the instance';
like $t->read_file('error.log') // '',
    qr/mesh: worker $worker is gone: its requests in flight are taken back/,
    '... with a notice naming the worker';

close $_ for @socks;

$t->done_checks(allow => qr/worker process $worker exited on signal 9/);
done_testing;
