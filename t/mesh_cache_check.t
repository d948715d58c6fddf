#!/usr/bin/perl

# mesh_cache_file in a directory the workers' user cannot write is said
# when the configuration is read (nginx -t), naming the directory and the
# user, instead of at the first write; a missing directory too; a
# directory the user can write says nothing.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use MeshTest;

my $t = MeshTest->new;

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;

my $d = $t->dir;
my ($user, $who) = $> == 0 ? ("user nobody nogroup;\n", 'nobody')
                           : ('', '(this user)');

mkdir "$d/ro";
mkdir "$d/rw";
chmod 0755, $d;                 # the workers' user may enter, not write
chmod 0555, "$d/ro";
chmod 0777, "$d/rw";

sub conf {
    my ($file) = @_;
    return "${user}load_module " . $t->module_path . ";\n"
        . "error_log $d/error.log;\n"
        . "pid $d/nginx.pid;\n"
        . "events {}\n"
        . "http {\n"
        . "    mesh_registry http://127.0.0.1:1;\n"
        . "    mesh_cache_file $file;\n"
        . "    upstream a { mesh a; }\n"
        . "    server {\n"
        . "        listen 127.0.0.1:" . $t->named_port('HTTP') . ";\n"
        . "        location / { proxy_pass http://a; }\n"
        . "    }\n"
        . "}\n";
}

sub check {
    my ($file) = @_;
    $t->write_file('check.conf', conf($file));
    return $t->nginx_test('check.conf');
}

my ($code, $out) = check("$d/ro/mesh.json");
is $code, 0, 'a directory the workers cannot write: nginx -t still passes';
like $out, qr/\[warn\].*mesh_cache_file "\Q$d\E\/ro\/mesh\.json": the workers' user "\Q$who\E" cannot write its directory "\Q$d\E\/ro"/,
    '... with a [warn] naming the directory and the user' or diag $out;

($code, $out) = check("$d/none/mesh.json");
like $out, qr/\[warn\].*mesh_cache_file "\Q$d\E\/none\/mesh\.json": no directory "\Q$d\E\/none"/,
    'a missing directory: [warn] naming it' or diag $out;

($code, $out) = check("$d/rw/mesh.json");
is $code, 0, 'a directory the workers can write: nginx -t passes';
unlike $out, qr/mesh_cache_file/, '... and says nothing' or diag $out;

$t->done_checks;
done_testing;
