#!/usr/bin/perl

# A service that grows beyond mesh_zone: the change is refused, the status
# says "error" with the reason (logged once), what was routed keeps
# routing, the registry is not polled in a loop, and once the service fits
# again the next poll brings it back.

use strict;
use warnings;

use lib 't/lib';
use POSIX ();
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port;
for my $b (qw(b1 b2)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port{$b})->{status}, 201, "register $b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    mesh_zone 64k;

    upstream orders {
        mesh orders;
    }

    upstream bulk {
        mesh bulk;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location /bulk { proxy_pass http://bulk; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

# 400 instances of bulk from 4 clients at once; $method PUT or DELETE
sub many {
    my ($method) = @_;
    my @kids;
    for my $k (0 .. 3) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $t->_reset_ua;
            for my $i (map { $k * 100 + $_ } 1 .. 100) {
                my $r = $method eq 'PUT'
                    ? $t->register(bulk => "big$i", 20000 + $i,
                          labels => { version => 'v1', team => 'x' x 40 })
                    : $t->deregister(bulk => "big$i");
                POSIX::_exit(1) unless $r->{status} =~ /^20/;
            }
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    my $bad = 0;
    for (@kids) { waitpid $_, 0; $bad++ if $? }
    return $bad == 0;
}

sub snapshot_requests {
    my $text = $t->api(GET => '/metrics')->{content} // '';
    my $n = 0;
    $n += $1 while $text =~ /^registryd_http_requests_total\{route="snapshot",[^}]*\} (\d+)/mg;
    return $n;
}

sub spread {
    my $c = $t->client;
    my %seen;
    $seen{ $c->get('/')->{headers}{'x-backend'} // 'none' }++ for 1 .. 20;
    $c->close;
    return \%seen;
}

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';
is_deeply spread(), { b1 => 10, b2 => 10 }, 'b1 and b2 serve';

ok many('PUT'), '400 instances of bulk registered';

my ($st, $end) = (undef, time + 10);
while (time < $end) {
    $st = $t->mesh_status;
    last if $st && $st->{registry}{state} eq 'error';
    sleep 0.05;
}
is $st && $st->{registry}{state}, 'error', 'status: error';
like $st && $st->{registry}{last_error} // '',
    qr/service "bulk" .* does not fit in the shared zone.*raise mesh_zone/,
    '... saying which service does not fit';
is_deeply spread(), { b1 => 10, b2 => 10 }, 'b1 and b2 still serve';

my $n0 = snapshot_requests();
sleep 3;
my $n = snapshot_requests() - $n0;
cmp_ok $n, '<=', 4, "$n polls in 3 s: no loop";

ok many('DELETE'), 'the 400 deregistered';

($st, $end) = (undef, time + 20);
while (time < $end) {
    $st = $t->mesh_status;
    last if $st && $st->{registry}{state} eq 'synced';
    sleep 0.1;
}
is $st && $st->{registry}{state}, 'synced', 'it fits again: synced';
is $st->{index}, $t->registry_index, '... at the current index';

$t->stop_nginx;

my $log = $t->read_file('error.log') // '';
my $lines = () = $log =~ /does not fit in the shared zone/g;
is $lines, 1, 'logged once';

$t->done_checks;
done_testing;
