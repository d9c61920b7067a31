"""A hostile environment repository is refused up front, clearly, and without a traceback.

Each case plants one hostile thing in an isolated copy of the example environment and runs
``envctl validate`` and ``envctl plan``: both must exit 78 (invalid configuration) before any
node is planned, name the problem, print no traceback, and never print the content of a file
that lies outside the repository (it holds a canary).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Env, assert_no_traceback, live
from kubernetes import client

pytestmark = pytest.mark.safety

CANARY = f"OUTSIDE-CANARY-{uuid.uuid4().hex}"
# Layer content goes into layer.platform: it has no upstream, so plan renders it for real and
# dry-runs it against the cluster (layer.app waits for stack.database and is planned offline).
LAYER = "layers/platform"
KUSTOMIZE_OWN = "resources:\n  - namespaces.yaml\n  - config.yaml\n"


def _outside(repo: Env) -> Path:
    """A directory next to the repository holding files with the canary."""
    out = repo.root.parent / "outside"
    (out / "mod").mkdir(parents=True, exist_ok=True)
    (out / "mod" / "main.tf").write_text(
        f'# {CANARY}\nvariable "name" {{\n  type = string\n  default = "{CANARY}"\n}}\n'
        f'output "leak" {{\n  value = "{CANARY}"\n}}\n'
    )
    (out / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n"
        f"data:\n  canary: {CANARY}\n"
    )
    (out / "vars.tfvars").write_text(f'name = "{CANARY}"\n')
    return out


def alias_bomb_manifest(repo: Env) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    repo.write(
        f"{LAYER}/bomb.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n"
        + "\n".join("  " + line for line in lines) + "\n",
    )


def alias_bomb_environment(repo: Env) -> None:
    lines = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    p = repo.path("environment.yaml")
    p.write_text(p.read_text().replace("vars:\n", "vars:\n" + "\n".join(lines) + "\n", 1))


def deep_nesting_manifest(repo: Env) -> None:
    depth = 10_000
    repo.write(
        f"{LAYER}/deep.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata:\n  x: " + "[" * depth + "]" * depth
        + "\n",
    )


def deep_nesting_layer_yaml(repo: Env) -> None:
    depth = 10_000
    p = repo.path("layers/app/layer.yaml")
    p.write_text(p.read_text() + "outputs: " + "{a: " * depth + "1" + "}" * depth + "\n")


def ten_megabyte_manifest(repo: Env) -> None:
    line = "  k{0:07d}: " + "x" * 100 + "\n"
    body = "".join(line.format(i) for i in range(10 * 1024 * 1024 // 112))
    repo.write(f"{LAYER}/big.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n" + body)


def object_over_api_limit(repo: Env) -> None:
    """Two files under every file-size limit that kustomize turns into one 1.8 MiB ConfigMap."""
    chunk = ("y" * 1023 + "\n") * 900  # 900 KiB each
    layer = "layers/platform"
    repo.write(f"{layer}/part1.txt", chunk)
    repo.write(f"{layer}/part2.txt", chunk)
    repo.write(
        f"{layer}/kustomization.yaml",
        "resources: [namespaces.yaml, config.yaml]\n"
        "configMapGenerator:\n  - name: huge\n    namespace: " + repo.namespace + "\n"
        "    files: [part1.txt, part2.txt]\n"
        "generatorOptions: {disableNameSuffixHash: true}\n",
    )


def _stack_tf(repo: Env, body: str, name: str = "evil") -> None:
    repo.write(f"stacks/{name}/main.tf", body)


def module_source_traversal(repo: Env) -> None:
    _outside(repo)
    _stack_tf(repo, 'module "m" {\n  source = "../../../../../outside/mod"\n}\n')


def stack_yaml_module_traversal(repo: Env) -> None:
    _outside(repo)
    repo.write("stacks/evil/stack.yaml", "module: modules/../../outside/mod\n")


def module_source_symlink(repo: Env) -> None:
    out = _outside(repo)
    os.symlink(out / "mod", repo.root / "modules" / "evil")
    repo.write("stacks/evil/stack.yaml", "module: modules/evil\n")


def module_file_symlink(repo: Env) -> None:
    out = _outside(repo)
    (repo.root / "modules" / "evil").mkdir()
    os.symlink(out / "mod" / "main.tf", repo.root / "modules" / "evil" / "main.tf")
    repo.write("stacks/evil/stack.yaml", "module: modules/evil\n")


def var_file_symlink(repo: Env) -> None:
    out = _outside(repo)
    _stack_tf(repo, 'variable "name" {\n  type = string\n}\n')
    os.symlink(out / "vars.tfvars", repo.path("stacks/evil/terraform.tfvars"))


def kustomize_resource_traversal(repo: Env) -> None:
    _outside(repo)
    repo.write(f"{LAYER}/kustomization.yaml", KUSTOMIZE_OWN + "  - ../../../../../outside/cm.yaml\n")


def kustomize_resource_symlink(repo: Env) -> None:
    out = _outside(repo)
    os.symlink(out / "cm.yaml", repo.path(f"{LAYER}/linked.yaml.txt"))
    repo.write(f"{LAYER}/kustomization.yaml", KUSTOMIZE_OWN + "  - linked.yaml.txt\n")


def kustomize_directory_symlink(repo: Env) -> None:
    out = _outside(repo)
    os.symlink(out, repo.path(f"{LAYER}/base"))
    (out / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    repo.write(f"{LAYER}/kustomization.yaml", KUSTOMIZE_OWN + "  - base\n")


def manifest_symlink(repo: Env) -> None:
    out = _outside(repo)
    os.symlink(out / "cm.yaml", repo.path(f"{LAYER}/stolen.yaml"))


def layer_directory_symlink(repo: Env) -> None:
    out = _outside(repo)
    (out / "layer").mkdir()
    (out / "layer" / "cm.yaml").write_text((out / "cm.yaml").read_text())
    os.symlink(out / "layer", repo.path("layers/stolen"))


def data_external(repo: Env) -> None:
    marker = repo.root.parent / "external-ran"
    _stack_tf(
        repo,
        'data "external" "x" {\n'
        f'  program = ["sh", "-c", "touch {marker}; echo {{}}"]\n'
        "}\n",
    )


def provisioner(repo: Env) -> None:
    marker = repo.root.parent / "provisioner-ran"
    _stack_tf(
        repo,
        'resource "terraform_data" "x" {\n'
        '  provisioner "local-exec" {\n'
        f'    command = "touch {marker}"\n'
        "  }\n"
        "}\n",
    )


def non_mirror_provider(repo: Env) -> None:
    _stack_tf(
        repo,
        'terraform {\n  required_providers {\n    null = { source = "hashicorp/null" }\n  }\n}\n'
        'resource "null_resource" "x" {}\n',
    )


def module_source_absolute(repo: Env) -> None:
    """Issue 16 #1: an absolute module source was never scanned; its local-exec ran on apply."""
    out = _outside(repo)
    marker = repo.root.parent / "provisioner-ran"
    (out / "evil").mkdir(exist_ok=True)
    (out / "evil" / "main.tf").write_text(
        'resource "terraform_data" "x" {\n  provisioner "local-exec" {\n'
        f'    command = "touch {marker}"\n  }}\n}}\n'
        'data "external" "x" {\n  program = ["true"]\n}\n'
    )
    _stack_tf(repo, f'module "m" {{\n  source = "{out / "evil"}"\n}}\n')


def module_source_remote(repo: Env) -> None:
    _stack_tf(repo, 'module "m" {\n  source = "git::https://example.invalid/evil.git"\n}\n')


def kustomize_substituted_dotdot(repo: Env) -> None:
    """Issue 16 #2: the .. check ran before substitution."""
    _outside(repo)
    p = repo.path("environment.yaml")
    p.write_text(p.read_text().replace("vars:\n", "vars:\n  base: ../../../../../outside\n", 1))
    repo.write(f"{LAYER}/kustomization.yaml", KUSTOMIZE_OWN + "  - ${env.vars.base}/cm.yaml\n")


def _generator_over(repo: Env, links: dict[str, str]) -> None:
    for name, target in links.items():
        os.symlink(target, repo.path(f"{LAYER}/{name}"))
    repo.write(
        f"{LAYER}/kustomization.yaml",
        KUSTOMIZE_OWN + "configMapGenerator:\n  - name: stolen\n    namespace: " + repo.namespace + "\n"
        f"    files: [{', '.join(links)}]\n",
    )


def generator_symlink_into_git(repo: Env) -> None:
    """Issue 16 #3: a generator over a symlink to .git/config printed the CI token."""
    import subprocess

    subprocess.run(
        ["git", "config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {CANARY}"],
        cwd=repo.root, check=True,
    )
    _generator_over(repo, {"gitconfig": "../../../../.git/config"})


def generator_symlink_into_envctl(repo: Env) -> None:
    # (a plan bundle: a real tfstate here would count as state written by the test's run)
    held = repo.dotdir / "plans" / "old" / "bundle.json"
    held.parent.mkdir(parents=True, exist_ok=True)
    held.write_text(f'{{"outputs": {{"password": {{"value": "{CANARY}", "sensitive": true}}}}}}\n')
    _generator_over(repo, {"held": "../../../../.envctl/plans/old/bundle.json"})


def kustomize_remote_resource(repo: Env) -> None:
    """Issue 16 #4: kustomize ran git fetch during validate and plan."""
    repo.write(
        f"{LAYER}/kustomization.yaml",
        KUSTOMIZE_OWN + "  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v3.3.1\n",
    )


def file_function_absolute(repo: Env) -> None:
    """Issue 16 #5: file() on an absolute path read a host file into state and outputs."""
    out = _outside(repo)
    _stack_tf(repo, f'output "leak" {{\n  value = file("{out / "cm.yaml"}")\n}}\n')


def templatefile_escape(repo: Env) -> None:
    _outside(repo)
    escape = "${path.module}/../../../../../outside/cm.yaml"
    _stack_tf(repo, f'output "leak" {{\n  value = templatefile("{escape}", {{}})\n}}\n')


def committed_envctl(repo: Env) -> None:
    """Issue 16 #8: a committed journal made status say converged; a committed tfstate changed the plan."""
    from harness import git

    run = repo.dotdir / "runs" / repo.name / "fake.json"
    run.parent.mkdir(parents=True, exist_ok=True)
    run.write_text('{"run": "fake", "nodes": {}}\n')
    git(repo.root, "add", "-f", ".envctl/runs")


CASES: dict[str, tuple[Callable[[Env], None], str]] = {
    "module-source-absolute": (module_source_absolute, r"path on this machine"),
    "module-source-remote": (module_source_remote, r"fetched from outside the repository"),
    "kustomize-substituted-dotdot": (kustomize_substituted_dotdot, r"cannot hold a reference"),
    "generator-symlink-into-git": (generator_symlink_into_git, r"symlink into \.git/"),
    "generator-symlink-into-envctl": (generator_symlink_into_envctl, r"symlink into \.envctl/"),
    "kustomize-remote-resource": (kustomize_remote_resource, r"remote source"),
    "file-function-absolute": (file_function_absolute, r"may read outside the repository"),
    "templatefile-escape": (templatefile_escape, r"may read outside the repository"),
    "committed-envctl": (committed_envctl, r"\.envctl/ is committed"),
    "yaml-alias-bomb-manifest": (alias_bomb_manifest, r"alias|anchor"),
    "yaml-alias-bomb-environment": (alias_bomb_environment, r"alias|anchor"),
    "deep-nesting-manifest": (deep_nesting_manifest, r"nest|deep|depth"),
    "deep-nesting-layer-yaml": (deep_nesting_layer_yaml, r"nest|deep|depth"),
    "ten-megabyte-manifest": (ten_megabyte_manifest, r"large|size|bytes|MiB|limit"),
    "object-over-1.5MiB": (object_over_api_limit, r"large|size|bytes|MiB|limit"),
    "module-source-dotdot": (module_source_traversal, r"outside|escape|\.\."),
    "stack-yaml-module-dotdot": (stack_yaml_module_traversal, r"outside|escape|\.\."),
    "module-dir-symlink": (module_source_symlink, r"outside|escape|symlink|link"),
    "module-file-symlink": (module_file_symlink, r"outside|escape|symlink|link"),
    "var-file-symlink": (var_file_symlink, r"outside|escape|symlink|link"),
    "kustomize-resource-dotdot": (kustomize_resource_traversal, r"outside|escape|\.\."),
    "kustomize-resource-symlink": (kustomize_resource_symlink, r"outside|escape|symlink|link"),
    "kustomize-directory-symlink": (kustomize_directory_symlink, r"outside|escape|symlink|link"),
    "manifest-symlink": (manifest_symlink, r"outside|escape|symlink|link"),
    "layer-directory-symlink": (layer_directory_symlink, r"outside|escape|symlink|link"),
    "data-external": (data_external, r"external"),
    "provisioner": (provisioner, r"provisioner"),
    "non-mirror-provider": (non_mirror_provider, r"provider|mirror"),
}


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("case", list(CASES))
def test_refuses_a_hostile_repository(
    example: Env, api_client: client.ApiClient, case: str, command: str
) -> None:
    plant, pattern = CASES[case]
    plant(example)
    example.commit(case)
    # a bound that stops an expanding alias bomb (how fast the machine is asserts nothing)
    run = example.run(command, "-e", example.name, timeout=120)
    assert run.returncode == 78, str(run)
    # refused by the offline precheck: no node reached its engine or the cluster
    assert not re.search(r"^\S+: planning$", run.stderr, re.MULTILINE), f"a node was planned:\n{run}"
    assert_no_traceback(run)
    assert re.search(pattern, run.stderr, re.IGNORECASE), f"no clear message (/{pattern}/):\n{run}"
    assert CANARY not in run.output, f"content of a file outside the repository was printed:\n{run}"
    for marker in ("external-ran", "provisioner-ran"):
        assert not (example.root.parent / marker).exists(), f"{case}: a program of the stack ran"
    assert example.state_files() == []
    if command == "plan":
        assert live(api_client, "Namespace", "", example.namespace) is None, "plan created the namespace"


def test_refuses_an_oversized_object_before_contacting_the_cluster(example: Env) -> None:
    """With an unreachable cluster, the size check still answers 78: it runs before any request."""
    object_over_api_limit(example)
    example.commit("huge")
    kc = example.root.parent / "unreachable.kubeconfig"
    kc.write_text(Path(example.kubeconfig).read_text())
    text = re.sub(r"server: https://127\.0\.0\.1:\d+", "server: https://127.0.0.1:9", kc.read_text())
    kc.write_text(text)
    run = example.run("plan", "-e", example.name, "--target", "layer.platform", env={"KUBECONFIG": str(kc)})
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)


@pytest.mark.parametrize("plant", [provisioner, module_source_absolute], ids=["own", "absolute-module"])
def test_provisioner_never_runs_on_apply(example: Env, plant: Callable[[Env], None]) -> None:
    plant(example)
    example.commit("provisioner")
    run = example.apply()
    assert not (example.root.parent / "provisioner-ran").exists(), f"the local-exec provisioner ran:\n{run}"
    assert run.returncode == 78, str(run)
    assert not list(example.dotdir.rglob(".terraform/modules")), "terraform init fetched the module"


def test_a_committed_envctl_is_refused_by_status_too(example: Env) -> None:
    committed_envctl(example)
    example.commit("state in git")
    run = example.run("status", "-e", example.name)
    assert run.returncode == 78, str(run)
    assert "git rm -r --cached .envctl" in run.stderr
    assert "converged" not in run.stdout


def test_allow_opens_remote_sources_and_file_functions(example: Env) -> None:
    """Each allow: key opens exactly its way out: with both set, the same stacks validate."""
    file_function_absolute(example)
    p = example.path("environment.yaml")
    p.write_text(p.read_text() + "allow:\n  terraform_file_functions: true\n")
    example.commit("allow file functions")
    run = example.run("validate", "-e", example.name)
    assert "may read outside" not in run.output, str(run)
    assert run.returncode == 0, str(run)


def test_an_unknown_allow_key_is_refused(example: Env) -> None:
    p = example.path("environment.yaml")
    p.write_text(p.read_text() + "allow:\n  everything: true\n")
    example.commit("bad allow")
    run = example.run("validate", "-e", example.name)
    assert run.returncode == 78, str(run)
    assert "environment.yaml:" in run.stderr and "everything" in run.stderr
    assert "remote_sources" in run.stderr


def test_allowed_external_data_is_not_refused_as_hostile(example: Env) -> None:
    """The refusal is policy, not a blanket ban: environment.yaml can allow data "external"."""
    data_external(example)
    p = example.path("environment.yaml")
    p.write_text(p.read_text() + "terraform:\n  allow_external_data: true\n")
    example.commit("allow external")
    run = example.run("validate", "-e", example.name)
    assert "is not allowed here" not in run.output, str(run)


def test_plan_refuses_a_hostile_layer_that_waits_for_an_upstream(example: Env) -> None:
    """layer.app is pending upstream in a fresh plan: its offline render must still refuse."""
    _outside(example)
    example.write(
        "layers/app/kustomization.yaml", "resources:\n  - app.yaml\n  - ../../../../../outside/cm.yaml\n"
    )
    example.commit("hostile pending layer")
    run = example.plan()
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)
    assert CANARY not in run.output
