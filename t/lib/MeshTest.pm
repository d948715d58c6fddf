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
# new(%opt): log_level => LEVEL (nginx error_log level of nginx_prelude,
# default debug; load tests use info: Debian's nginx has --with-debug and
# debug logging of thousands of requests is slow and huge), stream => 1
# (nginx_prelude loads nginx's stream module first: stream_module_path),
# workers => N
# (worker_processes of nginx_prelude, default 2), daemon => 1 (nginx runs
# as a daemon: its own session and process group, which is what a binary
# upgrade needs; nginx ignores USR2 in a master whose parent is still the
# one that started it).
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
#   start_registryd(%opt)    token => TEXT (token_file), or tokens => YAML
#                            (tokens_file) with bearer => the SECRET api()
#                            sends; tls => { cert, key, client_ca, ca,
#                            client_cert, client_key }: HTTPS (api() and
#                            http() trust ca and present client_cert);
#                            args => [...], data_dir => DIR,
#                            port => N; command => [ARGV]: run this
#                            command line as it is instead (another
#                            registryd, as a service would; it must
#                            listen on port => N); waits (<= 10 s) for
#                            GET /healthz 200;
#                            returns the base URL.  Dies if it does not come
#                            up (with the tail of its log).
#   registryd_url, registryd_port, registryd_pid, registryd_log (path),
#   data_dir, token, token_file, tokens_file
#   stop_registryd(%opt)     SIGTERM (or signal => NAME), wait (timeout =>
#                            s, default 10), then SIGKILL; returns the wait
#                            status ($?: 0 means exit code 0)
#   kill_registryd           SIGKILL and reap
#   restart_registryd        stop, start again with the same port, data dir,
#                            token and args
#
# Certificates (openssl, made at run time in the test's directory)
#   make_certs(certs => [[NAME, SUBJECT, SAN or undef, CA], ...])
#                            two CAs, "ca" and "other-ca", then each
#                            NAME.crt/NAME.key signed by CA ("ca" when
#                            undef); SAN like "DNS:x,IP:127.0.0.1"; a fifth
#                            element adds extension lines (openssl -extfile
#                            form).  Keys are mode 0600.  Returns the
#                            directory.
#
# Backends (tiny forked HTTP/1.1 servers, keep-alive, one process per
# connection): every request gets 200, body NAME, headers "X-Backend: NAME",
# "X-Request-Uri: URI", "X-Request-Host: HOST", "X-Seen-NAME: VALUE" for
# each X- header it had and "X-Conn-Requests: N" (N-th request on this
# connection, from 1: shows upstream keepalive at work).
#   start_backend(name => NAME, delay => SECONDS, events => 1,
#                 status => CODE, requests => FILE)
#                            returns the port; events => 1 serves every
#                            connection from one process with a select
#                            loop (no fork per connection: for thousands
#                            of requests); delay works there too, without
#                            blocking other connections (a long delay
#                            makes a backend that hangs); status => CODE
#                            answers CODE instead of 200 (same headers
#                            and body); requests => FILE (not with
#                            events) appends a line per request to FILE:
#                            "METHOD URI HOST BODY-BYTES" 
#   start_tcp_backend(name => NAME)
#                            a TCP instance: "NAME\n" to each connection,
#                            then an echo; returns the port
#   backend_port(NAME), stop_backend(NAME), kill_backend(NAME)
#
# nginx
#   nginx_prelude(%opt)      main-context boilerplate: daemon off, 2 workers,
#                            error_log DIR/error.log debug, pid, load_module,
#                            events (and "user root" when run as root);
#                            opt (or new's): log_level => LEVEL, workers => N
#   http_prelude             http-context boilerplate: temp paths and
#                            access_log inside DIR
#   nginx_conf(TEXT [, NAME])  writes DIR/NAME (default nginx.conf) after
#                            substituting %%MODULE%%, %%TESTDIR%%,
#                            %%PORT_<NAME>%%, %%REGISTRY%%, %%PRELUDE%%,
#                            %%HTTP_PRELUDE%%, %%MESH_PRELUDE%%; returns the
#                            text written
#   nginx_test([NAME])       nginx -t; returns (exit code, output)
#   start_nginx([NAME])      starts nginx in the foreground; waits until its
#                            listen ports accept
#   upgrade_nginx            binary upgrade: USR2, then QUIT to the old master
#                            once the new one has workers; the new pid
#   reload_nginx(%opt)       SIGHUP; waits until a new worker generation
#                            runs (wait_old => 1: and the old one is gone)
#   stop_nginx               QUIT, then TERM, then KILL, all bounded
#   nginx_pid
#   nginx_workers            pids of the master's children (sorted)
#
# Mesh (ngx_http_mesh_module)
#   mesh_prelude             http-context lines: mesh_registry REGISTRY;
#                            mesh_cache_file DIR/mesh.json
#   cache_file               DIR/mesh.json
#   register(SVC, ID, PORT, %fields)   PUT an instance at 127.0.0.1:PORT
#                            (fields: weight, ttl, ...); returns api()'s
#                            response
#   deregister(SVC, ID)      DELETE; returns api()'s response
#   registry_index           registryd's current index (GET /healthz)
#   mesh_status(%opt)        GET /mesh/status through nginx (port => N,
#                            default named_port('HTTP'); path => P);
#                            decoded JSON or undef
#   wait_mesh_index(%opt)    polls mesh_status until its index reaches
#                            index => N (default: registry_index), at most
#                            timeout => s (default 5); returns the status,
#                            or undef on timeout
#   apply_policy(NAME, YAML [, \%headers])   PUT /v1/policies/NAME with
#                            Content-Type application/yaml; returns
#                            api()'s response ({json}{index} on 2xx)
#   delete_policy(NAME)      DELETE /v1/policies/NAME; returns api()'s
#                            response
#   apply_objects(YAML)      POST /v1/objects (kubectl apply's form);
#                            returns api()'s response, its JSON diag'd
#                            unless 200
#   tcp_line(PORT [, SEND])  connect to 127.0.0.1:PORT, write SEND, and
#                            return the first line read (without its
#                            newline): '' when nginx closes first,
#                            "connect: ERROR" when it cannot connect; at
#                            most 3 s per wait
#   mesh_prometheus(%opt)    GET /mesh/status?format=prometheus (port =>
#                            N, path => P as mesh_status); returns
#                            {status, type (Content-Type), text}
#   parse_prometheus(TEXT)   (function or method) the text exposition:
#                            {samples => [[NAME, {LABEL => VALUE}, NUMBER]],
#                            help => {FAMILY => TEXT}, type => {FAMILY =>
#                            TYPE}, bad => [lines it could not parse]}
#   prom_sum(PARSED, NAME, {LABEL => VALUE})   sum of the NAME samples whose
#                            labels include those given (undef if none)
#   promtool                 path of promtool, or undef (Debian package
#                            prometheus; scripts/deps.sh installs it)
#   promtool_check(TEXT)     (exit code, output) of promtool check metrics;
#                            (-1, why) without promtool: a failure
#
# Load (fast raw-socket HTTP/1.1 clients)
#   client(port => N, keepalive => 0|1, timeout => s,
#          local_addr => IP)
#                            a MeshTest::Client: ->get(PATH [, \%headers])
#                            (Host: 127.0.0.1 unless the headers give it),
#                            ->request(METHOD, PATH [, \%headers [, BODY]])
#                            (BODY as it is: give its Content-Length) return
#                            {status, headers (lower-case), content} or
#                            {status => 599, error => TEXT}; one keep-alive
#                            connection (reopened when needed; a request
#                            on a reused connection that the server had
#                            closed is retried once, as HTTP::Tiny does),
#                            or a new one per request with keepalive => 0;
#                            local_addr binds its sockets to a loopback
#                            source address (127.0.0.2...)
#   load(%opt)               forks clients => C (default 4) clients, each
#                            with its own connection; sends paths => [...]
#                            (each once, spread over the clients) or
#                            requests => N of path => P (default /), or
#                            runs for duration => s; port => N (default
#                            named_port('HTTP')), keepalive => 0|1,
#                            headers => [names] to count (default
#                            ['x-backend']), timeout => s (default 60).
#                            Returns {total, ok (2xx), failed, statuses =>
#                            {code => n}, by => {header => {value => n}},
#                            count => {value of the first header => n},
#                            results => [[status, values...]] per path
#                            (paths mode), errors => [first few texts],
#                            retries, elapsed}
#   load_start(%opt) / load_wait(HANDLE)   the same, in the background
#
# HTTP (timeouts of 10 s; responses are HTTP::Tiny hashes)
#   http(METHOD, URL, BODY, \%headers, \%tls)   \%tls: this request's own
#                            ca, client_cert, client_key (undef: none), in
#                            place of start_registryd's, on a connection
#                            of its own
#   json_req(METHOD, URL, BODY, \%headers, \%tls)   same, adds {json}
#                            (decoded body, or undef when it is not JSON)
#   api(METHOD, PATH, DATA, \%headers, \%tls)      registryd request: DATA as a
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
#   start_registryctl(ARGS)  the same in the background (run, watch): its
#                            own process group, stopped at the end;
#                            returns its pid
#   registryctl_output(PID)  (stdout, stderr) it has written so far
#   wait_registryctl(PID [, TIMEOUT])  waits at most TIMEOUT s (default
#                            10) for it to exit: its exit code (128+signal
#                            if killed), undef while it runs
#
# End
#   done_checks(%opt)        two (or three) tests: no [alert]/[emerg] in the
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
use Socket qw(SOL_SOCKET SO_REUSEADDR IPPROTO_TCP TCP_NODELAY);
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

    # a server that answers early (413, 401) and closes while the test
    # still writes must give the test an error, not kill it with SIGPIPE
    $SIG{PIPE} = 'IGNORE';

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
        log_level => $opt{log_level},
        workers  => $opt{workers},
        daemon   => $opt{daemon},
        stream   => $opt{stream},
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
sub registryd_url {
    ($_[0]{registryd_tls} ? 'https' : 'http') . '://127.0.0.1:'
        . $_[0]->registryd_port;
}
sub registryd_pid { $_[0]{registryd}{pid} }
sub registryd_log { "$_[0]{dir}/registryd.log" }
sub data_dir { $_[0]{registryd_opt}{data_dir} // "$_[0]{dir}/registry" }
sub token { $_[0]{token} }
sub token_file { $_[0]{token_file} }
sub tokens_file { $_[0]{tokens_file} }

sub start_registryd {
    my ($self, %opt) = @_;

    croak "registryd already running" if $self->{registryd};

    my $bin = $opt{command} ? $opt{command}[0] : $self->bin('registryd');
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
        chmod 0600, $self->{token_file};      # registryd refuses 0644
        push @cmd, '--token-file', $self->{token_file};
    } elsif (defined $opt{tokens}) {
        # a tokens file (YAML); bearer => SECRET is what api() sends
        $self->{token} = $opt{bearer};
        $self->{tokens_file} = $self->write_file('tokens.yaml',
                                                 $opt{tokens});
        chmod 0600, $self->{tokens_file};
        push @cmd, '--tokens-file', $self->{tokens_file};
    } else {
        delete $self->{token};
        delete $self->{token_file};
    }

    # tls => { cert, key, client_ca, ca (what clients trust), client_cert,
    # client_key (what api() presents) }: HTTPS
    if ($opt{tls}) {
        $self->{registryd_tls} = $opt{tls};
        push @cmd, '--tls-cert', $opt{tls}{cert}, '--tls-key', $opt{tls}{key};
        push @cmd, '--tls-client-ca', $opt{tls}{client_ca}
            if $opt{tls}{client_ca};
    } else {
        delete $self->{registryd_tls};
    }

    push @cmd, @{ $opt{args} || [] };
    @cmd = @{ $opt{command} } if $opt{command};

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
        # is it up, whatever its certificate's name
        my $r = HTTP::Tiny->new(timeout => 1, keep_alive => 0,
                                verify_SSL => 0)
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
# certificates

sub make_certs {
    my ($self, %opt) = @_;
    my $d = "$self->{dir}/pki";
    mkdir $d;

    my $ssl = sub {
        my ($what, @cmd) = @_;
        my ($code, $out, $err) = $self->run('openssl', @cmd);
        croak "openssl $what: $err" unless $code == 0;
    };

    for my $ca (qw(ca other-ca)) {
        $ssl->("$ca", 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
               '-keyout', "$d/$ca.key", '-out', "$d/$ca.crt", '-days', '2',
               '-subj', "/CN=mesh test $ca");
    }

    for my $c (@{ $opt{certs} || [] }) {
        my ($name, $subj, $san, $ca, $more) = @$c;
        $ca //= 'ca';
        my @ext;
        if (defined $san || defined $more) {
            open my $fh, '>', "$d/$name.ext" or croak "$name.ext: $!";
            print $fh "subjectAltName=$san\n" if defined $san;
            print $fh "$more\n" if defined $more;
            close $fh;
            @ext = ('-extfile', "$d/$name.ext");
        }
        $ssl->("$name key", 'req', '-newkey', 'rsa:2048', '-nodes',
               '-keyout', "$d/$name.key", '-out', "$d/$name.csr",
               '-subj', $subj);
        $ssl->("$name cert", 'x509', '-req', '-in', "$d/$name.csr",
               '-CA', "$d/$ca.crt", '-CAkey', "$d/$ca.key",
               '-CAcreateserial', '-out', "$d/$name.crt", '-days', '2',
               @ext);
        chmod 0600, "$d/$name.key";
    }

    return $d;
}

############################################################################
# backends

# etcd: a cluster of members on loopback ports of the test's own, each
# in its own process group and data dir under the test's dir

sub _etcd_member_cmd {
    my ($self, $m) = @_;
    my $cluster = join ',',
        map { "$_->{name}=http://127.0.0.1:$_->{peer}" } @{ $self->{etcd} };

    return ('/usr/bin/etcd', '--name', $m->{name},
            '--data-dir', "$self->{dir}/etcd-$m->{name}",
            '--listen-client-urls', "http://127.0.0.1:$m->{client}",
            '--advertise-client-urls', "http://127.0.0.1:$m->{client}",
            '--listen-peer-urls', "http://127.0.0.1:$m->{peer}",
            '--initial-advertise-peer-urls', "http://127.0.0.1:$m->{peer}",
            '--initial-cluster', $cluster,
            '--initial-cluster-state', 'new',
            '--initial-cluster-token', "mesh-test-$$",
            '--max-txn-ops', '1024');
}

sub _etcd_spawn {
    my ($self, $m) = @_;
    my @cmd = $self->_etcd_member_cmd($m);
    my $log = "$self->{dir}/etcd-$m->{name}.log";

    $m->{pid} = $self->_spawn("etcd $m->{name}", sub {
        _redirect($log, $log);
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });
}

# the member answers /health as part of a cluster with a leader
sub etcd_healthy {
    my ($self, $i) = @_;
    my $m = $self->{etcd}[$i] or croak "no etcd member $i";
    my $r = HTTP::Tiny->new(timeout => 1, keep_alive => 0)
        ->get("http://127.0.0.1:$m->{client}/health");
    return $r->{status} == 200 && $r->{content} =~ /"health":\s*"true"/;
}

# start $n members (3 by default); returns their endpoints, comma-separated
sub start_etcd_cluster {
    my ($self, %opt) = @_;
    my $n = $opt{members} // 3;

    croak "no /usr/bin/etcd (scripts/deps.sh installs etcd-server)"
        unless -x '/usr/bin/etcd';
    croak "etcd already running" if $self->{etcd};

    $self->{etcd} = [ map { { name => "e$_", client => $self->port,
                              peer => $self->port } } 1 .. $n ];
    $self->_etcd_spawn($_) for @{ $self->{etcd} };

    my $end = time + 30;
    while (time < $end) {
        return $self->etcd_endpoints
            unless grep { !$self->etcd_healthy($_) } 0 .. $n - 1;
        sleep 0.1;
    }

    croak "the etcd cluster did not become healthy within 30 s:\n"
        . join '', map { _tail($self->read_file(
                             "$self->{dir}/etcd-$_->{name}.log") // '') }
                   @{ $self->{etcd} };
}

sub etcd_endpoints {
    my ($self) = @_;
    return join ',', map { "http://127.0.0.1:$_->{client}" }
                     @{ $self->{etcd} || [] };
}

sub etcd_endpoint {
    my ($self, $i) = @_;
    return "http://127.0.0.1:$self->{etcd}[$i]{client}";
}

# kill -9 member $i (0-based)
sub kill_etcd_member {
    my ($self, $i) = @_;
    my $m = $self->{etcd}[$i] or croak "no etcd member $i";
    return unless $m->{pid};
    $self->_stop_group(delete $m->{pid}, 'KILL', 5);
}

# start member $i again on its data dir (it rejoins the cluster)
sub start_etcd_member {
    my ($self, $i) = @_;
    my $m = $self->{etcd}[$i] or croak "no etcd member $i";
    croak "etcd member $i is running" if $m->{pid};
    $self->_etcd_spawn($m);
}

# registryd arguments for a store on this test's etcd cluster
sub etcd_store_args {
    my ($self, %opt) = @_;
    return ('--store', 'etcd', '--etcd-endpoints',
            $opt{endpoints} // $self->etcd_endpoints,
            '--etcd-prefix', $opt{prefix} // '/mesh-test/');
}

sub start_backend {
    my ($self, %opt) = @_;
    my $name = $opt{name} // croak "start_backend needs a name";
    my $delay = $opt{delay} // 0;
    my $status = $opt{status} // 200;

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
        if ($opt{events}) {
            _backend_events($ls, $name, $delay, $status);
        } else {
            _backend_loop($ls, $name, $delay, $status, $opt{requests});
        }
    });
    close $ls;

    $self->{backends}{$name} = { pid => $pid, port => $port };
    return $port;
}

# many instances at once: one nginx (a single process) listening on
# $opt{ports} loopback ports, each answering 200 with "X-Backend: pPORT";
# returns the ports. Stopped like any backend (stop_backend NAME). With
# ssl, also "X-Client-DN" (the client certificate's subject, empty when
# none) and "X-SNI" (the server name the client sent, empty when none).
sub start_backend_nginx {
    my ($self, %opt) = @_;
    my $name = $opt{name} // croak "start_backend_nginx needs a name";
    my $n = $opt{ports} // croak "start_backend_nginx needs ports";

    croak "backend $name already running" if $self->{backends}{$name};

    my $d = "$self->{dir}/backend-$name";
    mkdir $d;
    my @ports = map { $self->port } 1 .. $n;
    my $ssl = $opt{ssl} ? ' ssl' : '';
    my $listen = join '', map { "        listen 127.0.0.1:$_$ssl;\n" } @ports;
    my $files = $n + 64;

    # ssl => { cert, key, client_ca }: HTTPS, and with client_ca a client
    # certificate signed by it is required (mutual TLS)
    if ($opt{ssl}) {
        $listen .= "        ssl_certificate $opt{ssl}{cert};\n"
                 . "        ssl_certificate_key $opt{ssl}{key};\n";
        $listen .= "        ssl_client_certificate $opt{ssl}{client_ca};\n"
                 . "        ssl_verify_client on;\n"
            if $opt{ssl}{client_ca};
    }
    my $dn = $opt{ssl} ? '        add_header X-Client-DN $ssl_client_s_dn '
                        . "always;\n"
                        . '        add_header X-SNI $ssl_server_name '
                        . "always;\n" : '';

    $self->write_file("backend-$name/nginx.conf", <<"EOF");
daemon off;
master_process off;
worker_rlimit_nofile $files;
error_log $d/error.log warn;
pid $d/nginx.pid;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $d;
    proxy_temp_path $d;
    fastcgi_temp_path $d;
    uwsgi_temp_path $d;
    scgi_temp_path $d;

    server {
$listen
        location / {
            add_header X-Backend p\$server_port always;
$dn            return 200 "p\$server_port\\n";
        }
    }
}
EOF

    my $log = "$d/stderr.log";
    my @cmd = ($NGINX, '-e', 'stderr', '-p', "$d/", '-c', "$d/nginx.conf");
    my $pid = $self->_spawn("backend $name", sub {
        _redirect($log, $log);
        _nginx_env($self->{dir});
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });

    $self->{backends}{$name} = { pid => $pid, port => $ports[0] };

    # the first and the last of them: nginx opens them all at once
    my $end = time + 10;
    PORT: for my $port ($ports[0], $ports[-1]) {
        while (time < $end) {
            croak "backend $name exited at start:\n"
                . _tail($self->read_file("backend-$name/stderr.log"))
                if defined _reap($pid, 0);
            my $s = IO::Socket::INET->new(
                PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                Timeout => 1);
            if ($s) { close $s; next PORT }
            sleep 0.05;
        }
        $self->stop_backend($name);
        croak "backend $name did not listen on port $port within 10 s";
    }

    return @ports;
}

sub backend_port {
    my ($self, $name) = @_;
    my $b = $self->{backends}{$name} or croak "no backend $name";
    return $b->{port};
}

# a TCP service instance: says "NAME\n" to each connection, then echoes
# what it receives until the client closes; one process per connection.
# Stopped as any backend (stop_backend, kill_backend).
sub start_tcp_backend {
    my ($self, %opt) = @_;
    my $name = $opt{name} // croak "start_tcp_backend needs a name";

    croak "backend $name already running" if $self->{backends}{$name};

    my $port = $opt{port} // $self->port;
    my $ls = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $port,
        Proto     => 'tcp',
        Listen    => 128,
        ReuseAddr => 1,
    ) or croak "tcp backend $name: cannot listen on 127.0.0.1:$port: $!";

    my $log = "$self->{dir}/backend-$name.log";
    my $pid = $self->_spawn("tcp backend $name", sub {
        _redirect('/dev/null', $log);
        $SIG{CHLD} = 'IGNORE';

        while (1) {
            my $c = $ls->accept;
            if (!$c) {
                next if $! == EINTR;
                die "accept: $!\n";
            }

            my $child = fork;
            if (!defined $child) {
                close $c;
                next;
            }

            if ($child == 0) {
                close $ls;
                my $sel = IO::Select->new($c);
                syswrite $c, "$name\n";
                while ($sel->can_read(60)) {
                    my $n = sysread $c, my $buf, 65536;
                    last unless $n;
                    while (length $buf) {
                        my $w = syswrite $c, $buf;
                        last unless $w;
                        substr($buf, 0, $w) = '';
                    }
                }
                POSIX::_exit(0);
            }

            close $c;
        }
    });
    close $ls;

    $self->{backends}{$name} = { pid => $pid, port => $port };
    return $port;
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
    my ($ls, $name, $delay, $status, $reqlog) = @_;

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
            eval { _backend_conn($c, $name, $delay, $status, $reqlog) };
            POSIX::_exit(0);
        }

        close $c;
    }
}

sub _backend_conn {
    my ($c, $name, $delay, $status, $reqlog) = @_;
    my $buf = '';
    my $nreq = 0;
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
        my $body = '';

        my %h;
        for (@hl) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
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
            $body = substr($buf, 0, $len, '');
        }

        if ($reqlog) {
            # one write of one line: the connections' processes append
            # whole lines
            open my $fh, '>>', $reqlog or die "$reqlog: $!\n";
            syswrite $fh, join(' ', $method, $uri, $h{host} // '-',
                               length $body) . "\n";
            close $fh;
        }

        my $conn = lc($h{connection} // '');
        my $keep = $proto eq 'HTTP/1.1' ? $conn ne 'close'
                                        : $conn eq 'keep-alive';

        sleep $delay if $delay > 0;

        my $resp = _backend_response($name, $method, $uri, $keep, ++$nreq,
                                     $status, \%h);

        while (length $resp) {
            my $n = syswrite($c, $resp);
            return unless $n;
            substr($resp, 0, $n) = '';
        }

        return unless $keep;
    }
}

my %REASON = (200 => 'OK', 404 => 'Not Found', 409 => 'Conflict',
              500 => 'Internal Server Error', 502 => 'Bad Gateway',
              503 => 'Service Unavailable', 504 => 'Gateway Timeout');

sub _backend_response {
    my ($name, $method, $uri, $keep, $nreq, $status, $h) = @_;
    my $body = $method eq 'HEAD' ? '' : $name;
    $status //= 200;

    # what the request carried: its Host, and its X- headers (several of
    # one name joined by ", ") as X-Seen-NAME
    my $seen = '';
    if ($h) {
        $seen .= "X-Request-Host: $h->{host}\r\n" if defined $h->{host};
        $seen .= "X-Seen-$_: $h->{$_}\r\n" for sort grep { /^x-/ } keys %$h;
    }

    return "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n"
        . "Content-Type: text/plain\r\n"
        . "Content-Length: " . length($name) . "\r\n"
        . "X-Backend: $name\r\n"
        . "X-Request-Uri: $uri\r\n"
        . "X-Conn-Requests: $nreq\r\n" . $seen
        . "Connection: " . ($keep ? 'keep-alive' : 'close') . "\r\n"
        . "\r\n" . $body;
}

# takes one complete request off the front of $$buf: returns
# [method, uri, keep] or undef when incomplete, 'bad' on garbage
sub _take_request {
    my ($buf) = @_;

    $$buf =~ /\r?\n\r?\n/ or return length $$buf > 1 << 20 ? 'bad' : undef;
    my $hend = $+[0];
    my ($line, @hl) = split /\r?\n/, substr($$buf, 0, $-[0]);
    my ($method, $uri, $proto) = split ' ', $line // '';
    return 'bad' unless $proto;

    my %h;
    for (@hl) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }

    my $end = $hend;
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $rest = substr $$buf, $hend;
        my $used = 0;
        while (1) {
            $rest =~ /\G([0-9a-fA-F]+)[^\r\n]*\r?\n/gc or return undef;
            my $size = hex $1;
            my $pos = pos $rest;
            if ($size == 0) {
                # trailers, then an empty line
                $rest =~ /\G(?:[^\r\n]+\r?\n)*\r?\n/gc or return undef;
                $used = pos $rest;
                last;
            }
            return undef if length($rest) < $pos + $size + 2;
            pos($rest) = $pos + $size;
            $rest =~ /\G\r?\n/gc or return 'bad';
        }
        $end = $hend + $used;
    } elsif (my $len = $h{'content-length'}) {
        return undef if length($$buf) < $hend + $len;
        $end = $hend + $len;
    }

    substr($$buf, 0, $end) = '';

    my $conn = lc($h{connection} // '');
    my $keep = $proto eq 'HTTP/1.1' ? $conn ne 'close'
                                    : $conn eq 'keep-alive';
    return [ $method, $uri, $keep, \%h ];
}

# one process, every connection: a select loop; responses wait $delay
# seconds in a queue without holding up other connections
sub _backend_events {
    my ($ls, $name, $delay, $status) = @_;

    $ls->blocking(0);
    my $rsel = IO::Select->new($ls);
    my $wsel = IO::Select->new;
    my %conn;                   # fileno => state

    my $drop = sub {
        my ($st) = @_;
        $rsel->remove($st->{sock});
        $wsel->remove($st->{sock});
        delete $conn{ $st->{fd} };
        close $st->{sock};
    };

    # move due responses to the output, write what the socket takes
    my $flush = sub {
        my ($st, $now) = @_;
        while (@{ $st->{queue} } && $st->{queue}[0][0] <= $now) {
            my $q = shift @{ $st->{queue} };
            $st->{out} .= $q->[1];
            $st->{closing} = 1 unless $q->[2];
        }
        if (length $st->{out}) {
            my $n = syswrite($st->{sock}, $st->{out});
            if (!defined $n) {
                return $drop->($st) unless $!{EAGAIN};
            } else {
                substr($st->{out}, 0, $n) = '';
            }
        }
        if (length $st->{out}) {
            $wsel->add($st->{sock});
        } else {
            $wsel->remove($st->{sock});
            $drop->($st) if $st->{closing} && !@{ $st->{queue} };
        }
    };

    while (1) {
        my $timeout = 60;
        my $now = time;
        for my $st (values %conn) {
            next unless @{ $st->{queue} };
            my $t = $st->{queue}[0][0] - $now;
            $timeout = $t if $t < $timeout;
        }
        $timeout = 0 if $timeout < 0;

        my ($r, $w) = IO::Select->select($rsel, $wsel->count ? $wsel : undef,
                                         undef, $timeout);
        $now = time;

        for my $s (@{ $r || [] }) {
            if ($s == $ls) {
                while (my $c = $ls->accept) {
                    $c->blocking(0);
                    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
                    my $fd = fileno $c;
                    $conn{$fd} = { sock => $c, fd => $fd, in => '',
                                   out => '', queue => [], n => 0 };
                    $rsel->add($c);
                }
                next;
            }

            my $st = $conn{ fileno $s } or next;
            my $got = sysread($s, $st->{in}, 65536, length $st->{in});
            if (!defined $got) {
                $drop->($st) unless $!{EAGAIN};
                next;
            }
            if (!$got) {
                $drop->($st);
                next;
            }

            while (!$st->{closing}) {
                my $req = _take_request(\$st->{in});
                last unless defined $req;
                if (!ref $req) {
                    $drop->($st);
                    last;
                }
                my ($method, $uri, $keep, $h) = @$req;
                push @{ $st->{queue} }, [ $now + $delay,
                    _backend_response($name, $method, $uri, $keep, ++$st->{n},
                                      $status, $h),
                    $keep ];
                $rsel->remove($s) unless $keep;
                last unless $keep;
            }
        }

        for my $st (values %conn) {
            $flush->($st, $now)
                if @{ $st->{queue} } || length $st->{out};
        }
    }
}

############################################################################
# nginx

# nginx's stream module (Debian's libnginx-mod-stream), or the one built
# beside the nginx MESH_NGINX names (scripts/build-nginx-asan.sh)
sub stream_module_path {
    my ($self) = @_;
    my $nginx = $ENV{MESH_NGINX};
    if ($nginx) {
        (my $dir = $nginx) =~ s{/[^/]*$}{};
        return "$dir/ngx_stream_module.so" if -f "$dir/ngx_stream_module.so";
    }
    return $ENV{MESH_STREAM_MODULE}
        // '/usr/lib/nginx/modules/ngx_stream_module.so';
}

sub nginx_prelude {
    my ($self, %opt) = @_;
    my $d = $self->{dir};
    my $user = $> == 0 ? "user root;\n" : '';
    my $level = $opt{log_level} // $self->{log_level} // 'debug';
    my $workers = $opt{workers} // $self->{workers} // 2;
    my $daemon = ($opt{daemon} // $self->{daemon}) ? 'on' : 'off';
    my $stream = ($opt{stream} // $self->{stream})
               ? 'load_module ' . $self->stream_module_path . ";\n" : '';

    # env: nginx passes its environment on to a new binary (USR2) only as
    # told; under the sanitizers (_nginx_env) their options must follow
    return <<"EOF";
daemon $daemon;
master_process on;
worker_processes $workers;
env ASAN_OPTIONS;
env UBSAN_OPTIONS;
${user}error_log $d/error.log $level;
pid $d/nginx.pid;
${stream}load_module $self->{module};

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
    $text =~ s/%%MESH_PRELUDE%%/$self->mesh_prelude/ge;
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
    my ($code, $out, $err) = $self->run({ timeout => 20 }, 'env',
        _nginx_env_list($self->{dir}), $NGINX,
        '-t', '-e', 'stderr', '-p', "$self->{dir}/", '-c', $name);
    return ($code, $out . $err);
}

sub nginx_pid { $_[0]{nginx} ? $_[0]{nginx}{pid} : undef }

sub nginx_workers {
    my ($self) = @_;
    my $pid = $self->nginx_pid or return ();
    return _children_of($pid);
}

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
        _nginx_env($self->{dir});
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });

    $self->{nginx} = { pid => $pid, conf => $name };

    # a daemon: what we started exits once the master runs, in a session
    # and process group of its own, whose pid the pid file gives
    if ($text =~ /^\s*daemon\s+on\s*;/m) {
        my $st = _reap($pid, 10);
        $self->_finish_group($pid);
        my $master = $self->read_file('nginx.pid') // '';
        $master =~ s/\s+//g;
        if (!defined $st || $st != 0 || $master !~ /^\d+$/) {
            delete $self->{nginx};
            croak "nginx did not start as a daemon:\n"
                . _tail($self->read_file($log))
                . _tail($self->read_file('error.log'));
        }
        $self->{groups}{$master} = 'nginx daemon';
        push @{ $self->{all_groups} }, $master;
        $self->{nginx} = { pid => $master, group => $master, conf => $name };
        $pid = $master;
    }

    # ports to wait for: every "listen [127.0.0.1:]PORT" of the config
    my @ports;
    while ($text =~ /^\s*listen\s+(?:127\.0\.0\.1:|\[::1\]:|localhost:)?(\d+)/mg) {
        push @ports, $1;
    }

    my $end = time + 10;
    PORT: for my $port (@ports) {
        while (time < $end) {
            my $st = $self->{nginx}{group} ? (kill(0, $pid) ? undef : -1)
                                           : _reap($pid, 0);
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
    my ($self, %opt) = @_;
    my $ng = $self->{nginx} or croak "nginx is not running";
    my %old = map { $_ => 1 } _children_of($ng->{pid});

    kill 'HUP', $ng->{pid};

    my $end = time + 10;
    my $new = 0;
    while (time < $end) {
        my @now = _children_of($ng->{pid});
        $new ||= grep { !$old{$_} } @now;

        # wait_old => 1: until the old workers are gone too, so that
        # nothing answers with the old configuration any more
        return 1 if $new && (!$opt{wait_old} || !grep { $old{$_} } @now);
        sleep 0.02;
    }

    return 0;
}

# A binary upgrade as an operator makes one: USR2 (the old master starts a
# new one from the binary, with the same listening sockets), then QUIT to
# the old master once the new one has its workers. The new master is not
# our child (it is the old one's): it stays in the old one's process
# group, which is how it is stopped. Returns its pid, or undef.
sub upgrade_nginx {
    my ($self) = @_;
    my $ng = $self->{nginx} or croak "nginx is not running";
    my $old = $ng->{pid};
    my $pidfile = "$self->{dir}/nginx.pid";
    my $new;

    kill 'USR2', $old;

    my $end = time + 10;
    while (time < $end) {
        my $p = $self->read_file($pidfile) // '';
        $p =~ s/\s+//g;
        if ($p =~ /^\d+$/ && $p != $old && _children_of($p)) {
            $new = $p;
            last;
        }
        sleep 0.02;
    }

    return undef unless $new;

    # the old master: ours to reap, or a daemon to watch go
    kill 'QUIT', $old;
    if ($ng->{group}) {
        $end = time + 15;
        sleep 0.02 while kill(0, $old) && time < $end;
        return undef if kill 0, $old;
    } else {
        _reap($old, 15) // return undef;
    }

    $self->{nginx} = { %$ng, pid => $new, group => $ng->{group} // $old };
    return $new;
}

sub stop_nginx {
    my ($self) = @_;
    my $ng = delete $self->{nginx} or return undef;
    my $pid = $ng->{pid};

    # a master from a binary upgrade: not ours to wait for
    if ($ng->{group}) {
        kill 'QUIT', $pid;
        my $end = time + 10;
        sleep 0.02 while kill(0, $pid) && time < $end;
        $self->_finish_group($ng->{group});
        return 0;
    }

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

# with a TLS registryd: trust its ca, present its client_cert
# with a TLS registryd: trust its ca, present its client_cert; $tls (a
# request's own ca, client_cert, client_key) makes a user agent for one
# request
sub _ua {
    my ($self, $tls) = @_;
    my $own = $tls;
    $tls = { %{ $self->{registryd_tls} || {} }, %$tls } if $own;
    $tls //= $self->{registryd_tls};
    my @opt = (timeout => 10, agent => 'MeshTest/0.1',
        $tls ? (verify_SSL => 1, SSL_options => {
                    SSL_ca_file => $tls->{ca},
                    $tls->{client_cert}
                        ? (SSL_cert_file => $tls->{client_cert},
                           SSL_key_file => $tls->{client_key}) : () })
             : ());
    return HTTP::Tiny->new(@opt, keep_alive => 0) if $own;
    return $self->{ua} //= HTTP::Tiny->new(@opt, keep_alive => 1);
}

sub http {
    my ($self, $method, $url, $body, $headers, $tls) = @_;
    my %args;
    $args{content} = $body if defined $body;
    $args{headers} = { %$headers } if $headers;
    return $self->_ua($tls)->request($method, $url, \%args);
}

sub json_req {
    my ($self, @args) = @_;
    my $r = $self->http(@args);
    $r->{json} = eval { $JSON->decode($r->{content}) }
        if defined $r->{content} && length $r->{content};
    return $r;
}

sub api {
    my ($self, $method, $path, $data, $headers, $tls) = @_;
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

    return $self->json_req($method, $self->registryd_url . $path, $body, \%h,
                           $tls);
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
# mesh

sub cache_file { "$_[0]{dir}/mesh.json" }

sub mesh_prelude {
    my ($self) = @_;
    return "    mesh_registry " . $self->registryd_url . ";\n"
         . "    mesh_cache_file " . $self->cache_file . ";\n";
}

sub register {
    my ($self, $svc, $id, $port, %f) = @_;
    return $self->api(PUT => "/v1/services/$svc/instances/$id",
                      { address => '127.0.0.1', port => $port + 0, %f });
}

sub deregister {
    my ($self, $svc, $id) = @_;
    return $self->api(DELETE => "/v1/services/$svc/instances/$id");
}

sub apply_policy {
    my ($self, $name, $yaml, $headers) = @_;
    return $self->api(PUT => "/v1/policies/$name", $yaml,
                      { 'Content-Type' => 'application/yaml',
                        %{ $headers || {} } });
}

sub delete_policy {
    my ($self, $name) = @_;
    return $self->api(DELETE => "/v1/policies/$name");
}

sub apply_objects {
    my ($self, $yaml) = @_;
    my $r = $self->api(POST => '/v1/objects', $yaml,
                       { 'Content-Type' => 'application/yaml' });
    Test::More::diag(Test::More::explain($r->{json} // $r->{content}))
        unless $r->{status} == 200;
    return $r;
}

sub tcp_line {
    my ($self, $port, $send) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 3)
        or return "connect: $!";
    syswrite $s, $send if defined $send;
    my $sel = IO::Select->new($s);
    my $in = '';
    while ($in !~ /\n/ && $sel->can_read(3)) {
        my $n = sysread $s, $in, 4096, length $in;
        last unless $n;
    }
    close $s;
    return (split /\n/, $in)[0] // '';
}

sub registry_index {
    my ($self) = @_;
    my $r = $self->api(GET => '/healthz');
    return $r->{json} ? $r->{json}{index} : undef;
}

sub mesh_status {
    my ($self, %opt) = @_;
    my $port = $opt{port} // $self->named_port('HTTP');
    my $path = $opt{path} // '/mesh/status';
    my $r = HTTP::Tiny->new(timeout => 5, keep_alive => 0)
        ->get("http://127.0.0.1:$port$path");
    return undef unless $r->{status} == 200;
    return eval { $JSON->decode($r->{content}) };
}

sub wait_mesh_index {
    my ($self, %opt) = @_;
    my $want = $opt{index} // $self->registry_index // croak 'no index';
    my $end = time + ($opt{timeout} // 5);

    while (1) {
        my $st = $self->mesh_status(%opt);
        return $st if $st && ($st->{index} // -1) >= $want;
        return undef if time >= $end;
        sleep 0.01;
    }
}

sub mesh_prometheus {
    my ($self, %opt) = @_;
    my $port = $opt{port} // $self->named_port('HTTP');
    my $path = $opt{path} // '/mesh/status';
    my $r = HTTP::Tiny->new(timeout => 5, keep_alive => 0)
        ->get("http://127.0.0.1:$port$path?format=prometheus");
    return { status => $r->{status},
             type => $r->{headers}{'content-type'} // '',
             text => $r->{content} // '' };
}

sub parse_prometheus {
    my $text = ref $_[0] ? $_[1] : $_[0];
    my %p = (samples => [], help => {}, type => {}, bad => []);

    for my $l (split /\n/, $text // '') {
        next if $l =~ /^\s*$/;
        if ($l =~ /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/) {
            $p{ lc $1 }{$2} = $3;
            next;
        }
        next if $l =~ /^#/;
        if ($l =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/) {
            my ($name, $lab, $v) = ($1, $2 // '', $3);
            my %l;
            while ($lab =~ /\G\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gc) {
                $l{$1} = $2;
            }
            if ((pos($lab) // 0) != length $lab) {
                push @{ $p{bad} }, $l;
                next;
            }
            $v = $v eq '+Inf' ? 9**9**9 : $v eq '-Inf' ? -9**9**9 : $v + 0;
            push @{ $p{samples} }, [$name, \%l, $v];
            next;
        }
        push @{ $p{bad} }, $l;
    }

    return \%p;
}

sub prom_sum {
    my ($self, $p, $name, $want) = @_;
    my $sum;
    S: for my $s (@{ $p->{samples} }) {
        next unless $s->[0] eq $name;
        for my $k (keys %{ $want || {} }) {
            next S unless ($s->[1]{$k} // "\0") eq $want->{$k};
        }
        $sum += $s->[2];
    }
    return $sum;
}

sub promtool {
    my $d = (grep { -x "$_/promtool" } split /:/, $ENV{PATH} // '')[0];
    return $d ? "$d/promtool" : undef;
}

# promtool check metrics on text: (exit code, its output); without
# promtool (-1, why): a failure, not a skip (scripts/deps.sh installs it)
sub promtool_check {
    my ($self, $text) = @_;
    my $p = $self->promtool
        or return (-1, "promtool not installed (Debian package prometheus; "
                       . "scripts/deps.sh installs it)\n");
    my ($rc, $out, $err) = $self->run({ stdin => $text }, $p, 'check',
                                      'metrics');
    return ($rc, $out . $err);
}

############################################################################
# load

sub client {
    my ($self, %opt) = @_;
    $opt{port} //= $self->named_port('HTTP');
    return MeshTest::Client->new(%opt);
}

sub load {
    my ($self, %opt) = @_;
    return $self->load_wait($self->load_start(%opt));
}

sub load_start {
    my ($self, %opt) = @_;

    my $clients = $opt{clients} // 4;
    my $paths = $opt{paths};
    my @hdr = map { lc } @{ $opt{headers} // ['x-backend'] };
    my $n = ++$self->{loads};
    my $start = time;
    my @kids;

    $clients = @$paths if $paths && @$paths < $clients;
    $clients = 1 if $clients < 1;

    for my $i (0 .. $clients - 1) {
        my $out = "$self->{dir}/load-$n-$i.out";
        my $pid = $self->_spawn("load client $i", sub {
            _load_client($self, \%opt, \@hdr, $i, $clients, $out);
            POSIX::_exit(0);
        });
        push @kids, { pid => $pid, out => $out };
    }

    return { kids => \@kids, opt => \%opt, hdr => \@hdr, start => $start,
             timeout => $opt{timeout} // 60 };
}

sub load_wait {
    my ($self, $h) = @_;
    my $end = $h->{start} + $h->{timeout} + 5;
    my %res = (total => 0, ok => 0, failed => 0, statuses => {}, by => {},
               count => {}, errors => [], retries => 0, connects => 0);
    my @results;
    my $timedout = 0;

    for my $k (@{ $h->{kids} }) {
        my $left = $end - time;
        my $st = _reap($k->{pid}, $left > 0 ? $left : 0);
        if (!defined $st) {
            $timedout++;
            $self->_stop_group($k->{pid}, 'KILL', 5);
        } else {
            delete $self->{groups}{ $k->{pid} };
        }

        open my $fh, '<', $k->{out} or next;
        while (my $l = <$fh>) {
            chomp $l;
            my ($type, @f) = split /\t/, $l, -1;
            if ($type eq 'A') {
                my ($cnt, $status, @v) = @f;
                $res{total} += $cnt;
                $res{statuses}{$status} += $cnt;
                if ($status =~ /^2/) { $res{ok} += $cnt }
                else { $res{failed} += $cnt }
                for my $j (0 .. $#{ $h->{hdr} }) {
                    next unless length($v[$j] // '');
                    $res{by}{ $h->{hdr}[$j] }{ $v[$j] } += $cnt;
                }
            } elsif ($type eq 'R') {
                my ($idx, @rest) = @f;
                $results[$idx] = \@rest;
            } elsif ($type eq 'E') {
                push @{ $res{errors} }, $f[0] if @{ $res{errors} } < 10;
            } elsif ($type eq 'S') {
                $res{retries} += $f[0];
                $res{connects} += $f[1];
            }
        }
        close $fh;
        unlink $k->{out};
    }

    push @{ $res{errors} }, "$timedout clients timed out" if $timedout;
    $res{count} = $res{by}{ $h->{hdr}[0] } // {};
    $res{results} = \@results if $h->{opt}{paths};
    $res{elapsed} = time - $h->{start};
    return \%res;
}

# runs in a forked child: sends its share of the work, writes its counts
sub _load_client {
    my ($self, $opt, $hdr, $i, $clients, $out) = @_;

    my $c = MeshTest::Client->new(
        port => $opt->{port} // $self->named_port('HTTP'),
        keepalive => $opt->{keepalive} // 1,
        timeout => 10);
    my $deadline = time + ($opt->{timeout} // 60);
    my $stop = $opt->{duration} ? time + $opt->{duration} : undef;
    my $paths = $opt->{paths};
    my $path = $opt->{path} // '/';
    my $req = $opt->{requests};
    my $mine = defined $req
        ? int($req / $clients) + ($i < $req % $clients ? 1 : 0) : undef;
    my (%agg, @errs, @res);

    my $one = sub {
        my ($p) = @_;
        my $r = $c->get($p);
        my @v = map { my $x = $r->{headers}{$_} // ''; $x =~ s/[\t\n]//g; $x }
                @$hdr;
        $agg{ join "\t", $r->{status}, @v }++;
        push @errs, "$r->{status} $p: " . ($r->{error} // $r->{content} // '')
            if $r->{status} !~ /^2/ && @errs < 3;
        $errs[-1] = substr($errs[-1], 0, 300) if @errs;
        return [ $r->{status}, @v ];
    };

    if ($paths) {
        for (my $k = $i; $k < @$paths; $k += $clients) {
            last if time > $deadline;
            push @res, [ $k, @{ $one->($paths->[$k]) } ];
        }
    } else {
        my $done = 0;
        while (time < $deadline) {
            last if defined $mine && $done >= $mine;
            last if $stop && time >= $stop;
            last if !defined $mine && !$stop;
            $one->($path);
            $done++;
        }
    }

    $c->close;

    open my $fh, '>', "$out.tmp" or POSIX::_exit(1);
    print $fh join("\t", 'A', $agg{$_}, $_), "\n" for keys %agg;
    print $fh join("\t", 'R', @$_), "\n" for @res;
    for (@errs) { (my $e = $_) =~ s/[\t\n]+/ /g; print $fh "E\t$e\n" }
    print $fh "S\t$c->{retries}\t$c->{connects}\n";
    close $fh;
    rename "$out.tmp", $out;
}

############################################################################
# CLI

sub registryctl {
    my ($self, @args) = @_;
    my $opt = ref $args[0] eq 'HASH' ? shift @args : {};
    return $self->run($opt, $self->bin('registryctl'),
                      '--registry', $self->registryd_url, @args);
}

sub start_registryctl {
    my ($self, @args) = @_;
    my $n = ++$self->{runs};
    my ($out, $err) = ("$self->{dir}/ctl-$n.out", "$self->{dir}/ctl-$n.err");
    my @cmd = ($self->bin('registryctl'), '--registry', $self->registryd_url,
               @args);

    my $pid = $self->_spawn("registryctl @args", sub {
        _redirect($out, $err);
        exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!\n";
    });

    $self->{ctl}{$pid} = [$out, $err];
    return $pid;
}

sub registryctl_output {
    my ($self, $pid) = @_;
    my $f = $self->{ctl}{$pid} or croak "no registryctl $pid";
    return map { $self->read_file($_) // '' } @$f;
}

sub wait_registryctl {
    my ($self, $pid, $timeout) = @_;
    my $status = _reap($pid, $timeout // 10);

    return undef unless defined $status;
    $self->_finish_group($pid);
    return $status & 127 ? 128 + ($status & 127) : $status >> 8;
}

############################################################################
# end

# nginx under the sanitizers (make test-asan, MESH_NGINX): their reports
# go to files of the test's directory (sanitizer.PID), which done_checks
# reads; nginx lets go of its memory by pools at exit, not block by block,
# so leaks are not looked for in nginx (they are in registryd); a dynamic
# module has its own ngx_module_names, as nginx does by design: not an
# error of ours (detect_odr_violation=0)
sub _nginx_env_list {
    my ($dir) = @_;
    my $asan = join ':', grep { length } $ENV{ASAN_OPTIONS} // '',
        'detect_leaks=0', 'detect_odr_violation=0', "log_path=$dir/sanitizer";
    my $ubsan = join ':', grep { length } $ENV{UBSAN_OPTIONS} // '',
        'print_stacktrace=1', "log_path=$dir/sanitizer";
    return ("ASAN_OPTIONS=$asan", "UBSAN_OPTIONS=$ubsan");
}

sub _nginx_env {
    my ($dir) = @_;
    for (_nginx_env_list($dir)) {
        my ($k, $v) = split /=/, $_, 2;
        $ENV{$k} = $v;
    }
}

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
    my ($self, %opt) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    # allow => qr/.../: [alert] lines a test provoked on purpose (such as
    # "worker process N exited on signal 9" after killing a worker)
    my $allow = $opt{allow};

    # every process group ever started, stopped or not
    my @groups = @{ $self->{all_groups} || [] };

    $self->stop_all;

    my @bad;
    for my $log ($self->_nginx_logs) {
        my $text = $self->read_file($log) // next;
        push @bad, map { "$log: $_" }
                   grep { /\[(?:alert|emerg)\]/ && !($allow && /$allow/) }
                   split /\n/, $text;
    }
    Test::More::ok(!@bad, 'no [alert] or [emerg] in nginx error logs')
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);

    my $rdlog = $self->read_file($self->registryd_log) // '';
    my @san = grep { /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/ }
              split /\n/, $rdlog;
    Test::More::ok(!@san, 'no sanitizer report in the registryd log')
        or Test::More::diag(join "\n", @san[0 .. ($#san < 9 ? $#san : 9)]);

    # nginx's (_nginx_env): a report file is a failure, whatever it says
    my @ngx;
    if (opendir my $dh, $self->{dir}) {
        @ngx = map { "$self->{dir}/$_" } grep { /^sanitizer\./ } readdir $dh;
        closedir $dh;
    }
    Test::More::ok(!@ngx, 'no sanitizer report from nginx')
        or Test::More::diag(join "\n", map {
            my @l = split /\n/, $self->read_file($_) // '';
            ("$_:", @l[0 .. ($#l < 14 ? $#l : 14)]) } @ngx);

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


############################################################################
# MeshTest::Client: a small, fast HTTP/1.1 client on raw sockets

package MeshTest::Client {
    use IO::Select;
    use IO::Socket::INET;
    use Socket qw(IPPROTO_TCP TCP_NODELAY);
    use Time::HiRes qw(time);

    sub new {
        my ($class, %opt) = @_;
        return bless {
            port      => $opt{port},
            timeout   => $opt{timeout} // 10,
            keepalive => $opt{keepalive} // 1,
            local     => $opt{local_addr},
            sock      => undef,
            buf       => '',
            reused    => 0,
            retries   => 0,
            connects  => 0,
        }, $class;
    }

    sub close {
        my ($self) = @_;
        close $self->{sock} if $self->{sock};
        $self->{sock} = undef;
        $self->{buf} = '';
    }

    sub _connect {
        my ($self) = @_;
        $self->close;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $self->{port}, Proto => 'tcp',
            Timeout => $self->{timeout},
            ($self->{local} ? (LocalAddr => $self->{local}) : ()))
            or return 0;
        setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
        $self->{sock} = $s;
        $self->{reused} = 0;
        $self->{connects}++;
        return 1;
    }

    sub get { $_[0]->request(GET => $_[1], $_[2]) }

    sub request {
        my ($self, $method, $path, $headers, $body) = @_;

        # Host: 127.0.0.1 unless the headers give one
        my ($host) = grep { lc $_ eq 'host' } keys %{ $headers || {} };
        my $req = "$method $path HTTP/1.1\r\nHost: "
                  . ($host ? $headers->{$host} : '127.0.0.1') . "\r\n";
        $req .= "$_: $headers->{$_}\r\n"
            for sort grep { lc $_ ne 'host' } keys %{ $headers || {} };
        $req .= "Connection: close\r\n" unless $self->{keepalive};
        $req .= "\r\n";
        $req .= $body if defined $body;

        for my $try (1, 2) {
            if (!$self->{sock}) {
                $self->_connect
                    or return { status => 599, error => "connect: $!",
                                headers => {} };
            }
            my $reused = $self->{reused};
            my $r = $self->_exchange($req, $method);
            if ($r->{status} == 599 && $r->{nothing} && $reused && $try == 1) {
                # the server closed an idle connection as we reused it
                $self->{retries}++;
                $self->close;
                next;
            }
            return $r;
        }
    }

    sub _exchange {
        my ($self, $req, $method) = @_;
        my $s = $self->{sock};
        my $end = time + $self->{timeout};
        my $fail = sub {
            my ($e, $nothing) = @_;
            $self->close;
            return { status => 599, error => $e, headers => {},
                     nothing => $nothing };
        };

        local $SIG{PIPE} = 'IGNORE';
        while (length $req) {
            my $n = syswrite($s, $req);
            return $fail->("write: $!", 1) unless defined $n;
            substr($req, 0, $n) = '';
        }

        my $sel = IO::Select->new($s);
        my $read = sub {
            my $left = $end - time;
            return undef if $left <= 0 || !$sel->can_read($left);
            return sysread($s, $self->{buf}, 65536, length $self->{buf});
        };

        # status line and headers
        while ($self->{buf} !~ /\r?\n\r?\n/) {
            my $n = $read->();
            return $fail->(defined $n ? 'closed before a response'
                           : "read: " . ($! || 'timeout'),
                           !length $self->{buf}) unless $n;
        }

        $self->{buf} =~ s/^(.*?)\r?\n\r?\n//s;
        my ($line, @hl) = split /\r?\n/, $1;
        my ($status) = ($line // '') =~ m{^HTTP/\d\.\d\s+(\d{3})}
            or return $fail->("bad status line: " . ($line // ''), 0);
        my %h;
        for (@hl) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $k = lc $k;
            $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
        }

        my $body = '';
        my $close = lc($h{connection} // '') eq 'close' || !$self->{keepalive};

        if ($method eq 'HEAD' || $status == 204 || $status == 304) {
            # no body
        } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            while (1) {
                while ($self->{buf} !~ /\r?\n/) {
                    $read->() or return $fail->('closed in chunk size', 0);
                }
                $self->{buf} =~ s/^([0-9a-fA-F]+)[^\r\n]*\r?\n//
                    or return $fail->('bad chunk', 0);
                my $size = hex $1;
                if ($size == 0) {
                    while ($self->{buf} !~ /^\r?\n/
                           && $self->{buf} !~ /\r?\n\r?\n/) {
                        $read->() or return $fail->('closed in trailer', 0);
                    }
                    $self->{buf} =~ s/^(?:[^\r\n]+\r?\n)*\r?\n//;
                    last;
                }
                while (length $self->{buf} < $size + 2) {
                    $read->() or return $fail->('closed in chunk', 0);
                }
                $body .= substr($self->{buf}, 0, $size, '');
                $self->{buf} =~ s/^\r?\n//;
            }
        } elsif (defined $h{'content-length'}) {
            my $len = $h{'content-length'};
            while (length $self->{buf} < $len) {
                $read->() or return $fail->('closed in body', 0);
            }
            $body = substr($self->{buf}, 0, $len, '');
        } else {
            while (1) {
                my $n = $read->();
                last unless $n;
            }
            $body = $self->{buf};
            $self->{buf} = '';
            $close = 1;
        }

        if ($close) {
            $self->close;
        } else {
            $self->{reused} = 1;
        }

        return { status => $status, headers => \%h, content => $body };
    }
}

1;
