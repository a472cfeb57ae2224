# splitdns container image: a static binary on an empty base, run as a non-root UID.
#
#   docker build -t splitdns:dev .
#   docker run --rm splitdns:dev --version
#   docker run --rm -v "$PWD/config:/m:ro" splitdns:dev check /m/mapping.yaml
#
# Stage 1 builds a fully static binary with glibc (`-C target-feature=+crt-static`, a static-pie).
# Why glibc and not musl: the same toolchain and target as every developer build (no extra rustup
# target to download, so scripts/build-image-local.sh produces the identical binary offline), and
# glibc's allocator and memcpy are faster than musl's on the forwarding path. The usual caveat of a
# static glibc - NSS (getaddrinfo, getpwnam) would need shared libraries at run time - does not bite:
# splitdns takes IP literals only and reads /etc/resolv.conf itself (hickory), it never resolves a
# host name or a user name through libc.
#
# Stage 2 is `scratch`: the binary and nothing else (no shell, no libc, no CA bundle - splitdns
# speaks plain DNS and needs none). About 4 MB, 1.9 MB compressed.
#
# Port 53 as a non-root UID: there are NO file capabilities on the binary, on purpose. Kubernetes
# cannot make a capability effective for a non-root process (no ambient capabilities), and a file
# capability is either ignored under `allowPrivilegeEscalation: false` (no_new_privs, with runtimes
# that leave the permitted set empty) or makes exec fail outright when the capability is not in the
# bounding set (`drop: [ALL]`). The pod sets `net.ipv4.ip_unprivileged_port_start=53` instead
# (a safe, namespaced sysctl); see config/kubernetes/README.md.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what cargo needs (see .dockerignore); Cargo.lock pins every dependency (--locked).
COPY . .
# The explicit --target keeps RUSTFLAGS away from build scripts and proc-macros (which must stay
# dynamic); `uname -m` makes the same file work for linux/amd64 and linux/arm64 builds.
# getrandom_backend="linux_getrandom": getrandom 0.3+ finds glibc's getrandom() through dlsym, which
# finds nothing in a static binary, so it falls back to opening /dev/random + /dev/urandom; with
# this cfg it calls getrandom() directly and needs no /dev at all (without it, `rand`'s ThreadRng
# panics in a root filesystem without /dev - seen in scripts/build-image-local.sh's smoke test).
# The check at the end fails the build unless the binary has no program interpreter and needs no
# shared library (`ldd` is no test: it exits 0 for a static-pie too).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eux; \
    triple="$(uname -m)-unknown-linux-gnu"; \
    RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
        cargo build --release --locked --target "$triple"; \
    mkdir -p /out; \
    cp "target/$triple/release/splitdns" /out/splitdns; \
    /out/splitdns --version; \
    if readelf -lW /out/splitdns | grep -q INTERP || readelf -d /out/splitdns | grep -q NEEDED; then \
        echo "splitdns is not a static binary" >&2; exit 1; \
    fi

# ---- final stage: keep it self-contained; scripts/build-image-local.sh reuses everything below
# ---- this line (with the COPY taken from a host-built binary instead of the build stage).
FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="splitdns" \
      org.opencontainers.image.description="Split-horizon DNS sidecar: mapped FQDNs answered with pod IPs, everything else forwarded unchanged" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build --chown=0:0 --chmod=0555 /out/splitdns /splitdns
# Defaults through the environment rather than CMD, so that `args:` in a pod spec (or
# `docker run IMAGE --upstream ...`) adds flags instead of replacing all of them, and the
# `check FILE` subcommand works as the only argument. A flag on the command line wins over these.
# No default upstream: in a sidecar pod /etc/resolv.conf points at splitdns itself, so the pod
# spec must pass --upstream (the cluster DNS service IP).
# GLIBC_TUNABLES: at most 2 malloc arenas. glibc gives each thread that allocates its own arena
# and keeps freed memory in it; splitdns's threads allocate almost nothing after start (the query
# path does not allocate at all), so more arenas only hold garbage from loading the mapping:
# measured with 100,000 names, 54 MiB RSS with the default, 39 MiB with one arena.
ENV SPLITDNS_LISTEN=127.0.0.1:53 \
    SPLITDNS_MAPPING=/etc/splitdns/mapping.yaml \
    SPLITDNS_ADMIN=0.0.0.0:9253 \
    GLIBC_TUNABLES=glibc.malloc.arena_max=2
# 65532 = "nonroot" in distroless; numeric, so no /etc/passwd is needed (and runAsNonRoot can check it).
USER 65532:65532
EXPOSE 53/udp 53/tcp 9253/tcp
ENTRYPOINT ["/splitdns"]
