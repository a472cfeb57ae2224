# shellcheck shell=bash
# Helpers for scripts/pod-test.sh (sourced, not run).

# kubelet's atomic writer, as it updates a ConfigMap volume (pkg/volume/util/atomic_writer.go):
#   1. write the new payload into a fresh hidden directory named after the time, ..YYYY_MM_DD_HH_MM_SS.N
#   2. point a new symlink ..data_tmp at it
#   3. rename(2) ..data_tmp over ..data: the one atomic step; readers see the old or the new version
#   4. create the visible symlinks KEY -> ..data/KEY if missing (on the first write only)
#   5. remove the previous timestamped directory
# Usage: configmap_write DIR KEY CONTENT
configmap_write() {
    local dir=$1 key=$2 content=$3 old="" ts
    ts=$(date -u +..%Y_%m_%d_%H_%M_%S.%N)
    mkdir -m 0755 "$dir/$ts"
    printf '%s' "$content" >"$dir/$ts/$key"
    chmod 0444 "$dir/$ts/$key" # the manifests' defaultMode
    if [[ -L $dir/..data ]]; then old=$(readlink "$dir/..data"); fi
    ln -s "$ts" "$dir/..data_tmp"
    mv -T "$dir/..data_tmp" "$dir/..data"
    if [[ ! -L $dir/$key ]]; then ln -s "..data/$key" "$dir/$key"; fi
    if [[ -n $old ]]; then rm -rf "${dir:?}/$old"; fi
}

# Copies a dynamically linked executable and every shared library it loads (ldd) under ROOT, at
# the same paths, so that it runs on a `scratch` image.
# Usage: bundle_dynamic BINARY ROOT
bundle_dynamic() {
    install -D -m 0755 "$1" "$2$1"
    bundle_libs "$1" "$2"
}

# Copies every shared library BINARY loads (ldd) under ROOT, at the same paths.
# Usage: bundle_libs BINARY ROOT
bundle_libs() {
    local bin=$1 root=$2 lib
    while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

# Fails unless FILE is a static executable (no program interpreter, no shared libraries).
assert_static() {
    if readelf -lW "$1" | grep -q INTERP || readelf -d "$1" | grep -q NEEDED; then
        echo "FAIL: $1 is not a static executable" >&2
        return 1
    fi
}

# The value of the first sample of SERIES (name plus labels, as served) in Prometheus text on
# stdin, as a plain number ("1.0" prints as 1); exit 1 when there is none.
metric_value() {
    awk -v s="$1" '!found && index($0, s " ") == 1 {print $2 + 0; found = 1} END {exit !found}'
}
