"""Plan, apply, read outputs of and validate one Terraform stack: what the orchestrator calls.

Each function materialises the stack's workspace from the context's snapshot, makes sure it
is initialised (offline: no version check, providers from the plugin mirror when one is set;
``init`` runs again only when the workspace's files changed), and runs the environment's engine.
Results come back as envctl values with sensitive data masked; failures as ``EngineError``,
``StalePlanError`` or ``ConfigError`` naming the node, file and line, and the command.

May import: the standard library, ``envctl.core`` and the other ``envctl.terraform`` modules.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.core.changes import SENSITIVE, NodePlan
from envctl.core.errors import ConfigError, EngineError, EnvctlError, Location, StalePlanError
from envctl.core.model import Environment, Node, Snapshot
from envctl.core.secrets import KNOWN
from envctl.sops import SopsKeyError, SopsUnavailableError
from envctl.terraform import diagnostics as diag
from envctl.terraform import hcl, planjson
from envctl.terraform.engines import EmbeddedEngine, Engine, RunResult, base_env, engine_for
from envctl.terraform.secretinputs import (
    SECRETS_FILE,
    check_secret_inputs,
    secret_input_names,
    secret_inputs,
)
from envctl.terraform.workspace import (
    INIT_STAMP,
    VAR_FILE,
    Workspace,
    cli_config,
    local_state_file,
    materialize,
    read_var_file,
    write_var_file,
)

LOCK_TIMEOUT = "-lock-timeout=60s"


@dataclass(frozen=True)
class StackContext:
    """What every stack operation needs: the environment, the files (at a revision), the repo root.

    ``root`` is the repository root that holds ``.envctl/``. ``engine`` overrides the engine the
    environment names (tests and measurements use it); normally leave it None.
    """

    env: Environment
    snapshot: Snapshot
    root: Path
    engine: Engine | None = None

    def get_engine(self) -> Engine:
        return self.engine or engine_for(self.env.terraform, self.root)


@dataclass(frozen=True, repr=False)
class StackOutput:
    """One output of an applied stack. ``repr``/``str`` never show a sensitive value."""

    value: Any
    sensitive: bool = False

    def __repr__(self) -> str:
        shown = SENSITIVE if self.sensitive else repr(self.value)
        return f"StackOutput(value={shown}, sensitive={self.sensitive})"

    __str__ = __repr__


def prewarm(ctx: StackContext, count: int, *, beyond_cores: bool = False) -> None:
    """Start the embedded engine's workers now, while envctl does other work (no-op for cli)."""
    try:
        engine = ctx.get_engine()
        if isinstance(engine, EmbeddedEngine):
            cfg, _ = cli_config(ctx.env, ctx.root)
            extra = {"TF_CLI_CONFIG_FILE": str(cfg)} if cfg else {}
            engine.prewarm(base_env(extra), ctx.root, count, beyond_cores=beyond_cores)
    except (EnvctlError, OSError):
        return  # the first command that needs the engine reports it, with its node


def _env_for(ws: Workspace) -> dict[str, str]:
    extra = {"TF_CLI_CONFIG_FILE": str(ws.cli_config)} if ws.cli_config else {}
    return base_env(extra)


_SENSITIVE_INPUTS = "envctl-sensitive-inputs.json"


def _sensitive_names(ws: Workspace) -> set[str]:
    """Declared sensitive variables, plus inputs that came from sensitive upstream outputs."""
    names = set(ws.sensitive_variables)
    with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
        names |= set(json.loads((ws.run_dir / ".terraform" / _SENSITIVE_INPUTS).read_text()))
    return names


def _redactor(ws: Workspace, inputs: Mapping[str, Any] | None = None) -> diag.Redactor:
    values = dict(read_var_file(ws) if inputs is None else inputs)
    sens = _sensitive_names(ws)
    return diag.Redactor(v for k, v in values.items() if k in sens)


def _known_secrets(ctx: StackContext, ws: Workspace, inputs: Mapping[str, Any]) -> list[Any]:
    """Values that must never be shown: sensitive inputs now and at the last plan, sensitive outputs."""
    sens = _sensitive_names(ws)
    found = [v for k, v in inputs.items() if k in sens]
    found += [v for k, v in read_var_file(ws).items() if k in sens]
    if ctx.env.terraform.backend == "local":
        found += [o.value for o in read_outputs(ctx, ws.node).values() if o.sensitive]
    return found


def _fail(
    ws: Workspace, res: RunResult, *, what: str, hint: str, redact: diag.Redactor, stream: bool = True
) -> Exception:
    diags = diag.diagnostics_from_stream(res.stdout) if stream else []
    if not diags:
        diags = diag.diagnostics_from_text(res.stderr) or diag.diagnostics_from_text(res.stdout)
    return diag.error_from(
        diags,
        node=ws.node.id,
        command=res.command,
        what=what,
        hint=hint,
        to_repo_path=ws.repo_path,
        redact=redact,
        fallback=res.stderr or res.stdout,
    )


def _prepare(ctx: StackContext, node: Node, *, backend: bool = True) -> tuple[Workspace, Engine]:
    """Materialise and initialise the workspace of ``node``."""
    if node.kind != "stack":
        raise ConfigError(f"{node.id} is not a Terraform stack", node=node.id)
    engine = ctx.get_engine()
    ws = materialize(ctx.env, ctx.snapshot, ctx.root, node)
    if ws.state_file is not None:
        ws.state_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file = ws.run_dir / ".terraform" / INIT_STAMP
    stamp = f"{ws.fingerprint} {engine.version()} backend={backend}"
    try:
        if stamp_file.read_text() == stamp:
            return ws, engine
    except FileNotFoundError:
        pass
    args = ["init", "-input=false", "-no-color", LOCK_TIMEOUT]
    if not backend:
        args.append("-backend=false")
    elif ctx.env.terraform.backend != "stack":
        # envctl owns the generated backend block: take it as it is now, never prompt to migrate.
        args.append("-reconfigure")
    res = engine.run(args, cwd=ws.run_dir, env=_env_for(ws))
    if res.returncode != 0:
        hint = (
            "envctl runs init offline: providers must be in terraform.plugin_dir "
            "(a filesystem mirror) or reachable by your own CLI configuration"
        )
        raise _fail(ws, res, what="terraform init", hint=hint, redact=_redactor(ws, {}), stream=False)
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(stamp)
    return ws, engine


def _check_inputs(ws: Workspace, inputs: Mapping[str, Any]) -> None:
    declared = ws.info.variables
    for name in inputs:
        if name not in declared:
            raise ConfigError(
                f"input {name!r} is not a variable of the stack",
                node=ws.node.id,
                location=Location(ws.node.config_file) if ws.node.config_file else None,
                hint=f'declare variable "{name}" in {ws.node.path}, or remove it from inputs:'
                f" (declared: {', '.join(sorted(declared)) or 'none'})",
            )


def plan_stack(
    ctx: StackContext,
    node: Node,
    inputs: Mapping[str, Any],
    plan_dir: Path,
    *,
    refresh_only: bool = False,
    destroy: bool = False,
) -> NodePlan:
    """Plan ``node`` with ``inputs`` (resolved values) and save the plan file into ``plan_dir``.

    An input value may be an upstream ``StackOutput``; a sensitive one stays masked in this
    stack's plan and errors even when the receiving variable is not declared sensitive.

    ``NodePlan.artifacts``: ``planfile`` (absolute path), ``engine`` (which Terraform),
    ``workdir`` (repo-relative workspace), ``mode`` (normal, refresh-only or destroy).
    """
    ws, engine = _prepare(ctx, node)
    # An input may be an upstream StackOutput: its value is passed on, and when it is
    # sensitive it is masked here even if this stack's variable is not declared sensitive.
    values = {k: v.value if isinstance(v, StackOutput) else v for k, v in inputs.items()}
    # encrypted inputs (secrets.enc.yaml), decrypted in memory, only into sensitive variables
    secret = secret_inputs(ctx.snapshot, node)
    check_secret_inputs(node, sorted(secret), values, ws.sensitive_variables)
    values.update(secret)
    _check_inputs(ws, values)
    secrets = _known_secrets(ctx, ws, values)
    upstream_secret = sorted(k for k, v in inputs.items() if isinstance(v, StackOutput) and v.sensitive)
    secrets += [values[k] for k in upstream_secret]
    (ws.run_dir / ".terraform" / _SENSITIVE_INPUTS).write_text(json.dumps(upstream_secret))
    write_var_file(ws, values)
    plan_dir = plan_dir.resolve()
    plan_dir.mkdir(parents=True, exist_ok=True)
    planfile = plan_dir / f"{node.name}.tfplan"
    args = ["plan", "-input=false", "-json", LOCK_TIMEOUT, f"-out={planfile}", f"-var-file={VAR_FILE}"]
    if refresh_only:
        args.append("-refresh-only")
    if destroy:
        args.append("-destroy")
    env = _env_for(ws)
    redact = diag.Redactor(secrets)
    res = engine.run(args, cwd=ws.run_dir, env=env)
    if res.returncode != 0:
        raise _fail(ws, res, what="terraform plan", hint=_hint_for(ws), redact=redact)
    show = engine.run(["show", "-json", "-no-color", str(planfile)], cwd=ws.run_dir, env=env)
    if show.returncode != 0:
        raise _fail(
            ws,
            show,
            what="terraform show",
            hint="the plan file may be damaged: plan again",
            redact=redact,
            stream=False,
        )
    try:
        doc = json.loads(show.stdout)
    except ValueError as e:
        raise EngineError(
            "terraform show -json printed no JSON", node=node.id, detail=f"command: {show.command}"
        ) from e
    summary = planjson.summarize(doc, refresh_only=refresh_only)
    notes: list[str] = []
    if summary.drifted and not refresh_only:
        notes.append(f"{summary.drifted} resource(s) changed outside of Terraform since the last apply")
    mode = "refresh-only" if refresh_only else "destroy" if destroy else "normal"
    return NodePlan(
        node=node.id,
        changes=planjson.scrub_changes(summary.changes, redact.secrets),
        outputs_changing=summary.outputs_changing,
        output_changes=planjson.scrub_changes(summary.output_changes, redact.secrets),
        outputs_unknown=summary.outputs_unknown,
        notes=tuple(notes),
        planned_outputs=summary.planned_outputs,
        artifacts={
            "planfile": str(planfile),
            "engine": engine.version(),
            "workdir": os.path.relpath(ws.run_dir, ctx.root),
            "mode": mode,
        },
    )


def _hint_for(ws: Workspace) -> str:
    return (
        f"fix the Terraform configuration of {ws.node.id}, or its inputs; "
        f"the workspace is {ws.run_dir} if you want to re-run the command there"
    )


def apply_stack(ctx: StackContext, node: Node, planfile: Path) -> dict[str, StackOutput]:
    """Apply a saved plan exactly; return the stack's outputs afterwards.

    Raises ``StalePlanError`` when the plan file is gone or Terraform says the saved plan is
    stale (the state changed since it was made).
    """
    planfile = planfile.resolve()
    if not planfile.is_file():
        raise StalePlanError(
            f"the saved plan {planfile} does not exist", node=node.id, hint="run envctl plan again"
        )
    ws, engine = _prepare(ctx, node)
    args = ["apply", "-input=false", "-json", LOCK_TIMEOUT, str(planfile)]
    res = engine.run(args, cwd=ws.run_dir, env=_env_for(ws))
    if res.returncode != 0:
        raise _fail(ws, res, what="terraform apply", hint=_hint_for(ws), redact=_redactor(ws))
    return read_outputs(ctx, node)


def _outputs_from(doc: Mapping[str, Any]) -> dict[str, StackOutput]:
    outs = {
        str(k): StackOutput(v.get("value"), bool(v.get("sensitive", False)))
        for k, v in doc.items()
        if isinstance(v, dict)
    }
    for o in outs.values():
        if o.sensitive:
            KNOWN.add(o.value)  # masked in everything envctl prints, stores or sends
    return outs


def read_outputs(ctx: StackContext, node: Node) -> dict[str, StackOutput]:
    """The outputs of the applied stack (``{}`` if it was never applied).

    With the local backend they are read straight from the state file, no engine run; other
    backends ask the engine (``output -json``).
    """
    if ctx.env.terraform.backend == "local":
        state = local_state_file(ctx.root, ctx.env.name, node.name)
        try:
            text = state.read_text()
        except FileNotFoundError:
            return {}
        if not text.strip():
            # Terraform creates the file empty before the first apply writes it, and a run killed
            # then leaves it so: the stack has no applied outputs yet
            return {}
        try:
            doc = json.loads(text)
        except ValueError as e:
            backup = state.with_name(state.name + ".backup")
            raise EngineError(
                f"the state file {state} is not valid JSON",
                node=node.id,
                hint=f"restore it from {backup}" if backup.exists() else "restore it from a copy you trust",
            ) from e
        outputs = doc.get("outputs") if isinstance(doc, dict) else None
        return _outputs_from(outputs or {})
    ws, engine = _prepare(ctx, node)
    res = engine.run(["output", "-json", "-no-color"], cwd=ws.run_dir, env=_env_for(ws))
    if res.returncode != 0:
        raise _fail(ws, res, what="terraform output", hint=_hint_for(ws), redact=_redactor(ws), stream=False)
    try:
        doc = json.loads(res.stdout or "{}")
    except ValueError as e:
        raise EngineError("terraform output -json printed no JSON", node=node.id) from e
    return _outputs_from(doc if isinstance(doc, dict) else {})


def _validate_secret_inputs(ctx: StackContext, ws: Workspace) -> list[str]:
    """The encrypted values file sets sensitive variables and decrypts (a warning when no key is here)."""
    names = secret_input_names(ctx.snapshot, ws.node)
    if not names:
        return []
    check_secret_inputs(ws.node, names, ws.node.inputs, ws.sensitive_variables)
    _check_inputs(ws, dict.fromkeys(names))
    try:
        secret_inputs(ctx.snapshot, ws.node)
    except (SopsKeyError, SopsUnavailableError) as e:
        return [f"{SECRETS_FILE} not decrypted here, so only its keys were checked: {e.message}"]
    return []


def sensitive_outputs(snapshot: Snapshot, node: Node) -> frozenset[str]:
    """The outputs a stack declares ``sensitive = true`` (its own ``.tf`` files, or the module a
    ``module:`` stack calls), read from the configuration: known before anything is applied."""
    return frozenset(o for o, sensitive in declared_outputs(snapshot, node).items() if sensitive)


def declared_outputs(snapshot: Snapshot, node: Node) -> dict[str, bool]:
    """Every output a stack declares (name -> sensitive): its own ``.tf`` files, or the module a
    ``module:`` stack calls (whose outputs the generated root re-exports)."""
    spec = node.stack
    directory = spec.module if spec is not None and spec.module else node.path
    texts = {
        f"{directory}/{name}": snapshot.read_bytes(f"{directory}/{name}").decode("utf-8", "replace")
        for name in snapshot.listdir(directory)
        if name.endswith(hcl.CONFIG_SUFFIXES)
    }
    return dict(hcl.scan(texts).outputs)


def validate_stack(ctx: StackContext, node: Node) -> tuple[str, ...]:
    """``terraform validate`` the stack without touching live systems; returns warnings.

    With the local backend the workspace is initialised as for a plan; other backends are
    skipped (``init -backend=false``) so validation never reaches a cluster or a cloud.
    """
    local = ctx.env.terraform.backend == "local"
    ws, engine = _prepare(ctx, node, backend=local)
    _check_inputs(ws, node.inputs)
    warnings = list(_validate_secret_inputs(ctx, ws))
    res = engine.run(["validate", "-json", "-no-color"], cwd=ws.run_dir, env=_env_for(ws))
    diags = diag.diagnostics_from_validate(res.stdout)
    if res.returncode != 0 or any(d.severity == "error" for d in diags):
        raise diag.error_from(
            diags or diag.diagnostics_from_text(res.stderr),
            node=node.id,
            command=res.command,
            what="terraform validate",
            hint=f"fix the Terraform configuration of {node.id}",
            to_repo_path=ws.repo_path,
            redact=_redactor(ws, {}),
            fallback=res.stderr,
        )
    for d in diags:
        where = f" ({ws.repo_path(d.filename) or d.filename}:{d.line})" if d.filename else ""
        warnings.append(f"{d.summary}{where}")
    return tuple(warnings)
