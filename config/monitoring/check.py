"""Checks of config/monitoring/ beyond promtool's (run by check.sh; needs PyYAML and jsonschema):

  - podmonitor.yaml and prometheusrule.yaml validate against the monitoring.coreos.com/v1
    schemas in schemas/ (strict: unknown fields are errors);
  - prometheusrule.yaml's spec.groups are exactly splitdns.rules.yaml's groups;
  - every alert has a severity label and summary and description annotations;
  - grafana-dashboard.json is a dashboard whose panels have unique ids, a datasource and PromQL
    targets; the targets, with Grafana's variables replaced, are written as recording rules to
    the file given as argument so that check.sh can have promtool parse them.

The metric names used by all of these are checked against the daemon by tests/monitoring.rs.
"""

import json
import pathlib
import re
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).parent
errors = []


def load_yaml(name):
    with open(HERE / name) as f:
        return yaml.safe_load(f)


for manifest, schema in (("podmonitor.yaml", "podmonitor-v1.json"), ("prometheusrule.yaml", "prometheusrule-v1.json")):
    validator = jsonschema.Draft202012Validator(json.loads((HERE / "schemas" / schema).read_text()))
    doc = load_yaml(manifest)
    found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in found:
        where = "/".join(str(p) for p in e.absolute_path) or "(document)"
        errors.append(f"{manifest}: {where}: {e.message}")
    print(f"{manifest}: {'valid' if not found else 'INVALID'} ({doc['apiVersion']} {doc['kind']}, schemas/{schema})")

rules = load_yaml("splitdns.rules.yaml")
cr = load_yaml("prometheusrule.yaml")
if cr["spec"]["groups"] != rules["groups"]:
    errors.append("prometheusrule.yaml: spec.groups differ from splitdns.rules.yaml (check.sh --write-prometheusrule)")
else:
    print("prometheusrule.yaml: spec.groups are splitdns.rules.yaml's groups")
alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
for r in alerts:
    if r.get("labels", {}).get("severity") not in ("warning", "critical"):
        errors.append(f"splitdns.rules.yaml: {r['alert']}: no severity label (warning or critical)")
    for a in ("summary", "description"):
        if not r.get("annotations", {}).get(a):
            errors.append(f"splitdns.rules.yaml: {r['alert']}: no {a} annotation")
print(f"splitdns.rules.yaml: {len(alerts)} alerts: {', '.join(r['alert'] for r in alerts)}")

dashboard = json.loads((HERE / "grafana-dashboard.json").read_text())
ids, exprs = set(), []


def walk(panels):
    for p in panels:
        if p["id"] in ids:
            errors.append(f"grafana-dashboard.json: panel id {p['id']} used twice")
        ids.add(p["id"])
        if p["type"] == "row":
            walk(p.get("panels", []))
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"grafana-dashboard.json: panel {p['title']!r} does not use the $datasource variable")
        if not p.get("targets"):
            errors.append(f"grafana-dashboard.json: panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            exprs.append((p["title"], t["refId"], t["expr"]))


walk(dashboard["panels"])
for v in dashboard["templating"]["list"]:
    if v["type"] == "query":
        exprs.append((f"variable {v['name']}", "query", v["query"]["query"]))
print(f"grafana-dashboard.json: {len(ids)} panels, {len(exprs)} queries")

# Grafana's variables -> something promtool parses; label_values() is Grafana's, not PromQL.
grafana_vars = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*", "$pod": ".*"}
out = {"groups": [{"name": "grafana-dashboard", "rules": []}]}
for n, (title, ref, expr) in enumerate(exprs):
    m = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr)
    if m:
        expr = m.group(1)
    for k, v in grafana_vars.items():
        expr = expr.replace(k, v)
    if "$" in expr:
        errors.append(f"grafana-dashboard.json: {title} {ref}: unknown variable in {expr}")
    out["groups"][0]["rules"].append({"record": f"dashboard:query_{n}", "expr": expr})
if len(sys.argv) > 1:
    pathlib.Path(sys.argv[1]).write_text(yaml.safe_dump(out, sort_keys=False))

for e in errors:
    print(f"FAIL: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
