#!/usr/bin/env bash
# Builds the splitdns image without pulling any base image, and proves it works.
#
# The Dockerfile's build stage needs the rust:bookworm image; where no registry is reachable this
# script does the same thing on the host instead:
#   1. cargo builds the static binary exactly as the Dockerfile's build stage does
#      (glibc, +crt-static, getrandom's direct backend, --target <arch>-unknown-linux-gnu);
#   2. checks it is static (file, ldd, readelf);
#   3. lays out /out as the Dockerfile's build stage does: /out/splitdns owned by root, mode 0555,
#      with the file capability cap_net_bind_service=+ep (setcap), and /out/dns -> splitdns;
#   4. assembles the image with buildah: a `build` stage holding that /out, then the Dockerfile's
#      last stage verbatim, `COPY --from=build /out/ /` included (so user, env, labels, ports,
#      entrypoint and the copy that carries the capability cannot drift from the Dockerfile), and
#      checks the image's own files: /splitdns with the capability, /dns a symlink to it;
#   5. prints the image size (uncompressed, and compressed as a registry would store it);
#   6. smoke-tests the image's own root filesystem, which holds nothing but /splitdns and /dns:
#      --version, then the daemon as UID 65532 with no_new_privs, NET_BIND_SERVICE left in the
#      bounding set but in no other set (so the file capability grants nothing: a Docker-style
#      runtime), in a fresh network namespace with net.ipv4.ip_unprivileged_port_start=53 (what
#      the pod spec sets), with the manifests' --listen and --mapping - it must bind 127.0.0.1:53,
#      answer a mapped name and forward another (dig, against a stub upstream in the same
#      namespace), and, when the daemon has --admin, serve /live, /ready and /metrics with 200.
#
# Needs: cargo, buildah (vfs storage, no daemon), file, readelf, setcap and getcap (libcap2-bin);
#        for step 6 also root, unshare, setpriv, chroot, ip, python3, dig (bind9-dnsutils), curl.
#        SKIP_SMOKE=1 skips step 6. setcap needs root (CAP_SETFCAP), so the whole script does.
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

work=$(mktemp -d)
ctr=""
cleanup() {
    if [[ -n $ctr ]]; then bah umount "$ctr" >/dev/null 2>&1 || true; bah rm "$ctr" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

say "3. /out as the Dockerfile's build stage leaves it (file capability, /dns)"
# The same steps as the end of the Dockerfile's build stage (keep the two in step).
mkdir -p "$work/ctx/out"
cp "$BIN" "$work/ctx/out/splitdns"
chown 0:0 "$work/ctx/out/splitdns"
chmod 0555 "$work/ctx/out/splitdns"
setcap cap_net_bind_service=+ep "$work/ctx/out/splitdns"
ln -s splitdns "$work/ctx/out/dns"
getcap "$work/ctx/out/splitdns"
ls -l "$work/ctx/out"

say "4. the image with buildah -> $IMAGE"
# A `build` stage that holds the host-built /out, then the last stage of the Dockerfile verbatim.
# buildah keeps the security.capability xattr when it copies from the build context (BuildKit
# would not: moby/buildkit#2250), and again on the final stage's COPY --from=build.
{
    printf 'FROM scratch AS build\nCOPY out/ /out/\n\n'
    awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END{printf "%s", stage}' Dockerfile
} >"$work/ctx/Containerfile"
if ! grep -q '^FROM scratch$' "$work/ctx/Containerfile" || ! grep -qx 'COPY --from=build /out/ /' "$work/ctx/Containerfile"; then
    echo "FAIL: could not derive the final stage from Dockerfile:" >&2
    cat "$work/ctx/Containerfile" >&2
    exit 1
fi
cat "$work/ctx/Containerfile"
bah bud --quiet --build-arg "VERSION=$VERSION" -f "$work/ctx/Containerfile" -t "$IMAGE" "$work/ctx"
# The image's own files, as a runtime will unpack them.
ctr=$(bah from --quiet "$IMAGE")
mnt=$(bah mount "$ctr")
caps=$(getcap "$mnt/splitdns" | awk '{print $NF}')
link=$(readlink "$mnt/dns" || true)
echo "image files: $(cd "$mnt" && find . -mindepth 1 -printf '/%P ' | xargs -n1 | sort | xargs); /splitdns: mode $(stat -c '%a %U:%G' "$mnt/splitdns"), capability '$caps'; /dns -> '$link'"
if [[ $caps != cap_net_bind_service=ep || $link != splitdns ]]; then
    echo "FAIL: the image's /splitdns must carry cap_net_bind_service=ep and /dns must be a symlink to it" >&2
    exit 1
fi
bah umount "$ctr" >/dev/null; bah rm "$ctr" >/dev/null; ctr=""

say "5. size"
bah images --format '{{.Name}}:{{.Tag}}  {{.Size}} (uncompressed)' "$IMAGE"
bah push --quiet --compression-format gzip "$IMAGE" "oci:$work/oci" >/dev/null
compressed=$(find "$work/oci/blobs" -type f -printf '%s\n' | awk '{s+=$1} END{print s}')
awk -v b="$compressed" 'BEGIN{printf "compressed (gzip layer + config + manifest, as pushed): %d bytes = %.2f MB\n", b, b/1e6}'
# What a registry stores is a tar layer: the capability must travel in it as the PAX record
# SCHILY.xattr.security.capability of /splitdns, or a runtime unpacking the layer cannot restore it.
python3 - "$work/oci" <<'PY'
import json, sys, tarfile
oci = sys.argv[1]
blob = lambda d: f"{oci}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
found = {}
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"])) as t:
        for m in t:
            found[m.name.lstrip("./")] = m
bin_, link = found.get("splitdns"), found.get("dns")
xattr = bin_.pax_headers.get("SCHILY.xattr.security.capability") if bin_ else None
ok = xattr is not None and link is not None and link.issym() and link.linkname == "splitdns"
print(f"pushed layer: /splitdns security.capability xattr {'present' if xattr else 'MISSING'}"
      f" ({len(xattr.encode('latin-1')) if xattr else 0} bytes), /dns "
      f"{'-> ' + link.linkname if link is not None and link.issym() else 'not a symlink'}")
sys.exit(0 if ok else 1)
PY
bah inspect --format 'User={{.OCIv1.Config.User}} Entrypoint={{.OCIv1.Config.Entrypoint}} Env={{.OCIv1.Config.Env}} Ports={{.OCIv1.Config.ExposedPorts}}' "$IMAGE"

if [[ ${SKIP_SMOKE:-0} == 1 ]]; then
    echo "SKIP_SMOKE=1: not running the image"
    exit 0
fi

say "6. run it from the image's own (otherwise empty) root filesystem"
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
# health probes, its loop check and a forwarded query). The daemon runs with the image's ENV and
# the manifests' --listen and --mapping, plus --upstream, as UID/GID 65532, no_new_privs, and
# NET_BIND_SERVICE in the bounding set only (without it there, the kernel would refuse to exec a
# binary with that file capability): under no_new_privs the file capability then grants nothing,
# as with a runtime that empties the permitted set of non-root containers, and port 53 is
# allowed by the sysctl alone.
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
    env -i "$@" "$setpriv_bin" --no-new-privs --bounding-set=-all,+sys_chroot,+setuid,+setgid,+net_bind_service \
        "$chroot_bin" --userspec=65532:65532 "$mnt" /splitdns --listen 127.0.0.1:53 \
        --mapping /etc/splitdns/mapping.yaml --upstream 127.0.0.2 >"$log" 2>&1 &
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
