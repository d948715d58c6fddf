#!/usr/bin/perl

# VirtualService match items with ignoreUriCase and sourceLabels
# (docs/policies.md, http[].match): with ignoreUriCase an exact or prefix
# uri fits the path in any ASCII case, a regex keeps its case, and a
# prefix rewrite replaces the prefix as the request wrote it; an item with
# sourceLabels fits only in an nginx whose mesh_labels hold every pair
# (the client workload's labels): the others fall through to the next
# route; an nginx without mesh_labels fits none, and a reload that changes
# them changes the routes taken. A bad mesh_labels fails nginx -t with an
# [emerg] naming the directive and the value.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

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

my $CONF = <<'EOF';
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
%%LABELS%%
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

sub conf {
    my ($labels) = @_;
    (my $text = $CONF) =~ s/%%LABELS%%/$labels/;
    $t->nginx_conf($text);
}

# several directives add up; sorted at start whatever their order
conf("    mesh_labels version=v1;\n    mesh_labels app=web tier=front;\n");
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

apply('orders-dr', "apiVersion: networking.istio.io/v1\n"
    . "kind: DestinationRule\nmetadata:\n  name: orders\nspec:\n"
    . "  host: orders\n  subsets:\n"
    . join('', map { "  - name: $_\n    labels:\n      route: $_\n" } @B),
    'one subset per instance');

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
  - name: from-api
    match:
    - sourceLabels:
        app: api
EOF
$VS .= dest('b') . <<'EOF';
  - name: from-web-v2
    match:
    - sourceLabels:
        app: web
        version: v2
EOF
$VS .= dest('b') . <<'EOF';
  - name: from-web
    match:
    - sourceLabels:
        app: web
      uri:
        prefix: /s/
    - sourceLabels:
        version: v1
        app: web
      headers:
        x-src:
          exact: "1"
EOF
$VS .= dest('a') . <<'EOF';
  - name: nocase-exact
    match:
    - uri:
        exact: /Api/X
      ignoreUriCase: true
EOF
$VS .= dest('c') . <<'EOF';
  - name: nocase-prefix
    match:
    - uri:
        prefix: /Shop/
      ignoreUriCase: true
    rewrite:
      uri: /api/
EOF
$VS .= dest('d') . <<'EOF';
  - name: case-kept
    match:
    - uri:
        exact: /Case/X
    - uri:
        prefix: /Keep/
      ignoreUriCase: false
EOF
$VS .= dest('e') . <<'EOF';
  - name: nocase-regex
    match:
    - uri:
        regex: "/rx/[a-z]+"
      ignoreUriCase: true
EOF
$VS .= dest('g') . "  - name: rest\n" . dest('f');

apply('orders-vs', $VS, 'sourceLabels and ignoreUriCase routes');

# [path, {headers}, backend, the path the backend saw (undef: as sent)]
my @web = (
    # sourceLabels: app=web fits, app=api and version=v2 do not
    [ '/s/x',     {},                 'a' ],
    [ '/',        { 'X-Src' => '1' }, 'a' ],
    [ '/',        { 'X-Src' => '2' }, 'f' ],
    [ '/S/x',     {},                 'f' ],    # the prefix keeps its case
    [ '/',        {},                 'f' ],
    # ignoreUriCase on exact
    [ '/Api/X',   {},                 'c' ],
    [ '/API/X',   {},                 'c' ],
    [ '/api/x',   {},                 'c' ],
    [ '/aPi/x?Q=1', {},               'c' ],
    [ '/API/X/',  {},                 'f' ],
    [ '/API/Y',   {},                 'f' ],
    # ignoreUriCase on prefix, with a rewrite of the prefix as written
    [ '/Shop/a',  {},                 'd', '/api/a' ],
    [ '/SHOP/Ab', {},                 'd', '/api/Ab' ],
    [ '/shop/',   {},                 'd', '/api/' ],
    [ '/shopx',   {},                 'f' ],
    # without the flag (or with false) the case counts
    [ '/Case/X',  {},                 'e' ],
    [ '/case/x',  {},                 'f' ],
    [ '/CASE/X',  {},                 'f' ],
    [ '/Keep/a',  {},                 'e' ],
    [ '/keep/a',  {},                 'f' ],
    # Istio: a regex is not affected by ignoreUriCase
    [ '/rx/abc',  {},                 'g' ],
    [ '/RX/abc',  {},                 'f' ],
    [ '/rx/ABC',  {},                 'f' ],
);

sub desc {
    my ($c) = @_;
    my $h = join ' ', map { "$_: $c->[1]{$_}" } sort keys %{ $c->[1] };
    return "GET $c->[0]" . ($h ? " ($h)" : '');
}

sub run_cases {
    my ($what, @cases) = @_;
    my $cl = $t->client;
    for my $c (@cases) {
        my $r = $cl->get($c->[0], $c->[1]);
        my $got = $r->{status} == 200 ? $r->{headers}{'x-backend'} // 'none'
                                      : $r->{status};
        is $got, $c->[2], desc($c) . " -> $c->[2] ($what)";
        next unless defined $c->[3];
        is $r->{headers}{'x-request-uri'}, $c->[3],
            desc($c) . " reaches the backend as $c->[3]";
    }
    $cl->close;
}

run_cases('mesh_labels app=web tier=front version=v1', @web);

# an nginx without mesh_labels: no item with sourceLabels fits

conf('');
ok $t->reload_nginx(wait_old => 1), 'reload without mesh_labels';
ok $t->wait_mesh_index, '... the new workers have the index';
run_cases('no mesh_labels',
          [ '/s/x', {}, 'f' ], [ '/', { 'X-Src' => '1' }, 'f' ],
          [ '/', {}, 'f' ], [ '/API/X', {}, 'c' ]);

# other labels: another route

conf("    mesh_labels app=api;\n");
ok $t->reload_nginx(wait_old => 1), 'reload with mesh_labels app=api';
ok $t->wait_mesh_index, '... the new workers have the index';
run_cases('mesh_labels app=api',
          [ '/', {}, 'b' ], [ '/s/x', {}, 'b' ], [ '/API/X', {}, 'b' ]);

conf("    mesh_labels app=web version=v2;\n");
ok $t->reload_nginx(wait_old => 1), 'reload with app=web version=v2';
ok $t->wait_mesh_index, '... the new workers have the index';
run_cases('mesh_labels app=web version=v2',
          [ '/', {}, 'b' ], [ '/Shop/a', {}, 'b' ]);

# a bad mesh_labels fails nginx -t, naming the directive and the value

my $long = 'v' x 257;
for my $bad ([ 'app', qr/"app"/, 'no "="' ],
             [ '"bad key=x"', qr/"bad key=x"/, 'a name with a space' ],
             [ '=x', qr/"=x"/, 'an empty name' ],
             [ "-app=x", qr/"-app=x"/, 'a name starting with "-"' ],
             [ "app=$long", qr/"app"/, 'a value of 257 bytes' ],
             [ 'app=a app=b', qr/duplicate label "app"/, 'a label twice' ],
             [ join(' ', map { "k$_=v" } 1 .. 65), qr/"k65=v"/,
               '65 labels' ])
{
    my ($arg, $value, $what) = @$bad;
    my $text = $CONF;
    $text =~ s/%%LABELS%%/    mesh_labels $arg;/;
    $t->nginx_conf($text, 'bad.conf');
    my ($code, $out) = $t->nginx_test('bad.conf');
    isnt $code, 0, "mesh_labels with $what: nginx -t fails";
    my ($emerg) = grep { /\[emerg\]/ } split /\n/, $out;
    like $emerg // '', qr/mesh_labels/, "... [emerg] names mesh_labels"
        or diag $out;
    like $emerg // '', $value, '... and the value' or diag $out;
}

# and a good one passes, the empty value included (as the registry's)
my $v256 = 'v' x 256;
my $text = $CONF;
$text =~ s/%%LABELS%%/    mesh_labels app=web x.y_z-1= tier=$v256;/;
$t->nginx_conf($text, 'good.conf');
my ($code, $out) = $t->nginx_test('good.conf');
is $code, 0, 'mesh_labels with an empty value and a 256-byte one: nginx -t '
    . 'passes' or diag $out;

$t->done_checks;
done_testing;
