#!/usr/bin/perl

# The Debian packages: make deb builds libnginx-mod-http-mesh and
# ngx-mesh-registryd, lintian finds no error or warning in them, and on
# this machine (dpkg -i, as root) they install what they say: the module
# enabled in Debian's nginx (nginx -t with the stock configuration and
# with one of the test's own), registryd started as its systemd unit
# would start it (the unit's command line, user and umask) takes a
# registration from the installed registryctl, and a request goes through
# an nginx with the packaged module to the registered backend. The unit
# passes systemd-analyze verify, the man pages man --warnings. Purged,
# they leave nothing but the expired registryd account that Debian keeps;
# installed again, the account is in use again.
#
# The test refuses to run where the packages are installed already: it
# would purge them, and their data with them. Its END purges what it
# installed, whatever happened.

use strict;
use warnings;

use lib 't/lib';
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use Test::More;
use MeshTest;

my $REPO = abs_path(dirname(__FILE__) . '/..');
my @PKGS = qw(libnginx-mod-http-mesh ngx-mesh-registryd);
my $UNIT = '/lib/systemd/system/registryd.service';
my $CONF = '/etc/registryd/registryd.yaml';
my $MODCONF = '/usr/share/nginx/modules-available/mod-http-mesh.conf';
# 70: after Debian's stream module (50), which the stream part of the
# module needs loaded first
my $ENABLED = '/etc/nginx/modules-enabled/70-mod-http-mesh.conf';
my $WANTS = '/etc/systemd/system/multi-user.target.wants/registryd.service';

# what END puts back: set before anything can fail
my $had_user = getpwnam('registryd') ? 1 : 0;
my $made_policy = 0;
my $purged = 1;

# a failure that leaves nothing more to test
sub give_up {
    fail($_[0]);
    done_testing;
    exit 1;
}

give_up('t/package.t installs packages: it runs as root') if $> != 0;

my $t = MeshTest->new(log_level => 'info');

sub sh {
    my ($timeout, @cmd) = @_;
    return $t->run({ timeout => $timeout }, @cmd);
}

sub status_of {
    my ($code, $out) = sh(10, 'dpkg-query', '-W', '-f', '${db:Status-Abbrev}',
                          $_[0]);
    $out =~ s/\s+$//;
    return $code == 0 ? $out : '';
}

for my $p (@PKGS) {
    if (status_of($p) ne '' && status_of($p) ne 'un') {
        give_up("$p is on this machine (" . status_of($p) . "): "
                . "t/package.t would purge it; dpkg --purge it first");
    }
}

END {
    # whatever happened: the packages purged, the machine as found
    if (!$purged) {
        system("dpkg --purge @PKGS >/dev/null 2>&1");
    }
    unlink '/usr/sbin/policy-rc.d' if $made_policy;
    if (!$had_user && getpwnam('registryd')) {
        system("deluser --quiet --system registryd >/dev/null 2>&1");
    }
}

###########################################################################
# build

my $build = $ENV{MESH_BUILD} // "$REPO/build";
my ($code, $out, $err) = sh(600, 'make', '-C', $REPO, '--no-print-directory',
                            "BUILD=$build", 'deb');
is $code, 0, 'make deb builds' or diag "$out$err";

my %deb;
for my $p (@PKGS) {
    ($deb{$p}) = glob("$build/deb/${p}_*_*.deb");
    ok $deb{$p} && -f $deb{$p}, "$p .deb built" or give_up('no packages');
}
my ($changes) = glob("$build/deb/ngx-mesh_*_*.changes");
ok $changes, 'a .changes file';

# lintian: no error and no warning, in the packages or the .changes
($code, $out, $err) = sh(120, 'lintian', '--allow-root', $changes);
my @bad = grep { /^[EW]: / } split /\n/, $out . $err;
ok !@bad, 'lintian: no error or warning' or diag join "\n", @bad;
isnt $code, -1, 'lintian finished';

# the module package depends on the nginx ABI it was built for, which the
# installed nginx provides
my $abi = `sed -n 's/^nginx:abi=//p' /usr/share/nginx/src/debian/libnginx-mod.abisubstvars`;
chomp $abi;
like $abi, qr/^nginx-abi-[\d.]+-\d+$/, "nginx-dev names the ABI ($abi)";
($code, $out) = sh(10, 'dpkg-deb', '-f', $deb{'libnginx-mod-http-mesh'},
                   'Depends');
like $out, qr/(?:^|, )\Q$abi\E(?:,|$)/m, "the module Depends: on $abi";
($code, $out) = sh(10, 'dpkg-query', '-W', '-f', '${Provides}', 'nginx');
like $out, qr/\Q$abi\E/, "the installed nginx provides $abi";

###########################################################################
# install, without starting any service (no system nginx, no registryd)

if (!-e '/usr/sbin/policy-rc.d') {
    $t->write_file('policy-rc.d', "#!/bin/sh\nexit 101\n");
    system('install', '-m', '0755', $t->dir . '/policy-rc.d',
           '/usr/sbin/policy-rc.d');
    $made_policy = 1;
}

$purged = 0;
($code, $out, $err) = sh(120, 'dpkg', '-i', @deb{@PKGS});
is $code, 0, 'dpkg -i installs both packages' or diag "$out$err";
is status_of($_), 'ii', "$_ installed" for @PKGS;

my %files;
for my $p (@PKGS) {
    ($code, $out) = sh(10, 'dpkg', '-L', $p);
    $files{$p} = [ grep { !-d $_ } split /\n/, $out ];
    ok @{ $files{$p} } >= 5, "dpkg -L $p lists its files";
}

# the module: enabled as Debian's module packages are
ok -f '/usr/lib/nginx/modules/ngx_http_mesh_module.so', 'the module installed';
is $t->read_file($MODCONF) // '',
    "load_module modules/ngx_http_mesh_module.so;\n",
    'mod-http-mesh.conf loads it';
is readlink($ENABLED) // '', $MODCONF, 'enabled in modules-enabled';

# registryd and registryctl
for my $f (qw(/usr/sbin/registryd /usr/bin/registryctl)) {
    ok -f $f && ((stat $f)[2] & 07777) == 0755, "$f, mode 0755";
}
($code, $out) = sh(10, '/usr/bin/registryctl', 'version');
like $out, qr/^registryctl \S+$/, 'registryctl runs';

($code, $out) = sh(10, 'dpkg-query', '-W', '-f', '${Conffiles}',
                   'ngx-mesh-registryd');
like $out, qr{^ \Q$CONF\E [0-9a-f]{32}$}m, "$CONF is a conffile";

# the account and the data directory
my @pw = getpwnam('registryd');
ok @pw, 'the user registryd exists';
ok @pw && $pw[2] < 1000, 'a system account (uid ' . ($pw[2] // '?') . ')';
like $pw[8] // '', qr{/(?:nologin|false)$}, 'without a login shell';
is $pw[7] // '', '/var/lib/registryd', 'its home is the data directory';
my @st = stat '/var/lib/registryd';
ok @st, '/var/lib/registryd exists';
is $st[4] // -1, $pw[2] // -2, 'owned by registryd';
is sprintf('%04o', ($st[2] // 0) & 07777), '0750', 'mode 0750';

# the unit: enabled (deb-systemd-helper), valid, sandboxed
is readlink($WANTS) // '', $UNIT, 'registryd.service enabled';
($code, $out, $err) = sh(60, 'systemd-analyze', 'verify', $UNIT);
is $code, 0, 'systemd-analyze verify passes';
is "$out$err", '', 'without a word' or diag "$out$err";

my %unit;
for (split /\n/, $t->read_file($UNIT)) {
    next unless /^(\w+)=(.*)$/;
    push @{ $unit{$1} }, $2;
}
sub unit1 { $unit{ $_[0] } ? $unit{ $_[0] }[-1] : '' }
is unit1('Type'), 'exec', 'Type=exec (registryd has no sd_notify)';
is unit1('User'), 'registryd', 'User=registryd';
is unit1('ProtectSystem'), 'strict', 'ProtectSystem=strict';
is unit1('NoNewPrivileges'), 'yes', 'NoNewPrivileges=yes';
is unit1('Restart'), 'on-failure', 'Restart=on-failure';
like unit1('ExecReload'), qr/kill -HUP \$MAINPID$/, 'reload is SIGHUP';
is unit1('CapabilityBoundingSet'), '', 'no capabilities';

# the configured data directory is one the unit lets registryd write
my ($data_dir) = ($t->read_file($CONF) // '') =~ /^data_dir:\s*(\S+)/m;
is $data_dir, '/var/lib/registryd', "$CONF keeps the data in /var/lib";
ok +(grep { $_ eq $data_dir } map { split ' ' } @{ $unit{ReadWritePaths} }),
    'ReadWritePaths has it';

# man pages: no warning from man, a NAME lexgrog finds
for my $m (['/usr/share/man/man8/registryd.8.gz', 'registryd'],
           ['/usr/share/man/man1/registryctl.1.gz', 'registryctl']) {
    my ($path, $name) = @$m;
    ok -f $path, "$name man page installed";
    ($code, $out, $err) = sh(30, 'env', 'MANWIDTH=80', 'LC_ALL=C.UTF-8',
                             'man', '--warnings', '-l', $path);
    is $code, 0, "man $name renders";
    is $err, '', "man --warnings: no warning for $name" or diag $err;
    like $out, qr/^SYNOPSIS/m, "$name has a SYNOPSIS";
    ($code, $out) = sh(10, 'lexgrog', $path);
    like $out, qr/: "\Q$name\E - /, "lexgrog finds the NAME of $name";
}
($code, $out) = sh(30, 'env', 'MANWIDTH=200', 'man', '-l',
                   '/usr/share/man/man1/registryctl.1.gz');
my ($h, $help) = sh(10, '/usr/bin/registryctl', 'help');
for my $cmd ($help =~ /^  (\w+)/mg) {
    like $out, qr/^\s+\Q$cmd\E\b/m, "registryctl(1) describes $cmd";
}

# bash completion
my $comp = '/usr/share/bash-completion/completions/registryctl';
($code, $out, $err) = sh(10, 'bash', '-c',
    ". $comp && complete -p registryctl");
like $out, qr/-F _registryctl registryctl/,
    'bash completion installed and loads';

###########################################################################
# nginx: the stock configuration with the module enabled, and our own

($code, $out, $err) = sh(30, '/usr/sbin/nginx', '-t', '-q');
is $code, 0, 'nginx -t with /etc/nginx/nginx.conf and the module'
    or diag "$out$err";
($code, $out, $err) = sh(30, '/usr/sbin/nginx', '-T', '-q');
like $out, qr{^load_module modules/ngx_http_mesh_module\.so;}m,
    'the stock configuration loads the module';

my $port = $t->named_port('REGISTRY');
my $bport = $t->start_backend(name => 'b1');
my $d = $t->dir;

my $http = <<"EOF";
http {
    %%HTTP_PRELUDE%%
    mesh_registry http://127.0.0.1:$port;
    mesh_cache_file $d/mesh.json;

    upstream web {
        mesh web;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://web; }
        location = /mesh/status { mesh_status; }
    }
}
EOF
my $main = <<"EOF";
daemon off;
master_process on;
worker_processes 1;
user root;
error_log $d/error.log info;
pid $d/nginx.pid;
EOF

# "modules/" in Debian's load_module lines is relative to nginx's prefix,
# /usr/share/nginx, where a link leads to /usr/lib/nginx/modules: the
# test's nginx runs with its own prefix, and the same link
symlink '/usr/lib/nginx/modules', "$d/modules" or die "symlink: $!";

# without the packaged module nginx does not know mesh: the include is
# what brings it
$t->nginx_conf($main . "events { }\n" . $http, 'bare.conf');
($code, $out) = $t->nginx_test('bare.conf');
like $out, qr/unknown directive "mesh_registry"/,
    'without modules-enabled, mesh_registry is unknown';

$t->nginx_conf($main . "include /etc/nginx/modules-enabled/*.conf;\n"
               . "events { }\n" . $http);
($code, $out) = $t->nginx_test;
is $code, 0, 'nginx -t with modules-enabled/*.conf' or diag $out;

# Debian's stream module (50-mod-stream.conf) loads before the mesh
# module (70-): a stream upstream can take its members from the registry
$t->nginx_conf($main . "include /etc/nginx/modules-enabled/*.conf;\n"
               . "events { }\n" . $http
               . "stream { upstream tcp { mesh web; }\n"
               . "         server { listen 127.0.0.1:"
               . $t->named_port('TCP') . "; proxy_pass tcp; } }\n",
               'stream.conf');
($code, $out) = $t->nginx_test('stream.conf');
is $code, 0, 'nginx -t of a stream mesh upstream with modules-enabled/*.conf'
    or diag $out;

###########################################################################
# registryd as the unit starts it: its command line, as its user, umask

my @exec = split ' ', unit1('ExecStart');
is $exec[0], '/usr/sbin/registryd', 'ExecStart runs the installed registryd';
my $umask = unit1('UMask') || '0022';

# the one change: a port of the test's own (the options override the
# config file's keys)
my @cmd = ('/usr/bin/env', '-C', '/', 'sh', '-c', "umask $umask && exec \"\$@\"",
           'sh', 'setpriv', '--reuid=' . unit1('User'),
           '--regid=' . (unit1('Group') || unit1('User')), '--init-groups',
           '--no-new-privs', '--inh-caps=-all', '--bounding-set=-all', '--',
           @exec, '--listen', "127.0.0.1:$port");
my $url = eval { $t->start_registryd(command => \@cmd, port => $port) };
ok $url, 'registryd starts as the unit would' or diag $@;

my $rpid = $t->registryd_pid;
# the pid is sh's, exec'd into setpriv, exec'd into registryd
my $uid = -1;
if ($rpid && open my $fh, '<', "/proc/$rpid/status") {
    ($uid) = map { /^Uid:\s+(\d+)/ ? $1 : () } <$fh>;
}
is $uid, $pw[2], 'it runs as registryd';
my $db = "$data_dir/registry.db";
@st = stat $db;
is $st[4] // -1, $pw[2] // -2, "$db owned by registryd";
is sprintf('%04o', ($st[2] // 0) & 07777), '0600', "$db: mode 0600 (UMask)";

# registered with the installed registryctl, reached through nginx
($code, $out, $err) = sh(20, '/usr/bin/registryctl', '--registry', $url,
                         'register', 'web', 'b1', "127.0.0.1:$bport");
is $code, 0, 'registryctl registers' or diag $err;
like $out, qr{^registered web/b1 }, 'and says so';

$t->start_nginx;
ok $t->wait_mesh_index, 'nginx follows the registry';
my $r = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP') . '/');
is $r->{status}, 200, 'a request is routed';
is $r->{headers}{'x-backend'}, 'b1', 'to the registered backend';

($code, $out) = sh(20, '/usr/bin/registryctl', '--registry', $url, 'list');
like $out, qr/^web\s+1\s+1$/m, 'registryctl list shows it';

# systemctl reload: SIGHUP, and registryd goes on
kill 'HUP', $rpid;
my $end = time + 5;
my $log = '';
while (time < $end) {
    $log = $t->read_file($t->registryd_log) // '';
    last if $log =~ /reload:/;
    select undef, undef, undef, 0.05;
}
like $log, qr/reload: \d+ tokens in use/, 'SIGHUP reloads';
($code) = sh(20, '/usr/bin/registryctl', '--registry', $url, 'get', 'web',
             'b1');
is $code, 0, 'and registryd still answers';

$t->stop_nginx;
is $t->stop_registryd, 0, 'SIGTERM: registryd exits 0';

###########################################################################
# purge: nothing left but what policy keeps

($code, $out, $err) = sh(120, 'dpkg', '--purge', @PKGS);
is $code, 0, 'dpkg --purge both' or diag "$out$err";
$purged = 1;
like status_of($_), qr/^(?:|un|pn)$/, "$_ gone from dpkg's database"
    for @PKGS;

my @left = grep { -e $_ || -l $_ } map { @{ $files{$_} } } @PKGS;
ok !@left, 'no file of either package left' or diag "@left";
for my $p ('/etc/registryd', '/var/lib/registryd', $ENABLED, "$ENABLED.removed",
           $WANTS, '/var/lib/systemd/deb-systemd-helper-enabled/'
           . 'multi-user.target.wants/registryd.service',
           '/var/lib/systemd/deb-systemd-helper-enabled/registryd.service'
           . '.dsh-also') {
    ok !-e $p && !-l $p, "$p gone";
}

# the account stays, expired (Debian keeps system accounts: what it owns
# elsewhere keeps its owner, its uid is not handed out again)
ok getpwnam('registryd'), 'the registryd account is kept';
my $expire = (split /:/, `getent shadow registryd`)[7] // '';
is $expire, '1', 'expired';

($code, $out, $err) = sh(30, '/usr/sbin/nginx', '-t', '-q');
is $code, 0, 'nginx -t with the stock configuration after the purge'
    or diag "$out$err";

# installed again: the account in use again, a new data directory
$purged = 0;
($code, $out, $err) = sh(120, 'dpkg', '-i', $deb{'ngx-mesh-registryd'});
is $code, 0, 'installed again' or diag "$out$err";
$expire = (split /:/, `getent shadow registryd`)[7] // 'x';
is $expire, '', 'the account is not expired any more';
@st = stat '/var/lib/registryd';
is $st[4] // -1, (getpwnam('registryd'))[2], 'a new data directory for it';
ok !-e $db, 'without the purged data';
($code, $out, $err) = sh(120, 'dpkg', '--purge', 'ngx-mesh-registryd');
is $code, 0, 'purged again' or diag "$out$err";
$purged = 1;

$t->done_checks;
done_testing;
