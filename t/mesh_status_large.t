#!/usr/bin/perl

# mesh_status at size: 3,000 instances over three services with long
# names, and a service named by eight upstreams whose names are too long
# for one of the answer's buffers together.
#
# - the JSON parses and lists every instance of every service, once, and
#   every upstream name whole;
# - the Prometheus text is complete: one nginx_mesh_member_state line per
#   instance, every family of every service, nothing it cannot parse
#   (and promtool agrees, when installed);
# - what a status request takes from memory follows its answer (the
#   answer is built in buffers taken as they fill), not a worst case per
#   instance: nginx's own allocation trace (error_log debug, in Debian's
#   nginx built --with-debug) in the status location counts the bytes the
#   request's pool took while building it.

use strict;
use warnings;

use lib 't/lib';
use POSIX ();
use Test::More;
use MeshTest;

# one worker: the requests measured all find it synced
my $t = MeshTest->new(log_level => 'info', workers => 1);

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

my $N = 3000;
my @svcs = map { "catalog-search-frontend-$_-europe-west-1" } qw(a b c);
my %ids;        # service => { id => 1 }

for my $i (0 .. $N - 1) {
    $ids{ $svcs[$i % 3] }{ sprintf 'instance-%05d-%s', $i, 'z' x 40 } = 1;
}

# from 4 clients at once; ports where nothing listens (no traffic here)
my @kids;
for my $k (0 .. 3) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $t->_reset_ua;
        for (my $i = $k; $i < $N; $i += 4) {
            my $r = $t->register($svcs[$i % 3],
                                 sprintf('instance-%05d-%s', $i, 'z' x 40),
                                 20000 + $i, weight => 1 + $i % 5);
            POSIX::_exit(1) unless $r->{status} == 201;
        }
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad++ if $? }
is $bad, 0, "registered $N instances of three services";

is $t->register(wide => 'w1', 20000)->{status}, 201, 'register wide/w1';

# eight upstreams of "wide", 2,500 characters a name: its header in the
# JSON (20 KB) is larger than one buffer of the answer
my @wide = map { "wide$_-" . ('u' x 2500) } 1 .. 8;
my $wide = join '', map { "    upstream $_ { mesh wide; }\n" } @wide;
my $ups = join '', map { "    upstream up$_ { mesh $svcs[$_]; }\n" } 0 .. 2;

$t->nginx_conf(<<"EOF");
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    mesh_zone 32m;

$ups
$wide
    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location = /mesh/status {
            error_log %%TESTDIR%%/status-error.log debug;
            mesh_status;
        }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index(timeout => 20), 'nginx has the registry index';

my $url = 'http://127.0.0.1:' . $t->named_port('HTTP') . '/mesh/status';
my $log = $t->dir . '/status-error.log';

# GET $query three times; returns the last response and the fewest bytes
# a request took from malloc and posix_memalign (nginx's debug trace) while
# it was served (the fewest: a worker that syncs its views in the handler
# counts what they take too)
sub fetch {
    my ($query) = @_;
    my ($r, $least);

    for (1 .. 3) {
        my $from = -s $log // 0;
        $r = HTTP::Tiny->new(timeout => 20, keep_alive => 0)
            ->get($url . $query);
        my $text = substr($t->read_file($log) // '', $from);
        my $took = 0;
        $took += $1
            while $text =~ /(?:malloc|posix_memalign): [0-9A-Fa-f]+:(\d+)/g;
        $least = $took if !defined $least || $took < $least;
    }

    return ($r, $least);
}

# the trace needs an nginx built --with-debug (Debian's is)
my (undef, $vout, $verr) = $t->run($ENV{MESH_NGINX} || '/usr/sbin/nginx',
                                   '-V');
my $traced = ($vout . $verr) =~ /--with-debug/;
diag 'nginx without --with-debug: no allocation trace' unless $traced;

############################################################################
# JSON

my ($r, $took) = fetch('');
is $r->{status}, 200, 'JSON: 200';
is $r->{headers}{'content-length'}, length $r->{content},
    'JSON: Content-Length is the length of the body';
my $st = eval { $t->decode_json($r->{content}) };
ok $st, 'JSON: parses' or diag $@;
$st //= {};

for my $svc (@svcs) {
    my ($s) = grep { $_->{name} eq $svc } @{ $st->{services} || [] };
    my @got = map { $_->{id} } @{ $s ? $s->{instances} : [] };
    my %got = map { $_ => 1 } @got;
    is scalar @got, $N / 3, "JSON: $svc lists $N/3 instances";
    is_deeply \%got, $ids{$svc}, "JSON: ... each registered one, once";
    my $by = $s ? $s->{instances_by_state} : {};
    is $by->{healthy}, $N / 3, "JSON: ... all healthy";
}

my ($w) = grep { $_->{name} eq 'wide' } @{ $st->{services} || [] };
is_deeply $w && $w->{upstreams}, \@wide,
    'JSON: wide lists its eight long upstream names whole';
is $w && scalar @{ $w->{instances} }, 1, 'JSON: ... and its instance';

my $json = length $r->{content};

if ($traced) {
    diag sprintf 'JSON: %d bytes, the request took %d bytes (%.2fx)',
        $json, $took, $took / $json;
    cmp_ok $took, '<=', 1.1 * $json + 65536,
        'JSON: memory taken follows the answer (at most 1.1 times it '
        . 'and 64 KB)';
}

############################################################################
# Prometheus

($r, $took) = fetch('?format=prometheus');
is $r->{status}, 200, 'Prometheus: 200';
is $r->{headers}{'content-length'}, length $r->{content},
    'Prometheus: Content-Length is the length of the body';
my $text = $r->{content} // '';
like $text, qr/\n\z/, 'Prometheus: ends with a whole line';

my $m = $t->parse_prometheus($text);
is_deeply $m->{bad}, [], 'Prometheus: every line parses';

my (%state, %weight);
for (@{ $m->{samples} }) {
    my ($name, $l) = @$_;
    $state{ $l->{service} }{ $l->{member} }++
        if $name eq 'nginx_mesh_member_state';
    $weight{ $l->{service} }++ if $name eq 'nginx_mesh_member_weight';
}

for my $svc (@svcs) {
    is_deeply $state{$svc}, { map { $_ => 1 } keys %{ $ids{$svc} } },
        "Prometheus: one nginx_mesh_member_state line per instance of $svc";
    is $weight{$svc}, $N / 3, 'Prometheus: ... and of member_weight';
    is $t->prom_sum($m, 'nginx_mesh_instances',
                    { service => $svc, state => 'healthy' }), $N / 3,
        'Prometheus: ... nginx_mesh_instances healthy';
    is $t->prom_sum($m, 'nginx_mesh_service_active_requests',
                    { service => $svc }), 0,
        'Prometheus: ... the last family is there';
}

is scalar(keys %{ $m->{type} }), 30,
    'Prometheus: the TYPE of all 30 families (with overflow and '
    . 'retry_overflow, and the 9 of TCP services)';

{
    my ($rc, $out) = $t->promtool_check($text);
    is $rc, 0, 'Prometheus: promtool check metrics passes'
        or diag substr($out, 0, 2000);
}

my $prom = length $text;

if ($traced) {
    diag sprintf 'Prometheus: %d bytes, the request took %d bytes (%.2fx)',
        $prom, $took, $took / $prom;
    cmp_ok $took, '<=', 1.1 * $prom + 65536,
        'Prometheus: memory taken follows the answer (at most 1.1 times '
        . 'it and 64 KB)';
}

$t->done_checks;
done_testing;
