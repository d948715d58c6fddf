#!/usr/bin/perl

# registryd over HTTPS (tls_cert, tls_key), with real TLS clients: curl and
# registryctl. A client that trusts registryd's CA reads and writes; one
# that trusts another CA refuses registryd and changes nothing; plain HTTP
# to the HTTPS port gets no answer and is logged at debug only. With
# tls_client_ca every request but GET /healthz needs a client certificate
# of that CA (401 with the reason otherwise); a certificate whose subject a
# token names has exactly that token's scopes, and a bearer token, when
# sent, decides. Each refusal changes nothing (GET /v1/export, read with an
# admin credential, is the same before and after). Bad configurations stop
# registryd at start with the reason.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use MeshTest;

my $t = MeshTest->new;

for my $bin (qw(registryd registryctl)) {
    plan skip_all => "no $bin at " . $t->bin($bin) unless -x $t->bin($bin);
}

# a subject of 600 characters or so: nine OUs of 61 and a CN
my $long_subj = '/O=example' . join('', map { "/OU=$_" . ('x' x 60) } 1 .. 9)
    . '/CN=evil';

my $d = $t->make_certs(certs => [
    [ 'registryd', '/CN=registryd', 'IP:127.0.0.1,DNS:localhost' ],
    [ 'ci', '/O=example/CN=ci' ],               # a token names its subject
    [ 'ops', '/O=example/CN=ops' ],             # no token names it
    [ 'rogue', '/O=example/CN=ci', undef, 'other-ca' ],   # ci's subject
    [ 'long', $long_subj ],
    # ci's subject, signed by the CA, but made for servers only
    [ 'server-ci', '/O=example/CN=ci', 'DNS:ci.example', undef,
      'extendedKeyUsage=serverAuth' ],
]);

# what registryd reads is what openssl's RFC 2253 form shows
sub subject_of {
    my ($code, $out) = $t->run('openssl', 'x509', '-noout', '-subject',
                               '-nameopt', 'RFC2253', '-in', "$d/$_[0].crt");
    $out =~ s/^subject=//;
    chomp $out;
    return $out;
}

is subject_of('ci'), 'CN=ci,O=example',
    'openssl -nameopt RFC2253 shows the subject as a token names it';
my $long_dn = subject_of('long');
cmp_ok length $long_dn, '>', 512, 'the long subject is over 512 characters';

my %S = (
    ops    => 'ops-0123456789abcdef',
    deploy => 'deploy-0123456789abcdef',
);

my $tokens = "tokens:\n"
    . "  - name: ops\n    secret: $S{ops}\n    scopes: [admin]\n"
    . "  - name: deploy-orders\n    secret: $S{deploy}\n"
    . "    scopes: [read, \"write:orders\"]\n"
    . "  - name: ci\n    subject: \"CN=ci,O=example\"\n"
    . "    scopes: [policies]\n"
    # a subject cut at 512 characters must not stand for this one
    . "  - name: long\n    subject: \"" . substr($long_dn, 0, 512) . "\"\n"
    . "    scopes: [admin]\n";

my $ops_token = $t->write_file('ops.token', "$S{ops}\n");
chmod 0600, $ops_token;

my $DR = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
    . "metadata:\n  name: orders\nspec:\n  host: orders\n  trafficPolicy:\n"
    . "    loadBalancer:\n      simple: RANDOM\n";
my $policy_file = $t->write_file('orders.yaml', $DR);
my %yaml = ('Content-Type' => 'application/yaml');
my $inst = { address => '127.0.0.1', port => 8081 };

###########################################################################
# bad configurations stop registryd at start, with the reason

$t->write_file('notpem.txt', "just text, no certificate\n");
$t->write_file('junk.pem', "-----BEGIN CERTIFICATE-----\nnot base64!\n"
               . "-----END CERTIFICATE-----\n");
$t->write_file('open.key', $t->read_file("$d/registryd.key"));
chmod 0644, $t->dir . '/open.key';
$t->write_file('tls-half.yaml', "tls_cert: $d/registryd.crt\n");

my $dir = $t->dir;
my @good = ('--tls-cert', "$d/registryd.crt", '--tls-key',
            "$d/registryd.key");

my @bad = (
    [ 'tls_cert without tls_key', [ '--tls-cert', "$d/registryd.crt" ],
      qr/^registryd: tls_cert and tls_key go together: tls_cert is set, tls_key is not$/m ],
    [ 'tls_key without tls_cert', [ '--tls-key', "$d/registryd.key" ],
      qr/^registryd: tls_cert and tls_key go together: tls_key is set, tls_cert is not$/m ],
    [ 'tls_cert without tls_key, in the config file',
      [ '--config', "$dir/tls-half.yaml" ],
      qr/tls_cert and tls_key go together: tls_cert is set/ ],
    [ 'tls_client_ca without tls_cert', [ '--tls-client-ca', "$d/ca.crt" ],
      qr/^registryd: tls_client_ca needs tls_cert and tls_key: client certificates come with HTTPS$/m ],
    [ 'a key file of mode 0644',
      [ '--tls-cert', "$d/registryd.crt", '--tls-key', "$dir/open.key" ],
      qr/\[error\] tls_key \Q$dir\E\/open\.key can be read or written by others \(mode 0644\)/ ],
    [ 'a certificate file that is not PEM',
      [ '--tls-cert', "$dir/notpem.txt", '--tls-key', "$d/registryd.key" ],
      qr/\[error\] tls_cert \Q$dir\E\/notpem\.txt: not a PEM file/ ],
    [ 'a PEM file without a certificate in it',
      [ '--tls-cert', "$dir/junk.pem", '--tls-key', "$d/registryd.key" ],
      qr/\[error\] tls_cert \Q$dir\E\/junk\.pem, tls_key \S+registryd\.key: \S/ ],
    [ 'a key that is not the certificate\'s',
      [ '--tls-cert', "$d/registryd.crt", '--tls-key', "$d/ci.key" ],
      qr/\[error\] tls_cert \S+registryd\.crt, tls_key \S+ci\.key: The certificate and the given key do not match/ ],
    [ 'a missing certificate file',
      [ '--tls-cert', "$dir/missing.crt", '--tls-key', "$d/registryd.key" ],
      qr/\[error\] tls_cert \Q$dir\E\/missing\.crt: No such file or directory/ ],
    [ 'a missing key file',
      [ '--tls-cert', "$d/registryd.crt", '--tls-key', "$dir/missing.key" ],
      qr/\[error\] tls_key \Q$dir\E\/missing\.key: No such file or directory/ ],
    [ 'a missing client CA file',
      [ @good, '--tls-client-ca', "$dir/missing-ca.crt" ],
      qr/\[error\] tls_client_ca \Q$dir\E\/missing-ca\.crt: No such file or directory/ ],
    [ 'a client CA file that is not PEM',
      [ @good, '--tls-client-ca', "$dir/notpem.txt" ],
      qr/\[error\] tls_client_ca \Q$dir\E\/notpem\.txt: not a PEM file/ ],
    [ 'a client CA file without a certificate',
      [ @good, '--tls-client-ca', "$d/ci.key" ],
      qr/\[error\] tls_client_ca \S+ci\.key: no certificate in it/ ],
);

for my $b (@bad) {
    my ($name, $args, $why) = @$b;
    my $port = $t->port;
    my ($code, $out, $err) = $t->run({ timeout => 10 }, $t->bin('registryd'),
        '--listen', "127.0.0.1:$port", '--data-dir', "$dir/spare", @$args);
    ok $code > 0 && $code < 128, "$name: registryd stops at start (exit $code)";
    like $err, $why, "$name: the reason";
    ok !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1),
        "$name: nothing listens";
}

###########################################################################
# HTTPS, server certificate only

my $url = $t->start_registryd(tokens => $tokens, bearer => $S{ops},
    tls => { cert => "$d/registryd.crt", key => "$d/registryd.key",
             ca => "$d/ca.crt" });
like $url, qr{^https://127\.0\.0\.1:\d+$}, 'registryd serves https';
like $t->read_file($t->registryd_log), qr/listening on \S+ \(HTTPS\)/,
    'its start line says HTTPS';

sub state { $t->api(GET => '/v1/export')->{content} }

# registryctl with the CA that signs registryd's certificate
my ($code, $out, $err) = $t->registryctl('--cacert', "$d/ca.crt",
    '--token-file', $ops_token, 'register', 'orders', 'o1',
    '127.0.0.1:8081');
is $code, 0, 'registryctl --cacert ca.crt register over https: exit 0'
    or diag $err;
is $t->api(GET => '/v1/services/orders/instances/o1')->{json}{port}, 8081,
    '... and the instance is there';
($code, $out, $err) = $t->registryctl('--cacert', "$d/ca.crt",
    '--token-file', $ops_token, 'list', 'orders');
is $code, 0, 'registryctl --cacert ca.crt list: exit 0' or diag $err;
like $out, qr/^o1\s+127\.0\.0\.1\s+8081\s/m, '... lists o1';

my $before = state();
like $before, qr/"o1"/, 'the export reads over https';

# a client that trusts another CA refuses registryd: nothing is sent
for my $c ([ 'another CA', '--cacert', "$d/other-ca.crt" ],
           [ 'the system CAs' ]) {
    my ($what, @ca) = @$c;
    ($code, $out, $err) = $t->registryctl(@ca, '--token-file', $ops_token,
        'register', 'orders', 'evil', '127.0.0.9:6666');
    ok $code > 0 && $code < 128, "registryctl trusting $what: non-zero exit";
    like $err, qr{\Aregistryctl: registry https://127\.0\.0\.1:\d+: its certificate does not verify \([^\n]+\); --cacert names the CA that signs it\n\z},
        "... one line: registryd's certificate does not verify";
    is $out, '', '... nothing on stdout';
}

($code, $out, $err) = $t->run('curl', '-sS', '--cacert', "$d/other-ca.crt",
    '-X', 'DELETE', '-H', "Authorization: Bearer $S{ops}",
    "$url/v1/services/orders/instances/o1");
is $code, 60, 'curl trusting another CA refuses registryd (exit 60)';
is state(), $before, 'nothing changed after the clients refused registryd';

# plain HTTP to the HTTPS port: no HTTP answer, nothing changed
my $plain = "http://127.0.0.1:" . $t->registryd_port;
my $r = HTTP::Tiny->new(timeout => 5)->request(PUT =>
    "$plain/v1/services/orders/instances/evil",
    { headers => { Authorization => "Bearer $S{ops}",
                   'Content-Type' => 'application/json' },
      content => '{"address":"127.0.0.9","port":6666}' });
is $r->{status}, 599, 'a plain HTTP PUT to the HTTPS port gets no answer';
is $t->raw_http("DELETE /v1/services/orders/instances/o1 HTTP/1.1\r\n"
                . "Host: x\r\nAuthorization: Bearer $S{ops}\r\n"
                . "Connection: close\r\n\r\n", timeout => 5), undef,
    'a plain HTTP DELETE: no HTTP answer either';
is state(), $before, 'nothing changed after plain HTTP';

# 200 of them: no [warn] flood, registryd still serves
sub warn_lines {
    scalar grep { /\[(?:warn|error)\]/ }
        split /\n/, $t->read_file($t->registryd_log) // '';
}

my $warns = warn_lines();
my ($answered, $closed) = (0, 0);
my $end = time + 60;
for my $i (1 .. 200) {
    last if time > $end;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->registryd_port,
                                  Timeout => 5) or next;
    print $s "GET /v1/services HTTP/1.1\r\nHost: x\r\n"
        . "Authorization: Bearer $S{ops}\r\n\r\n";
    my ($in, $sel) = ('', IO::Select->new($s));
    while ($sel->can_read(5)) {
        last unless sysread $s, $in, 4096, length $in;
    }
    $answered++ if $in =~ /^HTTP\//;
    $closed++;
    close $s;
}
is $closed, 200, '200 plain HTTP requests to the HTTPS port, each closed';
is $answered, 0, '... none answered in HTTP';
my $waited = 0;
while ($waited++ < 20 && ($t->read_file($t->registryd_log) // '')
       !~ /\[debug\] http: .*handshake/) {
    sleep 0.05;
}
like $t->read_file($t->registryd_log), qr/\[debug\] http: .*handshake/,
    'registryd logs them at debug';
is warn_lines(), $warns, '... and not one [warn] or [error] line';
is $t->api(GET => '/healthz')->{status}, 200, 'registryd still serves https';

# a long-poll over https is released by a change
my $idx = $t->registry_index;
my $t0 = time;
open my $poll, '-|', 'curl', '-sS', '--max-time', '15', '--cacert',
    "$d/ca.crt", '-H', "Authorization: Bearer $S{ops}",
    "$url/v1/snapshot?index=$idx&wait=10s"
    or die "curl: $!";
for (1 .. 100) {
    last if ($t->api(GET => '/metrics')->{content} // '')
        =~ /^registryd_snapshot_waiters 1$/m;
    sleep 0.05;
}
is $t->register(orders => 'o2', 8082)->{status}, 201,
    'a change while a long-poll waits over https';
my $snap = do { local $/; <$poll> };
close $poll;
my $j = eval { MeshTest->decode_json($snap) } // {};
cmp_ok $j->{index} // 0, '>', $idx, '... the long-poll gets it';
cmp_ok time - $t0, '<', 9, '... before its wait ran out';

###########################################################################
# HTTPS with client certificates (tls_client_ca)

$t->stop_registryd;
$t->start_registryd(tokens => $tokens, bearer => $S{ops},
    port => $t->registryd_port, data_dir => $t->data_dir,
    tls => { cert => "$d/registryd.crt", key => "$d/registryd.key",
             client_ca => "$d/ca.crt", ca => "$d/ca.crt" });
like $t->read_file($t->registryd_log),
    qr/listening on \S+ \(HTTPS, client certificates required\)/,
    'its start line says client certificates are required';

# a request with the client certificate NAME (undef: none) and the
# bearer token WHO (undef: none)
sub as {
    my ($cert, $who, $method, $path, $body, $h) = @_;
    return $t->api($method, $path, $body,
        { Authorization => defined $who ? "Bearer $S{$who}" : undef,
          %{ $h || {} } },
        { client_cert => defined $cert ? "$d/$cert.crt" : undef,
          client_key => defined $cert ? "$d/$cert.key" : undef });
}

# the admin's view: a certificate no token names, and the ops token
sub admin_state { as(ops => ops => GET => '/v1/export')->{content} }

$before = admin_state();
like $before, qr/"o2"/, 'an admin with a certificate and a token reads';
my $index = as(undef, undef, GET => '/healthz')->{json}{index};
ok defined $index, 'GET /healthz needs no client certificate';

my @attacks = (
    [ undef, 'ops', PUT => '/v1/services/orders/instances/evil', $inst,
      undef, 401, qr/^a client certificate signed by tls_client_ca is needed$/ ],
    [ undef, 'ops', GET => '/v1/services', undef, undef,
      401, qr/^a client certificate signed by tls_client_ca is needed$/ ],
    [ undef, undef, DELETE => '/v1/services/orders/instances/o1', undef,
      undef, 401, qr/client certificate signed by tls_client_ca is needed/ ],
    [ rogue => 'ops', PUT => '/v1/services/orders/instances/evil', $inst,
      undef, 401, qr/^the client certificate does not verify against tls_client_ca$/ ],
    [ rogue => undef, PUT => '/v1/policies/orders', $DR, \%yaml,
      401, qr/^the client certificate does not verify against tls_client_ca$/ ],
    [ ci => undef, PUT => '/v1/services/orders/instances/evil', $inst,
      undef, 403, qr/^token "ci" lacks scope write:orders \(it has: policies\)$/ ],
    [ ci => undef, DELETE => '/v1/services/orders/instances/o1', undef,
      undef, 403, qr/^token "ci" lacks scope write:orders/ ],
    [ ci => undef, GET => '/v1/services', undef, undef,
      403, qr/^token "ci" lacks scope read \(it has: policies\)$/ ],
    [ ops => undef, PUT => '/v1/services/orders/instances/evil', $inst,
      undef, 401, qr/^the client certificate "CN=ops,O=example" stands for no token, and no bearer token was sent$/ ],
    [ ops => undef, GET => '/v1/export', undef, undef,
      401, qr/stands for no token/ ],
    # a bearer token, when sent, decides: not the certificate's token
    [ ci => 'deploy', PUT => '/v1/policies/orders', $DR, \%yaml,
      403, qr/^token "deploy-orders" lacks scope policies/ ],
    [ ops => 'deploy', PUT => '/v1/services/payments/instances/evil', $inst,
      undef, 403, qr/^token "deploy-orders" lacks scope write:payments/ ],
    # a certificate made for servers only stands for no client
    [ 'server-ci' => undef, PUT => '/v1/policies/orders', $DR, \%yaml,
      401, qr/^the client certificate is not for client authentication/ ],
    # a subject is compared whole, never cut to registryd's buffer
    [ long => undef, PUT => '/v1/services/orders/instances/evil', $inst,
      undef, 401, qr/^the client certificate's subject is longer than 512 characters$/ ],
);

for my $a (@attacks) {
    my ($cert, $who, $method, $path, $body, $h, $status, $why) = @$a;
    my $r = as($cert, $who, $method, $path, $body, $h);
    my $name = ($cert // 'no certificate') . ' + ' . ($who // 'no token')
        . " $method $path";
    is $r->{status}, $status, "$name: $status";
    like $r->{json}{error} // $r->{content}, $why, "$name: the reason";
}

is as(undef, undef, GET => '/healthz')->{json}{index}, $index,
    'the index did not move';
is admin_state(), $before, 'nothing changed after the refusals';

# what each credential may do, it does
is as(ci => undef, PUT => '/v1/policies/orders', $DR, \%yaml)->{status},
    201, 'ci\'s certificate applies a policy (its scope): 201';
is as(ops => ops => PUT => '/v1/services/payments/instances/p1',
      $inst)->{status}, 201,
    'a certificate no token names, with the ops token: 201';
is as(ci => deploy => PUT => '/v1/services/orders/instances/o3',
      $inst)->{status}, 201,
    'ci\'s certificate with the deploy token writes orders: 201';
is as(undef, undef, GET => '/healthz')->{status}, 200,
    'GET /healthz without a client certificate: 200';

# registryctl with client certificates
($code, $out, $err) = $t->registryctl('--cacert', "$d/ca.crt",
    '--cert', "$d/ci.crt", '--key', "$d/ci.key", 'apply', '-f', $policy_file,
    '--name', 'orders');
is $code, 0, 'registryctl --cert ci.crt apply: exit 0' or diag $err;

($code, $out, $err) = $t->registryctl('--cacert', "$d/ca.crt",
    '--cert', "$d/ops.crt", '--key', "$d/ops.key", '--token-file',
    $ops_token, 'register', 'orders', 'o4', '127.0.0.1:8084');
is $code, 0, 'registryctl --cert ops.crt --token-file register: exit 0'
    or diag $err;

$before = admin_state();
($code, $out, $err) = $t->registryctl('--cacert', "$d/ca.crt",
    '--token-file', $ops_token, 'deregister', 'orders', 'o1');
ok $code > 0 && $code < 128,
    'registryctl without a client certificate: non-zero exit';
like $err, qr/\Aregistryctl: [^\n]*401[^\n]*a client certificate signed by tls_client_ca is needed[^\n]*\n\z/,
    '... one line with the reason';
($code, $out, $err) = $t->registryctl('--cacert', "$d/ca.crt",
    '--cert', "$d/ci.crt", '--key', "$d/ci.key", 'deregister', 'orders',
    'o1');
ok $code > 0 && $code < 128,
    'registryctl --cert ci.crt deregister (no write scope): non-zero exit';
like $err, qr/\Aregistryctl: [^\n]*403[^\n]*lacks scope write:orders[^\n]*\n\z/,
    '... one line naming the scope';
is admin_state(), $before, 'nothing changed';

$t->done_checks;
done_testing;
