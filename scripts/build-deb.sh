#!/usr/bin/env bash
# Build the Debian packages (debian/) into BUILD_DIR/deb:
# libnginx-mod-http-mesh_VERSION_ARCH.deb, ngx-mesh-registryd_VERSION_ARCH.deb
# and their .changes and .buildinfo.
#
#   scripts/build-deb.sh [BUILD_DIR]
#
# dpkg-buildpackage builds in the tree it is given and writes its results
# beside it, in the parent folder: so it is given a copy of the sources in
# BUILD_DIR/deb/src, and the repository and its parent stay untouched. A
# build whose inputs are all older than its stamp is not done again.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build}
mkdir -p "$out"
out=$(cd "$out" && pwd)
deb=$out/deb
stamp=$deb/.stamp

# what the packages are built from
inputs=(Makefile config config.make common ngx_mesh_module registryd registryctl
        man completion debian conf docs README.md)

cd "$top"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$top" ] \
        && [ -z "$(find "${inputs[@]}" -newer "$stamp" -print -quit)" ]; then
    echo "build-deb: up to date in $deb"
    exit 0
fi

rm -rf "$deb"
mkdir -p "$deb/src"
tar -cf - "${inputs[@]}" | tar -xf - -C "$deb/src"

(cd "$deb/src" && dpkg-buildpackage -b -us -uc) > "$deb/build.log" 2>&1 \
    || { tail -40 "$deb/build.log" >&2; echo "build-deb: failed," \
         "log in $deb/build.log" >&2; exit 1; }

rm -rf "$deb/src"
echo "$top" > "$stamp"
ls "$deb"/*.deb
