#!/usr/bin/perl

# Retries and the retry budget, two workers:
# - retries are counted: one instance refuses connections (ejection off),
#   two answer; with "proxy_next_upstream error" every request succeeds,
#   the access log's $upstream_addr shows which were retried, and the
#   status' service "retries" (where the status has it) counts exactly
#   those;
# - the budget: three instances that hang, "proxy_read_timeout 500ms",
#   twelve requests at once.  After the first tries time out, a retry may
#   start only while fewer than max(3, 20% of the service's active
#   requests) retries are in flight: the others are refused with a 502 at
#   once and a warning "retry budget ... exhausted", instead of three
#   more half-second tries each.

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
    ok1 => $t->start_backend(name => 'ok1', events => 1),
    ok2 => $t->start_backend(name => 'ok2', events => 1),
    h1  => $t->start_backend(name => 'h1', events => 1, delay => 5),
    h2  => $t->start_backend(name => 'h2', events => 1, delay => 5),
    h3  => $t->start_backend(name => 'h3', events => 1, delay => 5),
);
my $closed = $t->port;                  # nothing listens there

is $t->register(rt => 'ok1', $port{ok1})->{status}, 201, 'register rt/ok1';
is $t->register(rt => 'dead', $closed)->{status}, 201,
    "register rt/dead at closed port $closed";
is $t->register(rt => 'ok2', $port{ok2})->{status}, 201, 'register rt/ok2';
for my $b (qw(h1 h2 h3)) {
    is $t->register(hb => $b, $port{$b})->{status}, 201, "register hb/$b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    log_format up '$status "$upstream_addr" "$upstream_status"';

%%MESH_PRELUDE%%
    upstream rt {
        mesh rt;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=0;
    }

    upstream hb {
        mesh hb;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=0;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location /rt/ {
            proxy_pass http://rt;
            proxy_next_upstream error;
            access_log %%TESTDIR%%/rt.log up;
        }

        location /hb/ {
            proxy_pass http://hb;
            proxy_read_timeout 500ms;
            proxy_next_upstream error timeout;
            access_log %%TESTDIR%%/hb.log up;
        }

        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

sub service {
    my ($name) = @_;
    my $st = $t->mesh_status or return {};
    my ($s) = grep { $_->{name} eq $name } @{ $st->{services} || [] };
    return $s // {};
}

sub log_lines {
    my ($name) = @_;
    return grep { length } split /\n/, $t->read_file($name) // '';
}

############################################################################
# retries are counted

my $before = service('rt')->{retries};
my $r = $t->load(path => '/rt/x', requests => 30, clients => 3);
is $r->{ok}, 30, '30 requests succeed past the instance that refuses'
    or diag explain $r;
is_deeply [ sort keys %{ $r->{count} } ], [qw(ok1 ok2)],
    '... served by ok1 and ok2';

my @lines = log_lines('rt.log');
is scalar(@lines), 30, 'access log: 30 lines';
my @retried = grep { /^200 "[^"]+, [^"]+" "502, 200"$/ } @lines;
diag scalar(@retried) . ' of 30 requests were retried';
cmp_ok scalar(@retried), '>=', 5, 'access log: some requests were retried '
    . '("502, 200": the refused try, then another instance)'
    or diag join "\n", @lines;
ok !grep({ !/^200 "127\.0\.0\.1:\d+(?:, 127\.0\.0\.1:\d+)?"/ } @lines),
    '... at most one retry each';

my $dead = (grep { $_->{id} eq 'dead' } @{ service('rt')->{instances} || [] })[0];
is $dead->{failures}, scalar(@retried), 'status: one failure of "dead" per retry'
    or diag explain $dead;

ok defined $before, 'status: the service has "retries"';
is service('rt')->{retries} - ($before // 0), scalar(@retried),
    'status: the service counts exactly those retries';

############################################################################
# the retry budget

my $t0 = time;
$r = $t->load(path => '/hb/x', requests => 12, clients => 12,
              keepalive => 0, timeout => 10);
my $took = time - $t0;
diag sprintf '12 requests at once to three hanging instances: %s in %.1f s',
    join(', ', map { "$_ x$r->{statuses}{$_}" } sort keys %{ $r->{statuses} }),
    $took;
is $r->{total}, 12, '12 answers';
ok !grep({ !/^50[24]$/ } keys %{ $r->{statuses} }), '... all 502 or 504';
cmp_ok $r->{statuses}{502} // 0, '>=', 1,
    '... some 502: retries refused by the budget';

my $log = $t->read_file('error.log') // '';
like $log, qr/\[warn\].*mesh: retry budget of service "hb" exhausted \(\d+ retries in flight\), not retrying/,
    'warning: retry budget of service "hb" exhausted';

my $warns = () = $log =~ /retry budget of service "hb" exhausted/g;
is $warns, $r->{statuses}{502} // 0, '... once per 502';

# $upstream_status: a try that timed out is a 504; a retry the budget
# refused shows as a 502 (nginx's "no live upstreams")
@lines = log_lines('hb.log');
is scalar(@lines), 12, 'access log: 12 lines';
my $tries = 0;
for (@lines) {
    my (undef, $codes) = /"([^"]*)" "([^"]*)"/;
    $tries += () = $codes =~ /504/g;
}
diag "$tries tries on the hanging instances for 12 requests";
cmp_ok $tries, '<', 36,
    'fewer tries than 3 per request (what nginx would do without a budget)'
    or diag join "\n", @lines;

$t->done_checks;
done_testing;
