# Sourced by build-module.sh and build-nginx-asan.sh: configure a copy of
# an nginx source tree with the module as a dynamic module, with the
# flags Debian built its nginx with.
#
#   ngx_configure SRC TREE STAMP LOG FLAGS_FILE TOP [configure options...]
#
# TREE becomes a fresh copy of SRC, configured with FLAGS_FILE's
# NGX_CONF_FLAGS (nginx-dev's conf_flags; a minimal set without it), the
# options and --add-dynamic-module=TOP, unless STAMP says that was done
# with the same inputs and TOP/config and TOP/config.make are older.
# configure's output goes to LOG; on a failure its tail goes to stderr and
# it returns 1.

ngx_configure() {
    local src=$1 tree=$2 stamp=$3 log=$4 flags_file=$5 top=$6 want cfg
    local flags=()
    shift 6

    if [ -f "$flags_file" ]; then
        # shellcheck disable=SC1090
        . "$flags_file"
        flags=("${NGX_CONF_FLAGS[@]}")
    else
        flags=(--with-compat --with-threads --with-http_ssl_module)
    fi

    want="$src ${flags[*]} $* $top"

    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
            && [ ! "$top/config" -nt "$stamp" ] \
            && [ ! "$top/config.make" -nt "$stamp" ]; then
        return 0
    fi

    rm -rf "$tree"
    cp -a "$src" "$tree"

    if [ -f "$tree/configure" ]; then cfg=./configure; else cfg=./auto/configure; fi

    (cd "$tree" && $cfg "${flags[@]}" "$@" --add-dynamic-module="$top") \
        > "$log" 2>&1 || { tail -30 "$log" >&2; return 1; }

    echo "$want" > "$stamp"
}
