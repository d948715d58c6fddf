#!/usr/bin/perl

# The poller against a registry that misbehaves (a scripted HTTP server in
# place of registryd): an answer in chunked encoding and one gzipped are
# applied; a registry that ignores "wait" is not polled in a loop; an index
# that goes back within the same registry is refused (status "error", the
# old state keeps routing) until the registry says it is a new one; a
# document that does not parse and a header block over 16 KB are refused.

use strict;
use warnings;

use lib 't/lib';
use IO::Compress::Gzip qw(gzip);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use MeshTest;
use Time::HiRes qw(time sleep);

my $t = MeshTest->new(log_level => 'info');

plan skip_all => 'no module at ' . $t->module_path unless -f $t->module_path;

my %port;
$port{$_} = $t->start_backend(name => $_, events => 1) for qw(b1 b2);

# the scripted registry: each answer is the file "answer" as it is when the
# request comes, sent as "mode" says; every request line goes to "requests"

my $rport = $t->named_port('REGISTRY');
my $dir = $t->dir;

sub script {
    my ($mode, $body) = @_;
    $t->write_file('answer.tmp', $body);
    $t->write_file('mode.tmp', $mode);
    rename "$dir/mode.tmp", "$dir/mode" or die;
    rename "$dir/answer.tmp", "$dir/answer" or die;
}

sub doc {
    my ($index, $registry, @backends) = @_;
    my $inst = join ',', map {
        qq({"id":"$_","address":"127.0.0.1","port":$port{$_}})
    } @backends;
    return qq({"index":$index,"registry":"$registry","delta":false,)
        . qq("services":[{"name":"orders","instances":[$inst]}],)
        . qq("policies":[]});
}

sub requests {
    my $log = $t->read_file('requests') // '';
    return scalar(() = $log =~ /^GET /mg);
}

script('chunked', doc(10, '00000000000000aa', 'b1'));

my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => $rport, Listen => 16, ReuseAddr => 1)
    or die "listen: $!";

$t->_spawn('fake registry', sub {
    $SIG{CHLD} = 'IGNORE';
    while (1) {
        my $c = $ls->accept or next;
        my $pid = fork;
        if (defined $pid && $pid == 0) {
            serve($c);
            POSIX::_exit(0);
        }
        close $c;
    }
});
close $ls;

sub serve {
    my ($c) = @_;
    my $buf = '';
    my $sel = IO::Select->new($c);
    while (1) {
        while ($buf !~ /\r\n\r\n/) {
            return unless $sel->can_read(60);
            sysread($c, $buf, 65536, length $buf) or return;
        }
        $buf =~ s/^(.*?)\r\n\r\n//s;
        my ($line) = split /\r\n/, $1;
        open my $log, '>>', "$dir/requests" or die;
        syswrite $log, "$line\n";
        close $log;

        my $mode = $t->read_file('mode') // 'plain';
        my $body = $t->read_file('answer') // '';
        my $h = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";

        if ($mode eq 'chunked') {
            my $out = '';
            while (length $body) {
                my $piece = substr $body, 0, 7, '';
                $out .= sprintf("%x\r\n", length $piece) . "$piece\r\n";
            }
            syswrite $c, "${h}Transfer-Encoding: chunked\r\n\r\n${out}0\r\n\r\n";
        } elsif ($mode eq 'gzip') {
            my $z;
            gzip(\$body => \$z) or die;
            syswrite $c, "${h}Content-Encoding: gzip\r\n"
                . "Content-Length: " . length($z) . "\r\n\r\n$z";
        } elsif ($mode eq 'bigheader') {
            syswrite $c, "${h}X-Filler: " . ('x' x 20000) . "\r\n"
                . "Content-Length: " . length($body) . "\r\n\r\n$body";
        } else {
            syswrite $c, "${h}Content-Length: " . length($body)
                . "\r\n\r\n$body";
        }
    }
}

$t->nginx_conf(<<"EOF");
%%PRELUDE%%
http {
%%HTTP_PRELUDE%%
    mesh_registry http://127.0.0.1:$rport;

    upstream orders {
        mesh orders;
    }

    server {
        listen 127.0.0.1:%%PORT_HTTP%%;
        location / { proxy_pass http://orders; }
        location = /mesh/status { mesh_status; }
    }
}
EOF

sub backend {
    my $r = $t->client->get('/');
    return $r->{headers}{'x-backend'} // "status $r->{status}";
}

sub state_is {
    my ($state, $timeout) = @_;
    my $end = time + ($timeout // 5);
    my $st;
    while (time < $end) {
        $st = $t->mesh_status;
        return $st if $st && $st->{registry}{state} eq $state;
        sleep 0.05;
    }
    diag explain $st;
    return undef;
}

$t->start_nginx;

# chunked: applied

ok $t->wait_mesh_index(index => 10), 'a chunked answer is applied';
is backend(), 'b1', '... and routes to b1';

# the registry answers every poll at once, whatever the wait

my $n0 = requests();
sleep 3;
my $n = requests() - $n0;
cmp_ok $n, '<=', 6, "a registry that ignores wait: $n polls in 3 s";
like +($t->read_file('requests') =~ /^(GET [^\n]*index=10[^\n]*)$/m)[0]
    // '', qr/services=orders&delta=1&index=10&wait=30s&registry=0+aa /,
    'the poll names its services, index and registry';

# an index going back within the same registry is refused

script('plain', doc(5, '00000000000000aa', 'b2'));
my $st = state_is('error');
ok $st, 'an index going back: state error';
like $st->{registry}{last_error} // '', qr/went back from 10 to 5/,
    '... with the reason';
is $st->{index}, 10, '... index 10 kept';
is backend(), 'b1', '... traffic still on b1';

$n0 = requests();
sleep 3;
$n = requests() - $n0;
cmp_ok $n, '<=', 3, "refused answers are asked again slowly: $n in 3 s";

# a new registry (another id) may start over

script('gzip', doc(3, '00000000000000bb', 'b2'));
ok state_is('synced', 40), 'a new registry id: accepted';
is $t->mesh_status->{index}, 3, '... at its index 3';
is backend(), 'b2', '... gzipped, and routing to b2';

# not JSON, a header block over 16 KB

script('plain', '{"index": 4, "services": [');
$st = state_is('error', 10);
like $st && $st->{registry}{last_error} // '', qr/snapshot refused/,
    'a document that does not parse: refused';
is backend(), 'b2', '... traffic still on b2';

script('plain', doc(4, '00000000000000bb', 'b1'));
ok state_is('synced', 40), 'then a good answer is applied';

script('bigheader', doc(5, '00000000000000bb', 'b2'));
$st = state_is('stale', 10);
like $st && $st->{registry}{last_error} // '', qr/header block/,
    'a header block over 16 KB: refused';
is backend(), 'b1', '... traffic still on b1';

$t->stop_nginx;

my $log = $t->read_file('error.log') // '';
my $went = () = $log =~ /went back from 10 to 5/g;
is $went, 1, 'the refusal is logged once, not per poll';

$t->done_checks;
done_testing;
