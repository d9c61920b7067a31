"""Offline checks: ``envctl validate`` and the precheck before planning.

Nothing here touches Terraform state or a cluster; each node's adapter does its kind's checks.
"""

from __future__ import annotations

from envctl.app.inputs import Values, resolve_inputs
from envctl.app.session import Session
from envctl.core.errors import ConfigError, EnvctlError
from envctl.core.model import Node
from envctl.core.results import ValidateResult


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
            check_output_refs(s, node)
            inputs, _ = resolve_inputs(s, node, Values(), {})
            s.adapter(n).precheck(node, inputs)
        except EnvctlError as e:
            e.node = e.node or n
            errors[n] = e
    return errors


def check_output_refs(s: Session, node: Node) -> None:
    """Every ``${stack.X.outputs.Y}`` of ``node`` names an output X declares (read from X's
    configuration: a stack's or its module's HCL, a layer's ``outputs:``); a typo is a
    configuration error naming the known outputs, before anything is planned."""
    declared: dict[str, frozenset[str] | None] = {}
    for ref in node.upstream_refs:
        up = s.env.nodes.get(ref.node or "")
        if up is None:
            continue  # an unknown node is the loader's error
        if up.id not in declared:
            declared[up.id] = s.adapter(up.id).declared_outputs(up)
        known = declared[up.id]
        if known is None or ref.name in known:
            continue
        names = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            f"{ref.text}: {up.id} declares no output {ref.name!r} (known outputs: {names})",
            node=node.id,
            location=ref.location,
            hint=f"use one of the outputs of {up.id}, or declare output {ref.name!r} in {up.path}",
        )


def validate_environment(s: Session) -> ValidateResult:
    """Terraform validate every stack and render every layer offline; errors raise.

    Touches no live system: no state, no cluster. Inputs that come from other nodes' outputs
    are rendered as placeholders.
    """
    warnings: list[str] = []
    for n in s.graph.order():
        node = s.env.nodes[n]
        check_output_refs(s, node)
        inputs, _ = resolve_inputs(s, node, Values(), {})
        warnings.extend(f"{n}: {w}" for w in s.adapter(n).validate(node, inputs))
    return ValidateResult(s.env.name, len(s.env.nodes), len(s.graph.edges), tuple(warnings))
