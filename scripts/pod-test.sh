#!/usr/bin/env bash
# Pod test on a real container runtime: the image built from this repository runs under podman as
# a pod shaped like config/kubernetes/statefulset-native-sidecar.yaml, and a client container in
# the same pod resolves names through it, exactly as the database container would.
#
# The pod (one network namespace, owned by podman's infra container - built locally from the
# host's catatonit, no registry), taken from the manifest:
#   - pod level: dnsConfig as --dns/--dns-search/--dns-option (so every container's resolv.conf is
#     "nameserver 127.0.0.1, the search list, ndots:2"), the sysctl
#     net.ipv4.ip_unprivileged_port_start=53, and the admin port published on the host's loopback
#     (127.0.0.1:$ADMIN_PORT -> 9253; slirp4netns, whose outbound side is bound to 127.0.0.1 so
#     nothing can leave the machine);
#   - "upstream": the cluster DNS stand-in, a static authoritative server (scripts/pod/authd.c)
#     on 127.0.0.2:53 in the pod, as UID 65533 with no capabilities;
#   - "splitdns": the image, with the manifest's args (only --upstream changed, to 127.0.0.2), as
#     UID 65532, read-only root filesystem (no tmpfs added), --cap-drop ALL, no new privileges,
#     podman's default seccomp profile; the mapping is a host directory mounted read-only at
#     /etc/splitdns, laid out and updated the way kubelet does a ConfigMap volume
#     (scripts/pod/lib.sh: timestamped ..YYYY_.. directory, ..data symlink renamed over it,
#     mapping.yaml -> ..data/mapping.yaml);
#   - "client": the database stand-in on `scratch`: a static getaddrinfo program built with musl
#     (scripts/pod/resolve.c), and dig with its shared libraries.
#
# Checked: the client's resolv.conf is the dnsConfig; the splitdns process really runs as
# 65532/65532 with no capabilities at all, no_new_privs, seccomp, read-only / and /etc/splitdns,
# bound to 127.0.0.1:53 only; the client gets the mapped IPv4 name (not the upstream's public
# address), both families of a dual-stack name, a name through the search list, a forwarded name;
# mapped names never reach the upstream and ndots:2 sends no search-list variants of an FQDN;
# dig sees the local answers as authoritative, NODATA with an SOA, TCP; /live, /ready and /metrics
# answer on the host; a ConfigMap-style update is served within 2 s; a broken update keeps the old
# address in service (and is counted and logged); a fix after it is served; `podman stop` (SIGTERM)
# exits 0 well within the grace period with the log's shutdown lines.
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
# Needs: root; podman, buildah, runc, slirp4netns, catatonit, musl-gcc, readelf, ldd, dig, curl,
#        nsenter, ss, file (apt-get install -y podman buildah runc slirp4netns catatonit musl-tools
#        binutils bind9-dnsutils curl util-linux iproute2 file); cargo unless IMAGE is given.
#        Installs nothing.
# Exit:  0 when every check passed; 1 otherwise, including when podman cannot run containers
#        here (the reason is printed: this test never skips).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/pod/lib.sh
source scripts/pod/lib.sh

POD=splitdns-podtest
ADMIN_PORT=${ADMIN_PORT:-19253}
STOP_GRACE=${STOP_GRACE:-30}
DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
MANIFEST=config/kubernetes/statefulset-native-sidecar.yaml
CLIENT_IMAGE=localhost/splitdns-podtest-client:latest
UPSTREAM_IMAGE=localhost/splitdns-podtest-upstream:latest
UPSTREAM_IP=127.0.0.2
UPDATE_LIMIT_MS=2000
# Only this file is read by podman (CONTAINERS_CONF): the machine's own configuration is left alone.
export CONTAINERS_CONF=${POD_TEST_CONTAINERS_CONF:-$ROOT/scripts/pod/containers.conf}

P() { podman --storage-driver "$DRIVER" "$@"; }
say() { printf '\n== [pod test] %s\n' "$*"; }
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
    [catatonit]=catatonit [musl-gcc]=musl-tools [readelf]=binutils [ldd]=libc-bin
    [dig]=bind9-dnsutils [curl]=curl [nsenter]=util-linux [ss]=iproute2 [file]=file)
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
P pod rm -f -t 0 "$POD" >/dev/null 2>&1 || true # left over by KEEP=1 or a killed run
if ss -Hltn "sport = :$ADMIN_PORT" | grep -q .; then
    die "host port 127.0.0.1:$ADMIN_PORT is taken (set ADMIN_PORT)"
fi

work=$(mktemp -d /tmp/splitdns-pod-test.XXXXXX)
chmod 0755 "$work"
cleanup() {
    local rc=$?
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "KEEP=1: pod $POD left running; files in $work. Look around / remove it with:"
        echo "  export CONTAINERS_CONF=$CONTAINERS_CONF; podman --storage-driver $DRIVER ps --pod; podman --storage-driver $DRIVER pod rm -f $POD"
        return
    fi
    P pod rm -f -t 0 "$POD" >/dev/null 2>&1 || true
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

# ---------------------------------------------------------------------------------------------
say "2. client and upstream images (static musl programs on scratch; podman build, offline)"
mkdir -p "$work/client/dig-root" "$work/upstream"
for prog in resolve pause; do
    musl-gcc -static -O2 -s -Wall -Wextra -Werror -o "$work/client/$prog" "scripts/pod/$prog.c"
    assert_static "$work/client/$prog"
done
musl-gcc -static -O2 -s -Wall -Wextra -Werror -o "$work/upstream/authd" scripts/pod/authd.c
assert_static "$work/upstream/authd"
bundle_dynamic "$(command -v dig)" "$work/client/dig-root"
echo "static: resolve, pause, authd; dig with $(find "$work/client/dig-root" -name '*.so*' | wc -l) shared libraries"
P build --quiet -f scripts/pod/Containerfile.client -t "$CLIENT_IMAGE" "$work/client" >/dev/null
P build --quiet -f scripts/pod/Containerfile.upstream -t "$UPSTREAM_IMAGE" "$work/upstream" >/dev/null
for i in "$IMAGE" "$CLIENT_IMAGE" "$UPSTREAM_IMAGE"; do P images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$i"; done

# Can podman run a container here at all? Say exactly why not, and fail.
if ! out=$(P run --rm --network none "$UPSTREAM_IMAGE" 2>&1) && ! grep -q '^usage: authd' <<<"$out"; then
    podman_failed "$out" "podman cannot run containers on this machine"
fi
echo "podman runs containers here (runtime $host_info, storage $DRIVER)"

# ---------------------------------------------------------------------------------------------
say "3. the pod, from $MANIFEST"
# The splitdns container's args, its dnsConfig and the pod sysctl, read from the manifest itself.
mapfile -t manifest_args < <(awk '/- name: splitdns$/{f=1} f&&/^ *ports:/{exit}
    f&&/^ *- --/{sub(/^ *- /,""); sub(/ +#.*/,""); print}' "$MANIFEST")
mapfile -t searches < <(awk '/searches:/{f=1;next} f&&/options:/{exit} f&&/^ *- /{sub(/^ *- /,""); print}' "$MANIFEST")
nameserver=$(awk '/nameservers:/{getline; sub(/^ *- /,""); print; exit}' "$MANIFEST")
ndots=$(awk '/- name: ndots/{getline; gsub(/[^0-9]/,""); print; exit}' "$MANIFEST")
port_start=$(awk '/- name: net.ipv4.ip_unprivileged_port_start/{getline; gsub(/[^0-9]/,""); print; exit}' "$MANIFEST")
run_as=$(awk '/- name: splitdns$/{f=1} f&&/runAsUser:/{u=$2} f&&/runAsGroup:/{print u ":" $2; exit}' "$MANIFEST")
if ((${#manifest_args[@]} == 0 || ${#searches[@]} == 0)) || [[ -z $nameserver || -z $ndots || -z $port_start || -z $run_as ]]; then
    die "could not read args, dnsConfig, sysctl and runAsUser from $MANIFEST"
fi
splitdns_args=()
for a in "${manifest_args[@]}"; do
    case $a in
    --upstream=*) splitdns_args+=("--upstream=$UPSTREAM_IP") ;; # the only change: our cluster DNS
    *) splitdns_args+=("$a") ;;
    esac
done
echo "splitdns args: ${splitdns_args[*]}"
echo "dnsConfig: nameserver $nameserver, search ${searches[*]}, ndots:$ndots; sysctl ip_unprivileged_port_start=$port_start; user $run_as"

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
P run -d --pod "$POD" --name "$POD-splitdns" --user "$run_as" "${restricted[@]}" \
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
for c in CapInh CapPrm CapEff CapBnd CapAmb; do expect "splitdns $c" 0000000000000000 "$(field "$c")"; done
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
    'mapping reload failed, keeping the last good mapping \(3 names\): /etc/splitdns/mapping.yaml:3:[0-9]+: invalid IP address' "$(splitdns_log)"

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
say "result"
echo "$passed passed, $failed failed"
((failed == 0)) || {
    echo "splitdns log:" >&2
    splitdns_log | sed 's/^/  /' >&2
    exit 1
}
