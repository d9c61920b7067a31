"""Stack policy: provisioners and registry providers are refused before any engine runs,
unless environment.yaml allows them (terraform.allow_provisioners, allow_registry_providers)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tfhelpers import context, stack, write_tree

from envctl.core.errors import ConfigError
from envctl.core.model import AllowSettings
from envctl.terraform import hcl
from envctl.terraform import workspace as wsmod

STACK = "environments/dev/stacks/app"

PROVISIONER = """
resource "terraform_data" "x" {
  input = "a"
  provisioner "local-exec" {
    command = "touch /tmp/ran"
  }
}
"""

LOCAL_FILE = """
terraform {
  required_providers {
    local = {
      source  = "hashicorp/local"
      version = "~> 2.5"
    }
  }
}
resource "local_file" "f" {
  filename = "/tmp/x"
  content  = "x"
}
"""


def _materialize(tmp_path: Path, files: dict[str, str], **settings: object) -> wsmod.Workspace:
    write_tree(tmp_path, files)
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,), **settings)
    return wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)


def _mirror(tmp_path: Path, host: str = "registry.terraform.io", source: str = "hashicorp/local") -> Path:
    mirror = tmp_path / "mirror"
    d = mirror / host / source / "2.5.2" / "linux_amd64"
    d.mkdir(parents=True)
    (d / f"terraform-provider-{source.split('/')[1]}_v2.5.2").write_text("binary")
    return mirror


# --- the scanner ------------------------------------------------------------------------------


def test_scanner_finds_provisioners_in_resources_and_removed_blocks() -> None:
    text = PROVISIONER + (
        'resource "aws_instance" "web" {\n'
        '  provisioner "remote-exec" {\n    inline = ["echo }"]\n  }\n'
        '  provisioner "file" {\n    source = "a"\n  }\n}\n'
        '# provisioner "local-exec" {}\n'
        "removed {\n  from = terraform_data.old\n"
        '  provisioner "local-exec" {\n    when = destroy\n    command = "x"\n  }\n}\n'
    )
    found = [(p.kind, p.owner, p.line) for p in hcl.scan({"main.tf": text}).provisioners]
    assert found == [
        ("local-exec", "terraform_data.x", 4),
        ("remote-exec", "aws_instance.web", 9),
        ("file", "aws_instance.web", 12),
        ("local-exec", "removed", 19),
    ]


def test_scanner_finds_required_and_implied_providers() -> None:
    text = LOCAL_FILE + (
        'provider "aws" {\n  region = "eu-west-1"\n}\n'
        'resource "terraform_data" "t" {}\n'
        'data "terraform_remote_state" "s" {}\n'
        'resource "google_compute_instance" "g" {\n  provider = google-beta.west\n}\n'
        'check "up" {\n  data "http" "h" {\n    url = "https://x"\n  }\n}\n'
    )
    info = hcl.scan({"main.tf": text})
    got = [(p.local_name, p.source, p.line, p.declared, p.builtin) for p in info.providers]
    assert got == [
        ("local", "hashicorp/local", 4, True, False),
        ("aws", "hashicorp/aws", 14, False, False),
        ("terraform", "terraform.io/builtin/terraform", 17, False, True),
        ("google-beta", "hashicorp/google-beta", 19, False, False),
        ("http", "hashicorp/http", 23, False, False),
    ]


def test_scanner_reads_required_providers_forms() -> None:
    text = (
        "terraform {\n  required_providers {\n"
        '    null = "~> 3.0"\n'
        '    mine = { source = "Example.com/Acme/Thing" } # source = "not/this"\n'
        "  }\n}\n"
    )
    info = hcl.scan({"versions.tf": text})
    assert [(p.local_name, p.address, p.line) for p in info.providers] == [
        ("null", ("registry.terraform.io", "hashicorp", "null"), 3),
        ("mine", ("example.com", "acme", "thing"), 4),
    ]


def test_scanner_reads_json_syntax() -> None:
    doc = {
        "terraform": {"required_providers": {"local": {"source": "hashicorp/local"}}},
        "resource": {
            "terraform_data": {"x": {"provisioner": [{"local-exec": {"command": "true"}}]}},
            "random_id": {"r": {"byte_length": 4}},
        },
    }
    info = hcl.scan({"main.tf.json": json.dumps(doc, indent=2)})
    assert [(p.kind, p.owner) for p in info.provisioners] == [("local-exec", "terraform_data.x")]
    assert [p.source for p in info.providers] == [
        "hashicorp/local",
        "terraform.io/builtin/terraform",
        "hashicorp/random",
    ]


# --- provisioners -----------------------------------------------------------------------------


def test_provisioner_is_refused_with_node_file_line_and_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _materialize(tmp_path, {f"{STACK}/main.tf": PROVISIONER})
    e = err.value
    assert e.exit_code == 78
    assert e.node == "stack.app"
    assert str(e.location) == f"{STACK}/main.tf:3"
    assert 'provisioner "local-exec"' in e.message and "terraform_data.x" in e.message
    assert e.hint is not None and "terraform.allow_provisioners: true" in e.hint
    assert not (tmp_path / ".envctl" / "work").exists(), "refused before the workspace was written"


def test_provisioner_in_a_called_local_module_is_refused(tmp_path: Path) -> None:
    files = {
        f"{STACK}/main.tf": 'module "inner" {\n  source = "../../../../modules/inner"\n}\n',
        "modules/inner/main.tf": 'resource "terraform_data" "y" {\n  provisioner "file" {\n  }\n}\n',
    }
    with pytest.raises(ConfigError, match='provisioner "file"') as err:
        _materialize(tmp_path, files)
    assert str(err.value.location) == "modules/inner/main.tf:2"


def test_provisioner_in_a_module_stack_is_refused(tmp_path: Path) -> None:
    files = {
        f"{STACK}/stack.yaml": "module: modules/app\n",
        "modules/app/main.tf": PROVISIONER,
    }
    write_tree(tmp_path, files)
    node = stack("app", module="modules/app")
    ctx = context(tmp_path, nodes=(node,))
    with pytest.raises(ConfigError, match="provisioner") as err:
        wsmod.materialize(ctx.env, ctx.snapshot, tmp_path, node)
    assert str(err.value.location) == "modules/app/main.tf:3"


def test_allow_provisioners_lets_them_through(tmp_path: Path) -> None:
    ws = _materialize(tmp_path, {f"{STACK}/main.tf": PROVISIONER}, allow_provisioners=True)
    assert (ws.run_dir / "main.tf").is_file()


def test_commented_provisioner_is_not_refused(tmp_path: Path) -> None:
    text = 'resource "terraform_data" "x" {\n  # provisioner "local-exec" {}\n  input = "p"\n}\n'
    _materialize(tmp_path, {f"{STACK}/main.tf": text})


# --- providers --------------------------------------------------------------------------------


def test_builtin_terraform_data_needs_no_mirror(tmp_path: Path) -> None:
    _materialize(tmp_path, {f"{STACK}/main.tf": 'resource "terraform_data" "x" {}\n'})


def test_registry_provider_without_a_mirror_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _materialize(tmp_path, {f"{STACK}/main.tf": LOCAL_FILE})
    e = err.value
    assert e.exit_code == 78 and e.node == "stack.app"
    assert "registry.terraform.io/hashicorp/local" in e.message and "plugin_dir" in e.message
    assert str(e.location) == f"{STACK}/main.tf:3"
    assert e.hint is not None and "terraform.allow_registry_providers: true" in e.hint


def test_implied_provider_is_refused_at_the_first_resource_using_it(tmp_path: Path) -> None:
    text = 'resource "terraform_data" "t" {}\n\nresource "null_resource" "x" {}\n'
    with pytest.raises(ConfigError, match="hashicorp/null") as err:
        _materialize(tmp_path, {f"{STACK}/main.tf": text})
    assert str(err.value.location) == f"{STACK}/main.tf:3"


def test_provider_in_the_mirror_is_fine(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path)
    ws = _materialize(tmp_path, {f"{STACK}/main.tf": LOCAL_FILE}, plugin_dir=str(mirror))
    assert ws.info.providers[0].source == "hashicorp/local"


def test_opentofu_mirror_layout_is_fine(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path, host="registry.opentofu.org")
    _materialize(tmp_path, {f"{STACK}/main.tf": LOCAL_FILE}, plugin_dir="mirror")
    assert mirror.is_dir()


def test_provider_missing_from_the_mirror_is_refused(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path, source="hashicorp/random")
    (mirror / "registry.terraform.io" / "hashicorp" / "local").mkdir()  # empty: holds no provider
    with pytest.raises(ConfigError, match="not in the provider mirror") as err:
        _materialize(tmp_path, {f"{STACK}/main.tf": LOCAL_FILE}, plugin_dir=str(mirror))
    assert "hashicorp/local" in err.value.message


def test_explicit_host_must_match_the_mirror(tmp_path: Path) -> None:
    _mirror(tmp_path)
    text = LOCAL_FILE.replace('"hashicorp/local"', '"example.com/hashicorp/local"')
    with pytest.raises(ConfigError, match=r"example\.com/hashicorp/local"):
        _materialize(tmp_path, {f"{STACK}/main.tf": text}, plugin_dir="mirror")


def test_registry_provider_in_a_called_module_is_refused(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path)
    files = {
        f"{STACK}/main.tf": LOCAL_FILE + 'module "m" {\n  source = "./m"\n}\n',
        f"{STACK}/m/main.tf": 'resource "random_id" "r" {\n  byte_length = 4\n}\n',
    }
    with pytest.raises(ConfigError, match="hashicorp/random") as err:
        _materialize(tmp_path, files, plugin_dir=str(mirror))
    assert str(err.value.location) == f"{STACK}/m/main.tf:1"


def test_allow_registry_providers_lets_them_through_and_keeps_the_mirror_first(tmp_path: Path) -> None:
    mirror = _mirror(tmp_path)
    text = LOCAL_FILE + 'resource "random_id" "r" {\n  byte_length = 4\n}\n'
    ws = _materialize(
        tmp_path, {f"{STACK}/main.tf": text}, plugin_dir=str(mirror), allow_registry_providers=True
    )
    assert ws.cli_config is not None
    cfg = ws.cli_config.read_text()
    assert f'path = "{mirror}"' in cfg
    assert 'direct {\n    exclude = ["registry.terraform.io/hashicorp/local"]' in cfg
    # without a mirror nothing is refused either
    _materialize(tmp_path, {f"{STACK}/main.tf": text}, allow_registry_providers=True)


def test_provisioner_and_provider_checks_are_independent(tmp_path: Path) -> None:
    text = LOCAL_FILE + PROVISIONER
    with pytest.raises(ConfigError, match="hashicorp/local"):
        _materialize(tmp_path, {f"{STACK}/main.tf": text}, allow_provisioners=True)
    with pytest.raises(ConfigError, match="provisioner"):
        _materialize(tmp_path, {f"{STACK}/main.tf": text}, allow_registry_providers=True)
    _materialize(tmp_path, {f"{STACK}/main.tf": text}, allow_provisioners=True, allow_registry_providers=True)


# --- ways around the scanner ------------------------------------------------------------------


def test_bare_identifier_labels_are_read(tmp_path: Path) -> None:
    """``resource terraform_data x { provisioner local-exec {...} }`` is valid HCL and runs."""
    text = 'resource terraform_data x {\n  provisioner local-exec {\n    command = "true"\n  }\n}\n'
    assert [(p.kind, p.owner) for p in hcl.scan({"main.tf": text}).provisioners] == [
        ("local-exec", "terraform_data.x")
    ]
    with pytest.raises(ConfigError, match='provisioner "local-exec"') as err:
        _materialize(tmp_path, {f"{STACK}/main.tf": text})
    assert str(err.value.location) == f"{STACK}/main.tf:2"
    bare = 'data external y {\n  program = ["sh"]\n}\nmodule m {\n  source = "../x"\n}\n'
    info = hcl.scan({"main.tf": bare})
    assert info.external_data == (("main.tf", 1),)
    assert [s for s, _f, _l in info.module_sources] == ["../x"]
    assert [p.source for p in info.providers] == ["hashicorp/external"]


def test_opentofu_files_are_scanned(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="provisioner") as err:
        _materialize(tmp_path, {f"{STACK}/main.tofu": PROVISIONER})
    assert str(err.value.location) == f"{STACK}/main.tofu:3"
    (tmp_path / STACK / "main.tofu").unlink()
    with pytest.raises(ConfigError, match="hashicorp/random"):
        _materialize(tmp_path, {f"{STACK}/main.tofu.json": '{"resource": {"random_id": {"r": {}}}}'})


@pytest.mark.parametrize("source", ["/abs/path/evil", "~/evil", "file::/abs/evil", "C:\\\\evil"])
def test_a_module_source_on_this_machine_is_refused_even_when_remote_sources_are_allowed(
    tmp_path: Path, source: str
) -> None:
    with pytest.raises(ConfigError, match="path on this machine") as e:
        _materialize_allowing(tmp_path, {f"{STACK}/main.tf": f'module "m" {{\n  source = "{source}"\n}}\n'})
    assert e.value.location is not None and e.value.location.line == 1


@pytest.mark.parametrize(
    "source",
    [
        "git::https://example.com/m.git",
        "https://example.com/m.zip",
        "github.com/org/m",
        "hashicorp/consul/aws",
    ],
)
def test_a_remote_module_source_is_refused_unless_allowed(tmp_path: Path, source: str) -> None:
    files = {f"{STACK}/main.tf": f'module "m" {{\n  source = "{source}"\n}}\n'}
    with pytest.raises(ConfigError, match="fetched from outside the repository") as e:
        _materialize(tmp_path, files)
    assert "remote_sources" in (e.value.hint or "")
    _materialize_allowing(tmp_path, files, remote_sources=True)


def test_a_local_module_is_scanned_with_the_stack_policy(tmp_path: Path) -> None:
    files = {
        f"{STACK}/main.tf": 'module "m" {\n  source = "../../../../modules/m"\n}\n',
        "modules/m/main.tf": PROVISIONER,
    }
    with pytest.raises(ConfigError, match="provisioner") as e:
        _materialize(tmp_path, files)
    assert e.value.location is not None and e.value.location.file == "modules/m/main.tf"


@pytest.mark.parametrize(
    "expr",
    [
        'file("/etc/passwd")',
        'filebase64("${path.module}/../../../../../etc/passwd")',
        'templatefile("${path.root}/../../../../.git/config", {})',
        'fileset("/", "**")',
        'fileset(path.module, "../../../../**")',
        "filesha256(var.path)",
        'file(pathexpand("~/.ssh/id_rsa"))',
        'file("~/.ssh/id_rsa")',
        'filemd5("${path.cwd}/../../../../../../../.envctl/state/dev/x/terraform.tfstate")',
    ],
)
def test_file_functions_outside_the_repository_are_refused_unless_allowed(tmp_path: Path, expr: str) -> None:
    files = {f"{STACK}/main.tf": f'output "x" {{\n  value = {expr}\n}}\n'}
    with pytest.raises(ConfigError, match="may read outside the repository") as e:
        _materialize(tmp_path, files)
    assert e.value.location is not None and e.value.location.line == 2
    assert "terraform_file_functions" in (e.value.hint or "")
    _materialize_allowing(tmp_path, files, terraform_file_functions=True)


def test_a_file_function_in_a_template_is_refused(tmp_path: Path) -> None:
    files = {
        f"{STACK}/main.tf": 'output "x" {\n  value = templatefile("${path.module}/t.tftpl", {})\n}\n',
        f"{STACK}/t.tftpl": 'hello\n${file("/etc/hostname")}\n',
    }
    with pytest.raises(ConfigError, match="may read outside") as e:
        _materialize(tmp_path, files)
    assert e.value.location is not None and (e.value.location.file, e.value.location.line) == (
        f"{STACK}/t.tftpl",
        2,
    )


@pytest.mark.parametrize(
    "expr",
    [
        'file("${path.module}/files/a.txt")',
        'fileset(path.module, "files/*.txt")',
        'file("files/a.txt")',
        'templatefile("${path.root}/files/a.txt", {})',
    ],
)
def test_file_functions_inside_the_repository_are_allowed(tmp_path: Path, expr: str) -> None:
    files = {f"{STACK}/main.tf": f'output "x" {{\n  value = {expr}\n}}\n', f"{STACK}/files/a.txt": "a"}
    _materialize(tmp_path, files)


def _materialize_allowing(tmp_path: Path, files: dict[str, str], **allow: bool) -> wsmod.Workspace:
    write_tree(tmp_path, files)
    node = stack("app")
    ctx = context(tmp_path, nodes=(node,))
    env = dataclasses.replace(ctx.env, allow=AllowSettings(**allow))
    return wsmod.materialize(env, ctx.snapshot, tmp_path, node)
