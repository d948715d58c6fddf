#!/usr/bin/perl

# VirtualService matches (docs/policies.md, http[].match): header and uri
# conditions, exact, prefix and regex (the regex must match the whole
# value), select their route; routes are tried in order and the first
# that fits wins; a match item fits when all its conditions do, a route
# when any item does; a request no route fits is answered 404, as Istio
# answers it, with an [info] line naming the VirtualService.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use Time::HiRes qw(time);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

# one instance per route: subset X holds only backend X
my @B = qw(a b c d e f g);
for my $b (@B) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port, labels => { route => $b })->{status},
        201, "register $b";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream orders {
        mesh orders;
        mesh_balancer round_robin;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

sub apply {
    my ($name, $yaml, $what) = @_;
    my $r = $t->apply_policy($name, $yaml);
    like $r->{status}, qr/^20[01]$/, "PUT policy $name: $what"
        or diag explain $r->{json} // $r->{content};
    ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
        '... nginx has its index' or diag explain $t->mesh_status;
}

my $DR = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
    . "metadata:\n  name: orders\nspec:\n  host: orders\n  subsets:\n"
    . join '', map { "  - name: $_\n    labels:\n      route: $_\n" } @B;
apply('orders-dr', $DR, 'one subset per instance');

sub dest { "    route:\n    - destination:\n        host: orders\n"
           . "        subset: $_[0]\n" }

my $VS = <<'EOF';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders-routes
spec:
  hosts:
  - orders
  http:
  - name: header-exact
    match:
    - headers:
        x-mode:
          exact: gold
    - headers:
        x-alt:
          exact: "yes"
EOF
$VS .= dest('a') . <<'EOF';
  - name: header-prefix
    match:
    - headers:
        x-mode:
          prefix: sil
EOF
$VS .= dest('b') . <<'EOF';
  - name: header-regex
    match:
    - headers:
        x-mode:
          regex: "br[o0]nze-[0-9]+"
EOF
$VS .= dest('c') . <<'EOF';
  - name: uri-exact
    match:
    - uri:
        exact: /exact
    - uri:
        prefix: /both
      headers:
        x-both:
          exact: "1"
EOF
$VS .= dest('d') . <<'EOF';
  - name: uri-prefix
    match:
    - uri:
        prefix: /api/
EOF
$VS .= dest('e') . <<'EOF';
  - name: uri-regex
    match:
    - uri:
        regex: "/v[0-9]+"
EOF
$VS .= dest('f') . <<'EOF';
  - name: two-headers
    match:
    - headers:
        x-a:
          exact: "1"
        x-b:
          prefix: "2"
EOF
$VS .= dest('g');

apply('orders-vs', $VS, 'seven routes, no catch-all');

# [path, {headers}, expected backend or status]
my @cases = (
    # header exact
    [ '/',        { 'X-Mode' => 'gold' },        'a' ],
    [ '/x/y?z=1', { 'x-mode' => 'gold' },        'a' ],
    [ '/',        { 'X-Mode' => 'golden' },      404 ],
    [ '/',        { 'X-Mode' => 'Gold' },        404 ],
    [ '/',        { 'X-Alt' => 'yes' },          'a' ],    # second item
    # header prefix
    [ '/',        { 'X-Mode' => 'silver' },      'b' ],
    [ '/',        { 'X-Mode' => 'sil' },         'b' ],
    [ '/',        { 'X-Mode' => 'si' },          404 ],
    [ '/',        { 'X-Mode' => 'xsilver' },     404 ],
    # header regex: whole value
    [ '/',        { 'X-Mode' => 'bronze-12' },   'c' ],
    [ '/',        { 'X-Mode' => 'br0nze-7' },    'c' ],
    [ '/',        { 'X-Mode' => 'bronze-12x' },  404 ],
    [ '/',        { 'X-Mode' => 'xbronze-1' },   404 ],
    [ '/',        { 'X-Mode' => 'bronze-' },     404 ],
    # uri exact (the path, without the query string)
    [ '/exact',          {}, 'd' ],
    [ '/exact?q=1&r=2',  {}, 'd' ],
    [ '/exact/',         {}, 404 ],
    [ '/exactly',        {}, 404 ],
    [ '/Exact',          {}, 404 ],
    # an item fits when all its conditions do
    [ '/both/x',  { 'X-Both' => '1' },           'd' ],
    [ '/both/x',  {},                            404 ],
    [ '/both/x',  { 'X-Both' => '2' },           404 ],
    [ '/',        { 'X-Both' => '1' },           404 ],
    # uri prefix
    [ '/api/',           {}, 'e' ],
    [ '/api/orders/1',   {}, 'e' ],
    [ '/api',            {}, 404 ],
    [ '/apix/',          {}, 404 ],
    # uri regex: whole path
    [ '/v1',             {}, 'f' ],
    [ '/v12',            {}, 'f' ],
    [ '/v12?x=/v1/x',    {}, 'f' ],
    [ '/v1/x',           {}, 404 ],
    [ '/v',              {}, 404 ],
    [ '/vx',             {}, 404 ],
    [ '/a/v1',           {}, 404 ],
    # several headers in one item: all must fit
    [ '/', { 'X-A' => '1', 'X-B' => '23' },      'g' ],
    [ '/', { 'X-A' => '1' },                     404 ],
    [ '/', { 'X-B' => '2' },                     404 ],
    [ '/', { 'X-A' => '11', 'X-B' => '2' },      404 ],
    # first fitting route wins
    [ '/exact',   { 'X-Mode' => 'gold' },        'a' ],
    [ '/api/x',   { 'X-Mode' => 'silver' },      'b' ],
    [ '/v1',      { 'X-Mode' => 'bronze-1' },    'c' ],
    [ '/api/x',   { 'X-A' => '1', 'X-B' => '2' }, 'e' ],
    [ '/v1',      { 'X-A' => '1', 'X-B' => '2' }, 'f' ],
    # no route fits
    [ '/',        {},                            404 ],
    [ '/other',   { 'X-Other' => 'gold' },       404 ],
);

sub desc {
    my ($c) = @_;
    my $h = join ' ', map { "$_: $c->[1]{$_}" } sort keys %{ $c->[1] };
    return "GET $c->[0]" . ($h ? " ($h)" : '');
}

my $slow = 0;
for my $ka (1, 0) {
    my $cl = $t->client(keepalive => $ka);
    for my $c (@cases) {
        my $t0 = time;
        my $r = $cl->get($c->[0], $c->[1]);
        my $dt = time - $t0;
        $slow = $dt if $dt > $slow;
        my $got = $r->{status} == 200 ? $r->{headers}{'x-backend'} // 'none'
                                      : $r->{status};
        is $got, $c->[2], desc($c) . " -> $c->[2]"
            . ($ka ? '' : ', new connection');
    }
    $cl->close;
}
cmp_ok $slow, '<', 1, sprintf('every answer is fast (slowest %.1f ms)',
                              1000 * $slow);

like $t->read_file('error.log') // '',
    qr/\[info\][^\n]*no route of VirtualService "orders-routes"[^\n]*404/,
    'the 404 is logged at [info], naming the VirtualService (Istio: 404, '
    . 'and nothing wrong with the proxy)';

# a catch-all route at the end takes the rest

$VS .= "  - name: rest\n" . dest('a');
apply('orders-vs', $VS, 'with a catch-all route');
my $cl = $t->client;
for my $c ([ '/', {}, 'a' ], [ '/v1/x', {}, 'a' ], [ '/v1', {}, 'f' ],
           [ '/', { 'X-Mode' => 'silver' }, 'b' ]) {
    my $r = $cl->get($c->[0], $c->[1]);
    is $r->{status} == 200 ? $r->{headers}{'x-backend'} : $r->{status},
        $c->[2], desc($c) . " -> $c->[2] (catch-all)";
}
$cl->close;

# regexes read as written: registryd accepts them, nginx matches them the
# same way (wrapped in "^(?:...)$" these meant something else, or broke)

my $RX = <<'EOF';
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders-routes
spec:
  hosts:
  - orders
  http:
  - match:
    - headers:
        x-q:
          regex: '\Qa.b'
EOF
$RX .= dest('a') . <<'EOF';
  - match:
    - headers:
        x-x:
          regex: '(?x) c \d+ # a comment'
EOF
$RX .= dest('b') . <<'EOF';
  - match:
    - headers:
        x-u:
          regex: '(*UTF)d.'
EOF
$RX .= dest('c') . "  - name: rest\n" . dest('g');

apply('orders-vs', $RX, 'regexes with \Q, (?x), (*UTF)');
$cl = $t->client;
for my $c ([ '/', { 'X-Q' => 'a.b' }, 'a' ],
           [ '/', { 'X-Q' => 'axb' }, 'g' ],       # \Q: a literal dot
           [ '/', { 'X-Q' => 'a.b)$' }, 'g' ],
           [ '/', { 'X-X' => 'c12' }, 'b' ],       # (?x): spaces, comment
           [ '/', { 'X-X' => 'c 12' }, 'g' ],
           [ '/', { 'X-U' => 'dz' }, 'c' ],
           [ '/', { 'X-U' => 'dzz' }, 'g' ])
{
    my $r = $cl->get($c->[0], $c->[1]);
    is $r->{status} == 200 ? $r->{headers}{'x-backend'} : $r->{status},
        $c->[2], desc($c) . " -> $c->[2]";
}
$cl->close;

$t->done_checks;
done_testing;
