#!/usr/bin/perl

# Picks over a large upstream (issue 12): 300 instances of weights 1, 2
# and 3 (one backend nginx listening on 300 ports), two workers.
#
# - round robin is exact over every cycle of 600 picks across both
#   workers: they share one position of one weighted schedule;
# - random follows the weights, least_request spreads over the set;
# - an instance nothing listens on is ejected after its first refused
#   connection (consecutive_5xx=1), the retry reaches another instance,
#   the other worker leaves it out too (the service's ejection epoch
#   moved), and round robin is exact again over the 300 left;
# - its ejection running out brings it back into the set.

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

my $N = 300;
my @ports = $t->start_backend_nginx(name => 'many', ports => $N);
my (%weight, $cycle);

for my $i (0 .. $N - 1) {
    my $w = 1 + $i % 3;
    my $r = $t->register(big => sprintf('i%03d', $i), $ports[$i],
                         weight => $w);
    $r->{status} == 201 or BAIL_OUT("register i$i: $r->{status}");
    $weight{"p$ports[$i]"} = $w;
    $cycle += $w;
}
pass "registered $N instances of big, cycle $cycle";

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    access_log off;
%%MESH_PRELUDE%%
    upstream big {
        mesh big;
        mesh_outlier consecutive_5xx=1 base_ejection_time=4s;
    }

    upstream big_random {
        mesh big;
        mesh_balancer random;
    }

    upstream big_lr {
        mesh big;
        mesh_balancer least_request;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%% reuseport;
        add_header X-Worker $pid always;

        location / {
            proxy_pass http://big;
            proxy_next_upstream error timeout http_502;
        }

        location /random/ { proxy_pass http://big_random; }
        location /lr/     { proxy_pass http://big_lr; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index'
    or diag explain $t->mesh_status;

# every instance has exactly $k times its weight
sub exact {
    my ($count, $k) = @_;
    my @off = grep { ($count->{$_} // 0) != $k * $weight{$_} } keys %weight;
    my @extra = grep { !exists $weight{$_} } keys %$count;
    return (@off + @extra == 0, [ @off[0 .. ($#off < 4 ? $#off : 4)] ]);
}

############################################################################
# round robin: two cycles over both workers, a new connection each

my $r = $t->load(requests => 2 * $cycle, clients => 2, keepalive => 0,
                 headers => [qw(x-backend x-worker)]);
is $r->{ok}, 2 * $cycle, "round robin: $r->{ok} requests succeed"
    or diag explain $r->{errors};
my ($ok, $off) = exact($r->{count}, 2);
ok $ok, 'round robin: every instance exactly twice its weight'
    or diag explain { map { $_ => $r->{count}{$_} } @$off };
cmp_ok scalar(keys %{ $r->{by}{'x-worker'} || {} }), '==', 2,
    'both workers served' or diag explain $r->{by};

############################################################################
# random follows the weights; least_request reaches most of the set

$r = $t->load(path => '/random/', requests => 6000, clients => 2,
              keepalive => 0);
is $r->{ok}, 6000, 'random: 6000 requests succeed';
my %by_w;
$by_w{ $weight{$_} } += $r->{count}{$_} for keys %{ $r->{count} };
my $ratio = ($by_w{3} // 0) / ($by_w{1} || 1);
diag sprintf 'random: weight 1 %d, 2 %d, 3 %d requests, 3:1 = %.2f',
    $by_w{1} // 0, $by_w{2} // 0, $by_w{3} // 0, $ratio;
cmp_ok $ratio, '>', 2.5, 'random: weight-3 instances get about 3x ...';
cmp_ok $ratio, '<', 3.5, '... the weight-1 ones';
cmp_ok scalar(keys %{ $r->{count} }), '>=', $N - 10,
    'random: nearly every instance picked';

$r = $t->load(path => '/lr/', requests => 3000, clients => 2,
              keepalive => 0);
is $r->{ok}, 3000, 'least_request: 3000 requests succeed';
cmp_ok scalar(keys %{ $r->{count} }), '>=', $N - 30,
    'least_request: spread over the set';

############################################################################
# an instance that refuses connections joins: ejected at its first pick

my $dead = $t->port;
is $t->register(big => 'dead', $dead, weight => 1)->{status}, 201,
    "register big/dead on port $dead, where nothing listens";

sub inst {
    my ($id) = @_;
    my $st = $t->mesh_status or return undef;
    my ($s) = grep { $_->{name} eq 'big' } @{ $st->{services} || [] };
    my ($i) = grep { $_->{id} eq $id } @{ $s ? $s->{instances} : [] };
    return $i;
}

my $end = time + 5;
sleep 0.02 until (inst('dead') || time > $end);
ok inst('dead'), 'nginx has big/dead';

$r = $t->load(requests => 2 * ($cycle + 1), clients => 2, keepalive => 0);
is $r->{ok}, 2 * ($cycle + 1),
    'every request succeeds: the retry takes another instance'
    or diag explain $r->{errors};
my $d = inst('dead') // {};
is $d->{state}, 'ejected', 'big/dead is ejected' or diag explain $d;
cmp_ok $d->{requests}, '>=', 1, 'big/dead was picked ...';
cmp_ok $d->{requests}, '<=', 2, '... once, or once per worker at most';
my $picked = $d->{requests};

# with dead out of both workers' sets, exact again over the 300

$r = $t->load(requests => 2 * $cycle, clients => 2, keepalive => 0,
              headers => [qw(x-backend x-worker)]);
is $r->{ok}, 2 * $cycle, 'after the ejection: all succeed';
($ok, $off) = exact($r->{count}, 2);
ok $ok, 'after the ejection: every instance exactly twice its weight'
    or diag explain { map { $_ => $r->{count}{$_} } @$off };
cmp_ok scalar(keys %{ $r->{by}{'x-worker'} || {} }), '==', 2,
    'both workers served';
is inst('dead')->{requests}, $picked, 'big/dead was not picked again';

# its 4 s ejection runs out: back in the set, picked (and ejected) again

sleep 4.5;
$r = $t->load(requests => $cycle + 1, clients => 2, keepalive => 0);
is $r->{ok}, $cycle + 1, 'after the ejection time: all succeed';
cmp_ok inst('dead')->{requests}, '>', $picked,
    'big/dead is back in the set once its ejection ran out';
like $t->read_file('error.log'),
    qr/mesh: instance "dead" \(127\.0\.0\.1:$dead\) of service "big" returns after its ejection/,
    'notice: big/dead returns after its ejection';

$t->done_checks;
done_testing;
