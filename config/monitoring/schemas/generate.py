"""Writes the JSON schemas that config/monitoring/check.sh validates podmonitor.yaml and
prometheusrule.yaml against: monitoring.coreos.com/v1 PodMonitor and PrometheusRule.

The Kubernetes schemas bundled by kubernetes-validate have no CRDs. The source here is the PyPI
package cloudcoil.models.prometheus_operator, pydantic models generated from the Prometheus
Operator's CRDs (its version is the Operator's: 0.80.1.x = Operator v0.80.1). Their JSON schemas
are turned into what the API server enforces for a CRD:
  - strict: every object with properties gets additionalProperties: false (an unknown or
    misspelt field is an error, like kubernetes-validate --strict and kubectl's strict field
    validation), unless it is a free-form map;
  - no nulls: pydantic makes every optional field "X or null"; a CRD field is just X;
  - titles and defaults dropped (noise for validation).

Run only to update the schemas (the result is committed, so CI needs jsonschema alone):
    python3 -m venv /tmp/cc && /tmp/cc/bin/pip install 'cloudcoil.models.prometheus_operator==0.80.1.0'
    /tmp/cc/bin/python config/monitoring/schemas/generate.py
"""

import importlib.metadata
import json
import pathlib

from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule

HERE = pathlib.Path(__file__).parent


def strict(node):
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: strict(v) for k, v in node.items() if k not in ("title", "default")}
    if "anyOf" in node:
        alternatives = [a for a in node["anyOf"] if a != {"type": "null"}]
        if len(alternatives) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**alternatives[0], **rest}
        else:
            node["anyOf"] = alternatives
    if node.get("properties") and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


version = importlib.metadata.version("cloudcoil.models.prometheus_operator")
for model, name in ((PodMonitor, "podmonitor"), (PrometheusRule, "prometheusrule")):
    schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$comment"] = (
        f"monitoring.coreos.com/v1 {model.__name__}, from cloudcoil.models.prometheus_operator "
        f"{version} by config/monitoring/schemas/generate.py (strict, no nulls); do not edit"
    )
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    out = HERE / f"{name}-v1.json"
    out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {out.stat().st_size} bytes")
