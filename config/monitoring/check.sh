#!/usr/bin/env bash
# Checks everything in config/monitoring/ (CI runs it):
#   1. promtool check rules splitdns.rules.yaml     (syntax, PromQL, templates)
#   2. promtool test rules splitdns.rules.test.yaml (the alerts' unit tests)
#   3. check.py: podmonitor.yaml and prometheusrule.yaml against the monitoring.coreos.com/v1
#      schemas (strict), prometheusrule.yaml == splitdns.rules.yaml, alert labels/annotations,
#      the dashboard's structure; then promtool parses every dashboard query.
# Whether the metric names exist is tests/monitoring.rs's job (cargo test, against the daemon).
#
# Needs: promtool (Debian: apt-get install -y prometheus), python3 with PyYAML and jsonschema
#        (python3 -m pip install 'jsonschema==4.26.0' 'PyYAML==6.0.4'; or PYTHON=a venv's python).
# Usage: config/monitoring/check.sh [--write-prometheusrule]
#        --write-prometheusrule regenerates prometheusrule.yaml from splitdns.rules.yaml first.
# Exit:  0 all good; 1 a check failed; 2 a tool is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PROMTOOL=${PROMTOOL:-promtool}
PYTHON=${PYTHON:-python3}

if ! command -v "$PROMTOOL" >/dev/null; then
    echo "check: '$PROMTOOL' not found; install it with: apt-get install -y prometheus" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import yaml, jsonschema' 2>/dev/null; then
    echo "check: $PYTHON lacks PyYAML or jsonschema; install them with:" \
        "python3 -m pip install 'jsonschema==4.26.0' 'PyYAML==6.0.4' (or set PYTHON)" >&2
    exit 2
fi

if [[ ${1:-} == --write-prometheusrule ]]; then
    { sed -n '1,/^spec:$/p' prometheusrule.yaml; sed -n '/^groups:/,$p' splitdns.rules.yaml | sed 's/^\(.\)/  \1/'; } >prometheusrule.yaml.new
    mv prometheusrule.yaml.new prometheusrule.yaml
    echo "wrote prometheusrule.yaml"
fi

"$PROMTOOL" --version | head -n1
echo "== promtool check rules"
"$PROMTOOL" check rules splitdns.rules.yaml
echo "== promtool test rules"
"$PROMTOOL" test rules splitdns.rules.test.yaml
echo "== schemas, consistency, dashboard"
queries=$(mktemp --suffix=.yaml)
trap 'rm -f "$queries"' EXIT
"$PYTHON" check.py "$queries"
echo "== promtool parses the dashboard's queries"
"$PROMTOOL" check rules "$queries" | sed "s#$queries#grafana-dashboard.json queries#"
echo "monitoring: all checks passed"
