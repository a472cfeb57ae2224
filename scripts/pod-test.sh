#!/usr/bin/env bash
# Pod test on a real container runtime: the image built from this repository runs under podman in
# two pods - one shaped like config/kubernetes/statefulset-native-sidecar.yaml, one shaped like the
# KurrentDB operator's database pod with its DNS sidecar - and a client container in each pod
# resolves names through it, exactly as the database container would.
#
# The image itself: user 65532:65532, entrypoint /splitdns, /dns a symlink to it (the operator's
# entrypoint), the file capability cap_net_bind_service=ep on /splitdns (read from the image's
# own files).
#
# Pod 1 (one network namespace, owned by podman's infra container - built locally from the
# host's catatonit, no registry), taken from the manifest:
#   - pod level: dnsConfig as --dns/--dns-search/--dns-option (so every container's resolv.conf is
#     "nameserver 127.0.0.1, the search list, ndots:2"), the sysctl
#     net.ipv4.ip_unprivileged_port_start=53, and the admin port published on the host's loopback
#     (127.0.0.1:$ADMIN_PORT -> 9253; slirp4netns, whose outbound side is bound to 127.0.0.1 so
#     nothing can leave the machine);
#   - "upstream": the cluster DNS stand-in, a static authoritative server (scripts/pod/authd.c)
#     on 127.0.0.2:53 in the pod, as UID 65533 with no capabilities;
#   - "splitdns": the image, with the manifest's args (only --upstream changed, to 127.0.0.2), as
#     UID 65532, read-only root filesystem (no tmpfs added), the manifest's capabilities
#     (--cap-drop ALL --cap-add NET_BIND_SERVICE), no new privileges, podman's default seccomp
#     profile; the mapping is a host directory mounted read-only at
#     /etc/splitdns, laid out and updated the way kubelet does a ConfigMap volume
#     (scripts/pod/lib.sh: timestamped ..YYYY_.. directory, ..data symlink renamed over it,
#     mapping.yaml -> ..data/mapping.yaml);
#   - "client": the database stand-in on `scratch`: a static getaddrinfo program built with musl
#     (scripts/pod/resolve.c), the same program built with glibc, and dig, each glibc program with
#     its shared libraries.
#
# Checked: the client's resolv.conf is the dnsConfig; the splitdns process really runs as
# 65532/65532 with no capability outside NET_BIND_SERVICE in any set (none inheritable or
# ambient), no_new_privs, seccomp, read-only / and /etc/splitdns,
# bound to 127.0.0.1:53 only; the client gets the mapped IPv4 name (not the upstream's public
# address), both families of a dual-stack name, a name through the search list, a forwarded name;
# mapped names never reach the upstream and ndots:2 sends no search-list variants of an FQDN;
# dig sees the local answers as authoritative, NODATA with an SOA, TCP; /live, /ready and /metrics
# answer on the host; a ConfigMap-style update is served within 2 s; a broken update keeps the old
# address in service (and is counted and logged); a fix after it is served; `podman stop` (SIGTERM)
# exits 0 well within the grace period with the log's shutdown lines.
#
# Pod 2, the operator's shape (the same images, a pod of its own): no sysctl, and the client's
# resolv.conf lists the sidecar first and the upstream second (--dns twice, Kubernetes' default
# search list and ndots:5); the upstream serves the headless-service names of three database pods
# (kdb-N.kdb.ns.svc.cluster.local -> 10.244.1.1N) and the public address of each server's FQDN
# (kdb-N.kdb.my-domain.com -> 203.0.113.2N); the image runs with nothing but its own defaults (user,
# entrypoint), podman's default capabilities, privilege escalation allowed, and the operator's
# JSON (a regex rule for the servers, an extra literal host -> IP rule):
#   A. no arguments at all, the file bind-mounted at /dns.conf;
#   B. command /dns with the path as its argument, /etc/dns/dns.conf in a directory mounted
#      read-only and updated as kubelet projects a ConfigMap or Secret;
#   C. the image's entrypoint with the path as its only argument (`args: [PATH]`), briefly.
# Checked: the process runs as 65532 with NET_BIND_SERVICE effective from the file capability,
# no_new_privs off, the namespace's ip_unprivileged_port_start untouched, bound to 127.0.0.1:53;
# through glibc's getaddrinfo (which asks the first nameserver first, as the database's runtime
# does): the regex rule's name gets the headless target's pod IP (not the public address), the
# extra rule's IP, an upper-case spelling of a server name the same pod IP, a forwarded name the
# upstream's answer; dig sees them from 127.0.0.1 and a forwarded name NOERROR (not SERVFAIL); a
# rule changed in the file while running is served within a few seconds (A: the file rewritten
# in place; B: the ..data swap); `podman stop` exits 0. musl's getaddrinfo, which asks both
# nameservers at once and takes the first answer, is shown for comparison, not checked.
#
# Usage (as root, from any checkout):  scripts/pod-test.sh
# Env:   IMAGE=NAME        use this prebuilt image (in podman's $BUILDAH_STORAGE_DRIVER storage)
#                          instead of building localhost/splitdns:pod-test with
#                          scripts/build-image-local.sh (which needs cargo; SKIP_SMOKE=0 runs its
#                          smoke test too)
#        ADMIN_PORT=19253  host port for the admin endpoint (127.0.0.1 only)
#        STOP_GRACE=30     seconds `podman stop` waits before SIGKILL (Kubernetes' default grace)
#        KEEP=1            leave the pod running at the end, for a look around
#        BUILDAH_STORAGE_DRIVER=vfs  container storage driver (the same as build-image-local.sh)
#        POD_TEST_CONTAINERS_CONF=FILE  podman's configuration (default scripts/pod/containers.conf)
# Needs: root; podman, buildah, runc, slirp4netns, catatonit, musl-gcc, gcc, readelf, ldd, dig,
#        curl, nsenter, ss, file, getcap, setcap (apt-get install -y podman buildah runc slirp4netns
#        catatonit musl-tools gcc binutils bind9-dnsutils curl util-linux iproute2 file
#        libcap2-bin); cargo unless IMAGE is given.
#        Installs nothing.
# Exit:  0 when every check passed; 1 otherwise, including when podman cannot run containers
#        here (the reason is printed: this test never skips).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/pod/lib.sh
source scripts/pod/lib.sh

POD=splitdns-podtest
POD2=splitdns-podtest-operator
ADMIN_PORT=${ADMIN_PORT:-19253}
STOP_GRACE=${STOP_GRACE:-30}
DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
MANIFEST=config/kubernetes/statefulset-native-sidecar.yaml
CLIENT_IMAGE=localhost/splitdns-podtest-client:latest
UPSTREAM_IMAGE=localhost/splitdns-podtest-upstream:latest
UPSTREAM_IP=127.0.0.2
UPDATE_LIMIT_MS=2000
# A single-file bind mount (the operator's /dns.conf) is rewritten in place; a watch on the
# container's / cannot see that (the event goes to the file's directory on the host), the
# metadata poll (--poll-interval, 5 s) does.
FILE_UPDATE_LIMIT_MS=8000
T0=$SECONDS
# Only this file is read by podman (CONTAINERS_CONF): the machine's own configuration is left alone.
export CONTAINERS_CONF=${POD_TEST_CONTAINERS_CONF:-$ROOT/scripts/pod/containers.conf}

P() { podman --storage-driver "$DRIVER" "$@"; }
say() { printf '\n== [pod test] %s (at %d s)\n' "$*" "$((SECONDS - T0))"; }
die() {
    printf '\npod-test: FAILED: %s\n' "$*" >&2
    exit 1
}
# podman_failed OUTPUT WHAT: prints podman's error and why it happened (as far as known), fails.
podman_failed() {
    local why
    echo "$1" >&2
    case $1 in
    *"hybrid mode not supported"*)
        why="the OCI runtime refuses this machine's cgroup v1 'hybrid' hierarchy (crun does): use runc, as scripts/pod/containers.conf does" ;;
    *rlimit* | *RLIMIT*)
        why="podman's default ulimits exceed this machine's hard limits (ulimit -Hn: $(ulimit -Hn)): its containers.conf must set default_ulimits = [], as scripts/pod/containers.conf does" ;;
    *"OCI runtime"*"not found"* | *"executable file not found"*)
        why="the OCI runtime named in $CONTAINERS_CONF is not installed" ;;
    *"pinging container registry"* | *"trying to pull"* | *"initializing source"*)
        why="podman tried to pull an image from a registry, and none is reachable" ;;
    *) why="see podman's error above" ;;
    esac
    die "$2: $why"
}
passed=0 failed=0
ok() {
    printf '  ok    %s\n' "$*"
    passed=$((passed + 1))
}
bad() {
    printf '  FAIL  %s\n' "$*"
    failed=$((failed + 1))
}
# expect DESCRIPTION WANT GOT
expect() { if [[ $3 == "$2" ]]; then ok "$1: $3"; else bad "$1: want '$2', got '$3'"; fi; }
# expect_match DESCRIPTION EXTENDED-REGEX TEXT
expect_match() { if grep -Eq -- "$2" <<<"$3"; then ok "$1"; else bad "$1: no /$2/ in: $3"; fi; }
# lookup ARGS...: the client container's getaddrinfo, addresses on one line
lookup() { P exec "$POD-client" /resolve "$@" 2>&1 | paste -sd' ' - || true; }
admin() { curl -s --max-time 3 "http://127.0.0.1:$ADMIN_PORT$1"; }
admin_code() { curl -s -o /dev/null --max-time 3 -w '%{http_code}' "http://127.0.0.1:$ADMIN_PORT$1" || true; }
metric() { metric_value "$1" <<<"$(admin /metrics)" || echo "<missing>"; }
mapping_hash() { admin /metrics | sed -En 's/^splitdns_mapping_info\{hash="([^"]*)"\} 1(\.0)?$/\1/p'; }
splitdns_log() { P logs "$POD-splitdns" 2>&1; }

# ---------------------------------------------------------------------------------------------
say "0. prerequisites"
[[ $EUID -eq 0 ]] || die "run as root: the pod test uses rootful podman (uid $EUID here)"
declare -A package=([podman]=podman [buildah]=buildah [runc]=runc [slirp4netns]=slirp4netns
    [catatonit]=catatonit [musl-gcc]=musl-tools [gcc]=gcc [readelf]=binutils [ldd]=libc-bin
    [dig]=bind9-dnsutils [curl]=curl [nsenter]=util-linux [ss]=iproute2 [file]=file
    [getcap]=libcap2-bin [setcap]=libcap2-bin)
missing=()
for tool in "${!package[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${package[$tool]}")
done
if [[ -z ${IMAGE:-} ]] && ! command -v cargo >/dev/null; then
    die "cargo not found: it builds the image (or pass IMAGE= a prebuilt one)"
fi
((${#missing[@]} == 0)) || die "missing tools; install them with: apt-get install -y ${missing[*]}"
podman --version
runc --version | head -n1
echo "podman configuration: CONTAINERS_CONF=$CONTAINERS_CONF"
host_info=$(P info --format '{{.Host.OCIRuntime.Name}}, cgroups {{.Host.CgroupsVersion}}' 2>&1) ||
    podman_failed "$host_info" "podman does not work here"
for p in "$POD" "$POD2"; do P pod rm -f -t 0 "$p" >/dev/null 2>&1 || true; done # left over by KEEP=1 or a killed run
if ss -Hltn "sport = :$ADMIN_PORT" | grep -q .; then
    die "host port 127.0.0.1:$ADMIN_PORT is taken (set ADMIN_PORT)"
fi

work=$(mktemp -d /tmp/splitdns-pod-test.XXXXXX)
chmod 0755 "$work"
cleanup() {
    local rc=$?
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "KEEP=1: pods $POD and $POD2 left running; files in $work. Look around / remove them with:"
        echo "  export CONTAINERS_CONF=$CONTAINERS_CONF; podman --storage-driver $DRIVER ps --pod; podman --storage-driver $DRIVER pod rm -f $POD $POD2"
        return
    fi
    for p in "$POD" "$POD2"; do P pod rm -f -t 0 "$p" >/dev/null 2>&1 || true; done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
say "1. the splitdns image"
if [[ -n ${IMAGE:-} ]]; then
    P image exists "$IMAGE" || die "IMAGE=$IMAGE is not in podman's $DRIVER storage (build it: IMAGE=$IMAGE scripts/build-image-local.sh)"
    echo "using the prebuilt $IMAGE"
else
    IMAGE=localhost/splitdns:pod-test
    previous=$(P image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    IMAGE=$IMAGE SKIP_SMOKE=${SKIP_SMOKE:-1} BUILDAH_STORAGE_DRIVER=$DRIVER nice -n 10 scripts/build-image-local.sh
    # The previous build of this tag is now untagged: drop it, so that runs do not pile images up.
    if [[ -n $previous && $previous != "$(P image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
        P rmi "$previous" >/dev/null 2>&1 || true
    fi
fi
image_user=$(P image inspect --format '{{.Config.User}}' "$IMAGE")
image_entry=$(P image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
echo "$IMAGE: user $image_user, entrypoint $image_entry"
[[ $image_user == 65532:65532 && $image_entry == '["/splitdns"]' ]] ||
    die "$IMAGE is not the Dockerfile's final stage (user 65532:65532, entrypoint /splitdns)"
# The image's own files, as podman unpacked them: the capability must have survived the build.
image_root=$(P image mount "$IMAGE")
image_files=$(cd "$image_root" && find . -mindepth 1 -printf '/%P\n' | sort | paste -sd' ' -)
image_caps=$(getcap "$image_root/splitdns" | awk '{print $NF}')
image_dns=$(readlink "$image_root/dns" || echo "<not a symlink>")
P image unmount "$IMAGE" >/dev/null
echo "$IMAGE: files $image_files"
expect "image /splitdns file capability" cap_net_bind_service=ep "$image_caps"
expect "image /dns (the operator's entrypoint) is a symlink to" splitdns "$image_dns"

# ---------------------------------------------------------------------------------------------
say "2. client and upstream images (static musl programs on scratch; podman build, offline)"
mkdir -p "$work/client/glibc-root" "$work/upstream"
for prog in resolve pause; do
    musl-gcc -static -O2 -s -Wall -Wextra -Werror -o "$work/client/$prog" "scripts/pod/$prog.c"
    assert_static "$work/client/$prog"
done
musl-gcc -static -O2 -s -Wall -Wextra -Werror -o "$work/upstream/authd" scripts/pod/authd.c
assert_static "$work/upstream/authd"
gcc -O2 -s -Wall -Wextra -Werror -o "$work/client/glibc-root/resolve-glibc" scripts/pod/resolve.c
bundle_libs "$work/client/glibc-root/resolve-glibc" "$work/client/glibc-root"
bundle_dynamic "$(command -v dig)" "$work/client/glibc-root"
echo "static: resolve, pause, authd; resolve-glibc and dig with $(find "$work/client/glibc-root" -name '*.so*' | wc -l) shared libraries"
P build --quiet -f scripts/pod/Containerfile.client -t "$CLIENT_IMAGE" "$work/client" >/dev/null
P build --quiet -f scripts/pod/Containerfile.upstream -t "$UPSTREAM_IMAGE" "$work/upstream" >/dev/null
for i in "$IMAGE" "$CLIENT_IMAGE" "$UPSTREAM_IMAGE"; do P images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$i"; done

# Can podman run a container here at all? Say exactly why not, and fail.
if ! out=$(P run --rm --network none "$UPSTREAM_IMAGE" 2>&1) && ! grep -q '^usage: authd' <<<"$out"; then
    podman_failed "$out" "podman cannot run containers on this machine"
fi
echo "podman runs containers here (runtime $host_info, storage $DRIVER)"

# ---------------------------------------------------------------------------------------------
say "3. pod 1, from $MANIFEST"
# The splitdns container's args, its dnsConfig and the pod sysctl, read from the manifest itself.
mapfile -t manifest_args < <(awk '/- name: splitdns$/{f=1} f&&/^ *ports:/{exit}
    f&&/^ *- --/{sub(/^ *- /,""); sub(/ +#.*/,""); print}' "$MANIFEST")
mapfile -t searches < <(awk '/searches:/{f=1;next} f&&/options:/{exit} f&&/^ *- /{sub(/^ *- /,""); print}' "$MANIFEST")
nameserver=$(awk '/nameservers:/{getline; sub(/^ *- /,""); print; exit}' "$MANIFEST")
ndots=$(awk '/- name: ndots/{getline; gsub(/[^0-9]/,""); print; exit}' "$MANIFEST")
port_start=$(awk '/- name: net.ipv4.ip_unprivileged_port_start/{getline; gsub(/[^0-9]/,""); print; exit}' "$MANIFEST")
run_as=$(awk '/- name: splitdns$/{f=1} f&&/runAsUser:/{u=$2} f&&/runAsGroup:/{print u ":" $2; exit}' "$MANIFEST")
# The splitdns container's capabilities.drop and .add, one "drop X" / "add X" a line.
mapfile -t manifest_caps < <(awk '/- name: splitdns$/{f=1} f&&/^ *volumeMounts:/{exit}
    f&&/^ *drop:/{l="drop"; next} f&&/^ *add:/{l="add"; next}
    f&&l!=""&&/^ *- /{sub(/^ *- /,""); sub(/ +#.*/,""); print l " " $0; next} {l=""}' "$MANIFEST")
if ((${#manifest_args[@]} == 0 || ${#searches[@]} == 0)) || [[ -z $nameserver || -z $ndots || -z $port_start || -z $run_as ]]; then
    die "could not read args, dnsConfig, sysctl and runAsUser from $MANIFEST"
fi
# As podman options, and the bounding set they must leave (drop ALL, then the added ones).
declare -A cap_bit=([CHOWN]=0 [KILL]=5 [SETGID]=6 [SETUID]=7 [NET_BIND_SERVICE]=10 [NET_ADMIN]=12 [NET_RAW]=13 [SYS_CHROOT]=18)
splitdns_caps=() bounding=0
for c in "${manifest_caps[@]}"; do
    case $c in
    "drop ALL") splitdns_caps+=(--cap-drop ALL) ;;
    "add "*)
        [[ -n ${cap_bit[${c#add }]:-} ]] || die "$MANIFEST adds ${c#add }, which this test does not know"
        splitdns_caps+=(--cap-add "${c#add }")
        bounding=$((bounding | 1 << ${cap_bit[${c#add }]}))
        ;;
    *) die "$MANIFEST: capabilities '$c': this test expects drop: [ALL] and an add list" ;;
    esac
done
[[ ${splitdns_caps[0]:-} == --cap-drop ]] || die "$MANIFEST: no capabilities.drop: [ALL] for splitdns"
bounding_hex=$(printf '%016x' "$bounding")
splitdns_args=()
for a in "${manifest_args[@]}"; do
    case $a in
    --upstream=*) splitdns_args+=("--upstream=$UPSTREAM_IP") ;; # the only change: our cluster DNS
    *) splitdns_args+=("$a") ;;
    esac
done
echo "splitdns args: ${splitdns_args[*]}"
echo "dnsConfig: nameserver $nameserver, search ${searches[*]}, ndots:$ndots; sysctl ip_unprivileged_port_start=$port_start; user $run_as; capabilities ${splitdns_caps[*]}"

# The ConfigMap volume, version 1.
MAPPING_V1='ttl: 5
hosts:
  db-0.db.example.com: 10.42.0.12
  db-1.db.example.com: [10.42.0.13, "fd00::13"]
  db-2.db.databases.svc.cluster.local: 10.42.0.14
'
cm=$work/configmap
mkdir -m 0755 "$cm"
configmap_write "$cm" mapping.yaml "$MAPPING_V1"
echo "ConfigMap volume (host side):"
# shellcheck disable=SC2012 # ls -la is what a person would look at
ls -la "$cm" | sed 's/^/  /'

dns_args=(--dns "$nameserver" --dns-option "ndots:$ndots")
for s in "${searches[@]}"; do dns_args+=(--dns-search "$s"); done
P pod create --name "$POD" --infra-name "$POD-infra" \
    --network slirp4netns:port_handler=slirp4netns,outbound_addr=127.0.0.1,enable_ipv6=false \
    -p "127.0.0.1:$ADMIN_PORT:9253" "${dns_args[@]}" \
    --sysctl "net.ipv4.ip_unprivileged_port_start=$port_start" >/dev/null
restricted=(--read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges)
# The cluster DNS stand-in: db-0's public address (the hairpin splitdns exists to avoid) and a
# dual-stack name to forward.
P run -d --pod "$POD" --name "$POD-upstream" "${restricted[@]}" "$UPSTREAM_IMAGE" "$UPSTREAM_IP" 53 \
    db-0.db.example.com=203.0.113.10 www.example.org=192.0.2.80 www.example.org=2001:db8::80 >/dev/null
# splitdns: the same, but with the manifest's capabilities: drop ALL and add NET_BIND_SERVICE. A
# bounding set without NET_BIND_SERVICE would stop the image's /splitdns from starting at all
# (exec of a file capability the kernel cannot grant fails: "operation not permitted").
P run -d --pod "$POD" --name "$POD-splitdns" --user "$run_as" --read-only --read-only-tmpfs=false \
    "${splitdns_caps[@]}" --security-opt no-new-privileges \
    -v "$cm:/etc/splitdns:ro" "$IMAGE" "${splitdns_args[@]}" >/dev/null
P run -d --pod "$POD" --name "$POD-client" "${restricted[@]}" "$CLIENT_IMAGE" >/dev/null
P ps --pod --filter "pod=$POD" --format '{{.Names}}  {{.Image}}  {{.Status}}  {{.Ports}}'

ready=000
for _ in $(seq 100); do
    ready=$(admin_code /ready)
    [[ $ready == 200 ]] && break
    sleep 0.1
done
echo "splitdns log:"
splitdns_log | sed 's/^/  /'
[[ $ready == 200 ]] || die "/ready on 127.0.0.1:$ADMIN_PORT is '$ready' after 10 s"

# ---------------------------------------------------------------------------------------------
say "4. the containers as the runtime made them"
resolv=$(P exec "$POD-client" /resolve -c /etc/resolv.conf 2>&1 || true)
want_resolv=$(printf 'search %s | nameserver %s | options ndots:%s' "${searches[*]}" "$nameserver" "$ndots")
expect "client /etc/resolv.conf is the dnsConfig" "$want_resolv" "$(sed -z 's/\n$//; s/\n/ | /g' <<<"$resolv")"
pid=$(P inspect --format '{{.State.Pid}}' "$POD-splitdns")
status=$(cat "/proc/$pid/status")
field() { awk -v k="$1:" '$1 == k {print $2}' <<<"$status"; }
expect "splitdns uid (real)" "${run_as%%:*}" "$(field Uid)"
expect "splitdns gid (real)" "${run_as##*:}" "$(field Gid)"
expect "splitdns CapBnd (the manifest's drop ALL + add)" "$bounding_hex" "$(field CapBnd)"
# The exec of a binary with a file capability clears the ambient set.
expect "splitdns CapAmb" 0000000000000000 "$(field CapAmb)"
# Permitted and effective: what the file capability grants under no_new_privs is what the runtime
# left permitted before exec - NET_BIND_SERVICE with podman and containerd, nothing with a
# Docker-style runtime (the sysctl does the work then). Inheritable: podman puts an added
# capability there too for a non-root user (containerd does not). Either way nothing outside the
# bounding set.
for c in CapInh CapPrm CapEff; do
    v=$(field "$c")
    if [[ $v =~ ^[0-9a-f]{16}$ ]] && (((16#$v & ~bounding) == 0)); then
        ok "splitdns $c $v: nothing outside the bounding set $bounding_hex"
    else bad "splitdns $c: '$v' has capabilities outside the bounding set $bounding_hex"; fi
done
expect "splitdns NoNewPrivs" 1 "$(field NoNewPrivs)"
expect "splitdns Seccomp (2 = filter)" 2 "$(field Seccomp)"
mount_opts() { awk -v m="$1" '$5 == m {split($6, o, ","); print o[1]}' "/proc/$pid/mountinfo" | tail -n1; }
expect "splitdns root filesystem" ro "$(mount_opts /)"
expect "splitdns /etc/splitdns (the ConfigMap volume)" ro "$(mount_opts /etc/splitdns)"
expect "pod sysctl net.ipv4.ip_unprivileged_port_start" "$port_start" \
    "$(nsenter -t "$pid" -n cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
sockets=$(nsenter -t "$pid" -n ss -Hlnptu | grep "pid=$pid," | awk '{print $1 " " $5}' | sort -u | paste -sd' ' -)
expect "splitdns DNS sockets (the admin port aside)" "tcp 127.0.0.1:53 udp 127.0.0.1:53" \
    "$(sed -E 's/tcp 0\.0\.0\.0:9253 ?//' <<<"$sockets" | xargs)"

# ---------------------------------------------------------------------------------------------
say "5. lookups from the client container (getaddrinfo through the pod's resolv.conf)"
expect "mapped IPv4 name db-0.db.example.com (not the upstream's 203.0.113.10)" 10.42.0.12 "$(lookup -4 db-0.db.example.com)"
expect "mapped name, any family (no IPv6 mapped: NODATA)" 10.42.0.12 "$(lookup db-0.db.example.com)"
dual=$(lookup db-1.db.example.com)
if [[ " $dual " == *" 10.42.0.13 "* && " $dual " == *" fd00::13 "* ]]; then
    ok "dual-stack db-1.db.example.com, both families: $dual"
else bad "dual-stack db-1.db.example.com: want 10.42.0.13 and fd00::13, got '$dual'"; fi
expect "dual-stack name, IPv6 only" fd00::13 "$(lookup -6 db-1.db.example.com)"
expect "short name db-2.db through the search list" 10.42.0.14 "$(lookup -4 db-2.db)"
fwd=$(lookup www.example.org)
if [[ " $fwd " == *" 192.0.2.80 "* && " $fwd " == *" 2001:db8::80 "* ]]; then
    ok "forwarded www.example.org (the upstream's answer): $fwd"
else bad "forwarded www.example.org: want 192.0.2.80 and 2001:db8::80, got '$fwd'"; fi
expect_match "unknown name fails as NXDOMAIN would" "Name does not resolve|not known" "$(lookup nx.example.org)"
up_log=$(P logs "$POD-upstream" 2>&1)
expect_match "the upstream saw the forwarded query" '^query www\.example\.org A ' "$up_log"
if grep -Eiq '^query [^ ]*db\.example\.com' <<<"$up_log"; then
    bad "a mapped name (or a search-list variant of it) reached the upstream: $(grep -Ei 'db\.example\.com' <<<"$up_log" | head -n3 | paste -sd';')"
else ok "no mapped name and, with ndots:$ndots, no search-list variant of an FQDN reached the upstream"; fi

say "6. dig from the client container (no @server: the pod's resolv.conf)"
d=$(P exec "$POD-client" /usr/bin/dig +time=2 +tries=1 db-0.db.example.com A 2>&1)
expect_match "dig db-0.db.example.com: NOERROR" 'status: NOERROR' "$d"
expect_match "  ... authoritative (aa), the mapped address" 'flags: qr aa' "$d"
expect_match "  ... answer 10.42.0.12, TTL 5" 'db-0\.db\.example\.com\.[[:space:]]+5[[:space:]]+IN[[:space:]]+A[[:space:]]+10\.42\.0\.12' "$d"
expect_match "  ... from resolv.conf's nameserver (SERVER: 127.0.0.1#53)" 'SERVER: 127\.0\.0\.1#53' "$d"
d=$(P exec "$POD-client" /usr/bin/dig +time=2 +tries=1 db-0.db.example.com AAAA 2>&1)
expect_match "dig db-0.db.example.com AAAA: NODATA with an SOA" 'ANSWER: 0, AUTHORITY: 1' "$d"
d=$(P exec "$POD-client" /usr/bin/dig +tcp +short +time=2 +tries=1 db-1.db.example.com AAAA 2>&1)
expect "dig +tcp db-1.db.example.com AAAA" fd00::13 "$d"
d=$(P exec "$POD-client" /usr/bin/dig +short +time=2 +tries=1 www.example.org A 2>&1)
expect "dig www.example.org (forwarded)" 192.0.2.80 "$d"

# ---------------------------------------------------------------------------------------------
say "7. the admin endpoint from the host (127.0.0.1:$ADMIN_PORT -> pod :9253)"
expect "GET /live" "200 ok" "$(admin_code /live) $(admin /live)"
expect "GET /ready" "200 ready" "$(admin_code /ready) $(admin /ready)"
expect "GET /metrics" 200 "$(admin_code /metrics)"
expect "splitdns_ready" 1 "$(metric splitdns_ready)"
expect "splitdns_mapping_entries" 3 "$(metric splitdns_mapping_entries)"
expect "splitdns_upstream_healthy{upstream=\"$UPSTREAM_IP:53\"}" 1 "$(metric "splitdns_upstream_healthy{upstream=\"$UPSTREAM_IP:53\"}")"
local_answers=$(metric 'splitdns_queries_total{proto="udp",outcome="local_answer"}')
forwarded=$(metric 'splitdns_queries_total{proto="udp",outcome="forwarded"}')
if [[ $local_answers =~ ^[0-9]+$ && $local_answers -gt 0 && $forwarded =~ ^[0-9]+$ && $forwarded -gt 0 ]]; then
    ok "queries counted: $local_answers local answers, $forwarded forwarded (udp)"
else bad "queries counted: local_answer '$local_answers', forwarded '$forwarded'"; fi
hash_v1=$(mapping_hash)
if [[ -n $hash_v1 ]]; then ok "mapping in service: hash $hash_v1"; else bad "no splitdns_mapping_info"; fi

# ---------------------------------------------------------------------------------------------
# configmap_update CONTENT WANT-ADDRESS NAME: starts a client that looks NAME up every 10 ms,
# swaps the ConfigMap volume the way kubelet does once the client has its first answer, and
# prints the milliseconds from the swap to the first lookup that returned WANT-ADDRESS.
configmap_update() {
    local content=$1 want=$2 name=$3 out=$work/watch.$RANDOM t0 seen
    P exec "$POD-client" /resolve -4 -w "$want" -t 5000 "$name" >"$out" 2>&1 &
    local watcher=$!
    for _ in $(seq 100); do grep -q '^before:' "$out" && break; sleep 0.05; done
    t0=$(date +%s%N)
    configmap_write "$cm" mapping.yaml "$content"
    wait "$watcher" || true
    sed 's/^/    client: /' "$out" >&2
    seen=$(sed -n 's/^seen .* at \([0-9]*\)$/\1/p' "$out")
    if [[ -n $seen ]]; then echo $(((seen - t0) / 1000000)); else echo timeout; fi
}

say "8. ConfigMap update (kubelet's atomic writer): db-0 moves to 10.42.0.22"
MAPPING_V2=${MAPPING_V1/10.42.0.12/10.42.0.22}
ms=$(configmap_update "$MAPPING_V2" 10.42.0.22 db-0.db.example.com)
if [[ $ms =~ ^[0-9]+$ && $ms -le $UPDATE_LIMIT_MS ]]; then
    ok "new address served ${ms} ms after the ..data swap (limit $UPDATE_LIMIT_MS ms)"
else bad "new address not served within $UPDATE_LIMIT_MS ms of the ..data swap (got: $ms)"; fi
echo "  ConfigMap volume now: $(find "$cm" -mindepth 1 -maxdepth 1 -printf '%f ' | xargs -n1 | sort | xargs), ..data -> $(readlink "$cm/..data")"
expect "splitdns_mapping_reloads_total" 1 "$(metric splitdns_mapping_reloads_total)"
hash_v2=$(mapping_hash)
if [[ -n $hash_v2 && $hash_v2 != "$hash_v1" ]]; then
    ok "mapping hash changed: $hash_v1 -> $hash_v2"
else bad "mapping hash after the update: '$hash_v2' (was $hash_v1)"; fi
expect_match "log: one reload line" '"message":"mapping reloaded".*"names":3' "$(splitdns_log)"

say "9. broken ConfigMap update: the last good mapping stays in service"
MAPPING_BAD=${MAPPING_V2/10.42.0.22/10.42.0.999}
configmap_write "$cm" mapping.yaml "$MAPPING_BAD"
failures=0
for _ in $(seq 50); do
    failures=$(metric splitdns_mapping_reload_failures_total)
    [[ $failures == 1 ]] && break
    sleep 0.1
done
expect "splitdns_mapping_reload_failures_total" 1 "$failures"
expect "splitdns_mapping_source_rejected while the broken mapping stays" 1 "$(metric splitdns_mapping_source_rejected)"
expect "db-0.db.example.com after the broken update (the old address)" 10.42.0.22 "$(lookup -4 db-0.db.example.com)"
expect "db-1.db.example.com after the broken update" "10.42.0.13 fd00::13" "$(lookup db-1.db.example.com | tr ' ' '\n' | sort | paste -sd' ' -)"
expect "mapping hash after the broken update (unchanged)" "$hash_v2" "$(mapping_hash)"
expect "GET /ready after the broken update" 200 "$(admin_code /ready)"
expect_match "log: the rejection, with file, line, column and cause" \
    'mapping reload failed, keeping the last good mapping \(3 names, 0 rules\): /etc/splitdns/mapping.yaml:3:[0-9]+: invalid IP address' "$(splitdns_log)"

say "10. fixed ConfigMap update: db-0 moves to 10.42.0.32"
MAPPING_V3=${MAPPING_V1/10.42.0.12/10.42.0.32}
ms=$(configmap_update "$MAPPING_V3" 10.42.0.32 db-0.db.example.com)
if [[ $ms =~ ^[0-9]+$ && $ms -le $UPDATE_LIMIT_MS ]]; then
    ok "fixed mapping served ${ms} ms after the swap"
else bad "fixed mapping not served within $UPDATE_LIMIT_MS ms (got: $ms)"; fi
expect "splitdns_mapping_reloads_total" 2 "$(metric splitdns_mapping_reloads_total)"
expect "splitdns_mapping_source_rejected after the fix" 0 "$(metric splitdns_mapping_source_rejected)"
expect_match "log: the reload says it recovered" '"message":"mapping reloaded".*"recovered":true' "$(splitdns_log)"

# ---------------------------------------------------------------------------------------------
say "11. podman stop (SIGTERM; SIGKILL after $STOP_GRACE s)"
P stop -t 10 "$POD-client" >/dev/null # the database goes first, as with a native sidecar
t0=$(date +%s%N)
P stop -t "$STOP_GRACE" "$POD-splitdns" >/dev/null
stop_ms=$((($(date +%s%N) - t0) / 1000000))
expect "splitdns exit code" 0 "$(P inspect --format '{{.State.ExitCode}}' "$POD-splitdns")"
if ((stop_ms < STOP_GRACE * 1000)); then ok "stopped in $stop_ms ms (grace $STOP_GRACE s)"; else bad "took $stop_ms ms to stop (grace $STOP_GRACE s)"; fi
log=$(splitdns_log)
expect_match "log: SIGTERM received, shutting down, stopped (in that order)" \
    '"message":"SIGTERM received".*"message":"shutting down".*"message":"stopped"' "$(tr '\n' ' ' <<<"$log")"
echo "  last log lines:"
tail -n 4 <<<"$log" | sed 's/^/    /'

# ---------------------------------------------------------------------------------------------
# Pod 2: the KurrentDB operator's database pod, with this image as its DNS sidecar (`dnsImage`).
# The operator's pod spec differs from our manifests where it matters here: no sysctl (port 53
# comes from the binary's file capability alone), the runtime's default capabilities and
# privilege escalation allowed (no no_new_privs), the image's own user and entrypoint, the JSON
# file instead of flags, and a resolv.conf that lists the sidecar first and the cluster DNS second.
OP_UPSTREAM=127.0.0.2
OP_RECORDS=(kdb-0.kdb.ns.svc.cluster.local=10.244.1.10 kdb-1.kdb.ns.svc.cluster.local=10.244.1.11
    kdb-2.kdb.ns.svc.cluster.local=10.244.1.12 kdb-0.kdb.my-domain.com=203.0.113.20
    kdb-1.kdb.my-domain.com=203.0.113.21 kdb-2.kdb.my-domain.com=203.0.113.22
    www.example.org=192.0.2.80 www.example.org=2001:db8::80)
OP_SEARCHES=(ns.svc.cluster.local svc.cluster.local cluster.local) # Kubernetes' ClusterFirst, namespace "ns"
EXTRA_HOST=kdb-peer-0.other-vpc.example.net
# op_conf EXTRA-IP [LISTEN]: the operator's file as its Go struct encodes it (every field of a
# rule written, `regex` false included); without LISTEN the field is left out (default 127.0.0.1:53).
op_conf() {
    local listen=""
    [[ -n ${2:-} ]] && listen="\"listen\":\"$2\","
    # shellcheck disable=SC2016 # ${1} is the rule's Go template, not a shell expansion
    printf '{%s"resolver":"%s:53","rules":[{"host":"kdb-([0-9]+)\\\\.kdb\\\\.my-domain\\\\.com","result":"kdb-${1}.kdb.ns.svc.cluster.local","regex":true},{"host":"%s","result":"%s","regex":false}]}\n' \
        "$listen" "$OP_UPSTREAM" "$EXTRA_HOST" "$1"
}
# In the pod's network namespace (the admin port is not published for this pod).
op_netns() { nsenter -t "$(P inspect --format '{{.State.Pid}}' "$POD2-infra")" -n "$@"; }
op_ready() {
    local code=000
    for _ in $(seq 100); do
        code=$(op_netns curl -s -o /dev/null --max-time 1 -w '%{http_code}' http://127.0.0.1:9253/ready || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    echo "$code"
}
glookup() { P exec "$POD2-client" /resolve-glibc "$@" 2>&1 | paste -sd' ' - || true; }
mlookup() { P exec "$POD2-client" /resolve "$@" 2>&1 | paste -sd' ' - || true; }
odig() { P exec "$POD2-client" /usr/bin/dig +time=2 +tries=1 "$@" 2>&1 || true; }
sorted() { tr ' ' '\n' <<<"$1" | sort | paste -sd' ' -; }
# watch_update WANT NAME LIMIT-MS WRITER...: a glibc client looks NAME up every 10 ms; once it has
# a first answer WRITER... runs; prints the ms from then to the first lookup that returned WANT.
watch_update() {
    local want=$1 name=$2 limit=$3 out=$work/watch.$RANDOM t0 seen
    shift 3
    P exec "$POD2-client" /resolve-glibc -4 -w "$want" -t "$((limit + 3000))" "$name" >"$out" 2>&1 &
    local watcher=$!
    for _ in $(seq 100); do grep -q '^before:' "$out" && break; sleep 0.05; done
    t0=$(date +%s%N)
    "$@"
    wait "$watcher" || true
    sed 's/^/    client: /' "$out" >&2
    seen=$(sed -n 's/^seen .* at \([0-9]*\)$/\1/p' "$out")
    if [[ -n $seen ]]; then echo $(((seen - t0) / 1000000)); else echo timeout; fi
}
# rewrite_in_place FILE CONTENT: the same inode truncated and written again (a rename over it
# would not reach the container through a single-file bind mount).
rewrite_in_place() { printf '%s\n' "$2" >"$1"; }
# op_process CONTAINER ARGV: the sidecar process as the operator's pod makes it.
op_process() {
    local pid status
    pid=$(P inspect --format '{{.State.Pid}}' "$1")
    status=$(cat "/proc/$pid/status")
    opf() { awk -v k="$1:" '$1 == k {print $2}' <<<"$status"; }
    expect "  command line" "$2" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed 's/ $//')"
    expect "  uid, gid (the image's USER)" "65532 65532" "$(opf Uid) $(opf Gid)"
    expect "  CapEff: NET_BIND_SERVICE, from the file capability" 0000000000000400 "$(opf CapEff)"
    expect "  CapAmb (nothing from the runtime)" 0000000000000000 "$(opf CapAmb)"
    expect "  NoNewPrivs (privilege escalation allowed)" 0 "$(opf NoNewPrivs)"
    local bnd
    bnd=$(opf CapBnd)
    if [[ $bnd =~ ^[0-9a-f]{16}$ ]] && (((16#$bnd & 1 << 10) != 0)); then
        ok "  CapBnd $bnd: podman's default set, NET_BIND_SERVICE in it"
    else bad "  CapBnd '$bnd' lacks NET_BIND_SERVICE"; fi
    expect "  net.ipv4.ip_unprivileged_port_start (no sysctl: the kernel's default)" 1024 \
        "$(nsenter -t "$pid" -n cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
    local sockets
    sockets=$(nsenter -t "$pid" -n ss -Hlnptu | grep "pid=$pid," | awk '{print $1 " " $5}' | sort -u | paste -sd' ' -)
    expect "  DNS sockets (the admin port aside)" "tcp 127.0.0.1:53 udp 127.0.0.1:53" \
        "$(sed -E 's/tcp 0\.0\.0\.0:9253 ?//' <<<"$sockets" | xargs)"
}
# op_stop CONTAINER: SIGTERM, exit code 0 well within the grace period.
op_stop() {
    local t0 ms
    t0=$(date +%s%N)
    P stop -t "$STOP_GRACE" "$1" >/dev/null
    ms=$((($(date +%s%N) - t0) / 1000000))
    expect "podman stop $1: exit code" 0 "$(P inspect --format '{{.State.ExitCode}}' "$1")"
    if ((ms < STOP_GRACE * 1000)); then ok "  stopped in $ms ms"; else bad "  took $ms ms to stop (grace $STOP_GRACE s)"; fi
}

say "12. pod 2, shaped like the operator's: no sysctl, nameservers 127.0.0.1 then the upstream"
op_dns=(--dns 127.0.0.1 --dns "$OP_UPSTREAM" --dns-option ndots:5)
for s in "${OP_SEARCHES[@]}"; do op_dns+=(--dns-search "$s"); done
P pod create --name "$POD2" --infra-name "$POD2-infra" \
    --network slirp4netns:port_handler=slirp4netns,outbound_addr=127.0.0.1,enable_ipv6=false "${op_dns[@]}" >/dev/null
# The cluster DNS stand-in must bind 127.0.0.2:53 in a pod without the sysctl: as root with
# NET_BIND_SERVICE alone (its static binary has no file capability).
P run -d --pod "$POD2" --name "$POD2-upstream" --user 0:0 --read-only --read-only-tmpfs=false \
    --cap-drop ALL --cap-add NET_BIND_SERVICE --security-opt no-new-privileges \
    "$UPSTREAM_IMAGE" "$OP_UPSTREAM" 53 "${OP_RECORDS[@]}" >/dev/null
P run -d --pod "$POD2" --name "$POD2-client" "${restricted[@]}" "$CLIENT_IMAGE" >/dev/null
resolv=$(P exec "$POD2-client" /resolve -c /etc/resolv.conf 2>&1 || true)
expect "client /etc/resolv.conf: the sidecar first, the upstream second" \
    "search ${OP_SEARCHES[*]} | nameserver 127.0.0.1 | nameserver $OP_UPSTREAM | options ndots:5" \
    "$(sed -z 's/\n$//; s/\n/ | /g' <<<"$resolv")"

say "13. A: no arguments at all; the operator's JSON bind-mounted at /dns.conf (listen left out)"
mkdir -m 0755 "$work/op-file"
op_conf 172.16.5.10 >"$work/op-file/dns.conf"
chmod 0444 "$work/op-file/dns.conf"
cat "$work/op-file/dns.conf"
P run -d --pod "$POD2" --name "$POD2-splitdns" -v "$work/op-file/dns.conf:/dns.conf:ro" "$IMAGE" >/dev/null
ready=$(op_ready)
P logs "$POD2-splitdns" 2>&1 | sed 's/^/  /'
expect "/ready" 200 "$ready"
op_process "$POD2-splitdns" /splitdns
expect "regex rule kdb-1.kdb.my-domain.com -> the pod IP of kdb-1.kdb.ns.svc.cluster.local (glibc, any family)" \
    10.244.1.11 "$(glookup kdb-1.kdb.my-domain.com)"
expect "upper-case KDB-2.Kdb.My-Domain.com -> kdb-2's pod IP" 10.244.1.12 "$(glookup KDB-2.Kdb.My-Domain.com)"
expect "extra rule $EXTRA_HOST -> its IP" 172.16.5.10 "$(glookup "$EXTRA_HOST")"
expect "forwarded www.example.org (the upstream's answer, both families)" "192.0.2.80 2001:db8::80" \
    "$(sorted "$(glookup www.example.org)")"
up_log=$(P logs "$POD2-upstream" 2>&1)
# Case-insensitively: splitdns randomises the case of its own lookups (0x20, for spoofing resistance).
if grep -Eiq '^query kdb-1\.kdb\.ns\.svc\.cluster\.local A ' <<<"$up_log"; then
    ok "the regex rule's target was looked up through the resolver: $(grep -Ei '^query kdb-1\.kdb\.ns' <<<"$up_log" | head -n1)"
else bad "the regex rule's target never reached the resolver: $(head -c 300 <<<"$up_log")"; fi
if grep -Eiq '^query kdb-[0-9]\.kdb\.my-domain\.com ' <<<"$up_log"; then
    bad "a server's public FQDN reached the upstream: glibc fell over to the second nameserver"
else ok "no server's public FQDN reached the upstream (glibc never needed the second nameserver)"; fi
d=$(odig kdb-1.kdb.my-domain.com A)
expect_match "dig kdb-1.kdb.my-domain.com: answered by 127.0.0.1" 'SERVER: 127\.0\.0\.1#53' "$d"
expect_match "  ... kdb-1's pod IP under the asked name" 'kdb-1\.kdb\.my-domain\.com\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+10\.244\.1\.11' "$d"
d=$(odig kdb-1.kdb.my-domain.com AAAA)
expect_match "dig kdb-1.kdb.my-domain.com AAAA: NOERROR (no IPv6 target: no data, not SERVFAIL)" 'status: NOERROR' "$d"
d=$(odig www.example.org A)
expect_match "dig www.example.org: NOERROR (forwarded, not SERVFAIL)" 'status: NOERROR' "$d"
expect_match "  ... answered by 127.0.0.1" 'SERVER: 127\.0\.0\.1#53' "$d"
expect_match "  ... the upstream's address" 'www\.example\.org\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+A[[:space:]]+192\.0\.2\.80' "$d"
# musl asks both nameservers at once and takes the first answer: the upstream's public address
# can win the race against the sidecar's alias lookup. Shown, not checked (it is a race).
tally=$(for _ in $(seq 20); do mlookup -4 kdb-1.kdb.my-domain.com; done | sort | uniq -c | sed -E 's/^ *([0-9]+) /\1 x /' | paste -sd, -)
echo "  info  musl getaddrinfo, 20 lookups of kdb-1.kdb.my-domain.com: $tally"
ms=$(watch_update 172.16.5.200 "$EXTRA_HOST" "$FILE_UPDATE_LIMIT_MS" rewrite_in_place "$work/op-file/dns.conf" "$(op_conf 172.16.5.200)")
if [[ $ms =~ ^[0-9]+$ && $ms -le $FILE_UPDATE_LIMIT_MS ]]; then
    ok "rule changed in /dns.conf (rewritten in place) served ${ms} ms later (limit $FILE_UPDATE_LIMIT_MS ms)"
else bad "rule changed in /dns.conf not served within $FILE_UPDATE_LIMIT_MS ms (got: $ms)"; fi
op_stop "$POD2-splitdns"

say "14. B: command /dns with the path as its argument; the file in a kubelet-style directory mount"
opdir=$work/op-dir
mkdir -m 0755 "$opdir"
configmap_write "$opdir" dns.conf "$(op_conf 172.16.5.10 127.0.0.1:53)"
P run -d --pod "$POD2" --name "$POD2-splitdns-b" --entrypoint /dns -v "$opdir:/etc/dns:ro" "$IMAGE" /etc/dns/dns.conf >/dev/null
ready=$(op_ready)
P logs "$POD2-splitdns-b" 2>&1 | sed 's/^/  /'
expect "/ready" 200 "$ready"
op_process "$POD2-splitdns-b" "/dns /etc/dns/dns.conf"
expect "regex rule kdb-0.kdb.my-domain.com -> kdb-0's pod IP" 10.244.1.10 "$(glookup kdb-0.kdb.my-domain.com)"
expect "upper-case KDB-2.Kdb.My-Domain.com -> kdb-2's pod IP" 10.244.1.12 "$(glookup KDB-2.Kdb.My-Domain.com)"
expect "extra rule $EXTRA_HOST -> its IP" 172.16.5.10 "$(glookup "$EXTRA_HOST")"
ms=$(watch_update 172.16.5.30 "$EXTRA_HOST" "$UPDATE_LIMIT_MS" configmap_write "$opdir" dns.conf "$(op_conf 172.16.5.30 127.0.0.1:53)")
if [[ $ms =~ ^[0-9]+$ && $ms -le $UPDATE_LIMIT_MS ]]; then
    ok "rule changed through kubelet's ..data swap served ${ms} ms later (limit $UPDATE_LIMIT_MS ms)"
else bad "rule changed through the ..data swap not served within $UPDATE_LIMIT_MS ms (got: $ms)"; fi
expect "forwarded www.example.org after the change" "192.0.2.80 2001:db8::80" "$(sorted "$(glookup www.example.org)")"
op_stop "$POD2-splitdns-b"

say "15. C: the image's entrypoint with the path as its only argument (args: [PATH]); check PATH"
P run -d --pod "$POD2" --name "$POD2-splitdns-c" -v "$opdir:/etc/dns:ro" "$IMAGE" /etc/dns/dns.conf >/dev/null
expect "/ready" 200 "$(op_ready)"
expect "regex rule kdb-2.kdb.my-domain.com -> kdb-2's pod IP" 10.244.1.12 "$(glookup kdb-2.kdb.my-domain.com)"
op_stop "$POD2-splitdns-c"
code=0
out=$(P run --rm --network none -v "$opdir:/etc/dns:ro" "$IMAGE" check /etc/dns/dns.conf 2>&1) || code=$?
expect "splitdns check /etc/dns/dns.conf (the operator's JSON): exit code" 0 "$code"
while IFS= read -r line; do echo "    $line"; done <<<"$out"

# ---------------------------------------------------------------------------------------------
say "result"
echo "$passed passed, $failed failed ($((SECONDS - T0)) s)"
((failed == 0)) || {
    for c in "$POD-splitdns" "$POD2-splitdns" "$POD2-splitdns-b" "$POD2-splitdns-c"; do
        P container exists "$c" || continue
        echo "$c log:" >&2
        P logs "$c" 2>&1 | sed 's/^/  /' >&2
    done
    exit 1
}
