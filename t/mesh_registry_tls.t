#!/usr/bin/perl

# nginx polls registryd over HTTPS through nginx's own SSL layer, with a
# client certificate (registryd requires one: tls_client_ca) and a bearer
# token of the read scope (token_file=). With the CA that signs the
# registry's certificate it routes and follows changes; with another CA,
# or a registry certificate that is not for the URL's host, it stays on
# the snapshot it has (a change does not reach traffic) and says why in
# the status and once in the log; with the right CA again it catches up.
# Bad configuration stops nginx -t with the directive named.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;
plan skip_all => 'no registryd' unless -x $t->bin('registryd');

my $pki = $t->make_certs(certs => [
    [ 'registry', '/CN=registry.mesh', 'DNS:registry.mesh,IP:127.0.0.1' ],
    [ 'elsewhere', '/CN=other.example', 'DNS:other.example' ],
    [ 'nginx', '/O=mesh/CN=nginx-1' ],
    [ 'ops', '/CN=ops' ],
]);

my $NGINX_TOKEN = 'nginx-read-0123456789abcdef';
my $WRITER_TOKEN = 'writer-0123456789abcdef';
my $tokens = "tokens:\n"
    . "  - {name: nginx, secret: $NGINX_TOKEN, scopes: [read]}\n"
    . "  - {name: ops, subject: \"CN=ops\", scopes: [admin]}\n"
    . "  - {name: writer, secret: $WRITER_TOKEN, scopes: [\"write:*\"]}\n";

my %tls = (cert => "$pki/registry.crt", key => "$pki/registry.key",
           client_ca => "$pki/ca.crt", ca => "$pki/ca.crt",
           client_cert => "$pki/ops.crt", client_key => "$pki/ops.key");

my $url = $t->start_registryd(tokens => $tokens, tls => \%tls);
like $url, qr{^https://127\.0\.0\.1:\d+$}, 'registryd serves HTTPS';

my %port;
$port{$_} = $t->start_backend(name => $_) for qw(b1 b2 b3);
is $t->register(orders => $_, $port{$_})->{status}, 201, "register $_"
    for qw(b1 b2);

sub secret_file {
    my ($name, $text) = @_;
    my $f = $t->write_file($name, "$text\n");
    chmod 0600, $f;
    return $f;
}

my $token_file = secret_file('nginx.token', $NGINX_TOKEN);

sub conf {
    my (%o) = @_;
    my $ca = $o{ca} // "$pki/ca.crt";
    my $tf = $o{token_file} // $token_file;
    my $u = $o{url} // $url;
    return "%%PRELUDE%%\n"
        . "http {\n"
        . "%%HTTP_PRELUDE%%\n"
        . "    mesh_registry $u token_file=$tf;\n"
        . "    mesh_registry_ssl_trusted_certificate $ca;\n"
        . "    mesh_registry_ssl_certificate $pki/nginx.crt;\n"
        . "    mesh_registry_ssl_certificate_key $pki/nginx.key;\n"
        . "    mesh_cache_file %%TESTDIR%%/mesh.json;\n"
        . "    upstream orders {\n"
        . "        mesh orders;\n"
        . "        mesh_balancer round_robin;\n"
        . "    }\n"
        . "    server {\n"
        . "        listen 127.0.0.1:%%PORT_HTTP%%;\n"
        . "        location / { proxy_pass http://orders; }\n"
        . "        location = /mesh/status { mesh_status; }\n"
        . "    }\n"
        . "}\n";
}

sub backends {
    my $res = $t->load(requests => 30, clients => 2);
    return join ',', sort keys %{ $res->{count} };
}

sub wait_error {
    my ($re) = @_;
    my $end = time + 8;
    while (time < $end) {
        my $s = $t->mesh_status;
        return $s if ($s->{registry}{last_error} // '') =~ $re;
        sleep 0.05;
    }
    return $t->mesh_status;
}

$t->nginx_conf(conf());
$t->start_nginx;

ok $t->wait_mesh_index, 'nginx has the registry index over HTTPS'
    or diag explain $t->mesh_status;
my $st = $t->mesh_status;
is $st->{registry}{state}, 'synced', 'status: synced';
is $st->{registry}{url}, $url, 'status: the https URL';
is backends(), 'b1,b2', 'traffic reaches b1 and b2';

# registryd saw the poll: GET /v1/proxies lists this nginx
my $px = $t->api(GET => '/v1/proxies')->{json};
ok @{ $px->{proxies} || [] } >= 1, 'registryd lists the nginx that polls'
    or diag explain $px;

# a change reaches traffic, over HTTPS
is $t->register(orders => 'b3', $port{b3})->{status}, 201, 'register b3';
ok $t->wait_mesh_index, 'nginx follows the change';
is backends(), 'b1,b2,b3', 'b3 gets traffic';

# another CA: nginx stays on what it has and says why

$t->nginx_conf(conf(ca => "$pki/other-ca.crt"));
$t->reload_nginx;

$st = wait_error(qr/certificate does not verify/);
like $st->{registry}{last_error} // '',
    qr/^the registry's certificate does not verify against mesh_registry_ssl_trusted_certificate: .+ \(\d+\)$/,
    'a CA that did not sign it: the status says why'
    or diag explain $st->{registry};
is $st->{registry}{state}, 'stale', '... and the state is stale';

my $index = $st->{index};
is $t->deregister(orders => 'b3')->{status}, 200, 'deregister b3';
sleep 1.5;                      # polls fail at least twice meanwhile
is $t->mesh_status->{index}, $index, 'nginx stays on its index';
is backends(), 'b1,b2,b3', '... and routes on its last snapshot (b3 too)';

my @lines = grep { /certificate does not verify/ }
            split /\n/, $t->read_file('error.log') // '';
is scalar @lines, 1, 'the failure is logged once'
    or diag join "\n", @lines;

# the right CA again: it catches up
$t->nginx_conf(conf());
$t->reload_nginx;
ok $t->wait_mesh_index(timeout => 8), 'with the right CA it catches up';
is $t->mesh_status->{registry}{state}, 'synced', 'synced again';
is backends(), 'b1,b2', 'b3 no longer gets traffic';

# a registry whose certificate is not for the URL's host (127.0.0.1)
$t->stop_registryd;
$t->start_registryd(tokens => $tokens, port => $t->registryd_port,
    tls => { %tls, cert => "$pki/elsewhere.crt",
             key => "$pki/elsewhere.key" });
$st = wait_error(qr/not for/);
is $st->{registry}{last_error},
    q{the registry's certificate is not for "127.0.0.1"},
    'a certificate for another name: the status says so';
$t->stop_registryd;
$t->start_registryd(tokens => $tokens, port => $t->registryd_port,
                    tls => \%tls);

# a token without the read scope: the registry's reason reaches the status
$t->nginx_conf(conf(token_file => secret_file('writer.token',
                                              $WRITER_TOKEN)));
$t->reload_nginx;
$st = wait_error(qr/403/);
is $st->{registry}{last_error},
    'the registry answered 403: token "writer" lacks scope read '
    . '(it has: write:*)',
    'a token without read: 403 and the reason in the status';

$t->nginx_conf(conf());
$t->reload_nginx;
ok $t->wait_mesh_index(timeout => 8), 'the read token again: synced';

# configuration errors stop nginx -t, naming the directive

my @bad = (
    [ 'https without a trusted CA',
      conf() =~ s/^\s*mesh_registry_ssl_trusted_certificate.*\n//mr,
      qr/mesh_registry "https:\S+" is https: it needs "mesh_registry_ssl_trusted_certificate"/ ],
    [ 'a certificate without its key',
      conf() =~ s/^\s*mesh_registry_ssl_certificate_key.*\n//mr,
      qr/no "mesh_registry_ssl_certificate_key" for mesh_registry_ssl_certificate/ ],
    [ 'a trusted CA file that does not exist',
      conf(ca => "$pki/nope.crt"),
      qr/nope\.crt/ ],
    [ 'a token file others can read',
      conf(token_file => do {
          my $f = $t->write_file('open.token', "x\n"); chmod 0644, $f; $f }),
      qr/mesh_registry token_file "\S+open\.token" can be read or written by group or others \(mode 0644\)/ ],
    [ 'a token file that does not exist',
      conf(token_file => $t->dir . '/none.token'),
      qr/none\.token/ ],
    [ 'an ftp URL',
      conf(url => 'ftp://127.0.0.1:1'),
      qr/invalid registry URL "ftp:\S+" .* must start with "http:\/\/" or "https:\/\/"/ ],
);

for my $b (@bad) {
    my ($what, $text, $re) = @$b;
    $t->nginx_conf($text, 'bad.conf');
    my ($code, $out) = $t->nginx_test('bad.conf');
    isnt $code, 0, "$what: nginx -t fails";
    like $out, qr/\[emerg\].*$re/, "$what: [emerg] says why" or diag $out;
}

$t->done_checks;
done_testing;
