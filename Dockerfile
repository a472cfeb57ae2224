# splitdns container image: a static binary on an empty base, run as a non-root UID, and a drop-in
# for the KurrentDB operator's DNS sidecar image (kurrent-io/dns-sidecar: `/dns`, user 65532,
# `cap_net_bind_service+ep` on the binary).
#
#   docker build -t splitdns:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/splitdns:0.1.0 --push .
#   docker run --rm splitdns:dev --version
#   docker run --rm -v "$PWD/config:/m:ro" splitdns:dev check /m/mapping.yaml
#
# Stage 1 builds a fully static binary with glibc (`-C target-feature=+crt-static`, a static-pie).
# Why glibc and not musl: the same toolchain and target as every developer build (no extra rustup
# target to download for the native architecture, so scripts/build-image-local.sh produces the
# identical binary offline), and glibc's allocator and memcpy are faster than musl's on the
# forwarding path. The usual caveat of a static glibc - NSS (getaddrinfo, getpwnam) would need
# shared libraries at run time - does not bite: splitdns takes IP literals only and reads
# /etc/resolv.conf itself (hickory), it never resolves a host name or a user name through libc.
#
# Multi-arch: the build stage runs on the build machine's own platform ($BUILDPLATFORM, no
# emulation) and cross-compiles for $TARGETARCH (amd64 or arm64) with Debian's cross gcc and cross
# libc (static glibc needs the target's libc.a, and `ring` compiles C and assembly: both come from
# gcc-<arch>-linux-gnu + libc6-dev-<arch>-cross) and the target's Rust standard library
# (`rustup target add`). A native build installs nothing but setcap. Only linux/amd64 has been
# built and run where this was written (no Docker engine, x86_64 standard library only); the arm64
# path is the same script with the cross toolchain, unverified there.
#
# Stage 2 is `scratch`: the binary, `/dns` (a symlink to it, the operator's entrypoint) and nothing
# else (no shell, no libc, no CA bundle - splitdns speaks plain DNS and needs none).
#
# Port 53 as UID 65532: the binary carries the file capability `cap_net_bind_service=+ep`, as the
# operator's own sidecar image does, and the pod manifests of config/kubernetes/ also set the
# namespaced sysctl `net.ipv4.ip_unprivileged_port_start=53`. Measured with podman and with runc
# under containerd-like and Docker-like capability sets (config/kubernetes/README.md, "Port 53"):
#   - the operator's pod (runtime default capabilities, no sysctl, privilege escalation allowed):
#     exec grants NET_BIND_SERVICE from the file, splitdns binds :53;
#   - our manifests (sysctl, `drop: [ALL]` + `add: [NET_BIND_SERVICE]`, no_new_privs): exec works,
#     and :53 binds either through the capability (when the runtime keeps it in the permitted set,
#     containerd and podman do) or through the sysctl (when it does not, Docker-style runtimes);
#   - THE ONE CONSTRAINT: NET_BIND_SERVICE must stay in the bounding set. `drop: [ALL]` without
#     `add: [NET_BIND_SERVICE]` (or `docker run --cap-drop ALL`) makes the kernel refuse to exec a
#     binary whose file capability it cannot grant: "exec /splitdns: operation not permitted",
#     even as root, even for `--version` or `check`. The operator's image has the same constraint.
# A file capability also makes the exec "secure" (AT_SECURE): glibc then ignores GLIBC_TUNABLES
# (measured: the arena limit below has no effect), which is why splitdns sets its allocator with
# mallopt() itself (src/sys.rs); the variable stays for builds of the binary without the capability.
#
# The capability is set in the build stage and travels as the `security.capability` xattr: BuildKit
# and buildah keep it on `COPY --from` (checked here with buildah and getcap on the image's file).
# COPY from the build *context* does not keep it with BuildKit (moby/buildkit#2250), so the
# capability is never set outside the build stage.

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
WORKDIR /src
# The toolchain for $TARGETARCH, before the sources so that this layer stays cached. /build-env
# carries the target triple and, for a cross build, the linker and C compiler to the next step.
RUN set -eux; \
    case "$TARGETARCH" in \
        amd64) arch=x86_64; deb=amd64; gcc=gcc-x86-64-linux-gnu ;; \
        arm64) arch=aarch64; deb=arm64; gcc=gcc-aarch64-linux-gnu ;; \
        *) echo "unsupported TARGETARCH '$TARGETARCH' (amd64, arm64)" >&2; exit 1 ;; \
    esac; \
    triple="$arch-unknown-linux-gnu"; \
    echo "triple=$triple" > /build-env; \
    cross=""; \
    if [ "$arch" != "$(uname -m)" ]; then cross="$gcc libc6-dev-$deb-cross"; fi; \
    pkgs="$cross"; \
    command -v setcap >/dev/null || pkgs="$pkgs libcap2-bin"; \
    if [ -n "$pkgs" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    if [ -n "$cross" ]; then \
        rustup target add "$triple"; \
        upper=$(echo "$triple" | tr 'a-z-' 'A-Z_'); lower=$(echo "$triple" | tr '-' '_'); \
        { echo "export CARGO_TARGET_${upper}_LINKER=$arch-linux-gnu-gcc"; \
          echo "export CC_${lower}=$arch-linux-gnu-gcc"; \
          echo "export AR_${lower}=$arch-linux-gnu-ar"; } >> /build-env; \
    fi; \
    cat /build-env
# Only what cargo needs (see .dockerignore); Cargo.lock pins every dependency (--locked).
COPY . .
# The explicit --target keeps RUSTFLAGS away from build scripts and proc-macros (which must stay
# dynamic and run on the build machine).
# getrandom_backend="linux_getrandom": getrandom 0.3+ finds glibc's getrandom() through dlsym, which
# finds nothing in a static binary, so it falls back to opening /dev/random + /dev/urandom; with
# this cfg it calls getrandom() directly and needs no /dev at all (without it, `rand`'s ThreadRng
# panics in a root filesystem without /dev - seen in scripts/build-image-local.sh's smoke test).
# The checks fail the build unless the binary is for the target machine, has no program
# interpreter and needs no shared library (`ldd` is no test: it exits 0 for a static-pie too).
# Then the file capability (see the top) and the operator's name for the binary, `/dns`: a symlink,
# so that the image holds one copy (the kernel reads the capability from the file the link names).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    . /build-env; \
    RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
        cargo build --release --locked --target "$triple"; \
    mkdir -p /out; \
    cp "target/$triple/release/splitdns" /out/splitdns; \
    machine=$(readelf -h /out/splitdns | sed -n 's/^ *Machine: *//p'); \
    case "$triple:$machine" in \
        x86_64-*:*X86-64*|aarch64-*:AArch64) ;; \
        *) echo "splitdns is built for '$machine', not $triple" >&2; exit 1 ;; \
    esac; \
    if readelf -lW /out/splitdns | grep -q INTERP || readelf -d /out/splitdns | grep -q NEEDED; then \
        echo "splitdns is not a static binary" >&2; exit 1; \
    fi; \
    if [ "${triple%%-*}" = "$(uname -m)" ]; then /out/splitdns --version; fi; \
    chown 0:0 /out/splitdns; \
    chmod 0555 /out/splitdns; \
    setcap cap_net_bind_service=+ep /out/splitdns; \
    getcap /out/splitdns | grep -q 'cap_net_bind_service=ep'; \
    ln -s splitdns /out/dns; \
    ls -l /out

# ---- final stage: keep it self-contained; scripts/build-image-local.sh reuses everything below
# ---- this line verbatim (with a `build` stage of its own that holds the host-built /out).
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="splitdns" \
      org.opencontainers.image.description="Split-horizon DNS sidecar: mapped FQDNs answered with pod IPs, everything else forwarded unchanged" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# /splitdns (owner root, mode 0555, cap_net_bind_service=ep) and /dns -> splitdns. A directory
# copy, so that the symlink stays a symlink (a single-file COPY of a symlink copies its target);
# no --chown/--chmod here, as changing the owner of a file clears its file capability.
COPY --from=build /out/ /
# No SPLITDNS_LISTEN or SPLITDNS_MAPPING: started with no arguments, or with a path as the only
# argument, splitdns reads the operator's JSON file (/dns.conf by default), whose `listen` and rules
# must not be overridden from here; our manifests pass --listen and --mapping as args. Defaults
# that stay go through the environment rather than CMD, so that `args:` in a pod spec (or
# `docker run IMAGE --upstream ...`) adds to them instead of replacing them, and `check FILE` or a
# config path works as the only argument. A flag on the command line wins over these.
# SPLITDNS_ADMIN: /live, /ready and /metrics on the pod IP, for kubelet probes and Prometheus.
# GLIBC_TUNABLES: at most 2 malloc arenas (measured with 100,000 names: 54 MiB RSS with glibc's
# default, 39 MiB with one arena). Ignored by glibc under the file capability (see the top), where
# splitdns's own mallopt() does the same; it still applies to a binary copied out without the xattr.
ENV SPLITDNS_ADMIN=0.0.0.0:9253 \
    GLIBC_TUNABLES=glibc.malloc.arena_max=2
# 65532 = "nonroot" in distroless, as in the operator's image; numeric, so no /etc/passwd is needed
# (and runAsNonRoot can check it).
USER 65532:65532
EXPOSE 53/udp 53/tcp 9253/tcp
ENTRYPOINT ["/splitdns"]
