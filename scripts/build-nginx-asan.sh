#!/usr/bin/env bash
# Build nginx itself and the module against it, both under AddressSanitizer
# and UndefinedBehaviorSanitizer, with Debian's configure flags: what make
# test-asan runs the t/mesh_* tests on, so that a write into freed shared
# memory or a leaked view shows as a sanitizer report instead of passing
# unseen.
#
#   scripts/build-nginx-asan.sh [BUILD_DIR]
#
# Lands in BUILD_DIR/nginx, BUILD_DIR/ngx_http_mesh_module.so and nginx's
# stream module BUILD_DIR/ngx_stream_module.so, for the stream tests
# (default build/asan). nginx-dev ships nginx's headers and build scripts, not its
# .c files: the source is Debian's source package of nginx 1.22.1 (its
# newest version the archive still serves, Debian's patches applied by
# dpkg-source), fetched once into BUILD_DIR with a source list of the
# script's own (the machine's apt configuration is not touched).
# NGINX_SRC names a full source tree to use instead.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/asan}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dev=/usr/share/nginx/src
tree=$out/nginx-asan-src

# Debian's source package, once
fetch() {
    local dl=$out/nginx-debian apt lists v
    apt=$dl/apt
    lists=$apt/lists
    mkdir -p "$lists/partial"
    printf 'deb-src http://deb.debian.org/debian bookworm main\n%s\n%s\n' \
        'deb-src http://deb.debian.org/debian bookworm-updates main' \
        'deb-src http://deb.debian.org/debian-security bookworm-security main' \
        > "$apt/sources.list"
    local o=(-o "Dir::Etc::SourceList=$apt/sources.list"
             -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$lists")
    apt-get "${o[@]}" update -qq > "$dl/apt.log" 2>&1 || {
        tail -5 "$dl/apt.log" >&2; return 1; }
    cd "$dl"
    for v in $(apt-cache "${o[@]}" showsrc nginx | sed -n 's/^Version: //p' \
               | sort -urV); do
        case $v in 1.22.1-*) ;; *) continue ;; esac
        rm -rf "nginx-1.22.1"
        if apt-get "${o[@]}" source "nginx=$v" >> "$dl/apt.log" 2>&1; then
            echo "$v" > "$dl/version"
            return 0
        fi
    done
    echo "build-nginx-asan: no nginx 1.22.1 source package could be" \
         "fetched (log: $dl/apt.log)" >&2
    return 1
}

if [ -n "${NGINX_SRC:-}" ]; then
    src=$NGINX_SRC
else
    src=$out/nginx-debian/nginx-1.22.1
    [ -f "$src/src/core/nginx.c" ] || fetch
fi

if [ ! -f "$src/src/core/nginx.c" ]; then
    echo "build-nginx-asan: no nginx source tree at $src" >&2
    exit 1
fi

# nginx itself passes NULL with a length of 0 to memcpy() (ngx_pstrdup
# at start): not ours to report, so that check is left out
san="-fsanitize=address,undefined -fno-sanitize=nonnull-attribute"
san="$san -fno-sanitize-recover=all"
cc_opt="-O1 -g -fno-omit-frame-pointer $san"
ld_opt="$san"

# shellcheck source=scripts/nginx-configure.sh
. "$top/scripts/nginx-configure.sh"

# with the flags Debian built its nginx with (nginx-dev's conf_flags),
# and its stream module's (libnginx-mod-stream: ssl_preread is what the
# stream gateways read a TLS server name with)
ngx_configure "$src" "$tree" "$out/.nginx-asan-stamp" \
    "$out/nginx-asan-configure.log" "$dev/conf_flags" "$top" \
    --with-stream=dynamic --with-stream_ssl_module \
    --with-stream_ssl_preread_module --with-stream_realip_module \
    --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" || exit 1

cd "$tree"
jobs=$(nproc 2>/dev/null || echo 2)
make -s -j"$jobs" -f objs/Makefile binary modules \
        > "$out/nginx-asan-make.log" 2>&1 \
    || { grep -E 'error|warning' "$out/nginx-asan-make.log" | head -40 >&2; \
         tail -20 "$out/nginx-asan-make.log" >&2; exit 1; }

cp objs/nginx "$out/.nginx.new"
mv -f "$out/.nginx.new" "$out/nginx"
cp objs/ngx_http_mesh_module.so "$out/.ngx_http_mesh_module.so.new"
mv -f "$out/.ngx_http_mesh_module.so.new" "$out/ngx_http_mesh_module.so"
cp objs/ngx_stream_module.so "$out/.ngx_stream_module.so.new"
mv -f "$out/.ngx_stream_module.so.new" "$out/ngx_stream_module.so"
echo "build-nginx-asan: $out/nginx, $out/ngx_http_mesh_module.so and" \
     "$out/ngx_stream_module.so"
