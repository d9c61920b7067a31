"""Stack workspaces: what gets copied, generated and kept, without running Terraform."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from tfhelpers import context, stack, write_tree

from envctl.core.errors import ConfigError
from envctl.core.model import KubernetesSettings
from envctl.terraform import workspace as wsmod

MODULE = {
    "modules/app/main.tf": """
        variable "name" {}
        variable "token" {
          sensitive = true
          default   = ""
        }
        module "inner" { source = "./inner" }
        module "shared" { source = "../shared" }
        output "url" { value = "https://${var.name}" }
        output "token" {
          value     = var.token
          sensitive = true
        }
    """,
    "modules/app/inner/main.tf": 'output "x" { value = 1 }\n',
    "modules/shared/main.tf": 'output "y" { value = 2 }\n',
    "modules/unused/main.tf": 'output "z" { value = 3 }\n',
    "environments/dev/stacks/app/stack.yaml": "module: modules/app\n",
}


def test_module_stack_gets_a_generated_root_and_only_the_modules_it_uses(tmp_path: Path) -> None:
    write_tree(tmp_path, MODULE)
    node = stack("app", module="modules/app", inputs={"name": "dev", "token": "t"})
    ctx = context(tmp_path, nodes=(node,))
    ws = wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)
    base = tmp_path / ".envctl/work/dev/app"
    assert ws.run_dir == base / "environments/dev/stacks/app"
    root = (ws.run_dir / wsmod.GENERATED_ROOT).read_text()
    assert 'source = "../../../../modules/app"' in root
    assert "name = var.name" in root and "token = var.token" in root
    assert 'output "token" {\n  value = module.app.token\n  sensitive = true' in root
    assert 'variable "token" {\n  sensitive = true' in root
    assert (base / "modules/app/inner/main.tf").is_file()
    assert (base / "modules/shared/main.tf").is_file()
    assert not (base / "modules/unused").exists()
    backend = (ws.run_dir / wsmod.BACKEND_OVERRIDE).read_text()
    assert 'backend "local"' in backend and "../../../../../../state/dev/app/terraform.tfstate" in backend
    assert ws.sensitive_variables == {"token"}
    assert ws.repo_path("../../../../modules/app/main.tf") == "modules/app/main.tf"
    assert ws.repo_path(wsmod.GENERATED_ROOT) == "environments/dev/stacks/app/stack.yaml"


def test_missing_required_module_variable_is_a_config_error(tmp_path: Path) -> None:
    write_tree(tmp_path, MODULE)
    node = stack("app", module="modules/app", inputs={})
    ctx = context(tmp_path, nodes=(node,))
    with pytest.raises(ConfigError, match="'name'") as err:
        wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)
    assert err.value.node == "stack.app"


def test_rebuild_keeps_terraform_data_and_drops_removed_files(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/stacks/app/main.tf": 'output "a" { value = 1 }\n',
            "environments/dev/stacks/app/old.tf": 'output "b" { value = 2 }\n',
        },
    )
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))
    ws = wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)
    (ws.run_dir / ".terraform").mkdir()
    (ws.run_dir / ".terraform/providers").write_text("cache")
    (ws.run_dir / ".terraform.lock.hcl").write_text("lock")
    (tmp_path / "environments/dev/stacks/app/old.tf").unlink()
    again = wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)
    assert again.fingerprint != ws.fingerprint
    assert not (ws.run_dir / "old.tf").exists()
    assert (ws.run_dir / ".terraform/providers").read_text() == "cache"
    assert (ws.run_dir / ".terraform.lock.hcl").read_text() == "lock"
    assert wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node).fingerprint == again.fingerprint


def test_backends(tmp_path: Path) -> None:
    write_tree(tmp_path, {"environments/dev/stacks/app/main.tf": 'output "a" { value = 1 }\n'})
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,), backend="stack")
    ws = wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)
    assert not (ws.run_dir / wsmod.BACKEND_OVERRIDE).exists() and ws.state_file is None

    ctx = context(tmp_path, nodes=(node,), backend="kubernetes")
    env = replace(ctx.env, kubernetes=KubernetesSettings(kubeconfig="/k/config", context="staging"))
    text = wsmod.backend_override(env, "app", ws.run_dir, tmp_path)
    assert text is not None
    assert 'backend "kubernetes"' in text
    assert 'secret_suffix = "dev-app"' in text and 'namespace = "envctl-system"' in text
    assert 'config_path = "/k/config"' in text and 'config_context = "staging"' in text


def test_plugin_dir_makes_a_mirror_only_cli_config(tmp_path: Path) -> None:
    ctx = context(tmp_path, plugin_dir="mirror")
    path, text = wsmod.cli_config(ctx.env, tmp_path)
    assert path is not None and path.read_text() == text
    assert f'path = "{tmp_path}/mirror"' in text and "direct" not in text


def test_without_a_mirror_init_may_install_no_provider_at_all(tmp_path: Path) -> None:
    """Registry providers come only from the mirror: with none, an empty one (built-ins only)."""
    ctx = context(tmp_path)
    path, text = wsmod.cli_config(ctx.env, tmp_path)
    assert path is not None and "filesystem_mirror" in text and "direct" not in text
    empty = tmp_path / ".envctl" / "work" / "dev" / "no-providers"
    assert empty.is_dir() and not any(empty.iterdir())
