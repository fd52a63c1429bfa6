"""KServe's InferenceService schema: vendored from KServe's own CRD and checked strictly.

:data:`INFERENCE_SERVICE_SCHEMA` is the ``v1beta1`` ``openAPIV3Schema`` of KServe's CRD
(``config/crd/full/serving.kserve.io_inferenceservices.yaml``, Apache-2.0; source, commit and
licence in ``schemas/README.md``), trimmed by :func:`trim_crd_schema` to what a client writes.
Regenerate it with ``python -m stress._kserve CRD.yaml`` (writes the schema file).

A CRD schema lists known fields but the API server *prunes* unknown ones silently (``kubectl``
warns or refuses them with its default strict field validation); :func:`strict_schema` makes
unknown fields errors here, as ``kubernetes-validate --strict`` does for core kinds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

INFERENCE_SERVICE_SCHEMA = Path(__file__).parent / "schemas" / "inferenceservice-v1beta1.json"
#: Parts of ``spec`` autoconf never writes: kept as plain objects, so the file is a third of
#: the CRD's size (each repeats the whole pod schema).
TRIMMED_COMPONENTS = ("canary", "explainer", "transformer")
#: The ObjectMeta the API server checks itself (the CRD says only ``type: object``).
OBJECT_META_REF = (
    "https://kubernetes.io/api/_definitions.json"
    "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
)


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


def trim_crd_schema(crd: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``v1beta1`` openAPIV3Schema of the InferenceService CRD ``crd``, without its
    ``description`` texts, ``status`` (the controller writes it) and the spec components of
    :data:`TRIMMED_COMPONENTS`; ``source`` is recorded in ``$comment``."""
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = _without_descriptions(version["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    spec = schema["properties"]["spec"]["properties"]
    for name in TRIMMED_COMPONENTS:
        if name in spec:
            spec[name] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    comment = (
        f"KServe's InferenceService CRD, v1beta1 openAPIV3Schema, from {source} (Apache-2.0, "
        "see README.md beside this file); descriptions and status removed, spec."
        + ", spec.".join(TRIMMED_COMPONENTS)
        + " reduced to plain objects (stress/_kserve.py: trim_crd_schema); otherwise unchanged."
    )
    return {"$comment": comment, **schema}


def strict_schema(schema: Any) -> Any:
    """``schema`` with unknown fields made errors (``additionalProperties: false`` on every
    object with ``properties``, unless the CRD keeps unknown fields) and ``metadata`` checked
    as a core ObjectMeta."""
    if isinstance(schema, list):
        return [strict_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_schema() -> dict[str, Any]:
    """The vendored schema, strict, with ``metadata`` as a core ObjectMeta."""
    schema = strict_schema(json.loads(INFERENCE_SERVICE_SCHEMA.read_text()))
    schema["properties"]["metadata"] = {"$ref": OBJECT_META_REF}
    schema["properties"]["apiVersion"] = {"const": "serving.kserve.io/v1beta1"}
    schema["properties"]["kind"] = {"const": "InferenceService"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    return schema


def main(argv: list[str] | None = None) -> int:
    """``python -m stress._kserve CRD.yaml [SOURCE]``: rewrite the vendored schema."""
    import yaml

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m stress._kserve CRD.yaml [SOURCE]", file=sys.stderr)
        return 2
    crd = yaml.safe_load(Path(args[0]).read_text())
    schema = trim_crd_schema(crd, args[1] if len(args) > 1 else args[0])
    INFERENCE_SERVICE_SCHEMA.write_text(json.dumps(schema, indent=None, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
