#!/usr/bin/env bash
# Builds the splitdns image without pulling any base image, and proves it works.
#
# The Dockerfile's build stage needs the rust:bookworm image; where no registry is reachable this
# script does the same thing on the host instead:
#   1. cargo builds the static binary exactly as the Dockerfile's build stage does
#      (glibc, +crt-static, getrandom's direct backend, --target <arch>-unknown-linux-gnu);
#   2. checks it is static (file, ldd, readelf);
#   3. assembles the final stage with buildah: the Dockerfile's last stage, verbatim, except that
#      its `COPY --from=build ...` takes the host-built binary (so user, env, labels, ports and
#      entrypoint cannot drift from the Dockerfile);
#   4. prints the image size (uncompressed, and compressed as a registry would store it);
#   5. smoke-tests the image's own root filesystem, which holds nothing but /splitdns: --version,
#      then the daemon as UID 65532 with no capabilities and no_new_privs, in a fresh network
#      namespace with net.ipv4.ip_unprivileged_port_start=53 (what the pod spec sets), using the
#      image's ENV defaults - it must bind 127.0.0.1:53, answer a mapped name and forward another
#      (dig, against a stub upstream in the same namespace), and, when the daemon has --admin,
#      serve /live, /ready and /metrics with 200.
#
# Needs: cargo, buildah (vfs storage, no daemon), file, readelf; for step 5 also root, unshare,
#        setpriv, chroot, ip, python3, dig (bind9-dnsutils), curl. SKIP_SMOKE=1 skips step 5.
# Env:   IMAGE (default localhost/splitdns:dev), CARGO_TARGET_DIR (default target/),
#        BUILDAH_STORAGE_DRIVER (default vfs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE=${IMAGE:-localhost/splitdns:dev}
DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TRIPLE="$(uname -m)-unknown-linux-gnu"
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
bah() { buildah --storage-driver "$DRIVER" "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "1. static release build ($TRIPLE, target dir $TARGET_DIR)"
# The same RUSTFLAGS as the Dockerfile's build stage (keep the two in step; see the reasons there).
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo build --release --locked --target "$TRIPLE"
BIN="$TARGET_DIR/$TRIPLE/release/splitdns"

say "2. is it static?"
file "$BIN"
ldd "$BIN" || true
if readelf -lW "$BIN" | grep -q INTERP || readelf -d "$BIN" | grep -q NEEDED; then
    echo "FAIL: $BIN has a program interpreter or needs shared libraries" >&2
    exit 1
fi
echo "ok: no INTERP, no NEEDED - nothing to load at run time"
ls -l "$BIN"

say "3. final stage with buildah -> $IMAGE"
work=$(mktemp -d)
ctr=""
cleanup() {
    if [[ -n $ctr ]]; then bah umount "$ctr" >/dev/null 2>&1 || true; bah rm "$ctr" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/ctx"
cp "$BIN" "$work/ctx/splitdns"
# The last stage of the Dockerfile, its COPY pointed at the build context instead of the build stage.
awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END{printf "%s", stage}' Dockerfile \
    | sed -E 's#^COPY --from=build (.*) /out/splitdns /splitdns$#COPY \1 splitdns /splitdns#' \
    > "$work/ctx/Containerfile"
if grep -q -- '--from=' "$work/ctx/Containerfile" || ! grep -q '^FROM scratch' "$work/ctx/Containerfile"; then
    echo "FAIL: could not derive the final stage from Dockerfile:" >&2
    cat "$work/ctx/Containerfile" >&2
    exit 1
fi
cat "$work/ctx/Containerfile"
bah bud --quiet --build-arg "VERSION=$VERSION" -f "$work/ctx/Containerfile" -t "$IMAGE" "$work/ctx"

say "4. size"
bah images --format '{{.Name}}:{{.Tag}}  {{.Size}} (uncompressed)' "$IMAGE"
bah push --quiet --compression-format gzip "$IMAGE" "oci:$work/oci" >/dev/null
compressed=$(find "$work/oci/blobs" -type f -printf '%s\n' | awk '{s+=$1} END{print s}')
awk -v b="$compressed" 'BEGIN{printf "compressed (gzip layer + config + manifest, as pushed): %d bytes = %.2f MB\n", b, b/1e6}'
bah inspect --format 'User={{.OCIv1.Config.User}} Entrypoint={{.OCIv1.Config.Entrypoint}} Env={{.OCIv1.Config.Env}} Ports={{.OCIv1.Config.ExposedPorts}}' "$IMAGE"

if [[ ${SKIP_SMOKE:-0} == 1 ]]; then
    echo "SKIP_SMOKE=1: not running the image"
    exit 0
fi

say "5. run it from the image's own (otherwise empty) root filesystem"
ctr=$(bah from --quiet "$IMAGE")
mnt=$(bah mount "$ctr")
echo "root filesystem of the image:"
(cd "$mnt" && find . -mindepth 1 | sort)
mapfile -t image_env < <(bah inspect --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$IMAGE" | grep .)
# As buildah runs the container (image config applied); plain chroot where buildah cannot run one.
bah run --isolation chroot "$ctr" -- /splitdns --version 2>/dev/null || chroot "$mnt" /splitdns --version

# The throwaway working container gets a mapping where the ConfigMap would be mounted.
mkdir -p "$mnt/etc/splitdns"
cat > "$mnt/etc/splitdns/mapping.yaml" <<'EOF'
ttl: 5
hosts:
  db-0.db.example.com: 10.42.0.12
EOF
chmod 0755 "$mnt/etc/splitdns"; chmod 0444 "$mnt/etc/splitdns/mapping.yaml"
admin=0
if chroot "$mnt" /splitdns --help | grep -q -- '--admin'; then admin=1; fi

# A fresh network namespace: nothing in it reaches any network. The upstream, 127.0.0.2:53, is a
# few lines of Python that echo each query back as an empty NOERROR reply (enough for splitdns's
# health probes, its loop check and a forwarded query). The daemon runs with the image's ENV only,
# plus --upstream, as UID/GID 65532, no_new_privs, no capabilities: what a non-root process really
# has in the pod. Port 53 is allowed by the sysctl alone.
setpriv_bin=$(command -v setpriv); chroot_bin=$(command -v chroot)
# shellcheck disable=SC2016 # the inner script is single-quoted on purpose: it expands in the namespace
unshare --net -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin mnt="$mnt" admin="$admin" \
    setpriv_bin="$setpriv_bin" chroot_bin="$chroot_bin" \
    "$(command -v bash)" -euo pipefail -c '
    ip link set lo up
    python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((\"127.0.0.2\", 53))
while True:
    q, peer = s.recvfrom(4096)
    if len(q) >= 12:  # QR=1, RD copied, RA=1, NOERROR; the question is echoed as it came
        s.sendto(q[:2] + bytes([0x80 | (q[2] & 0x01), 0x80]) + q[4:], peer)
" &
    upstream=$!
    for _ in $(seq 50); do ss -Hlun "src 127.0.0.2:53" | grep -q . && break; sleep 0.1; done
    sysctl -qw net.ipv4.ip_unprivileged_port_start=53
    log=$(mktemp)
    env -i "$@" "$setpriv_bin" --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid \
        "$chroot_bin" --userspec=65532:65532 "$mnt" /splitdns --upstream 127.0.0.2 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do grep -q "listening on udp" "$log" && break; sleep 0.1; done
    cat "$log"; shown=$(wc -l <"$log")
    grep -E "^(Uid|Cap(Prm|Eff|Bnd|Amb)|NoNewPrivs)" /proc/$pid/status || true
    rc=0
    answer=$(dig +short +time=1 +tries=1 @127.0.0.1 -p 53 db-0.db.example.com A || true)
    echo "dig @127.0.0.1 -p 53 db-0.db.example.com A -> ${answer:-<no answer>} (local)"
    [[ $answer == 10.42.0.12 ]] || { echo "FAIL: expected 10.42.0.12" >&2; rc=1; }
    status=$(dig +time=2 +tries=1 @127.0.0.1 -p 53 example.org A | grep -o "status: [A-Z]*" || true)
    echo "dig @127.0.0.1 -p 53 example.org A -> ${status:-<no answer>} (forwarded)"
    [[ $status == "status: NOERROR" ]] || { echo "FAIL: expected the upstream reply" >&2; rc=1; }
    if [[ $admin == 1 ]]; then
        for path in /live /ready /metrics; do
            code=000
            for _ in $(seq 20); do  # /ready waits for a first upstream probe
                code=$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:9253$path" || true)
                [[ $code == 200 ]] && break
                sleep 0.25
            done
            echo "GET 127.0.0.1:9253$path -> $code"
            [[ $code == 200 ]] || { echo "FAIL: expected 200" >&2; rc=1; }
        done
    else
        echo "(this build has no --admin flag: probes not checked)"
    fi
    kill -TERM $pid
    code=0; wait $pid || code=$?
    tail -n +$((shown + 1)) "$log"
    [[ $code == 0 ]] || { echo "FAIL: daemon exit code $code after SIGTERM" >&2; rc=1; }
    kill $upstream
    [[ $rc == 0 ]] && echo "smoke test passed"
    exit $rc
' _ "${image_env[@]}"
