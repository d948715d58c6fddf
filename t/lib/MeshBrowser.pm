package MeshBrowser;

# MeshBrowser: a real headless browser for the tests and scripts that look
# at the status location's page: Debian's chromium driven by Debian's
# chromedriver over the WebDriver HTTP API (HTTP::Tiny and JSON::PP, Perl
# core modules only).  Everything listens on loopback.
#
#     my $b = MeshBrowser->new(dir => $t->dir, port => $t->port);
#     $b->get('http://127.0.0.1:8080/mesh/status');
#     my $n = $b->wait_for('return document.body.dataset.polls > 0 &&
#                           document.body.dataset.polls;', timeout => 5);
#     my $v = $b->js('return arguments[0] + 1;', 41);
#     $b->screenshot('page.png');
#     $b->quit;
#
# new(%opt): dir => DIR (required: chromium's profile, chromedriver's log),
# port => N (chromedriver's port; a free one is looked for without it),
# width/height => the window (1280 x 900), timeout => s for starting
# (default 20).  Dies with the reason (and the log's tail) when the
# browser does not come up: a missing chromium is a failure, never a skip
# (scripts/deps.sh installs chromium and chromium-driver).
#
# chromedriver runs in a process group of its own, with chromium under
# it: quit (or the object going away, or END, even after a die) ends the
# session and kills that group.
#
# Methods: get(URL), js(JS, ARGS...) (the script's return value,
# decoded), wait_for(JS, timeout => s, interval => s) (the first true
# value, or undef when the time is up), screenshot(FILE [, full => 1])
# (PNG; full: the whole page, not only the window), log_path
# (chromedriver's log), quit.

use strict;
use warnings;

use Carp qw(croak);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use POSIX qw(WNOHANG setpgid);
use Scalar::Util qw(weaken);
use Time::HiRes qw(sleep time);

our $CHROMIUM = $ENV{MESH_CHROMIUM} || '/usr/bin/chromium';
our $DRIVER = $ENV{MESH_CHROMEDRIVER} || '/usr/bin/chromedriver';

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my @LIVE;

sub new {
    my ($class, %opt) = @_;

    my $dir = $opt{dir} or croak 'MeshBrowser: dir is required';
    for my $bin ($CHROMIUM, $DRIVER) {
        -x $bin or croak "MeshBrowser: no $bin (scripts/deps.sh installs "
            . 'chromium and chromium-driver)';
    }

    my $self = bless { dir => $dir, log => "$dir/chromedriver.log",
                       width => $opt{width} || 1280,
                       height => $opt{height} || 900 }, $class;
    push @LIVE, $self;
    weaken $LIVE[-1];

    my $port = $opt{port} || free_port();
    $self->{base} = "http://127.0.0.1:$port";
    $self->{http} = HTTP::Tiny->new(timeout => 30);

    my $pid = fork // croak "MeshBrowser: fork: $!";
    if (!$pid) {
        setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->{log};
        open STDERR, '>&', \*STDOUT;
        CORE::exec $DRIVER, "--port=$port", '--allowed-ips=127.0.0.1',
            "--log-path=$self->{log}";
        exit 127;
    }
    setpgid($pid, $pid);
    $self->{pid} = $pid;

    my $end = time + ($opt{timeout} || 20);
    until ($self->_up) {
        $self->_fail('chromedriver exited at start')
            if waitpid($pid, WNOHANG) == $pid;
        $self->_fail('chromedriver does not answer') if time > $end;
        sleep 0.05;
    }

    my @args = ('--headless=new', '--disable-gpu', '--no-first-run',
        '--no-default-browser-check', '--disable-dev-shm-usage',
        '--disable-extensions', '--disable-background-networking',
        '--disable-component-update', '--disable-sync',
        '--disable-default-apps', '--metrics-recording-only',
        '--password-store=basic', '--use-mock-keychain',
        '--hide-scrollbars', '--force-device-scale-factor=1',
        "--user-data-dir=$dir/chromium-profile",
        "--window-size=$self->{width},$self->{height}");
    push @args, '--no-sandbox' if $> == 0;

    my $r = $self->_req(POST => '/session', { capabilities => {
        alwaysMatch => {
            browserName => 'chrome',
            'goog:chromeOptions' => { binary => $CHROMIUM, args => \@args },
            timeouts => { script => 10_000, pageLoad => 15_000 },
        } } });
    $self->{session} = $r->{value}{sessionId}
        or $self->_fail('no session: ' . $JSON->encode($r->{value}));

    return $self;
}

sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp')
        or croak "MeshBrowser: no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub log_path { $_[0]{log} }

sub _up {
    my ($self) = @_;
    my $r = $self->{http}->get("$self->{base}/status");
    return $r->{success};
}

sub _fail {
    my ($self, $why) = @_;
    my $tail = '';
    if (open my $fh, '<', $self->{log}) {
        my @l = <$fh>;
        $tail = join '', @l[ -(@l < 15 ? @l : 15) .. -1 ];
    }
    $self->quit;
    croak "MeshBrowser: $why\n$tail";
}

# one WebDriver command; dies on an error answer
sub _req {
    my ($self, $method, $path, $data) = @_;
    my $r = $self->{http}->request($method, "$self->{base}$path",
        defined $data ? { content => $JSON->encode($data),
                          headers => { 'Content-Type'
                                       => 'application/json' } } : {});
    my $v = eval { $JSON->decode($r->{content}) };
    if (!$r->{success} || !$v) {
        croak "MeshBrowser: $method $path: $r->{status} "
            . substr($r->{content} // '', 0, 500);
    }
    return $v;
}

sub _session {
    my ($self) = @_;
    return "/session/" . ($self->{session} // croak 'MeshBrowser: no session');
}

sub get {
    my ($self, $url) = @_;
    $self->_req(POST => $self->_session . '/url', { url => $url });
    return $self;
}

sub js {
    my ($self, $js, @args) = @_;
    return $self->_req(POST => $self->_session . '/execute/sync',
                       { script => $js, args => \@args })->{value};
}

sub wait_for {
    my ($self, $js, %opt) = @_;
    my $end = time + ($opt{timeout} // 5);
    while (1) {
        my $v = $self->js($js);
        return $v if $v;
        return undef if time > $end;
        sleep $opt{interval} // 0.05;
    }
}

sub screenshot {
    my ($self, $file, %opt) = @_;
    my $png;
    if ($opt{full}) {
        # the whole page through the DevTools protocol
        my $h = $self->js('return Math.ceil(document.documentElement'
                            . '.getBoundingClientRect().height);');
        $png = $self->_req(POST => $self->_session . '/goog/cdp/execute',
            { cmd => 'Page.captureScreenshot',
              params => { format => 'png', captureBeyondViewport => \1,
                          clip => { x => 0, y => 0,
                                    width => $self->{width},
                                    height => $h, scale => 1 } } })
            ->{value}{data};
    } else {
        $png = $self->_req(GET => $self->_session . '/screenshot')->{value};
    }
    open my $fh, '>', $file or croak "MeshBrowser: $file: $!";
    binmode $fh;
    print {$fh} decode_base64($png);
    close $fh or croak "MeshBrowser: $file: $!";
    return $file;
}

sub quit {
    my ($self) = @_;
    if ($self->{session}) {
        my $s = delete $self->{session};
        $self->{http}->request(DELETE => "$self->{base}/session/$s");
    }
    my $pid = delete $self->{pid} or return;

    # chromedriver and the chromium it started: one process group
    kill 'TERM', -$pid;
    my ($reaped, $end) = (0, time + 5);
    while (time < $end) {
        $reaped ||= waitpid($pid, WNOHANG) == $pid;
        last if $reaped && !kill(0, -$pid);
        sleep 0.05;
    }
    kill 'KILL', -$pid;
    waitpid($pid, 0) unless $reaped;
    return;
}

sub DESTROY {
    local ($., $@, $!, $^E, $?);
    $_[0]->quit;
}

END {
    local $?;
    $_ && $_->quit for @LIVE;
}

1;
