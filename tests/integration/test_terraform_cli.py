"""The ``cli`` engine with a real OpenTofu binary built from its Go module, and provider mirrors.

The session fixtures build ``tofu`` and the ``hashicorp/local`` provider with
scripts/build-terraform-tools (cached under ~/.cache/envctl/tools, so only the first run pays).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tfhelpers import build_tool, context, dump, stack, write_tree

from envctl.core.changes import Action, NodePlan
from envctl.core.errors import ConfigError, StalePlanError, UnavailableError
from envctl.terraform import apply_stack, plan_stack, read_outputs, validate_stack

pytestmark = pytest.mark.integration

CANARY = "canary-cli-5b1e-do-not-print"


@pytest.fixture(scope="session")
def tofu() -> Path:
    return build_tool("tofu")


@pytest.fixture(scope="session")
def plugin_mirror() -> Path:
    return build_tool("provider-local")


STACKS = {
    "environments/dev/stacks/network/main.tf": """
        variable "name" { type = string }
        variable "password" {
          type      = string
          sensitive = true
        }
        resource "terraform_data" "vpc" {
          input            = var.name
          triggers_replace = [var.password]
        }
        output "vpc_id" { value = terraform_data.vpc.output }
        output "static" { value = "fixed" }
        output "password" {
          value     = var.password
          sensitive = true
        }
    """,
}


def comparable(plan: NodePlan) -> dict[str, Any]:
    """A plan without what legitimately differs between two runs: artifacts and random ids."""
    doc = plan.to_json()
    doc.pop("artifacts")
    for c in doc["changes"]:
        for side in ("before", "after"):
            if isinstance(c[side], dict) and "id" in c[side] and c[side]["id"] != "(known after apply)":
                c[side]["id"] = "<id>"
    return doc


def test_tofu_plans_identically_to_the_embedded_engine(tmp_path: Path, tofu: Path) -> None:
    plans = {}
    for engine in ("embedded", "cli"):
        root = tmp_path / engine
        write_tree(root, STACKS)
        node = stack("network")
        ctx = context(root, nodes=(node,), engine=engine, binary=str(tofu))
        inputs = {"name": "net", "password": CANARY}
        first = plan_stack(ctx, node, inputs, root / "p1")
        apply_stack(ctx, node, Path(first.artifacts["planfile"]))
        second = plan_stack(ctx, node, {"name": "net2", "password": CANARY + "2"}, root / "p2")
        plans[engine] = (first, second)
        assert CANARY not in dump(first) + dump(second)
    assert comparable(plans["embedded"][0]) == comparable(plans["cli"][0])
    assert comparable(plans["embedded"][1]) == comparable(plans["cli"][1])
    assert plans["cli"][0].artifacts["engine"] == "tofu 1.12.6"
    assert plans["embedded"][0].artifacts["engine"].startswith("terraform 1.15")
    assert [c.action for c in plans["cli"][1].changes] == [Action.REPLACE]


def test_tofu_applies_refuses_stale_plans_and_reports_outputs(tmp_path: Path, tofu: Path) -> None:
    write_tree(tmp_path, STACKS)
    node = stack("network")
    ctx = context(tmp_path, nodes=(node,), engine="cli", binary=str(tofu))
    a = plan_stack(ctx, node, {"name": "a", "password": CANARY}, tmp_path / "pa")
    b = plan_stack(ctx, node, {"name": "b", "password": CANARY}, tmp_path / "pb")
    outputs = apply_stack(ctx, node, Path(a.artifacts["planfile"]))
    assert outputs["vpc_id"].value == "a" and outputs["password"].sensitive
    assert CANARY not in str(outputs)
    with pytest.raises(StalePlanError) as err:
        apply_stack(ctx, node, Path(b.artifacts["planfile"]))
    assert err.value.exit_code == 4
    assert read_outputs(ctx, node)["vpc_id"].value == "a"
    assert validate_stack(ctx, node) == ()


def test_tofu_diagnostics_carry_file_and_line(tmp_path: Path, tofu: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/stacks/app/main.tf": '# one\n# two\nresource "terraform_data" "x" {\n'
            "  input = var.nope\n}\n"
        },
    )
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,), engine="cli", binary=str(tofu))
    # an undeclared variable is a configuration error found at plan: exit 78 at its file:line
    with pytest.raises(ConfigError) as err:
        plan_stack(ctx, node, {}, tmp_path / "plans")
    assert err.value.exit_code == 78
    assert str(err.value.location) == "environments/dev/stacks/app/main.tf:4"
    assert err.value.detail is not None and err.value.detail.startswith("command: tofu -chdir=")


def test_missing_binary_is_unavailable_with_what_to_install(tmp_path: Path) -> None:
    write_tree(tmp_path, STACKS)
    node = stack("network")
    ctx = context(tmp_path, nodes=(node,), engine="cli", binary="tofu-not-installed-anywhere")
    with pytest.raises(UnavailableError) as err:
        plan_stack(ctx, node, {"name": "x", "password": "y"}, tmp_path / "plans")
    assert err.value.exit_code == 69
    assert err.value.hint is not None and "opentofu" in err.value.hint.lower()


LOCAL_FILE_STACK = """
terraform {
  required_providers {
    local = { source = "hashicorp/local" }
  }
}
variable "dir" { type = string }
resource "local_file" "greeting" {
  filename = "${var.dir}/greeting.txt"
  content  = "hello from git"
}
output "path" { value = local_file.greeting.filename }
"""


@pytest.mark.parametrize("engine", ["embedded", "cli"])
@pytest.mark.parametrize("how", ["edited", "deleted"])
def test_refresh_only_plan_detects_out_of_band_changes(
    tmp_path: Path, tofu: Path, plugin_mirror: Path, engine: str, how: str
) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/files/main.tf": LOCAL_FILE_STACK})
    node = stack("files")
    ctx = context(tmp_path, nodes=(node,), engine=engine, binary=str(tofu), plugin_dir=str(plugin_mirror))
    target = tmp_path / "out"
    target.mkdir()
    inputs = {"dir": str(target)}
    plan = plan_stack(ctx, node, inputs, tmp_path / "p1")
    apply_stack(ctx, node, Path(plan.artifacts["planfile"]))
    assert (target / "greeting.txt").read_text() == "hello from git"

    clean = plan_stack(ctx, node, inputs, tmp_path / "p2", refresh_only=True)
    assert not clean.has_changes and clean.artifacts["mode"] == "refresh-only"

    if how == "edited":
        (target / "greeting.txt").write_text("changed by hand")
    else:
        (target / "greeting.txt").unlink()
    drift = plan_stack(ctx, node, inputs, tmp_path / "p3", refresh_only=True)
    assert [c.address for c in drift.changes] == ["local_file.greeting"]
    change = drift.changes[0]
    assert change.action is Action.DELETE
    assert change.reasons == ("deleted outside of Terraform",)

    converge = plan_stack(ctx, node, inputs, tmp_path / "p4")
    assert [c.action for c in converge.changes] == [Action.CREATE]
    assert converge.notes  # "1 resource(s) changed outside of Terraform ..."
    apply_stack(ctx, node, Path(converge.artifacts["planfile"]))
    assert (target / "greeting.txt").read_text() == "hello from git"
