#!/usr/bin/perl

# mesh_balancer consistent_hash: the ring is built exactly as nginx's own
# "hash KEY consistent" builds it for "server ADDRESS:PORT;", so 10,000
# keys map to the same backend through a mesh upstream and through a stock
# nginx upstream with the same members, in the same nginx.  Deregistering
# one instance moves only the keys that were on it, and the new mapping is
# again the stock one without that server.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $KEYS = 10_000;

$t->start_registryd;

for my $b (qw(b1 b2 b3)) {
    my $port = $t->start_backend(name => $b, events => 1,
                                 port => $t->named_port(uc $b));
    is $t->register(orders => "o-$b", $port)->{status}, 201,
        "register o-$b at 127.0.0.1:$port";
}

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream mesh_ch {
        mesh orders;
        mesh_balancer consistent_hash $arg_key;
        keepalive 8;
    }

    upstream stock_ch {
        hash $arg_key consistent;
        server 127.0.0.1:%%PORT_B1%%;
        server 127.0.0.1:%%PORT_B2%%;
        server 127.0.0.1:%%PORT_B3%%;
        keepalive 8;
    }

    # the stock ring without b2
    upstream stock_ch2 {
        hash $arg_key consistent;
        server 127.0.0.1:%%PORT_B1%%;
        server 127.0.0.1:%%PORT_B3%%;
        keepalive 8;
    }

    # keepalive to the backends only makes the 40,000 requests faster
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;
        location /mesh   { proxy_pass http://mesh_ch; }
        location /stock  { proxy_pass http://stock_ch; }
        location /stock2 { proxy_pass http://stock_ch2; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

my @keys = map { "k$_-" . ($_ * 7919 % 100_003) } 1 .. $KEYS;

# key i -> backend name through location $loc
sub mapping {
    my ($loc) = @_;
    my $r = $t->load(paths => [ map { "$loc?key=$_" } @keys ], clients => 4,
                     timeout => 60);
    is $r->{ok}, $KEYS, "$loc: $KEYS requests succeed"
        or diag explain { %$r, results => undef };
    return [ map { $_ ? $_->[1] : '' } @{ $r->{results} }[0 .. $KEYS - 1] ];
}

sub differ {
    my ($a, $b) = @_;
    return grep { ($a->[$_] // '') ne ($b->[$_] // '') } 0 .. $KEYS - 1;
}

my $stock = mapping('/stock');
my $mesh = mapping('/mesh');

my %spread;
$spread{$_}++ for @$mesh;
note 'mesh spread: ' . join ', ', map { "$_ $spread{$_}" } sort keys %spread;

my @diff = differ($stock, $mesh);
is scalar(@diff), 0, "all $KEYS keys map as in a stock nginx upstream"
    or diag scalar(@diff) . " differ, e.g. key $keys[$diff[0]]: stock "
            . "$stock->[$diff[0]], mesh $mesh->[$diff[0]]";

# deterministic: the same keys again, same answers

my $again = mapping('/mesh');
is scalar(differ($mesh, $again)), 0, 'a second pass maps every key the same';

# remove b2: only b2's keys move

is $t->deregister(orders => 'o-b2')->{status}, 200, 'deregister o-b2';
ok $t->wait_mesh_index, 'nginx has the new index'
    or diag explain $t->mesh_status;

my $after = mapping('/mesh');
my @moved = differ($mesh, $after);
my @bad = grep { $mesh->[$_] ne 'b2' } @moved;
my @stay = grep { $after->[$_] eq 'b2' } 0 .. $KEYS - 1;

note scalar(@moved) . " keys moved; b2 held $spread{b2}" if $spread{b2};
is scalar(@bad), 0, 'no key that was on b1 or b3 moved'
    or diag scalar(@bad) . " moved, e.g. key $keys[$bad[0]]: "
            . "$mesh->[$bad[0]] -> $after->[$bad[0]]";
is scalar(@stay), 0, 'no key goes to b2 any more';
is scalar(@moved), $spread{b2} // -1, "every key of b2 moved";

my $stock2 = mapping('/stock2');
@diff = differ($stock2, $after);
is scalar(@diff), 0, 'the new mapping is the stock one without b2'
    or diag scalar(@diff) . " differ";

$t->done_checks;
done_testing;
