#!/usr/bin/perl

# The module loads into Debian's nginx and its main-level directives are
# checked at configuration time.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;

# a good configuration passes nginx -t

$t->nginx_conf(<<'EOF');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    mesh_registry   http://127.0.0.1:7770;
    mesh_cache_file %%TESTDIR%%/mesh.json;

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { return 204; }
    }
}
EOF

my ($code, $out) = $t->nginx_test;
is $code, 0, 'nginx -t passes with the module loaded' or diag $out;
like $out, qr/test is successful/, 'nginx -t reports success';
unlike $out, qr/\[(?:emerg|alert)\]/, 'no [emerg] or [alert]';

# and nginx really starts with it and serves

$t->start_nginx;
my $r = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP') . '/');
is $r->{status}, 204, 'nginx with the module serves requests';
$t->stop_nginx;

# a URL scheme other than http:// is rejected

$t->nginx_conf(<<'EOF', 'ftp.conf');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    mesh_registry ftp://x;
}
EOF

($code, $out) = $t->nginx_test('ftp.conf');
isnt $code, 0, 'mesh_registry ftp://x fails nginx -t';
like $out, qr/\[emerg\].*ftp:\/\/x/, '[emerg] names the bad value' or diag $out;
like $out, qr/\[emerg\].*mesh_registry/, '[emerg] names the directive';

# a duplicate mesh_registry is rejected

$t->nginx_conf(<<'EOF', 'dup.conf');
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    mesh_registry http://127.0.0.1:7770;
    mesh_registry http://127.0.0.1:7771;
}
EOF

($code, $out) = $t->nginx_test('dup.conf');
isnt $code, 0, 'duplicate mesh_registry fails nginx -t';
like $out, qr/\[emerg\].*"mesh_registry" directive is duplicate/,
    '[emerg] says the directive is duplicate' or diag $out;

$t->done_checks;
done_testing;
