"""Offline checks: ``envctl validate``, the precheck before planning, and the plaintext-Secret policy.

Nothing here touches Terraform state or a cluster.
"""

from __future__ import annotations

from typing import Any

from envctl.app.inputs import Values, resolve_inputs
from envctl.app.session import Session
from envctl.core.errors import EnvctlError, Location
from envctl.core.model import Node


def precheck(s: Session, nodes: list[str]) -> dict[str, EnvctlError]:
    """Offline checks of every selected node before any engine runs or the cluster is asked.

    Stacks: their workspace is built (paths stay inside the repo, data "external", provisioners and
    registry providers refused unless allowed). Layers: rendered with placeholders for upstream
    outputs (hostile YAML, oversized objects, plaintext Secrets). A hostile repository is refused in
    a second, not after other nodes' Terraform runs.
    """
    errors: dict[str, EnvctlError] = {}
    for n in nodes:
        node = s.env.nodes[n]
        try:
            if node.kind == "stack":
                from envctl.terraform.workspace import materialize

                materialize(s.env, s.snapshot, s.root, node)
            else:
                from envctl.kube import render_layer

                inputs, _ = resolve_inputs(s, node, Values(), {})
                check_plaintext_secrets(s, node, render_layer(s.env, s.snapshot, node, inputs))
        except EnvctlError as e:
            e.node = e.node or n
            errors[n] = e
    return errors


def check_plaintext_secrets(s: Session, node: Node, objects: list[dict[str, Any]]) -> None:
    """Refuse ``kind: Secret`` with values in Git unless the layer allows it; names keys, never values."""
    from envctl.kube import plaintext_secrets

    if node.layer is None or node.layer.allow_secrets:
        return
    found = plaintext_secrets(objects)
    if found:
        from envctl.core.errors import ConfigError

        keys = sorted(
            {
                k
                for o in objects
                if o.get("kind") == "Secret"
                for k in {**(o.get("data") or {}), **(o.get("stringData") or {})}
            }
        )
        raise ConfigError(
            f"plaintext Secret in Git: {', '.join(found)} (keys: {', '.join(keys)})",
            node=node.id,
            location=_secret_location(s, node),
            hint="keep secret values out of Git (an external secret store, or SOPS-encrypted files); "
            "or set allow_secrets: true in layer.yaml if this is deliberate",
        )


def _secret_location(s: Session, node: Node) -> Location:
    """The file and line of the first ``data:``/``stringData:`` of a Secret in the layer's manifests."""
    import yaml

    assert node.layer is not None
    files = list(node.layer.manifests)
    if node.layer.kustomize:
        return Location(f"{node.path}/kustomization.yaml")
    for f in files:
        try:
            text = s.snapshot.read_bytes(f).decode("utf-8", "replace")
            docs = list(yaml.compose_all(text, yaml.SafeLoader))
        except (yaml.YAMLError, RecursionError, EnvctlError):
            continue
        for doc in docs:
            if not isinstance(doc, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in doc.value if isinstance(k, yaml.ScalarNode)}
            kind = fields.get("kind")
            if isinstance(kind, yaml.ScalarNode) and kind.value == "Secret":
                for key, _ in doc.value:
                    if isinstance(key, yaml.ScalarNode) and key.value in ("data", "stringData"):
                        return Location(f, key.start_mark.line + 1)
    return Location(node.path)


def validate_environment(s: Session) -> list[str]:
    """Terraform validate every stack and render every layer offline; returns warnings.

    Touches no live system: no state, no cluster. Inputs that come from other nodes' outputs
    are rendered as placeholders.
    """
    from envctl.kube import render_layer
    from envctl.terraform.stack import validate_stack

    warnings: list[str] = []
    for n in s.graph.order():
        node = s.env.nodes[n]
        if node.kind == "stack":
            warnings.extend(f"{n}: {w}" for w in validate_stack(s.stack_ctx(), node))
        else:
            inputs, _ = resolve_inputs(s, node, Values(), {})
            objects = render_layer(s.env, s.snapshot, node, inputs)
            check_plaintext_secrets(s, node, objects)
    return warnings
