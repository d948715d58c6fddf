#!/usr/bin/env bash
# Install the Debian packages ngx_mesh needs to build, test and run.
# Idempotent: does nothing when every package is already installed.
# The dpkg-dev line is for make deb and t/package.t: building the Debian
# packages (dpkg-buildpackage, debhelper; scdoc for the man pages),
# checking them (lintian, man, systemd-analyze) and what they need
# installed (adduser and usermod for the registryd account). The last
# one for t/mesh_dashboard.t and scripts/dashboard-screenshot: a headless
# browser (chromium, driven through chromedriver) and a font for it.
# libnginx-mod-stream is nginx's stream module (Debian builds it as a
# module of its own), for the stream mesh upstreams and their tests.
# iproute2's ss shows t/mesh_policy_pool.t the keepalive timer of nginx's
# upstream connections.
set -euo pipefail

PKGS="build-essential pkg-config perl curl
      nginx nginx-dev libnginx-mod-stream
      libmicrohttpd-dev libgnutls28-dev libjansson-dev libsqlite3-dev libyaml-dev
      libcurl4-openssl-dev libpcre2-dev zlib1g-dev libssl-dev
      check libsubunit-dev libio-socket-ssl-perl clang libclang-rt-dev
      etcd-server etcd-client
      wrk haproxy prometheus valgrind strace iproute2
      dpkg-dev debhelper scdoc lintian man-db systemd adduser passwd
      chromium chromium-driver fonts-dejavu-core"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing Debian packages:$missing; run as root" >&2
    exit 1
fi

echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Do not let the nginx package start a system nginx on port 80.
if [ ! -x /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends $missing >/dev/null
