#!/usr/bin/env bash
# The ngx_mesh demo, on loopback, in the foreground (what `make run` runs):
#
#   scripts/run-demo.sh BUILD_DIR
#
# Starts registryd (conf/registryd.yaml, data in a temp dir), three demo
# backends (one extra nginx with three servers answering "backend N"),
# registers them in registryd as service "demo" with registryctl, and starts
# nginx with ngx_http_mesh_module and conf/nginx.conf.  Ctrl-C or SIGTERM
# stops everything it started and exits 0.
#
# Environment:
#   MESH_DEMO_PORT            nginx front port (8080)
#   MESH_DEMO_REGISTRY_PORT   registryd port (7770)
#   MESH_DEMO_BACKEND_PORT    first backend port (9181; then +1, +2)
#   MESH_DEMO_KEEP=1          keep the temp dir (logs, data) at exit
#   MESH_NGINX                nginx binary (/usr/sbin/nginx)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
build=$(cd "$build" && pwd)

nginx=${MESH_NGINX:-/usr/sbin/nginx}
port=${MESH_DEMO_PORT:-8080}
rport=${MESH_DEMO_REGISTRY_PORT:-7770}
bport=${MESH_DEMO_BACKEND_PORT:-9181}
registry=http://127.0.0.1:$rport

registryd=$build/registryd
registryctl=$build/registryctl
module=$build/ngx_http_mesh_module.so

say() { printf 'run-demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for f in "$registryd" "$registryctl" "$module" "$nginx"; do
    [ -e "$f" ] || die "missing $f (run 'make' first)"
done

command -v curl >/dev/null || die "curl is needed (scripts/deps.sh installs it)"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for p in "$rport" "$port" "$bport" $((bport + 1)) $((bport + 2)); do
    port_busy "$p" && die "127.0.0.1:$p is already in use; see the" \
        "MESH_DEMO_*PORT variables at the top of $0"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ngx-mesh-demo.XXXXXX")
chmod 755 "$tmp"                        # nginx workers may run as www-data
mkdir -p "$tmp/front/logs" "$tmp/front/temp" "$tmp/backends/logs" \
         "$tmp/backends/temp" "$tmp/registry"

pids=()                                 # everything started, in order
rd_pid='' fe_pid='' be_pid=''
stopping=0

# alive PID: running, not a zombie (Ctrl-C reaches our children too, and
# bash may not have reaped them yet)
alive() {
    local st
    st=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) \
        || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_pid() {                            # stop_pid PID SIGNAL
    local pid=$1 sig=$2 _
    [ -n "$pid" ] && alive "$pid" || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        alive "$pid" || return 0
        sleep 0.1
    done
    say "pid $pid ignored SIG$sig for 10 s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - INT TERM EXIT
    [ "$stopping" = 1 ] && rc=0
    say "stopping"
    stop_pid "$fe_pid" QUIT
    stop_pid "$be_pid" QUIT
    stop_pid "$rd_pid" TERM
    if [ "${MESH_DEMO_KEEP:-}" = 1 ] || [ "$rc" != 0 ]; then
        say "logs and data kept in $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}

trap cleanup EXIT
trap 'stopping=1; exit 0' INT TERM

wait_http() {                           # wait_http URL WHAT PID
    local _
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        alive "$3" || die "$2 exited at start; log: $4"
        sleep 0.1
    done
    die "$2 does not answer $1 after 10 s; log: $4"
}

# registryd

"$registryd" --config "$top/conf/registryd.yaml" \
    --listen "127.0.0.1:$rport" --data-dir "$tmp/registry" \
    > "$tmp/registryd.log" 2>&1 &
rd_pid=$!
pids+=("$rd_pid")
wait_http "$registry/healthz" registryd "$rd_pid" "$tmp/registryd.log"
say "registryd on $registry (pid $rd_pid)"

# three demo backends: one nginx, three servers

{
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
error_log $tmp/backends/logs/error.log;
pid $tmp/backends/nginx.pid;

events {
    worker_connections 256;
}

http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $tmp/backends/temp/client_body;
    proxy_temp_path $tmp/backends/temp/proxy;
    fastcgi_temp_path $tmp/backends/temp/fastcgi;
    uwsgi_temp_path $tmp/backends/temp/uwsgi;
    scgi_temp_path $tmp/backends/temp/scgi;
EOF
    for n in 1 2 3; do
        cat <<EOF

    server {
        listen 127.0.0.1:$((bport + n - 1));
        location / { return 200 "backend $n\n"; }
        location = /healthz { return 200 "ok\n"; }
    }
EOF
    done
    echo "}"
} > "$tmp/backends/nginx.conf"

"$nginx" -e "$tmp/backends/logs/error.log" -p "$tmp/backends/" \
    -c "$tmp/backends/nginx.conf" > "$tmp/backends/logs/stderr.log" 2>&1 &
be_pid=$!
pids+=("$be_pid")
for n in 1 2 3; do
    wait_http "http://127.0.0.1:$((bport + n - 1))/healthz" "backend nginx" \
        "$be_pid" "$tmp/backends/logs/error.log"
done
say "backends on 127.0.0.1:$bport..$((bport + 2)) (nginx pid $be_pid)"

# register them

labels=("--label version=v1 --zone a"
        "--label version=v1 --zone a"
        "--label version=v2 --zone b")
for n in 1 2 3; do
    # shellcheck disable=SC2086
    "$registryctl" --registry "$registry" register demo "demo-$n" \
        "127.0.0.1:$((bport + n - 1))" --weight "$n" --label app=demo \
        ${labels[$((n - 1))]} >&2 \
        || die "registryctl register demo-$n failed"
done

# nginx with the module and conf/nginx.conf

fe=$tmp/front
sed -e "s|%%MODULE%%|$module|g" \
    -e "s|%%PREFIX%%|$fe|g" \
    -e "s|%%LISTEN%%|$port|g" \
    -e "s|%%REGISTRY%%|$registry|g" \
    -e "s|%%BACKEND_1%%|$bport|g" \
    -e "s|%%BACKEND_2%%|$((bport + 1))|g" \
    -e "s|%%BACKEND_3%%|$((bport + 2))|g" \
    "$top/conf/nginx.conf" > "$fe/nginx.conf"

if ! out=$("$nginx" -t -e "$fe/logs/error.log" -p "$fe/" -c "$fe/nginx.conf" 2>&1); then
    printf '%s\n' "$out" >&2
    die "nginx -t failed on $fe/nginx.conf"
fi

"$nginx" -e "$fe/logs/error.log" -p "$fe/" -c "$fe/nginx.conf" \
    > "$fe/logs/stderr.log" 2>&1 &
fe_pid=$!
pids+=("$fe_pid")
wait_http "http://127.0.0.1:$port/registry/healthz" nginx "$fe_pid" \
    "$fe/logs/error.log"
say "nginx with ngx_http_mesh_module on http://127.0.0.1:$port (pid $fe_pid)"

ctl=$registryctl
[ "$rport" = 7770 ] || ctl="MESH_REGISTRY=$registry $registryctl"

cat <<EOF

ngx_mesh demo is running on loopback.  Ctrl-C stops everything.

  registryd   $registry          data: $tmp/registry
  backends    127.0.0.1:$bport..$((bport + 2))      registered as service "demo", weights 1,2,3
  nginx       http://127.0.0.1:$port        config: $fe/nginx.conf
  dashboard   http://127.0.0.1:$port/mesh/status   open it in a browser: live per
              instance state, weight, rates, latency, ejections, registry

Try:
  $ctl list
  $ctl list demo
  $ctl heartbeat demo demo-1
  $ctl register demo demo-4 127.0.0.1:9999 --weight 5 --label version=v3
  $ctl deregister demo demo-4
  curl -s $registry/v1/services/demo
  curl -s '$registry/v1/snapshot'
  curl -s '$registry/v1/snapshot?index=N&wait=30s'   # blocks until a change
  curl -s $registry/metrics
  for i in 1 2 3 4 5 6; do curl -s http://127.0.0.1:$port/; done   # 1:2:3 via the mesh
  $ctl deregister demo demo-3      # then the loop above: demo-3 is gone, no reload
  curl -s http://127.0.0.1:$port/mesh/status                         # the module's view (JSON;
                                                                     # a browser gets the dashboard)
  curl -s http://127.0.0.1:$port/static/                             # stock upstream
  curl -s http://127.0.0.1:$port/registry/v1/services

Logs: $tmp (removed at exit; MESH_DEMO_KEEP=1 keeps them)

EOF

# run until a signal, or until one of ours dies
while :; do
    wait -n || true
    for pid in "${pids[@]}"; do
        if ! alive "$pid"; then
            [ "$stopping" = 1 ] && exit 0
            say "process $pid exited unexpectedly"
            exit 1
        fi
    done
done
