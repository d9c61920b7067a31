"""Layer outputs: values read back from live objects (``outputs:`` in ``layer.yaml``) for downstream nodes.

``parse_object`` and ``extract`` are pure: ``v1/Service/ingress/edge`` names an object (namespace
omitted when cluster-scoped) and ``.status.loadBalancer.ingress[0].hostname`` a value inside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from envctl.core.errors import ConfigError, EngineError
from envctl.core.model import LayerSpec, Node
from envctl.kube.client import KubeContext
from envctl.kube.errors import ApiError, translate
from envctl.kube.objects import ObjRef, is_secret

_STEP = re.compile(r"""\.([A-Za-z0-9_$-]+)|\[(\d+)\]|\[['"]([^'"]+)['"]\]""")


def parse_object(text: str, default_namespace: str | None = None) -> ObjRef:
    """``apps/v1/Deployment/app/web`` or ``v1/Namespace/app`` -> ObjRef (the kind starts upper-case)."""
    parts = text.strip("/").split("/")
    for i, part in enumerate(parts):
        if part[:1].isupper() and i > 0:
            rest = parts[i + 1 :]
            if len(rest) == 2:
                return ObjRef("/".join(parts[:i]), part, rest[0], rest[1])
            if len(rest) == 1:
                return ObjRef("/".join(parts[:i]), part, default_namespace or "", rest[0])
            break
    raise ConfigError(f"output object {text!r} is not apiVersion/Kind/[namespace/]name")


def parse_path(path: str) -> list[str | int]:
    steps: list[str | int] = []
    pos = 0
    text = path if path.startswith((".", "[")) else "." + path
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            raise ConfigError(f"output path {path!r} is not a path like .status.items[0].name")
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(m.group(3))
        pos = m.end()
    return steps


def extract(obj: Any, path: str) -> Any:
    """The value at ``path`` in ``obj``; KeyError naming the first missing step."""
    value = obj
    for step in parse_path(path):
        in_list = isinstance(step, int) and isinstance(value, list) and step < len(value)
        in_map = isinstance(step, str) and isinstance(value, Mapping) and step in value
        if in_list or in_map:
            value = value[step]
        else:
            raise KeyError(step)
    return value


def read_layer_outputs(ctx: KubeContext, node: Node) -> dict[str, Any]:
    """Read every declared output from the live objects; a missing object or value is an EngineError."""
    spec = node.layer if node.layer is not None else LayerSpec()
    out: dict[str, Any] = {}
    for name, output in sorted(spec.outputs.items()):
        ref = parse_object(output.object, spec.namespace)
        resolved = ctx.resolve(ref)
        if resolved is None:
            raise EngineError(
                f"output {name}: the cluster does not serve {ref.kind} in {ref.api_version}", node=node.id
            )
        ref, mapping = resolved
        try:
            live = ctx.get(ref, mapping)
        except ApiError as e:
            raise translate(e, ref, node=node.id) from e
        if live is None:
            raise EngineError(f"output {name}: {ref} does not exist", node=node.id)
        try:
            value = extract(live, output.path)
        except KeyError as e:
            raise EngineError(
                f"output {name}: {ref} has no value at {output.path} (missing {e.args[0]!r})",
                node=node.id,
                hint="the object may not be ready yet; check wait: in layer.yaml",
            ) from e
        if is_secret(live) and parse_path(output.path)[:1] in (["data"], ["stringData"]):
            raise ConfigError(
                f"output {name} reads a Secret value; secrets are not offered as outputs", node=node.id
            )
        out[name] = value
    return out
