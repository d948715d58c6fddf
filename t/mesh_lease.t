#!/usr/bin/perl

# One long-poll per nginx: of two workers only one holds the registry poll
# (a lease in shared memory), so registryd sees one waiting connection.
# When that worker dies (SIGKILL) another takes the poll over within 2 s
# and changes keep propagating.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;

$t->start_registryd;

my %port;
$port{$_} = $t->start_backend(name => $_, events => 1) for qw(b1 b2);
is $t->register(orders => 'b1', $port{b1})->{status}, 201, 'register b1';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders { mesh orders; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

my $st = $t->wait_mesh_index;
ok $st, 'nginx has the registry index';

my @workers = $t->nginx_workers;
is scalar(@workers), 2, 'two workers';

# let every worker look at the lease a few times
sleep 1.5;

sub waiters {
    my $r = $t->http(GET => $t->registryd_url . '/metrics');
    my ($n) = $r->{content} =~ /^registryd_snapshot_waiters (\d+)/m;
    return $n;
}

is waiters(), 1, 'registryd holds one long-poll for the whole nginx';

$st = $t->mesh_status;
my $owner = $st->{registry}{poller_pid};
ok((grep { $_ == $owner } @workers), 'the poller is one of the workers')
    or diag "poller $owner, workers @workers";

# kill the poller: another worker takes over within 2 s

kill 'KILL', $owner;
my $killed = time;
my ($took, $new);

while (time - $killed < 5) {
    $st = $t->mesh_status;
    $new = $st ? $st->{registry}{poller_pid} : 0;
    if ($new && $new != $owner && kill(0, $new)) {
        $took = time - $killed;
        last;
    }
    sleep 0.05;
}

ok defined $took, 'another worker polls the registry';
cmp_ok $took // 99, '<=', 2, 'taken over within 2 s';
note sprintf 'poll taken over after %.0f ms', 1000 * ($took // 99);

# and it works: a change reaches traffic

is $t->register(orders => 'b2', $port{b2})->{status}, 201, 'register b2';
ok $t->wait_mesh_index(timeout => 3), 'the change reaches nginx';

my $c = $t->client;
my %seen;
$seen{ $c->get('/')->{headers}{'x-backend'} // 'none' }++ for 1 .. 20;
is_deeply \%seen, { b1 => 10, b2 => 10 }, 'traffic follows the change';

sleep 1;
is waiters(), 1, 'still one long-poll after the take-over';

$t->done_checks(allow => qr/worker process $owner exited on signal 9/);
done_testing;
