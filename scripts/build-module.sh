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

# shellcheck source=scripts/nginx-configure.sh
. "$top/scripts/nginx-configure.sh"

ngx_configure "$src" "$tree" "$out/.configure-stamp" "$out/configure.log" \
    "$src/conf_flags" "$top" || exit 1

cd "$tree"
make -s -f objs/Makefile modules > "$out/make.log" 2>&1 \
    || { grep -E 'error|warning' "$out/make.log" | head -40 >&2; \
         tail -20 "$out/make.log" >&2; exit 1; }
# a new file renamed over the old one: an nginx that has the old one
# mapped keeps it intact (cp would rewrite it under the running workers)
cp objs/ngx_http_mesh_module.so "$out/.ngx_http_mesh_module.so.new"
mv -f "$out/.ngx_http_mesh_module.so.new" "$out/ngx_http_mesh_module.so"
echo "build-module: $out/ngx_http_mesh_module.so"
