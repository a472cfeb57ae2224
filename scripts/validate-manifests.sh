#!/usr/bin/env bash
# Validates every Kubernetes manifest in config/kubernetes/ against the Kubernetes API's JSON
# schemas, strictly: a misspelt or misplaced field is an error, not a silently dropped value.
#
# Validator: kubernetes-validate (PyPI). It bundles the schemas of every Kubernetes version it
# supports, so it needs no network at run time. This script installs nothing; install it with
#     python3 -m pip install 'kubernetes-validate==1.37.0'
# (or point KUBERNETES_VALIDATE at its executable, e.g. inside a virtualenv).
#
# Versions: 1.29 is the first whose schema has `restartPolicy` on init containers (native
# sidecars); the newest is the newest the validator bundles. Override with K8S_VERSIONS.
#
# Usage: scripts/validate-manifests.sh [FILE...]   (default: config/kubernetes/*.yaml)
# Exit:  0 all valid; 1 a manifest is invalid; 2 the validator is missing.
set -euo pipefail
args=()
for f in "$@"; do args+=("$(realpath -- "$f")"); done # before the cd below
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VALIDATOR=${KUBERNETES_VALIDATE:-kubernetes-validate}
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}

if ! command -v "$VALIDATOR" >/dev/null 2>&1; then
    echo "validate-manifests: '$VALIDATOR' not found;" \
        "install it with: python3 -m pip install 'kubernetes-validate==1.37.0'" >&2
    exit 2
fi

if ((${#args[@]} > 0)); then
    files=("${args[@]}")
else
    shopt -s nullglob
    files=(config/kubernetes/*.yaml config/kubernetes/*.yml)
fi
if ((${#files[@]} == 0)); then
    echo "validate-manifests: no manifests found" >&2
    exit 1
fi

status=0
for version in $K8S_VERSIONS; do
    echo "== Kubernetes $version (strict): ${files[*]}"
    # kubernetes-validate exits non-zero when any document of any file is invalid; it prints
    # one line per document. --strict rejects properties the schema does not define.
    if ! "$VALIDATOR" --strict --kubernetes-version "$version" "${files[@]}"; then
        status=1
    fi
done
if ((status != 0)); then
    echo "validate-manifests: FAILED" >&2
fi
exit "$status"
