#!/usr/bin/perl

# mesh_status's page (the dashboard), in a real headless browser (Debian's
# chromium through chromedriver, t/lib/MeshBrowser.pm):
#
# - negotiation: a browser's Accept or ?format=html gets the page
#   (text/html, Vary: Accept when Accept decided, a Content-Security-Policy
#   that lets it load nothing from elsewhere), curl's */* or no Accept the
#   JSON as before, ?format=json/prometheus whatever the Accept; HEAD;
# - after real traffic (orders: 120 requests, 20/40/60 over weights 1:2:3;
#   pay: one instance answering 503 and ejected by mesh_outlier), every
#   number the page shows (registry, services, instances) equals the JSON
#   status, the request counts are the ones sent, the ejected instance is
#   shown as ejected, and the charts drew a rate from the traffic;
# - registryd stopped: the page shows the registry outage with the
#   status's state and last_error;
# - nginx stopped: the page says the status location does not answer.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;
use MeshBrowser;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;'
    . 'q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,'
    . 'application/signed-exchange;v=b3;q=0.7';

$t->start_registryd;

my %port;
for my $n (1 .. 3) {
    $port{"o$n"} = $t->start_backend(name => "o$n", events => 1);
    is $t->register(orders => "o$n", $port{"o$n"}, weight => $n)->{status},
        201, "register orders/o$n weight $n";
}
$port{p1} = $t->start_backend(name => 'p1', events => 1);
$port{p2} = $t->start_backend(name => 'p2', events => 1, status => 503);
is $t->register(pay => $_, $port{$_})->{status}, 201, "register pay/$_"
    for qw(p1 p2);

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

    upstream pay {
        mesh pay;
        mesh_balancer round_robin;
        mesh_outlier consecutive_5xx=3 base_ejection_time=300s
                     max_ejection_percent=50;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;

        location /     { proxy_pass http://orders; }
        location /pay/ { proxy_pass http://pay; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx has the registry index';

my $base = 'http://127.0.0.1:' . $t->named_port('HTTP');
my $status = "$base/mesh/status";

############################################################################
# negotiation

sub fetch {
    my ($method, $url, $accept) = @_;
    return $t->http($method => $url, undef,
                    defined $accept ? { Accept => $accept } : {});
}

my $r = fetch(GET => $status, $BROWSER_ACCEPT);
is $r->{status}, 200, "a browser's Accept: 200";
like $r->{headers}{'content-type'}, qr{^text/html; charset=utf-8$},
    '... text/html';
like $r->{content}, qr{^<!DOCTYPE html>}, '... the page';
is $r->{headers}{vary}, 'Accept', '... Vary: Accept';
is $r->{headers}{'content-length'}, length $r->{content},
    '... Content-Length is the page';
like $r->{headers}{'content-security-policy'} // '',
    qr/default-src 'none'.*connect-src 'self'/,
    '... CSP: nothing loaded from elsewhere, the JSON from here';
my $page = $r->{content};

# self-contained: no script, style, image or frame from anywhere
unlike $page, qr{<(?:script|link|img|iframe|object|embed)\b[^>]*\b(?:src|href)\s*=}i,
    'the page loads no script, style, image or frame';
unlike $page =~ s{http://www\.w3\.org/2000/svg}{}gr, qr{\b(?:https?:)?//[a-z0-9]}i,
    'the page names no other host';

$r = fetch(GET => "$status?format=html", 'application/json');
is $r->{status}, 200, '?format=html with Accept application/json: 200';
like $r->{headers}{'content-type'}, qr{^text/html}, '... text/html';
is $r->{content}, $page, '... the same page';
ok !exists $r->{headers}{vary}, '... no Vary (the argument decided)';

for my $accept ('*/*', undef, 'application/json', 'text/html;q=0.5, */*') {
    my $what = defined $accept ? "Accept $accept" : 'no Accept';
    $r = fetch(GET => $status, $accept);
    is $r->{status}, 200, "$what: 200";
    like $r->{headers}{'content-type'}, qr{^application/json$},
        "$what: JSON";
    ok eval { $t->decode_json($r->{content})->{services} }, "$what: parses";
    is $r->{headers}{vary}, 'Accept', "$what: Vary: Accept";
}

$r = fetch(GET => "$status?format=json", $BROWSER_ACCEPT);
like $r->{headers}{'content-type'}, qr{^application/json$},
    "?format=json with a browser's Accept: JSON";
ok !exists $r->{headers}{vary}, '... no Vary';

$r = fetch(GET => "$status?format=prometheus", $BROWSER_ACCEPT);
like $r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
    "?format=prometheus with a browser's Accept: Prometheus text";

is fetch(GET => "$status?format=xml", $BROWSER_ACCEPT)->{status}, 400,
    '?format=xml: 400';

$r = fetch(HEAD => $status, $BROWSER_ACCEPT);
is $r->{status}, 200, "HEAD with a browser's Accept: 200";
is $r->{headers}{'content-length'}, length $page, '... the page length';
is $r->{content} // '', '', '... no body';

############################################################################
# the page in a browser, fed by real traffic

my $b = MeshBrowser->new(dir => $t->dir, port => $t->port);

# no format argument: chromium's own Accept gets the page
$b->get("$status?interval=0.3");
is $b->js('return document.contentType;'), 'text/html',
    'chromium asked the status location and got the page';
ok $b->wait_for('return +document.body.dataset.polls >= 2;', timeout => 10),
    'the page read the JSON' or diag $b->js('return document.body.outerHTML;');

# what the page shows, read from the DOM: data-k texts by service and
# instance, the outage and unreachable banners
my $COLLECT = <<'JS';
function kvs(root, skip) {
    var o = {};
    root.querySelectorAll('[data-k]').forEach(function (e) {
        if (!skip || !e.closest(skip)) {
            o[e.getAttribute('data-k')] = e.textContent;
        }
    });
    return o;
}
var out = { polls: +document.body.dataset.polls, services: {} };
out.registry = kvs(document.getElementById('registry'));
['outage', 'unreachable'].forEach(function (id) {
    var e = document.getElementById(id);
    out[id] = kvs(e);
    out[id].shown = e.getAttribute('data-shown');
    out[id].visible = e.offsetParent !== null ? 1 : 0;
    out[id].text = e.textContent.replace(/\s+/g, ' ').trim();
});
document.querySelectorAll('[data-service]').forEach(function (c) {
    var s = kvs(c.querySelector('.kv'));
    s.instances = {};
    c.querySelectorAll('tr[data-instance]').forEach(function (tr) {
        var i = kvs(tr);
        i.row = tr.className;
        s.instances[tr.getAttribute('data-instance')] = i;
    });
    s.rate_chart = c.querySelector('.charts svg text').textContent;
    s.lines = c.querySelectorAll('.charts svg polyline').length;
    out.services[c.getAttribute('data-service')] = s;
});
return out;
JS

# the JSON status as the page should show it
sub expected {
    my ($st) = @_;
    my $reg = $st->{registry};
    my %e = (registry => {
        state => $reg->{state}, index => "$st->{index}", url => $reg->{url},
        poller_pid => "$reg->{poller_pid}",
        last_error => $reg->{last_error} // 'none' });
    my $counters = sub {
        my ($c) = @_;
        return (requests => "$c->{requests}",
                (map { $_ => "$c->{responses}{$_}" } qw(1xx 2xx 3xx 4xx 5xx)),
                failures => "$c->{failures}", ejections => "$c->{ejections}",
                active => "$c->{active}",
                rate_10s => sprintf('%.2f', $c->{rate_10s}),
                rate_60s => sprintf('%.2f', $c->{rate_60s}),
                mean_latency_ms_10s => sprintf('%.1f',
                                               $c->{mean_latency_ms_10s}),
                mean_latency_ms_60s => sprintf('%.1f',
                                               $c->{mean_latency_ms_60s}));
    };
    for my $s (@{ $st->{services} }) {
        my %i;
        for my $x (@{ $s->{instances} }) {
            $i{ $x->{id} } = { id => $x->{id}, server => $x->{server},
                state => $x->{state}, weight => "$x->{weight}",
                consecutive_failures => "$x->{consecutive_failures}",
                $counters->($x) };
        }
        $e{services}{ $s->{name} } = {
            (map { $_ => "$s->{instances_by_state}{$_}" }
                 qw(healthy unhealthy ejected)),
            retries => "$s->{retries}", $counters->($s), instances => \%i };
    }
    return \%e;
}

# the DOM and the JSON of one moment: the JSON read before and after the
# page read it twice more, the same both times (counters, rates and
# states do not move once the traffic has stopped, except when a rate's
# 10 s slot ends: then again, a bounded number of times)
sub settled {
    my ($dom, $e1, $e2);
    for my $try (1 .. 8) {
        $e1 = expected($t->mesh_status // {});
        my $polls = $b->js('return +document.body.dataset.polls;');
        $b->wait_for("return +document.body.dataset.polls >= $polls + 2;",
                     timeout => 5) or last;
        $dom = $b->js($COLLECT);
        $e2 = expected($t->mesh_status // {});
        return ($dom, $e2) if $t->encode_json($e1) eq $t->encode_json($e2);
    }
    return ($dom, $e2);
}

# the page's view of the same fields as expected()
sub shown {
    my ($dom) = @_;
    my %d = (registry => { map { $_ => $dom->{registry}{$_} }
                           qw(state index url poller_pid last_error) });
    for my $name (keys %{ $dom->{services} }) {
        my $s = $dom->{services}{$name};
        my %i;
        for my $id (keys %{ $s->{instances} }) {
            my %x = %{ $s->{instances}{$id} };
            delete $x{row};
            $i{$id} = \%x;
        }
        $d{services}{$name} = {
            (map { $_ => $s->{$_} }
                 grep { !/^(?:instances|rate_chart|lines)$/ } keys %$s),
            instances => \%i };
    }
    return \%d;
}

my $l = $t->load(requests => 120, clients => 3);
is $l->{ok}, 120, 'orders: 120 requests succeed';
is_deeply $l->{count}, { o1 => 20, o2 => 40, o3 => 60 }, '... split 1:2:3';

$l = $t->load(path => '/pay/', requests => 20, clients => 1);
is $l->{total}, 20, 'pay: 20 requests';
cmp_ok $l->{statuses}{503} // 0, '==', 3,
    '... three 503 from p2 before its ejection';

my $st = $t->mesh_status;
my ($pay) = grep { $_->{name} eq 'pay' } @{ $st->{services} };
my ($p2) = grep { $_->{id} eq 'p2' } @{ $pay->{instances} };
is $p2->{state}, 'ejected', 'JSON: p2 is ejected';

my ($dom, $exp) = settled();
is_deeply shown($dom), $exp,
    'every number and state the page shows equals the JSON status'
    or diag explain { page => shown($dom), json => $exp };

my $orders = $dom->{services}{orders} // {};
is_deeply { map { $_ => $orders->{instances}{$_}{requests} }
            keys %{ $orders->{instances} } },
    { o1 => 20, o2 => 40, o3 => 60 },
    'page: orders requests per instance are those sent';
is $orders->{requests}, 120, 'page: orders total 120';
is $orders->{'2xx'}, 120, 'page: orders 2xx 120';

my $dpay = $dom->{services}{pay} // {};
is $dpay->{instances}{p2}{state}, 'ejected', 'page: p2 shown ejected';
is $dpay->{instances}{p2}{row}, 'ejected', '... its row marked ejected';
is $dpay->{instances}{p2}{'5xx'}, 3, '... with its three 503';
is $dpay->{ejected}, 1, 'page: pay has one ejected instance';
is $dpay->{instances}{p1}{state}, 'healthy', 'page: p1 healthy';

like $orders->{rate_chart}, qr{^max (\d+(?:\.\d+)?)/s$},
    'page: the orders rate chart has a scale';
my ($max) = ($orders->{rate_chart} // '') =~ /([\d.]+)/;
cmp_ok $max // 0, '>', 0,
    'page: the rate chart drew the traffic (a rate from two reads)';
cmp_ok $orders->{lines}, '>=', 1, 'page: the charts have lines';

is $dom->{outage}{shown}, 0, 'no outage shown while synced';
is $dom->{outage}{visible}, 0, '... the banner is hidden';

############################################################################
# registry outage

$t->stop_registryd;
my $end = time + 10;
my $ost;
while (time < $end) {
    $ost = $t->mesh_status;
    last if $ost && $ost->{registry}{state} ne 'synced';
    sleep 0.1;
}
isnt $ost->{registry}{state}, 'synced', 'JSON: registry not synced after '
    . 'registryd stopped (' . ($ost->{registry}{state} // '?') . ')';

ok $b->wait_for(q{return document.getElementById('outage')
                         .getAttribute('data-shown') === '1';},
                timeout => 5),
    'page: the registry outage banner is shown';
($dom, $exp) = settled();
is_deeply shown($dom)->{registry}, $exp->{registry},
    'page: the registry state and last error equal the JSON'
    or diag explain { page => $dom->{registry}, json => $exp->{registry} };
is $dom->{outage}{visible}, 1, '... the banner is visible';
is $dom->{outage}{state}, $exp->{registry}{state}, '... it names the state';
is $dom->{outage}{last_error}, $exp->{registry}{last_error},
    '... and the last error';
isnt $dom->{outage}{last_error}, 'none', '... which is a reason';
is $dom->{outage}{index}, $exp->{registry}{index},
    '... and the index routing goes on from';
is $dom->{services}{orders}{requests}, 120,
    'page: the counters are still shown';

############################################################################
# nginx gone

$t->stop_nginx;
ok $b->wait_for(q{return document.getElementById('unreachable')
                         .getAttribute('data-shown') === '1';},
                timeout => 5),
    'page: nginx stopped, the page says the status does not answer';
$dom = $b->js($COLLECT);
is $dom->{unreachable}{visible}, 1, '... visibly';

$b->quit;

$t->done_checks;
done_testing;
