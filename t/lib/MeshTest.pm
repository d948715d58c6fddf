package MeshTest;

# MeshTest: a small integration-test harness for ngx_mesh, in the
# nginx-tests idiom.  Perl core modules only.
#
# =head1 SYNOPSIS
#
#     use lib 't/lib';
#     use Test::More;
#     use MeshTest;
#
#     my $t   = MeshTest->new;
#     my $url = $t->start_registryd(token => 's3cret');
#     my $r   = $t->api(PUT => '/v1/services/orders/instances/o1',
#                       { address => '127.0.0.1', port => 8081 });
#     is $r->{status}, 201;
#     is $r->{json}{port}, 8081;
#
#     my $bp = $t->start_backend(name => 'b1', delay => 0.1);
#
#     $t->nginx_conf($t->nginx_prelude . <<'EOF');
#     http {
#         %%HTTP_PRELUDE%%
#         mesh_registry %%REGISTRY%%;
#         server { listen 127.0.0.1:%%PORT_HTTP%%; location / { return 204; } }
#     }
#     EOF
#     $t->start_nginx;
#     $r = $t->http(GET => 'http://127.0.0.1:' . $t->named_port('HTTP') . '/');
#
#     $t->done_checks;
#     done_testing;
#
# =head1 ENVIRONMENT
#
#   MESH_BUILD       folder with registryd, registryctl and the module
#                    (default: <repo>/build)
#   MESH_MODULE      path of ngx_http_mesh_module.so (default: MESH_BUILD/...)
#   MESH_NGINX       nginx binary (default: /usr/sbin/nginx)
#   MESH_TEST_KEEP   keep the temp dir (its path is printed with diag)
#
# =head1 METHODS
#
# Setup and files
#   new                      temp dir; everything started is stopped when
#                            the object goes away, or at END, even on die
#   dir                      the temp dir
#   bin(NAME)                path of a built binary (registryd, registryctl)
#   module_path              path of ngx_http_mesh_module.so
#   port                     a free loopback TCP port, never the same twice
#   named_port(NAME)         a free port, the same one for the same NAME
#   write_file(NAME, TEXT)   writes DIR/NAME, returns the full path
#   read_file(NAME)          contents of DIR/NAME (or of an absolute path)
#   run([\%opt,] CMD, ARGS)  runs a command (opt: timeout => s, default 20;
#                            stdin => text); returns (exit code, stdout,
#                            stderr).  Exit code is 128+signal if killed,
#                            -1 on timeout.
#
# registryd
#   start_registryd(%opt)    token => TEXT, args => [...], data_dir => DIR,
#                            port => N; waits (<= 10 s) for GET /healthz 200;
#                            returns the base URL.  Dies if it does not come
#                            up (with the tail of its log).
#   registryd_url, registryd_port, registryd_pid, registryd_log (path),
#   data_dir, token, token_file
#   stop_registryd(%opt)     SIGTERM (or signal => NAME), wait (timeout =>
#                            s, default 10), then SIGKILL; returns the wait
#                            status ($?: 0 means exit code 0)
#   kill_registryd           SIGKILL and reap
#   restart_registryd        stop, start again with the same port, data dir,
#                            token and args
#
# Backends (tiny forked HTTP/1.1 servers, keep-alive, one process per
# connection): every request gets 200, body NAME, header "X-Backend: NAME".
#   start_backend(name => NAME, delay => SECONDS)   returns the port
#   backend_port(NAME), stop_backend(NAME), kill_backend(NAME)
#
# nginx
#   nginx_prelude            main-context boilerplate: daemon off, 2 workers,
#                            error_log DIR/error.log debug, pid, load_module,
#                            events (and "user root" when run as root)
#   http_prelude             http-context boilerplate: temp paths and
#                            access_log inside DIR
#   nginx_conf(TEXT [, NAME])  writes DIR/NAME (default nginx.conf) after
#                            substituting %%MODULE%%, %%TESTDIR%%,
#                            %%PORT_<NAME>%%, %%REGISTRY%%, %%PRELUDE%%,
#                            %%HTTP_PRELUDE%%; returns the text written
#   nginx_test([NAME])       nginx -t; returns (exit code, output)
#   start_nginx([NAME])      starts nginx in the foreground; waits until its
#                            listen ports accept
#   reload_nginx             SIGHUP; waits until a new worker generation runs
#   stop_nginx               QUIT, then TERM, then KILL, all bounded
#   nginx_pid
#
# HTTP (timeouts of 10 s; responses are HTTP::Tiny hashes)
#   http(METHOD, URL, BODY, \%headers)
#   json_req(METHOD, URL, BODY, \%headers)   same, adds {json} (decoded
#                            body, or undef when it is not JSON)
#   api(METHOD, PATH, DATA, \%headers)      registryd request: DATA as a
#                            reference is encoded as JSON, a plain string
#                            is sent as is; Content-Type application/json
#                            unless given.  With a token, the bearer is
#                            added unless the headers carry Authorization
#                            (an undef Authorization sends none).  Adds {json}.
#   raw_http(TEXT [, %opt])  sends TEXT as is to registryd (or port => N),
#                            reads until the server closes (timeout => s,
#                            default 10); returns a parsed response
#   parse_http(BYTES)        (function or method) parses a raw HTTP
#                            response: {status, reason, headers (lower-case
#                            names), content (de-chunked)}; undef if
#                            incomplete
#   encode_json / decode_json
#
# CLI
#   registryctl(ARGS)        runs registryctl --registry URL ARGS; returns
#                            (exit code, stdout, stderr)
#
# End
#   done_checks              two (or three) tests: no [alert]/[emerg] in the
#                            nginx error logs, no sanitizer report in the
#                            registryd log, and after stopping everything no
#                            process the harness started is left alive

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Errno qw(EINTR);
use File::Basename qw(dirname);
use File::Path qw(rmtree);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG :sys_wait_h);
use Scalar::Util qw(weaken);
use Socket qw(SOL_SOCKET SO_REUSEADDR);
use Test::More ();
use Time::HiRes qw(sleep time);

our $VERSION = '0.1';

my $REPO = abs_path(dirname(__FILE__) . '/../..');
my $NGINX = $ENV{MESH_NGINX} || '/usr/sbin/nginx';
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my @LIVE;          # harness objects, weak
my %HANDED;        # ports handed out by this process

sub new {
    my ($class, %opt) = @_;

    my $build = $ENV{MESH_BUILD} || "$REPO/build";
    my $dir = tempdir('mesh-test-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    chmod 0755, $dir;

    my $self = bless {
        owner    => $$,
        dir      => $dir,
        build    => $build,
        module   => $ENV{MESH_MODULE} || "$build/ngx_http_mesh_module.so",
        ports    => {},
        backends => {},
        groups   => {},      # pgid => what, every process group started
        done     => 0,
    }, $class;

    push @LIVE, $self;
    weaken($LIVE[-1]);

    # an interrupted run still cleans up
    for my $sig (qw(INT TERM HUP)) {
        $SIG{$sig} = sub { die "caught SIG$sig\n" } if $$ == $self->{owner};
    }

    return $self;
}

sub dir { $_[0]{dir} }
sub module_path { $_[0]{module} }

sub bin {
    my ($self, $name) = @_;
    return "$self->{build}/$name";
}

sub encode_json { $JSON->encode($_[1]) }
sub decode_json { $JSON->decode($_[1]) }

############################################################################
# ports and files

sub port {
    my ($self) = @_;

    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => 0,
            Proto     => 'tcp',
            Listen    => 1,
        ) or croak "cannot bind a loopback port: $!";
        my $port = $s->sockport;
        close $s;
        next if $HANDED{$port}++;
        return $port;
    }

    croak "no free port found";
}

sub named_port {
    my ($self, $name) = @_;
    return $self->{ports}{$name} //= $self->port;
}

sub write_file {
    my ($self, $name, $text) = @_;
    my $path = File::Spec->file_name_is_absolute($name)
        ? $name : "$self->{dir}/$name";
    open my $fh, '>', $path or croak "cannot write $path: $!";
    binmode $fh;
    print $fh $text;
    close $fh or croak "cannot write $path: $!";
    return $path;
}

sub read_file {
    my ($self, $name) = @_;
    my $path = File::Spec->file_name_is_absolute($name)
        ? $name : "$self->{dir}/$name";
    open my $fh, '<', $path or return undef;
    binmode $fh;
    local $/;
    my $text = <$fh>;
    return $text;
}

############################################################################
# processes

# fork a child in its own process group; $code runs in the child and must
# exec or _exit.
sub _spawn {
    my ($self, $what, $code) = @_;

    my $pid = fork;
    croak "fork: $!" unless defined $pid;

    if ($pid == 0) {
        setpgrp(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP CHLD PIPE);
        eval { $code->() };
        print STDERR "child $what: $@" if $@;
        POSIX::_exit(127);
    }

    # make sure the group exists from the parent's point of view too
    setpgrp($pid, $pid);
    $self->{groups}{$pid} = $what;
    push @{ $self->{all_groups} }, $pid;
    return $pid;
}

sub _redirect {
    my ($out, $err, $in) = @_;
    open STDIN, '<', $in // '/dev/null' or die "stdin: $!";
    open STDOUT, '>>', $out or die "stdout $out: $!";
    open STDERR, '>>', $err or die "stderr $err: $!";
    STDOUT->autoflush(1);
    STDERR->autoflush(1);
}

# reap $pid, waiting at most $timeout seconds; returns the wait status or
# undef if it is still running
sub _reap {
    my ($pid, $timeout) = @_;
    my $end = time + ($timeout // 0);

    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r == -1;          # not our child or already reaped
        return undef if time >= $end;
        sleep 0.01;
    }
}

sub _group_alive {
    my ($pgid) = @_;
    return kill(0, -$pgid) ? 1 : 0;
}

# processes of group $pgid that are not zombies
sub _group_members {
    my ($pgid) = @_;
    my @pids;

    opendir my $d, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh> // next;
        close $fh;
        # pid (comm) state ppid pgrp ...
        $stat =~ /\)\s+(\S)\s+(\d+)\s+(\d+)/ or next;
        next if $1 eq 'Z' || $1 eq 'X';
        push @pids, $p if $3 == $pgid;
    }
    closedir $d;

    return @pids;
}

sub _children_of {
    my ($ppid) = @_;
    my @pids;

    opendir my $d, '/proc' or return ();
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh> // next;
        close $fh;
        $stat =~ /\)\s+(\S)\s+(\d+)/ or next;
        next if $1 eq 'Z' || $1 eq 'X';
        push @pids, $p if $2 == $ppid;
    }
    closedir $d;

    @pids = sort { $a <=> $b } @pids;
    return @pids;
}

# stop a whole process group: $sig to the group, wait, then SIGKILL
sub _stop_group {
    my ($self, $pgid, $sig, $timeout) = @_;
    my $status;

    kill $sig, -$pgid if $sig;
    $status = _reap($pgid, $timeout);

    if (!defined $status) {
        kill 'KILL', -$pgid;
        $status = _reap($pgid, 5);
    }

    $self->_finish_group($pgid);
    return $status;
}

# the leader is gone; give the rest of its group a moment, then kill it
sub _finish_group {
    my ($self, $pgid) = @_;
    my $end = time + 5;

    while (_group_members($pgid) && time < $end) {
        sleep 0.02;
    }
    kill 'KILL', -$pgid if _group_members($pgid);

    delete $self->{groups}{$pgid};
}

sub run {
    my ($self, @cmd) = @_;
    my $opt = ref $cmd[0] eq 'HASH' ? shift @cmd : {};
    my $timeout = $opt->{timeout} // 20;

    my $n = ++$self->{runs};
    my $out = "$self->{dir}/run-$n.out";
    my $err = "$self->{dir}/run-$n.err";
    my $in;
    $in = $self->write_file("run-$n.in", $opt->{stdin})
        if defined $opt->{stdin};

    my $pid = $self->_spawn("run @cmd", sub {
        _redirect($out, $err, $in);
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });

    my $status = _reap($pid, $timeout);
    my $code;

    if (!defined $status) {
        $self->_stop_group($pid, 'KILL', 5);
        $code = -1;
    } else {
        delete $self->{groups}{$pid};
        $code = $status & 127 ? 128 + ($status & 127) : $status >> 8;
    }

    my ($o, $e) = ($self->read_file($out) // '', $self->read_file($err) // '');
    unlink $out, $err;
    unlink $in if defined $in;
    return ($code, $o, $e);
}

############################################################################
# registryd

sub registryd_port { $_[0]->named_port('REGISTRY') }
sub registryd_url { 'http://127.0.0.1:' . $_[0]->registryd_port }
sub registryd_pid { $_[0]{registryd}{pid} }
sub registryd_log { "$_[0]{dir}/registryd.log" }
sub data_dir { $_[0]{registryd_opt}{data_dir} // "$_[0]{dir}/registry" }
sub token { $_[0]{token} }
sub token_file { $_[0]{token_file} }

sub start_registryd {
    my ($self, %opt) = @_;

    croak "registryd already running" if $self->{registryd};

    my $bin = $self->bin('registryd');
    croak "no registryd binary at $bin" unless -x $bin;

    $self->{ports}{REGISTRY} = $opt{port} if $opt{port};
    my $port = $self->registryd_port;
    my $data = $opt{data_dir} // "$self->{dir}/registry";
    $opt{data_dir} = $data;
    $self->{registryd_opt} = {%opt};

    my @cmd = ($bin, '--listen', "127.0.0.1:$port", '--data-dir', $data,
               '--log-level', 'debug');

    if (defined $opt{token}) {
        $self->{token} = $opt{token};
        $self->{token_file} = $self->write_file('token', "$opt{token}\n");
        push @cmd, '--token-file', $self->{token_file};
    } else {
        delete $self->{token};
        delete $self->{token_file};
    }

    push @cmd, @{ $opt{args} || [] };

    my $log = $self->registryd_log;
    my $pid = $self->_spawn('registryd', sub {
        _redirect($log, $log);
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });

    $self->{registryd} = { pid => $pid, cmd => \@cmd };
    $self->_reset_ua;

    my $end = time + 10;
    while (time < $end) {
        my $st = _reap($pid, 0);
        if (defined $st) {
            delete $self->{registryd};
            delete $self->{groups}{$pid};
            croak "registryd exited (status $st) at start:\n"
                . _tail($self->read_file($log));
        }
        my $r = HTTP::Tiny->new(timeout => 1, keep_alive => 0)
            ->get($self->registryd_url . '/healthz');
        return $self->registryd_url if $r->{status} == 200;
        sleep 0.05;
    }

    $self->kill_registryd;
    croak "registryd did not answer /healthz within 10 s:\n"
        . _tail($self->read_file($log));
}

sub stop_registryd {
    my ($self, %opt) = @_;
    my $rd = delete $self->{registryd} or return undef;
    $self->_reset_ua;
    return $self->_stop_group($rd->{pid}, $opt{signal} // 'TERM',
                              $opt{timeout} // 10);
}

sub kill_registryd {
    my ($self) = @_;
    my $rd = delete $self->{registryd} or return undef;
    $self->_reset_ua;
    return $self->_stop_group($rd->{pid}, 'KILL', 5);
}

sub restart_registryd {
    my ($self) = @_;
    my %opt = %{ $self->{registryd_opt} || {} };
    $self->stop_registryd;
    return $self->start_registryd(%opt, port => $self->registryd_port);
}

sub _tail {
    my ($text) = @_;
    return '' unless defined $text;
    my @l = split /\n/, $text;
    @l = @l[-20 .. -1] if @l > 20;
    return join '', map { "    $_\n" } @l;
}

############################################################################
# backends

sub start_backend {
    my ($self, %opt) = @_;
    my $name = $opt{name} // croak "start_backend needs a name";
    my $delay = $opt{delay} // 0;

    croak "backend $name already running" if $self->{backends}{$name};

    my $port = $opt{port} // $self->port;
    my $ls = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $port,
        Proto     => 'tcp',
        Listen    => 128,
        ReuseAddr => 1,
    ) or croak "backend $name: cannot listen on 127.0.0.1:$port: $!";

    my $log = "$self->{dir}/backend-$name.log";
    my $pid = $self->_spawn("backend $name", sub {
        _redirect('/dev/null', $log);
        _backend_loop($ls, $name, $delay);
    });
    close $ls;

    $self->{backends}{$name} = { pid => $pid, port => $port };
    return $port;
}

sub backend_port {
    my ($self, $name) = @_;
    my $b = $self->{backends}{$name} or croak "no backend $name";
    return $b->{port};
}

sub stop_backend {
    my ($self, $name) = @_;
    my $b = delete $self->{backends}{$name} or return undef;
    return $self->_stop_group($b->{pid}, 'TERM', 5);
}

sub kill_backend {
    my ($self, $name) = @_;
    my $b = delete $self->{backends}{$name} or return undef;
    return $self->_stop_group($b->{pid}, 'KILL', 5);
}

sub _backend_loop {
    my ($ls, $name, $delay) = @_;

    $SIG{CHLD} = 'IGNORE';

    while (1) {
        my $c = $ls->accept;
        if (!$c) {
            next if $! == EINTR;
            die "accept: $!\n";
        }

        my $pid = fork;
        if (!defined $pid) {
            close $c;
            sleep 0.05;
            next;
        }

        if ($pid == 0) {
            close $ls;
            eval { _backend_conn($c, $name, $delay) };
            POSIX::_exit(0);
        }

        close $c;
    }
}

sub _backend_conn {
    my ($c, $name, $delay) = @_;
    my $buf = '';
    my $sel = IO::Select->new($c);

    # read more bytes into $buf; false on EOF, error or idle timeout
    my $fill = sub {
        return 0 unless $sel->can_read(60);
        my $n = sysread($c, $buf, 65536, length $buf);
        return $n ? 1 : 0;
    };

    REQUEST: while (1) {
        while ($buf !~ /\r?\n\r?\n/) {
            return unless $fill->();
            return if length $buf > 1 << 20;
        }

        $buf =~ s/^(.*?)\r?\n\r?\n//s;
        my ($line, @hl) = split /\r?\n/, $1;
        my ($method, $uri, $proto) = split ' ', $line // '';
        return unless $proto;

        my %h;
        for (@hl) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{lc $k} = $v;
        }

        if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            while (1) {
                while ($buf !~ /\r?\n/) { return unless $fill->() }
                $buf =~ s/^([0-9a-fA-F]+)[^\r\n]*\r?\n// or return;
                my $size = hex $1;
                if ($size == 0) {
                    while ($buf !~ /^\r?\n/ && $buf !~ /\r?\n\r?\n/) {
                        return unless $fill->();
                    }
                    $buf =~ s/^(?:.*?\r?\n)*?\r?\n//s;
                    last;
                }
                while (length $buf < $size + 2) { return unless $fill->() }
                substr($buf, 0, $size) = '';
                $buf =~ s/^\r?\n//;
            }
        } elsif (my $len = $h{'content-length'}) {
            while (length $buf < $len) { return unless $fill->() }
            substr($buf, 0, $len) = '';
        }

        my $conn = lc($h{connection} // '');
        my $keep = $proto eq 'HTTP/1.1' ? $conn ne 'close'
                                        : $conn eq 'keep-alive';

        sleep $delay if $delay > 0;

        my $body = $method eq 'HEAD' ? '' : $name;
        my $resp = "HTTP/1.1 200 OK\r\n"
            . "Content-Type: text/plain\r\n"
            . "Content-Length: " . length($name) . "\r\n"
            . "X-Backend: $name\r\n"
            . "X-Request-Uri: $uri\r\n"
            . "Connection: " . ($keep ? 'keep-alive' : 'close') . "\r\n"
            . "\r\n" . $body;

        while (length $resp) {
            my $n = syswrite($c, $resp);
            return unless $n;
            substr($resp, 0, $n) = '';
        }

        return unless $keep;
    }
}

############################################################################
# nginx

sub nginx_prelude {
    my ($self) = @_;
    my $d = $self->{dir};
    my $user = $> == 0 ? "user root;\n" : '';

    return <<"EOF";
daemon off;
master_process on;
worker_processes 2;
${user}error_log $d/error.log debug;
pid $d/nginx.pid;
load_module $self->{module};

events {
    worker_connections 1024;
}

EOF
}

sub http_prelude {
    my ($self) = @_;
    my $d = $self->{dir};

    return <<"EOF";
    access_log $d/access.log;
    client_body_temp_path $d/client_body_temp;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
EOF
}

sub nginx_conf {
    my ($self, $text, $name) = @_;
    $name //= 'nginx.conf';

    $text =~ s/%%PRELUDE%%/$self->nginx_prelude/ge;
    $text =~ s/%%HTTP_PRELUDE%%/$self->http_prelude/ge;
    $text =~ s/%%MODULE%%/$self->{module}/g;
    $text =~ s/%%TESTDIR%%/$self->{dir}/g;
    $text =~ s/%%REGISTRY%%/$self->registryd_url/ge;
    $text =~ s/%%PORT_(\w+?)%%/$self->named_port($1)/ge;

    $self->write_file($name, $text);
    $self->{nginx_conf_text}{$name} = $text;
    return $text;
}

sub nginx_test {
    my ($self, $name) = @_;
    $name //= 'nginx.conf';
    my ($code, $out, $err) = $self->run({ timeout => 20 }, $NGINX,
        '-t', '-e', 'stderr', '-p', "$self->{dir}/", '-c', $name);
    return ($code, $out . $err);
}

sub nginx_pid { $_[0]{nginx} ? $_[0]{nginx}{pid} : undef }

sub start_nginx {
    my ($self, $name) = @_;
    $name //= 'nginx.conf';

    croak "nginx already running" if $self->{nginx};

    my $text = $self->{nginx_conf_text}{$name}
        // $self->read_file($name) // croak "no $name written";

    my @cmd = ($NGINX, '-e', 'stderr', '-p', "$self->{dir}/", '-c', $name);
    push @cmd, '-g', 'daemon off;' unless $text =~ /^\s*daemon\s/m;

    my $log = "$self->{dir}/nginx.stderr.log";
    my $pid = $self->_spawn('nginx', sub {
        _redirect($log, $log);
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });

    $self->{nginx} = { pid => $pid, conf => $name };

    # ports to wait for: every "listen [127.0.0.1:]PORT" of the config
    my @ports;
    while ($text =~ /^\s*listen\s+(?:127\.0\.0\.1:|\[::1\]:|localhost:)?(\d+)/mg) {
        push @ports, $1;
    }

    my $end = time + 10;
    PORT: for my $port (@ports) {
        while (time < $end) {
            my $st = _reap($pid, 0);
            if (defined $st) {
                delete $self->{nginx};
                delete $self->{groups}{$pid};
                croak "nginx exited (status $st) at start:\n"
                    . _tail($self->read_file($log))
                    . _tail($self->read_file('error.log'));
            }
            my $s = IO::Socket::INET->new(
                PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                Timeout => 1);
            if ($s) { close $s; next PORT }
            sleep 0.05;
        }
        $self->stop_nginx;
        croak "nginx did not listen on port $port within 10 s:\n"
            . _tail($self->read_file($log))
            . _tail($self->read_file('error.log'));
    }

    # and until its workers run
    while (time < $end && _children_of($pid) < 1) {
        sleep 0.02;
    }

    return $pid;
}

sub reload_nginx {
    my ($self) = @_;
    my $ng = $self->{nginx} or croak "nginx is not running";
    my %old = map { $_ => 1 } _children_of($ng->{pid});

    kill 'HUP', $ng->{pid};

    my $end = time + 10;
    while (time < $end) {
        return 1 if grep { !$old{$_} } _children_of($ng->{pid});
        sleep 0.02;
    }

    return 0;
}

sub stop_nginx {
    my ($self) = @_;
    my $ng = delete $self->{nginx} or return undef;
    my $pid = $ng->{pid};

    kill 'QUIT', $pid;
    my $st = _reap($pid, 10);
    if (defined $st) {
        $self->_finish_group($pid);
        return $st;
    }

    return $self->_stop_group($pid, 'TERM', 5);
}

############################################################################
# HTTP

sub _reset_ua { delete $_[0]{ua} }

sub _ua {
    my ($self) = @_;
    return $self->{ua} //= HTTP::Tiny->new(timeout => 10, keep_alive => 1,
                                            agent => 'MeshTest/0.1');
}

sub http {
    my ($self, $method, $url, $body, $headers) = @_;
    my %args;
    $args{content} = $body if defined $body;
    $args{headers} = { %$headers } if $headers;
    return $self->_ua->request($method, $url, \%args);
}

sub json_req {
    my ($self, @args) = @_;
    my $r = $self->http(@args);
    $r->{json} = eval { $JSON->decode($r->{content}) }
        if defined $r->{content} && length $r->{content};
    return $r;
}

sub api {
    my ($self, $method, $path, $data, $headers) = @_;
    my %h = %{ $headers || {} };
    my %lc = map { lc($_) => $_ } keys %h;

    my $body = ref $data ? $JSON->encode($data) : $data;

    if (defined $body && !exists $lc{'content-type'}) {
        $h{'Content-Type'} = 'application/json';
    }

    if (exists $lc{authorization}) {
        delete $h{ $lc{authorization} }
            unless defined $h{ $lc{authorization} };
    } elsif (defined $self->{token}) {
        $h{Authorization} = "Bearer $self->{token}";
    }

    delete $h{$_} for grep { !defined $h{$_} } keys %h;

    return $self->json_req($method, $self->registryd_url . $path, $body, \%h);
}

sub parse_http {
    my $bytes = pop;
    return undef unless defined $bytes;

    $bytes =~ /^(HTTP\/\d\.\d)\s+(\d{3})\s*([^\r\n]*)\r?\n(.*?)\r?\n\r?\n/s
        or return undef;
    my $r = { protocol => $1, status => $2, reason => $3, headers => {} };
    my $body = substr $bytes, $+[0];

    for (split /\r?\n/, $4) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $k = lc $k;
        $r->{headers}{$k} = exists $r->{headers}{$k}
            ? "$r->{headers}{$k}, $v" : $v;
    }

    if (($r->{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r?\n//) {
            my $size = hex $1;
            last if $size == 0;
            return undef if length $body < $size;
            $out .= substr $body, 0, $size, '';
            $body =~ s/^\r?\n//;
        }
        $body = $out;
    } elsif (defined(my $len = $r->{headers}{'content-length'})) {
        return undef if length $body < $len;
        $body = substr $body, 0, $len;
    }

    $r->{content} = $body;
    $r->{json} = eval { $JSON->decode($body) } if length $body;
    return $r;
}

sub raw_http {
    my ($self, $text, %opt) = @_;
    my $port = $opt{port} // $self->registryd_port;
    my $timeout = $opt{timeout} // 10;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout)
        or return undef;
    $s->blocking(0);

    my $sel = IO::Select->new($s);
    my ($in, $end) = ('', time + $timeout);

    # write what the server takes, read what it says, until it closes
    while (time < $end) {
        my ($r, $w) = IO::Select->select($sel, length $text ? $sel : undef,
                                         undef, 0.1);
        if ($w && @$w && length $text) {
            my $n = syswrite($s, $text);
            if (defined $n) {
                substr($text, 0, $n) = '';
            } elsif (!$!{EAGAIN}) {
                $text = '';             # server stopped reading
            }
        }
        if ($r && @$r) {
            my $n = sysread($s, $in, 65536, length $in);
            last if !$n && !(defined $n ? 0 : $!{EAGAIN});
        }
    }

    close $s;
    return parse_http($in);
}

############################################################################
# CLI

sub registryctl {
    my ($self, @args) = @_;
    my $opt = ref $args[0] eq 'HASH' ? shift @args : {};
    return $self->run($opt, $self->bin('registryctl'),
                      '--registry', $self->registryd_url, @args);
}

############################################################################
# end

sub _nginx_logs {
    my ($self) = @_;
    opendir my $d, $self->{dir} or return ();
    my @logs = map { "$self->{dir}/$_" }
               grep { /error.*\.log$|^nginx\.stderr\.log$/ } readdir $d;
    closedir $d;
    return sort @logs;
}

sub stop_all {
    my ($self) = @_;
    return unless $$ == $self->{owner};

    $self->stop_nginx;
    $self->stop_backend($_) for keys %{ $self->{backends} };
    $self->stop_registryd;

    # anything else the harness started
    for my $pgid (keys %{ $self->{groups} }) {
        $self->_stop_group($pgid, 'KILL', 5);
    }
}

sub done_checks {
    my ($self) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    # every process group ever started, stopped or not
    my @groups = @{ $self->{all_groups} || [] };

    $self->stop_all;

    my @bad;
    for my $log ($self->_nginx_logs) {
        my $text = $self->read_file($log) // next;
        push @bad, map { "$log: $_" }
                   grep { /\[(?:alert|emerg)\]/ } split /\n/, $text;
    }
    Test::More::ok(!@bad, 'no [alert] or [emerg] in nginx error logs')
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);

    my $rdlog = $self->read_file($self->registryd_log) // '';
    my @san = grep { /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/ }
              split /\n/, $rdlog;
    Test::More::ok(!@san, 'no sanitizer report in the registryd log')
        or Test::More::diag(join "\n", @san[0 .. ($#san < 9 ? $#san : 9)]);

    my $end = time + 5;
    my @left;
    while (1) {
        @left = map { _group_members($_) } @groups;
        last if !@left || time >= $end;
        sleep 0.05;
    }
    Test::More::ok(!@left, 'no process left behind')
        or Test::More::diag("left: @left");
    kill 'KILL', @left if @left;

    $self->{done} = 1;
}

sub cleanup {
    my ($self) = @_;
    return unless $$ == $self->{owner};
    return if $self->{cleaned}++;

    $self->stop_all;

    if ($ENV{MESH_TEST_KEEP}) {
        Test::More::diag("MeshTest: kept $self->{dir}");
    } else {
        rmtree($self->{dir});
    }
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->cleanup;
}

END {
    local ($?, $!, $@);
    for my $t (grep { defined } @LIVE) {
        $t->cleanup;
    }
}

1;
