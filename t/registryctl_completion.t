#!/usr/bin/perl

# The bash completion of registryctl (completion/registryctl), sourced in
# bash and run on command lines as bash would: commands (every one that
# registryctl help lists), global and per-command options, file names,
# and service names and instance ids read from a live registryd with the
# connection options already on the line.

use strict;
use warnings;

use lib 't/lib';
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use Test::More;
use Time::HiRes qw(time);
use MeshTest;

my $REPO = abs_path(dirname(__FILE__) . '/..');
my $COMP = "$REPO/completion/registryctl";

my $t = MeshTest->new;
my $ctl = $t->bin('registryctl');
ok -x $ctl, "registryctl built at $ctl" or do { done_testing; exit 1 };

# the completions bash would offer for WORDS, the last one being completed
sub complete {
    my (@words) = @_;
    my $script = <<'EOF';
. "$COMP" || exit 3
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_registryctl
printf '%s\n' "${COMPREPLY[@]}"
EOF
    my ($code, $out, $err) = $t->run({ timeout => 20 }, '/usr/bin/env',
        "COMP=$COMP", 'bash', '--norc', '-c', $script, 'bash', $ctl,
        @words);
    diag "bash: $code: $err" if $code != 0 || $err ne '';
    return [ sort grep { length } split /\n/, $out ];
}

my ($code, $out, $err) = $t->run('bash', '-n', $COMP);
is $code, 0, 'the completion file is valid bash' or diag $err;

# commands
my $all = complete('');
($code, $out) = $t->run($ctl, 'help');
my @cmds = $out =~ /^  (\w+)/mg;
ok @cmds >= 10, 'registryctl help lists its commands';
for my $c (@cmds) {
    ok +(grep { $_ eq $c } @$all), "command $c completed";
}
is_deeply complete('re'), ['register'], 're -> register';
is_deeply complete('dereg'), ['deregister'], 'dereg -> deregister';
is_deeply complete('--reg'), ['--registry'], 'global option --registry';
is_deeply complete('--registry', 'http://x', 'ex'), ['export'],
    'a command after a global option and its argument';

# options of a command
is_deeply complete('register', 'a', 'b', '127.0.0.1:1', '--w'), ['--weight'],
    'register --w -> --weight';
ok +(grep { $_ eq '--deregister-after' } @{ complete('register', '--') }),
    'register offers --deregister-after';
ok +(grep { $_ eq '--json' } @{ complete('list', '--') }),
    'list offers --json';
ok !(grep { $_ eq '--weight' } @{ complete('list', '--') }),
    'and not register\'s --weight';
is_deeply complete('apply', '-'), [sort '-f', '--name', '--registry',
    '--token-file', '--timeout', '--cacert', '--cert', '--key', '--help',
    '--version'], 'apply: -f, --name and the global options';

# files: after -f, after --token-file, and import's
my $d = $t->dir;
mkdir "$d/pol" or die;
$t->write_file("pol/$_", "x\n") for qw(orders.yaml routes.yaml);
is_deeply complete('apply', '-f', "$d/pol/"),
    ["$d/pol/orders.yaml", "$d/pol/routes.yaml"], 'apply -f DIR/: its files';
is_deeply complete('apply', '-f', "$d/pol/ro"), ["$d/pol/routes.yaml"],
    'apply -f a prefix';
is_deeply complete('--token-file', "$d/pol/or"), ["$d/pol/orders.yaml"],
    '--token-file: a file';
is_deeply complete('import', "$d/pol/or"), ["$d/pol/orders.yaml"],
    'import: a file';
is_deeply complete('register', '--ttl', ''), [], 'nothing for a duration';

# run: the command after --
ok +(grep { $_ eq 'bash' } @{ complete('run', 's', 'i', '127.0.0.1:1', '--',
                                       'bas') }),
    'run ... -- completes a command';

# names from a live registry, which needs a token: the one on the line
my $url = $t->start_registryd(token => 's3cret');
my $tok = $t->token_file;
for (['orders', 'o1', 8081], ['orders', 'o2', 8082], ['payments', 'p1', 8083])
{
    my $r = $t->register(@$_);
    ok $r->{status} == 201, "registered $_->[0]/$_->[1]";
}
my @conn = ('--registry', $url, '--token-file', $tok);

is_deeply complete(@conn, 'deregister', ''), ['orders', 'payments'],
    'deregister: the services';
is_deeply complete(@conn, 'deregister', 'or'), ['orders'],
    'deregister: a prefix';
is_deeply complete(@conn, 'heartbeat', 'orders', ''), ['o1', 'o2'],
    'heartbeat SVC: its instance ids';
is_deeply complete(@conn, 'list', 'p'), ['payments'], 'list: a service';
is_deeply complete(@conn, 'get', 'payments', ''), ['p1'], 'get SVC: ids';
is_deeply complete(@conn, 'get', 'd'), ['destinationrules', 'dr'],
    'get: destinationrules, dr';
is_deeply complete(@conn, 'get', ''),
    [sort qw(orders payments virtualservices destinationrules gateways vs dr
             gw)],
    'get: kinds and services';
is_deeply complete(@conn, 'get', 'vs', '-o', ''), ['json', 'yaml'],
    'get -o: yaml or json';
is_deeply complete(@conn, 'get', 'vs', '-'), [sort '-n', '-o',
    '--registry', '--token-file', '--timeout', '--cacert', '--cert', '--key',
    '--help', '--version'], 'get: -n, -o and the global options';
is_deeply complete(@conn, 'delete', 'vi'), ['virtualservices'],
    'delete: a kind';
is_deeply complete('delete', '-f', "$d/pol/or"), ["$d/pol/orders.yaml"],
    'delete -f: a file';
is_deeply complete("--registry=$url", "--token-file=$tok", 'list', ''),
    ['orders', 'payments'], 'the --opt=value forms are passed on too';
is_deeply complete('--registry', $url, 'list', ''), [],
    'without the token: no names (registryd says 401)';

# a registry that does not answer costs no more than registryctl's wait
my $dead = $t->port;
my $t0 = time;
is_deeply complete('--registry', "http://127.0.0.1:$dead", 'list', ''), [],
    'no registry: no names';
ok time - $t0 < 3, 'and no long wait';

$t->done_checks;
done_testing;
