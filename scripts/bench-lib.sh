# Helpers shared by the benchmark scripts (scripts/bench*), sourced by them:
#
#   me=bench-cost; . "$(dirname "$0")/bench-lib.sh"
#
# Everything listens on 127.0.0.1.  A script that sources this file lists
# the processes it starts in the array "pids"; bench_stop stops them.

die() { echo "$me: $*" >&2; exit 1; }
say() { echo "$me: $*" >&2; }

pids=()

# bench_stop PID...: SIGQUIT (nginx's graceful stop; registryd, HAProxy
# and valgrind end on it too), then up to 10 s later SIGKILL
bench_stop() {
    local p
    for p in "$@"; do
        kill -QUIT "$p" 2>/dev/null || true
    done
    for p in "$@"; do
        for _ in $(seq 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# bench_tmp: a fresh folder in $tmp, removed at the end unless BENCH_KEEP=1
bench_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX")
    chmod 755 "$tmp"
}

bench_remove_tmp() {
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}

freeport() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(Listen=>1,LocalAddr=>"127.0.0.1:0")->sockport'
}

# bench_ports NBACK NAME...: port[NAME] for every name and NBACK ports in
# bports, all distinct: the sockets are held open together while the
# kernel picks their ports, in one process however many
declare -A port
bports=()
bench_ports() {
    local nb=$1 name all i=0
    shift
    port=() bports=()
    read -r -a all < <(perl -MIO::Socket::INET -e '
        my @s;
        for (1 .. shift) {
            push @s, IO::Socket::INET->new(Listen => 1,
                LocalAddr => "127.0.0.1:0") or die "listen: $!\n";
        }
        print join(" ", map { $_->sockport } @s), "\n"' \
        $(( nb + $# ))) || die "no free ports"
    for name in "$@"; do
        port[$name]=${all[$i]}
        i=$((i + 1))
    done
    bports=("${all[@]:$i}")
}

wait_http() {                           # wait_http URL WHAT [TENTHS]
    for _ in $(seq "${3:-100}"); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    die "$2 does not answer $1; logs in $tmp (BENCH_KEEP=1 keeps them)"
}

# bench_registry BUILD: registryd on port[registry] with data in
# $tmp/registry, every port of bports registered as instance bI of service
# "bench"; sets registry (its URL) and index (the index after the last).
# Runs under the command prefix in the array on_load, if any
bench_registry() {
    registry=http://127.0.0.1:${port[registry]}
    mkdir -p "$tmp/registry"
    ${on_load[@]+"${on_load[@]}"} "$1/registryd" --listen "127.0.0.1:${port[registry]}" \
        --data-dir "$tmp/registry" --log-level warn 2>"$tmp/registryd.log" &
    pids+=($!)
    wait_http "$registry/healthz" registryd
    bench_register bench "${bports[@]}"
}

# bench_register SERVICE PORT...: every PORT (on 127.0.0.1) registered in
# $registry as instance bI of SERVICE; sets index (the index after the
# last)
bench_register() {
    # 8 clients at once: the registry commits what comes together
    perl -MHTTP::Tiny -e '
        my ($url, $svc, @ports) = @ARGV;
        my @kids;
        for my $k (0 .. 7) {
            my $pid = fork // die "fork: $!\n";
            if ($pid == 0) {
                my $ua = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
                for (my $i = $k; $i < @ports; $i += 8) {
                    my $r = $ua->put("$url/v1/services/$svc/instances/b"
                        . ($i + 1), { headers => { "Content-Type" =>
                        "application/json" }, content =>
                        qq({"address":"127.0.0.1","port":$ports[$i]}) });
                    exit 1 unless $r->{status} =~ /^2/;
                }
                exit 0;
            }
            push @kids, $pid;
        }
        my $bad = 0;
        for (@kids) { waitpid $_, 0; $bad ||= $? }
        exit($bad ? 1 : 0)' "$registry" "$@" \
        || die "cannot register the backends of $1"
    index=$(curl -s "$registry/healthz" | perl -MJSON::PP -0 -ne \
        'print decode_json($_)->{index}')
}

# wait_index PORT WHAT [TENTHS]: until the mesh status on PORT shows $index
wait_index() {
    local got
    for _ in $(seq "${3:-100}"); do
        got=$(curl -s "http://127.0.0.1:$1/mesh/status" \
              | perl -MJSON::PP -0 -ne 'print eval { decode_json($_)->{index} } // -1')
        if [ "$got" -ge "$index" ] 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$2 did not reach registry index $index"
}

# CPU seconds used so far by a process and its children (nginx: the
# master and its workers; HAProxy: one process, all threads)
cpu_secs() {
    perl -e '
        my $root = shift; my $hz = shift; my $sum = 0;
        opendir my $d, "/proc" or die;
        for my $p (grep { /^\d+$/ } readdir $d) {
            open my $f, "<", "/proc/$p/stat" or next;
            my $st = <$f> // next;
            $st =~ s/^.*\)\s+//;
            my @f = split " ", $st;     # state ppid ... utime=11 stime=12
            $sum += $f[11] + $f[12] if $p == $root || $f[1] == $root;
        }
        printf "%.3f", $sum / $hz' "$1" "$(getconf CLK_TCK)"
}

ms() {                                  # wrk latency (123.45us|1.2ms|1.1s) -> ms
    perl -e '$_ = shift; /([\d.]+)(us|ms|s)/ or exit;
             printf "%.2f", $1 * { us => 0.001, ms => 1, s => 1000 }->{$2}' "$1"
}

median() { perl -e '@v = sort { $a <=> $b } @ARGV; print $v[$#v / 2] // 0' $1; }

# bench_http_open DIR: the events block and the start of the http block
# of an nginx with its files in DIR: no access log, client keepalive
# unbounded in requests
bench_http_open() {
    cat <<CONF
events { worker_connections $(( ${#bports[@]} + 4096 )); }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $1/cbt;
    proxy_temp_path $1/pt;
    fastcgi_temp_path $1/ft;
    uwsgi_temp_path $1/ut;
    scgi_temp_path $1/st;
CONF
}

# bench_backend_conf DIR WORKERS [STATUS_PORT]: one nginx answering
# "return 200" on every port of bports (and stub_status on STATUS_PORT)
bench_backend_conf() {
    local d=$1 p
    mkdir -p "$d/logs"
    {
        cat <<CONF
daemon off;
master_process on;
worker_processes $2;
worker_rlimit_nofile $(( ${#bports[@]} + 8192 ));
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
CONF
        bench_http_open "$d"
        for p in "${bports[@]}"; do
            echo "    server { listen 127.0.0.1:$p; location / { return 200 \"ok\\n\"; } }"
        done
        if [ -n "${3:-}" ]; then
            echo "    server { listen 127.0.0.1:$3; location / { stub_status; } }"
        fi
        echo "}"
    } >"$d/nginx.conf"
}

# bench_front_conf DIR MAIN HTTP NAME...: the front nginx with the module
# loaded; MAIN and HTTP are lines added to the main and http contexts.
# One server on port[NAME] and one upstream per NAME, over bports:
#
#   rr_mesh, rr_nometrics  mesh bench; mesh_balancer round_robin;
#   rr_stock               server lines (round robin)
#   lr_mesh / lr_stock     mesh_balancer least_request / least_conn
#   ch_mesh / ch_stock     mesh_balancer consistent_hash $arg_key /
#                          hash $arg_key consistent
#
# Every upstream keeps $keepalive idle connections per worker, none
# retired for its request count; proxy_http_version 1.1 to the backends.
bench_front_conf() {
    local d=$1 main=$2 http=$3 name body servers="" p
    shift 3
    for p in "${bports[@]}"; do
        servers="$servers        server 127.0.0.1:$p;"$'\n'
    done
    mkdir -p "$d/logs"
    chmod 777 "$d"                      # the workers write mesh.json there
    {
        cat <<CONF
daemon off;
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
load_module $module;
$main
CONF
        bench_http_open "$d"
        cat <<CONF

    mesh_registry   $registry;
    mesh_cache_file $d/mesh.json;
$http

CONF
        for name in "$@"; do
            case $name in
            rr_mesh|rr_nometrics)
                body="        mesh bench;"$'\n'"        mesh_balancer round_robin;"$'\n' ;;
            rr_stock) body=$servers ;;
            lr_mesh)
                body="        mesh bench;"$'\n'"        mesh_balancer least_request;"$'\n' ;;
            lr_stock) body="        least_conn;"$'\n'$servers ;;
            ch_mesh)
                body="        mesh bench;"$'\n'"        mesh_balancer consistent_hash \$arg_key;"$'\n' ;;
            ch_stock) body="        hash \$arg_key consistent;"$'\n'$servers ;;
            *) die "no upstream for $name" ;;
            esac
            printf '    upstream %s {\n%s' "$name" "$body"
            if [ "$keepalive" -gt 0 ]; then
                printf '        keepalive %s;\n' "$keepalive"
                printf '        keepalive_requests 1000000;\n'
            fi
            printf '    }\n'
            cat <<CONF
    server {
        listen 127.0.0.1:${port[$name]};
        location / {
            proxy_pass http://$name;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /mesh/status { mesh_status; }
    }
CONF
        done
        echo "}"
    } >"$d/nginx.conf"
}

# bench_front DIR MAIN HTTP NAME...: the front nginx of bench_front_conf,
# started ($nginx) under the command prefix in the array on_proxy, if any;
# waits up to 60 s (valgrind is slow to start) until it answers on
# port[NAME] with the registry's $index; sets front_pid
bench_front() {
    local d=$1
    bench_front_conf "$@"
    ${on_proxy[@]+"${on_proxy[@]}"} "$nginx" -e "$d/logs/error.log" \
        -p "$d/" -c "$d/nginx.conf" 2>"$d/logs/stderr.log" &
    front_pid=$!
    pids+=($!)
    wait_http "http://127.0.0.1:${port[$4]}/mesh/status" "front nginx in $d" 600
    wait_index "${port[$4]}" "the front nginx in $d" 600
}

# bench_haproxy_conf DIR THREADS [DEFAULTS [BACKEND [SERVER]]]: HAProxy 2.6
# on port[haproxy], balance roundrobin over bports, idle backend
# connections reused; DEFAULTS and BACKEND are lines added to those
# sections, SERVER is appended to every server line
bench_haproxy_conf() {
    local d=$1 i=0 p
    mkdir -p "$d"
    {
        cat <<CONF
global
    nbthread $2
    maxconn 4096
    pidfile $d/haproxy.pid

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
${3:-}

frontend fe
    bind 127.0.0.1:${port[haproxy]}
    default_backend be

backend be
    balance roundrobin
${4:-}
CONF
        for p in "${bports[@]}"; do
            i=$((i + 1))
            echo "    server b$i 127.0.0.1:$p${5:+ $5}"
        done
    } >"$d/haproxy.cfg"
}

# the wrk script of the consistent-hash targets: a new ?key= per request
bench_keys_lua() {
    cat >"$1" <<'LUA'
local n = 0
request = function()
    n = n + 1
    return wrk.format(nil, "/?key=" .. n)
end
LUA
}
