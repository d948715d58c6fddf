#!/usr/bin/env bash
# Build ngx_http_mesh_module.so against Debian's nginx (nginx-dev), or
# against the nginx source tree named by NGINX_SRC.
#
#   scripts/build-module.sh [BUILD_DIR]
#
# The module lands in BUILD_DIR/ngx_http_mesh_module.so (default build/).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=${NGINX_SRC:-/usr/share/nginx/src}
tree=$out/nginx-src

if [ ! -f "$src/configure" ] && [ ! -f "$src/auto/configure" ]; then
    echo "build-module: no nginx source at $src (install nginx-dev)" >&2
    exit 1
fi

flags=()
if [ -f "$src/conf_flags" ]; then
    # shellcheck disable=SC1091
    . "$src/conf_flags"
    flags=("${NGX_CONF_FLAGS[@]}")
else
    flags=(--with-compat --with-threads --with-http_ssl_module)
fi

stamp=$out/.configure-stamp
want="$src ${flags[*]} $top"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
        || [ "$top/config" -nt "$stamp" ]; then
    rm -rf "$tree"
    cp -a "$src" "$tree"
    cd "$tree"
    if [ -f configure ]; then cfg=./configure; else cfg=./auto/configure; fi
    $cfg "${flags[@]}" --add-dynamic-module="$top" > "$out/configure.log" 2>&1 \
        || { tail -30 "$out/configure.log" >&2; exit 1; }
    echo "$want" > "$stamp"
fi

cd "$tree"
make -s -f objs/Makefile modules > "$out/make.log" 2>&1 \
    || { grep -E 'error|warning' "$out/make.log" | head -40 >&2; \
         tail -20 "$out/make.log" >&2; exit 1; }
# a new file renamed over the old one: an nginx that has the old one
# mapped keeps it intact (cp would rewrite it under the running workers)
cp objs/ngx_http_mesh_module.so "$out/.ngx_http_mesh_module.so.new"
mv -f "$out/.ngx_http_mesh_module.so.new" "$out/ngx_http_mesh_module.so"
echo "build-module: $out/ngx_http_mesh_module.so"
