#!/usr/bin/perl

# Failover on real traffic (issue 5, "Acceptance on real traffic"), two
# workers, three instances, round robin, keepalive to the instances,
# "proxy_next_upstream error timeout http_502" and
# "mesh_outlier consecutive_5xx=3 base_ejection_time=2s":
#
# - kill -9 of one instance during a concurrent keep-alive GET load (three
#   clients): no client sees an error; the dead instance is ejected after
#   3 failures (the notice says so, its requests and failures in the
#   status stop growing, and the status shows it "ejected" where the
#   status has that state);
# - restarted on the same port while ejected, it gets no traffic until
#   its ejection time (2 s) has passed, then traffic again;
# - every instance killed: each request gets a 502 with a body in well
#   under a second, no hang.

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

my %port;
for my $b (qw(b1 b2 b3)) {
    $port{$b} = $t->start_backend(name => $b, events => 1);
    is $t->register(fo => $b, $port{$b})->{status}, 201, "register fo/$b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream fo {
        mesh fo;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=3 base_ejection_time=2s;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            proxy_pass http://fo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

# the status entry of an instance of "fo", or undef
sub inst {
    my ($id) = @_;
    my $st = $t->mesh_status or return undef;
    my ($s) = grep { $_->{name} eq 'fo' } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq $id } @{ $s ? $s->{instances} : [] };
    return $i;
}

sub ejections_logged {
    my ($id) = @_;
    my $log = $t->read_file('error.log') // '';
    return scalar(() = $log =~ /mesh: ejected instance "\Q$id\E"/g);
}

my $r = $t->load(requests => 90, clients => 3);
is $r->{ok}, 90, 'before the kill: 90 requests succeed' or diag explain $r;
is_deeply $r->{count}, { b1 => 30, b2 => 30, b3 => 30 },
    '... round robin over the three';

############################################################################
# kill -9 one instance under load

# three clients: at most three requests are in flight, so at most three
# fail at once when b2 dies and the retry budget's floor (3 retries in
# flight) never refuses one; t/mesh_failover_burst.t kills an instance
# under more concurrency
my $h = $t->load_start(duration => 7, clients => 3);
sleep 1.5;

my $pre = inst('b2');
$t->kill_backend('b2');
my $t_kill = time;
note "killed b2 (pid group) at +1.5 s under load";

# until the ejection is visible: the notice, or the status' state
my ($t_ej, $ej, $saw_state, $has_state);
my $end = time + 3;
while (time < $end) {
    my $i = inst('b2');
    $has_state //= exists $i->{ejections} if $i;
    if ($i && ($i->{state} // '') eq 'ejected') {
        $saw_state = 1;
    }
    if ($saw_state || ejections_logged('b2')) {
        $t_ej = time;
        $ej = $i;
        last;
    }
    sleep 0.02;
}
ok $t_ej, 'b2 is ejected' or diag explain inst('b2');
$t_ej //= time;
$ej //= inst('b2') // {};
diag sprintf 'b2 ejected %.0f ms after the kill; status then: requests '
    . '%d -> %d, failures %d -> %d', 1000 * ($t_ej - $t_kill),
    $pre->{requests} // 0, $ej->{requests} // 0,
    $pre->{failures} // 0, $ej->{failures} // 0;

my $fail_at_ej = ($ej->{failures} // 0) - ($pre->{failures} // 0);
cmp_ok $fail_at_ej, '<=', 3 + 2,
    'b2 failed at most 3 times (+ one racing try per worker) before ejection';

like $t->read_file('error.log'),
    qr/\[notice\].*mesh: ejected instance "b2" \(127\.0\.0\.1:$port{b2}\) of service "fo" for 2000ms after 3 consecutive errors/,
    'notice: ejected b2 for 2000ms after 3 consecutive errors';

{
    ok $has_state, 'status: b2 has "ejections"';

    # poll with a bound: the state shows within the ejection
    my $state;
    my $end2 = $t_ej + 1;
    while (time < $end2) {
        my $i = inst('b2') or next;
        $state = $i->{state};
        last if $state eq 'ejected';
        sleep 0.02;
    }
    is $state, 'ejected', 'status: b2 is "ejected"';
    cmp_ok inst('b2')->{ejections} // 0, '>=', 1, 'status: b2 ejections >= 1';
}

# still ejected: no more tries on b2
sleep 0.6;
my $later = inst('b2') // {};
is $later->{failures} // 0, $ej->{failures} // 0,
    'while ejected (+0.6 s) b2 failures stay the same';
is $later->{requests} // 0, $ej->{requests} // 0,
    '... and so do its requests';

# restart b2 on the same port, still inside its ejection time
$t->start_backend(name => 'b2', port => $port{b2}, events => 1);
my $t_up = time;
my $r0 = (inst('b2') // {})->{requests} // 0;
note sprintf 'restarted b2 at %.0f ms after its ejection',
    1000 * ($t_up - $t_ej);

my $wait = $t_ej + 1.4 - time;
sleep $wait if $wait > 0;
is((inst('b2') // {})->{requests} // 0, $r0,
   'restarted but still ejected (ejection + 1.4 s): no traffic to b2');

my $t_back;
$end = $t_ej + 5;
while (time < $end) {
    if (((inst('b2') // {})->{requests} // 0) > $r0) {
        $t_back = time;
        last;
    }
    sleep 0.02;
}
ok $t_back, 'b2 gets traffic again after its ejection time';
$t_back //= time;
diag sprintf 'b2 back in traffic %.0f ms after its ejection (2000 ms)',
    1000 * ($t_back - $t_ej);
cmp_ok $t_back - $t_ej, '>=', 1.4, '... not before about 2 s';

$r = $t->load_wait($h);
diag sprintf 'load: %d requests in %.1f s, %s', $r->{total}, $r->{elapsed},
    join ', ', map { "$_ $r->{count}{$_}" } sort keys %{ $r->{count} };
cmp_ok $r->{total}, '>', 100, 'the load ran';
is $r->{failed}, 0, 'no client saw an error' or diag explain $r;

like $t->read_file('error.log'),
    qr/\[notice\].*mesh: instance "b2" \(127\.0\.0\.1:$port{b2}\) of service "fo" returns after its ejection/,
    'notice: b2 returns after its ejection';

$r = $t->load(requests => 90, clients => 3);
is $r->{ok}, 90, 'after the restart: 90 requests succeed';
cmp_ok $r->{count}{b2} // 0, '>=', 20, '... b2 takes its share again'
    or diag explain $r->{count};

############################################################################
# every instance down: a fast 502 with a body

$t->kill_backend($_) for qw(b1 b2 b3);

my (@st, @dt, @len);
for (1 .. 10) {
    my $c = $t->client(keepalive => 0, timeout => 5);
    my $t0 = time;
    my $x = $c->get('/');
    push @dt, time - $t0;
    push @st, $x->{status};
    push @len, length($x->{content} // '');
    $c->close;
}
is_deeply \@st, [ (502) x 10 ], 'all instances down: 502 every time'
    or diag explain \@st;
my ($max) = sort { $b <=> $a } @dt;
diag sprintf 'all down: slowest 502 in %.1f ms', 1000 * $max;
cmp_ok $max, '<', 1, '... each in under a second';
ok !grep({ $_ == 0 } @len), '... with a body';

$t->done_checks;
done_testing;
