#!/usr/bin/perl

# A worker that exits while its mesh_cache_file writer thread is still
# writing waits for the thread: the thread runs the module's code, which
# an exiting worker unmaps when it destroys its cycle (a worker that did
# not wait died on SIGSEGV, its writer's next instruction gone). Here a
# FIFO stands where the writer puts its temporary file, so the thread
# waits in open() until the test reads it: the worker must outlive the
# QUIT until then, and end cleanly after.

use strict;
use warnings;

use lib 't/lib';
use Fcntl qw(O_RDONLY O_NONBLOCK);
use IO::Select;
use POSIX qw(mkfifo);
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $b1 = $t->start_backend(name => 'b1');
my $b2 = $t->start_backend(name => 'b2');
is $t->register(orders => 'b1', $b1)->{status}, 201, 'register b1';

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream orders { mesh orders; }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location = /mesh/status { mesh_status; }
        location / { proxy_pass http://orders; }
    }
}
EOF
$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry';

# the cache file is written once nginx has the registry: let that write
# end, then put a FIFO at every worker's temporary path
my $end = time + 5;
sleep 0.05 until -f $t->cache_file || time > $end;
ok -f $t->cache_file, 'the cache file is written';
sleep 1.2;

my @workers = $t->nginx_workers;
my %fifo;
for my $pid (@workers) {
    $fifo{$pid} = $t->cache_file . ".$pid.tmp";
    mkfifo($fifo{$pid}, 0600) or die "mkfifo $fifo{$pid}: $!";
}

# a change: the poll owner's writer thread opens its FIFO, and waits
is $t->register(orders => 'b2', $b2)->{status}, 201, 'register b2';
ok $t->wait_mesh_index, 'nginx has it';

sub threads { my @t = glob "/proc/$_[0]/task/*"; scalar @t }

my $owner;
$end = time + 5;
until ($owner || time > $end) {
    ($owner) = grep { threads($_) > 1 } @workers;
    sleep 0.05;
}
ok $owner, 'a worker\'s cache writer thread waits in the FIFO';

kill 'QUIT', $t->nginx_pid;
sleep 1.5;
ok $owner && kill(0, $owner),
   'after QUIT, that worker waits for its writer thread';

# let the writer go: it writes, fails to fsync a FIFO, removes it, ends
# (opened without waiting: a worker that did not wait has no writer left)
if ($owner && sysopen my $r, $fifo{$owner}, O_RDONLY | O_NONBLOCK) {
    my $sel = IO::Select->new($r);
    my $json = '';
    $end = time + 5;
    while (time < $end && $sel->can_read(1)) {
        my $n = sysread $r, $json, 65536, length $json;
        last unless $n;
    }
    close $r;
    like $json, qr/"services"/, '... which then writes the snapshot';
}

$end = time + 10;
sleep 0.05 while $owner && kill(0, $owner) && time < $end;
ok !($owner && kill(0, $owner)), '... and the worker ends';

$t->stop_nginx;
unlike $t->read_file('error.log'), qr/exited on signal/,
       'no worker died on a signal';
unlink values %fifo;

$t->done_checks;
done_testing;
