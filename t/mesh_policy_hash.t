#!/usr/bin/perl

# consistentHash by query parameter, cookie and source address
# (docs/policies.md, TrafficPolicy): each key stays on one instance, on
# kept-alive and on fresh connections (so through both workers), and
# different keys reach more than one instance.  The source addresses are
# loopback ones, 127.0.0.1 to 127.0.0.20, bound by the client.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

$t->start_registryd;

for my $b (qw(b1 b2 b3)) {
    my $port = $t->start_backend(name => $b, events => 1);
    is $t->register(orders => $b, $port)->{status}, 201, "register $b";
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

sub apply_hash {
    my ($hash, $what) = @_;
    my $r = $t->apply_policy(lb => <<"EOF");
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: orders
spec:
  host: orders
  trafficPolicy:
    loadBalancer:
      consistentHash:
$hash
EOF
    like $r->{status}, qr/^20[01]$/, "PUT consistentHash by $what"
        or diag explain $r->{json} // $r->{content};
    ok $t->wait_mesh_index(index => $r->{json}{index} // 1e9),
        '... nginx has its index' or diag explain $t->mesh_status;
}

sub answer {
    my ($r) = @_;
    return $r->{status} == 200 ? $r->{headers}{'x-backend'} // 'none'
                               : "status $r->{status}";
}

# $send->($client, $key) sends one request; each key 3 times on one
# kept-alive connection and 2 times on fresh ones.  local_addr => []:
# each key is the source address its clients bind
sub check_keys {
    my ($what, $keys, $send, %copt) = @_;
    my (%map, %per);

    for my $k (@$keys) {
        my %o = (%copt, ref $copt{local_addr} ? (local_addr => $k) : ());
        my $c = $t->client(%o);
        $map{$k}{ answer($send->($c, $k)) }++ for 1 .. 3;
        $c->close;
        $c = $t->client(%o, keepalive => 0);
        $map{$k}{ answer($send->($c, $k)) }++ for 1 .. 2;
        $c->close;
    }

    my @split = grep { keys %{ $map{$_} } != 1
                       || (keys %{ $map{$_} })[0] !~ /^b[123]$/ } @$keys;
    is scalar(@split), 0, "$what: each key stays on one instance"
        or diag explain { map { $_ => $map{$_} } @split[0 .. 4] };

    $per{ (keys %{ $map{$_} })[0] }++ for @$keys;
    note "$what: keys per instance: "
        . join ', ', map { "$_ $per{$_}" } sort keys %per;
    cmp_ok scalar(grep { /^b[123]$/ } keys %per), '>', 1,
        "$what: different keys reach more than one instance"
        or diag explain \%per;
}

my @keys = map { "k$_" } 1 .. 40;

# query parameter

apply_hash('        httpQueryParameterName: user', 'query parameter user');
check_keys('query ?user=', \@keys,
    sub { $_[0]->get("/orders?a=1&user=$_[1]&b=2") });

# the key is the argument, not the rest of the request
my $c = $t->client;
my %one;
$one{ answer($c->get("/p$_?user=k7&x=$_")) }++ for 1 .. 10;
$c->close;
is scalar(keys %one), 1, 'user=k7 with other paths and arguments: one instance'
    or diag explain \%one;

# cookie

apply_hash("        httpCookie:\n          name: session\n          ttl: 0s",
           'cookie session');
check_keys('cookie session', \@keys,
    sub { $_[0]->get('/', { Cookie => "theme=dark; session=$_[1]; z=1" }) });

$c = $t->client;
%one = ();
$one{ answer($c->get('/', { Cookie => "session=k7; n=$_" })) }++ for 1 .. 10;
$c->close;
is scalar(keys %one), 1, 'session=k7 with other cookies: one instance'
    or diag explain \%one;

# no cookie yet, a ttl: the first answer gives one (ttl 0s: a session
# cookie), and the first request already went where the cookie leads
$c = $t->client(keepalive => 0);
my $r = $c->get('/first');
like $r->{headers}{'set-cookie'} // '', qr/^session="[0-9a-f]{16}"; HttpOnly$/,
    'no session cookie, ttl 0s: Set-Cookie session="..."; HttpOnly';
my ($issued) = ($r->{headers}{'set-cookie'} // '') =~ /"([0-9a-f]{16})"/;
%one = ();
$one{ answer($t->client->get('/', { Cookie => "session=\"$issued\"" })) }++
    for 1 .. 10;
is_deeply [ keys %one ], [ answer($r) ],
    '... the first request went where the cookie then leads'
    or diag explain \%one;
$r = $t->client->get('/', { Cookie => "session=\"$issued\"" });
ok !defined $r->{headers}{'set-cookie'}, '... and with it, none is given';

apply_hash("        httpCookie:\n          name: sid\n          ttl: 90s\n"
           . "          path: /shop", 'cookie sid, ttl 90s');
my (%first, $sticky);
for my $i (1 .. 20) {
    my $cl = $t->client(local_addr => "127.0.0.$i", keepalive => 0);
    $r = $cl->get('/shop');
    my ($v) = ($r->{headers}{'set-cookie'} // '')
        =~ /^sid="([0-9a-f]{16})"; Max-Age=90; Path=\/shop; HttpOnly$/;
    next unless defined $v;
    $first{ answer($r) }++;
    my $again = $t->client->get('/shop', { Cookie => "sid=\"$v\"" });
    $sticky++ if answer($again) eq answer($r);
}
is $sticky, 20, '20 clients without the cookie: each given one (Max-Age=90, '
    . 'Path=/shop), and each one\'s first request where its cookie leads';
cmp_ok scalar(keys %first), '>', 1, '... spread over the instances'
    or diag explain \%first;

# source address: 127.0.0.1 .. 127.0.0.20

apply_hash('        useSourceIp: true', 'source address');
my @addrs = map { "127.0.0.$_" } 1 .. 20;
check_keys('useSourceIp', \@addrs, sub { $_[0]->get("/s?n=" . rand) },
           local_addr => []);

# the three named in the brief: each on its own instance, whatever is sent
for my $a (qw(127.0.0.1 127.0.0.2 127.0.0.3)) {
    my %seen;
    for my $i (1 .. 6) {
        my $cl = $t->client(local_addr => $a, keepalive => 0);
        $seen{ answer($cl->get("/x$i", { 'X-User' => "u$i",
                                         Cookie => "session=s$i" })) }++;
    }
    is scalar(keys %seen), 1, "from $a: one instance"
        or diag explain \%seen;
}

$t->done_checks;
done_testing;
