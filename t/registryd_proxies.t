#!/usr/bin/perl

# GET /v1/proxies and registryctl proxies: every nginx that polls says who
# it is (X-Mesh-Proxy); registryd lists it with the index it routes on, the
# changes it has not applied yet that concern what it routes (lag), and
# synced / stale / gone. A header that does not parse is refused with 400.

use strict;
use warnings;

use lib 't/lib';
use HTTP::Tiny;
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

for my $bin (qw(registryd registryctl)) {
    plan skip_all => "no $bin" unless -x $t->bin($bin);
}

my $conf = $t->write_file('registryd.yaml', "proxy_gone_after: 2s\n");
$t->start_registryd(args => ['--config', $conf]);

my $b1 = $t->start_backend(name => 'b1', events => 1);
is $t->register(a => 'a1', $b1)->{status}, 201, 'register a1';
is $t->register(b => 'b1', $b1)->{status}, 201, 'register b1';

sub poll {
    my ($query, $header) = @_;
    return $t->api(GET => "/v1/snapshot?$query", undef,
                   { 'X-Mesh-Proxy' => $header });
}

sub proxies {
    my $r = $t->api(GET => '/v1/proxies');
    die "GET /v1/proxies: $r->{status}\n" unless $r->{status} == 200;
    return { map { $_->{name} => $_ } @{ $r->{json}{proxies} || [] } };
}

my $h = 'name="fake1"; nginx=1.0.0; module=0.2.0; index=0; '
      . 'zone=1000/32768; stale=0';

my $r = poll('services=a&delta=1', $h);
is $r->{status}, 200, 'a poll with X-Mesh-Proxy';
my $id = $r->{json}{registry};
my $now = $r->{json}{index};

my $p = proxies()->{fake1};
ok $p, 'listed';
is $p->{index}, 0, '... with the index it has';
is $p->{lag}, 1, '... one change about "a" behind';
is $p->{state}, 'stale', '... stale';
like $p->{address}, qr/^127\.0\.0\.1:\d+$/, '... from its address';
is_deeply $p->{services}, ['a'], '... routing "a"';
is_deeply $p->{zone}, { used => 1000, size => 32768 }, '... its zone';
is $p->{nginx}, '1.0.0', '... its nginx version';

(my $h2 = $h) =~ s/index=0/index=$now/;
$r = poll("services=a&delta=1&index=$now&registry=$id&wait=0s", $h2);
is $r->{status}, 200, 'it polls at the current index';
$p = proxies()->{fake1};
is $p->{lag}, 0, '... no lag';
is $p->{state}, 'synced', '... synced';

is $t->register(b => 'b2', $b1)->{status}, 201, 'a change to "b"';
is proxies()->{fake1}{state}, 'synced', '... does not concern it';

is $t->register(a => 'a2', $b1)->{status}, 201, 'a change to "a"';
$p = proxies()->{fake1};
is $p->{lag}, 1, '... is one it lacks';
is $p->{state}, 'stale', '... stale';

(my $h3 = $h2) =~ s/stale=0/stale=1/;
poll('services=a&delta=1', $h3);
is proxies()->{fake1}{state}, 'stale', 'it says its last poll failed: stale';

for my $bad ('name=; index=1', 'index=1', 'name="x"; index=abc',
             'name="x"; zone=12', 'garbage')
{
    $r = poll('services=a', $bad);
    is $r->{status}, 400, "X-Mesh-Proxy: $bad: 400";
    is $r->{json}{field}, 'X-Mesh-Proxy', '... field X-Mesh-Proxy';
}

sleep 2.5;
is proxies()->{fake1}{state}, 'gone', 'no poll for 2 s: gone';

# a real nginx

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
%%MESH_PRELUDE%%
    upstream a {
        mesh a;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://a; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index(index => $t->registry_index), 'nginx synced';

my ($mine, $end) = (undef, time + 5);
while (time < $end) {
    ($mine) = grep { $_->{name} =~ /:\Q${\ $t->dir}\E\/nginx\.conf$/ }
              values %{ proxies() };
    last if $mine && $mine->{waiting};
    sleep 0.05;
}
ok $mine, 'nginx is listed as HOST:CONF' or diag explain proxies();
is $mine->{state}, 'synced', '... synced';
ok $mine->{waiting}, '... waiting on its long-poll';
is $mine->{index}, $t->registry_index, '... at the current index';
is $mine->{nginx}, '1.22.1', '... nginx 1.22.1';
like $mine->{module}, qr/^\d+\.\d+\.\d+$/, '... the module version';
is_deeply $mine->{services}, ['a'], '... routing "a"';
ok $mine->{zone}{size} > 0 && $mine->{zone}{used} > 0
    && $mine->{zone}{used} < $mine->{zone}{size}, '... its zone usage';

my ($code, $out, $err) = $t->run({ timeout => 10 }, $t->bin('registryctl'),
    '--registry', $t->registryd_url, 'proxies');
is $code, 0, 'registryctl proxies';
like $out, qr/^NAME\s+ADDRESS\s+STATE\s+INDEX\s+LAG\s+LAST SEEN\s+NGINX\s+MODULE\s*$/m,
    '... prints a table';
like $out, qr/^\S+nginx\.conf\s+127\.0\.0\.1:\d+\s+synced\s+\d+\s+0\s/m,
    '... with this nginx, synced';
like $out, qr/^fake1\s+\S+\s+gone\s/m, '... and the gone one';

($code, $out) = $t->run({ timeout => 10 }, $t->bin('registryctl'),
    '--registry', $t->registryd_url, 'proxies', '--json');
ok eval { MeshTest->decode_json($out)->{proxies} }, '... --json';

# gone: proxy_gone_after (2 s) after registryd saw its long-poll end
# (its hang-up scan runs every second): within 2-3 s, 6 s allowed
$t->stop_nginx;
my $name = $mine->{name};
$end = time + 6;
while (time < $end) {
    ($mine) = grep { $_->{name} eq $name } values %{ proxies() };
    last if ($mine->{state} // '') eq 'gone';
    sleep 0.1;
}
is $mine->{state}, 'gone', 'nginx stopped: gone';

$t->done_checks;
done_testing;
