"""A manifest checked, field by field, against the models of KServe's own Python SDK (the
`kserve` package): its InferenceService and, inside it, the Kubernetes client's PodSpec
models. No cluster is needed, and no schema file is copied: both come from package
registries. An unknown field, a field in the wrong place or a value of the wrong type is
a problem, as the API server's structural schema would find it."""

import re

import kserve.models
import kubernetes.client.models

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}
LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")
# Quantities (cpu: 500m, nvidia.com/gpu: 1), which the models type as strings but the API
# takes as numbers or strings, as YAML writes them.
QUANTITIES = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests")}


def problems(document: dict) -> list[str]:
    """What does not fit KServe's InferenceService model, each with its path."""
    if (document.get("apiVersion"), document.get("kind")) != (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    ):
        return [f"not a serving.kserve.io/v1beta1 InferenceService: {document.get('kind')}"]
    found: list[str] = []
    _check(document, "V1beta1InferenceService", "", found)
    return found


def _model(name: str):
    return getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name)


def _check(value: object, kind: str, path: str, found: list[str]) -> None:
    if kind == "object":  # an int or a string (IntOrString): either will do
        if not isinstance(value, (int, str)):
            found.append(f"{path}: {value!r} is neither a number nor a string")
    elif kind in PRIMITIVES:
        if isinstance(value, bool) and kind != "bool" or not isinstance(value, PRIMITIVES[kind]):
            found.append(f"{path}: {value!r} is not a {kind}")
    elif items := LIST.match(kind):
        if not isinstance(value, list):
            found.append(f"{path}: not a list")
            return
        for i, item in enumerate(value):
            _check(item, items[1], f"{path}[{i}]", found)
    elif values := DICT.match(kind):
        if not isinstance(value, dict):
            found.append(f"{path}: not a mapping")
            return
        for key, item in value.items():
            _check(item, values[1] or values[2], f"{path}.{key}", found)
    else:
        model = _model(kind)
        if not isinstance(value, dict):
            found.append(f"{path}: not a {kind} object")
            return
        fields = {json_name: attribute for attribute, json_name in model.attribute_map.items()}
        for key, item in value.items():
            if key not in fields:
                found.append(f"{path}.{key}: no such field in {kind}")
            elif (kind, key) in QUANTITIES:
                _check(item, "dict(str, object)", f"{path}.{key}", found)
            else:
                _check(item, model.openapi_types[fields[key]], f"{path}.{key}", found)
