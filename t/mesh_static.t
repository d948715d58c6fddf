#!/usr/bin/perl

# Static stability.  With registryd stopped, requests keep succeeding on
# the last snapshot and the status says "stale"; nginx restarted while
# registryd is still down routes from mesh_cache_file; registryd back (same
# data, same port): the status turns "synced" and a change propagates
# without reload.  A cache file that fails to parse is refused and logged:
# nginx starts, does not crash, and answers 502 quickly.

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
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

my $st = $t->wait_mesh_index;
ok $st, 'nginx has the registry index' or diag explain $t->mesh_status;
is $st->{registry}{state}, 'synced', 'registry state synced';

sub spread {
    my ($n) = @_;
    my $r = $t->load(requests => $n, clients => 2);
    return ($r->{ok}, $r->{count});
}

my ($ok, $count) = spread(30);
is $ok, 30, 'requests succeed';
is_deeply $count, { b1 => 10, b2 => 10, b3 => 10 }, 'over three instances';

# the cache file is written from the snapshot

my $end = time + 5;
sleep 0.05 while time < $end && !-s $t->cache_file;
ok -s $t->cache_file, 'mesh_cache_file written';

# registryd down: routing goes on, status turns stale

$t->stop_registryd;

($ok, $count) = spread(30);
is $ok, 30, 'registry down: requests still succeed';
is_deeply $count, { b1 => 10, b2 => 10, b3 => 10 },
    'registry down: the last snapshot routes';

$end = time + 10;
while (time < $end) {
    $st = $t->mesh_status;
    last if $st && ($st->{registry}{state} // '') eq 'stale';
    sleep 0.1;
}
is $st->{registry}{state}, 'stale', 'status: registry stale';
ok defined $st->{registry}{last_error}, 'status: last_error says why'
    and note "last_error: $st->{registry}{last_error}";
cmp_ok $st->{registry}{last_sync_ms} // 0, '>', 0,
    'status: last_sync_ms kept';

# nginx restarted while registryd is down: mesh_cache_file routes

$t->stop_nginx;
$t->start_nginx;

($ok, $count) = spread(30);
is $ok, 30, 'restart with registry down: requests succeed';
is_deeply $count, { b1 => 10, b2 => 10, b3 => 10 },
    'restart with registry down: routes from the cache file';
$st = $t->mesh_status;
isnt $st->{registry}{state}, 'synced', 'status: not synced'
    or diag explain $st;
my ($svc) = grep { $_->{name} eq 'orders' } @{ $st->{services} || [] };
is scalar(@{ $svc->{instances} || [] }), 3, 'status: the cached instances';

# registryd back, same data dir and port: synced again, changes propagate

my @workers = $t->nginx_workers;
$t->restart_registryd;

$end = time + 15;
while (time < $end) {
    $st = $t->mesh_status;
    last if $st && ($st->{registry}{state} // '') eq 'synced';
    sleep 0.1;
}
is $st->{registry}{state}, 'synced', 'registry back: status synced'
    or diag explain $st;
ok !defined $st->{registry}{last_error}, 'status: last_error null';

my $r = $t->register(orders => 'b4', $port{b4});
is $r->{status}, 201, 'register b4';
ok $t->wait_mesh_index(index => $r->{json}{index}), 'nginx has the index';
($ok, $count) = spread(40);
is $ok, 40, 'requests succeed';
cmp_ok $count->{b4} // 0, '>=', 8, 'the change propagates without reload'
    or diag explain $count;
is_deeply [ $t->nginx_workers ], \@workers, 'same workers: no reload';

$t->stop_nginx;
$t->stop_registryd;

###########################################################################
# an invalid cache file is refused: nginx starts, logs it, answers 502

my $bad = $t->write_file('bad-mesh.json', '{"index": 7, "services": [{"na');
my $down = $t->port;            # nothing listens there

$t->nginx_conf(<<"EOF", 'bad.conf');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    mesh_registry   http://127.0.0.1:$down;
    mesh_cache_file $bad;

    upstream orders {
        mesh orders;
    }

    server {
        listen 127.0.0.1:%%PORT_BAD%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

my $log0 = length($t->read_file('error.log') // '');
ok eval { $t->start_nginx('bad.conf'); 1 },
    'nginx starts with a corrupt cache file' or diag $@;

my $c = $t->client(port => $t->named_port('BAD'));
my $t0 = time;
my $x = $c->get('/');
my $took = time - $t0;
is $x->{status}, 502, 'no snapshot: 502';
cmp_ok $took, '<', 2, 'the 502 comes quickly';
note sprintf '502 in %.1f ms', 1000 * $took;
$c->close;

$x = $t->client(port => $t->named_port('BAD'))->get('/mesh/status');
is $x->{status}, 200, 'status still answers';

my $log = substr($t->read_file('error.log') // '', $log0);
like $log, qr/\[(?:crit|error|warn)\].*\Q$bad\E/,
    'the refusal of the cache file is logged with its path';
unlike $log, qr/exited on signal/, 'no worker crashed';

$t->stop_nginx;

$t->done_checks;
done_testing;
