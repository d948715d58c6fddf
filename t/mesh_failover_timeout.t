#!/usr/bin/perl

# A backend that hangs (accepts, reads, answers only after 10 s), two that
# answer, two workers, "proxy_read_timeout 300ms" and
# "proxy_next_upstream error timeout": a request that tries the hanging
# instance first times out after 0.3 s and is answered 200 by another
# instance within about a second; the others are answered at once.  A
# timeout counts as a 5xx for outlier detection, so after the default 5 in
# a row the hanging instance is ejected and the requests stop waiting.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time);
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my %port = (
    hang => $t->start_backend(name => 'hang', events => 1, delay => 10),
    ok1  => $t->start_backend(name => 'ok1', events => 1),
    ok2  => $t->start_backend(name => 'ok2', events => 1),
);
for my $b (qw(hang ok1 ok2)) {
    is $t->register(slow => $b, $port{$b})->{status}, 201,
        "register slow/$b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream slow {
        mesh slow;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location / {
            proxy_pass http://slow;
            proxy_read_timeout 300ms;
            proxy_next_upstream error timeout;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

# [status, backend, seconds] per request, a new connection each
my @r;
for (1 .. 30) {
    my $c = $t->client(keepalive => 0, timeout => 8);
    my $t0 = time;
    my $x = $c->get('/');
    push @r, [ $x->{status}, $x->{headers}{'x-backend'} // '', time - $t0 ];
    $c->close;
}

my @bad = grep { $_->[0] != 200 || $_->[1] !~ /^ok[12]$/ } @r;
is scalar(@bad), 0, '30 requests: 200 from ok1 or ok2' or diag explain \@bad;

my @slow = grep { $_->[2] >= 0.25 } @r;
my @fast = grep { $_->[2] < 0.25 } @r;
diag sprintf '%d of 30 waited for the hanging instance: %s ms; the others '
    . 'took at most %.0f ms', scalar @slow,
    join(', ', map { sprintf '%.0f', 1000 * $_->[2] } @slow),
    1000 * (sort { $b <=> $a } map { $_->[2] } @fast, [0, 0, 0])[0];
cmp_ok scalar(@slow), '>=', 1, 'some requests tried the hanging one first';
cmp_ok scalar(@slow), '<=', 5,
    'at most 5 (consecutive_5xx default) before it is ejected';
ok !grep({ $_->[2] > 1.0 } @slow),
    '... each answered after the 300 ms try timeout, within 1 s';

like $t->read_file('error.log'),
    qr/\[notice\].*mesh: ejected instance "hang" .* of service "slow" for 30000ms after 5 consecutive errors/,
    'notice: the hanging instance is ejected for 30 s (the default) after 5';
like $t->read_file('error.log'), qr/\[error\].*upstream timed out/,
    'nginx logged the timeouts';

my $st = $t->mesh_status;
my ($svc) = grep { $_->{name} eq 'slow' } @{ $st->{services} || [] };
my ($h) = grep { $_->{id} eq 'hang' } @{ $svc->{instances} || [] };
is $h->{failures}, scalar(@slow), 'status: one failure per timed-out try'
    or diag explain $h;

$t->done_checks;
done_testing;
