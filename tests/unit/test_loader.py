"""The loader reads an environment repository, from the working tree or a Git revision."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from unithelpers import MakeRepo, git

from envctl.core.errors import ConfigError, Location, UsageError
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment
from envctl.repo import GitSnapshot, WorkTreeSnapshot, list_environments, load_environment, open_snapshot

LoadEnv = Callable[..., Environment]


def test_finds_stacks_and_layers_of_the_environment(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    env = load_env(make_repo())
    assert set(env.nodes) == {"stack.network", "stack.database", "layer.platform", "layer.app"}
    net, db = env.nodes["stack.network"], env.nodes["stack.database"]
    assert net.kind == "stack" and net.path == "environments/dev/stacks/network"
    assert net.stack is not None and net.stack.tf_files == ("environments/dev/stacks/network/main.tf",)
    assert net.config_file is None
    assert db.stack is not None and db.stack.module == "modules/db" and db.stack.tf_files == ()
    assert db.config_file == "environments/dev/stacks/database/stack.yaml"
    app = env.nodes["layer.app"]
    assert app.layer is not None
    assert app.layer.namespace == "app"
    assert app.layer.manifests == ("environments/dev/layers/app/app.yaml",)
    assert app.depends_on == ("layer.platform",)
    platform = env.nodes["layer.platform"]
    assert platform.layer is not None and platform.config_file is None
    assert env.vars == {"replicas": 2, "size": "small"}


def test_a_directory_without_terraform_or_stack_yaml_is_not_a_stack(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo(
        {
            "environments/dev/stacks/notes/README.md": "hello\n",
            "environments/dev/layers/empty/README.md": "hello\n",
            "environments/dev/stacks/file-not-dir": "x\n",
        }
    )
    assert "stack.notes" not in load_env(root).nodes
    assert "layer.empty" not in load_env(root).nodes


def test_stack_yaml_without_module_or_terraform_is_an_error(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo({"environments/dev/stacks/bare/stack.yaml": "inputs: {a: 1}\n"})
    with pytest.raises(ConfigError, match=r"neither \*\.tf files nor module") as e:
        load_env(root)
    assert e.value.node == "stack.bare"
    assert e.value.location == Location("environments/dev/stacks/bare/stack.yaml")


def test_collects_references_with_file_and_line(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    env = load_env(make_repo())
    db_file = "environments/dev/stacks/database/stack.yaml"
    assert [(r.kind, r.text, r.location) for r in env.nodes["stack.database"].refs] == [
        ("output", "stack.network.outputs.vpc_id", Location(db_file, 3)),
        ("var", "env.vars.size", Location(db_file, 4)),
    ]
    app_file = "environments/dev/layers/app/layer.yaml"
    # inputs.* used in manifests are checked against the layer's inputs, not graph edges
    assert [(r.text, r.location) for r in env.nodes["layer.app"].refs] == [
        ("stack.database.outputs.endpoint", Location(app_file, 4)),
        ("env.vars.replicas", Location(app_file, 5)),
    ]


def test_manifest_references_create_edges_and_escapes_do_not(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    manifest = "environments/dev/layers/platform/cm.yaml"
    root = make_repo(
        {
            manifest: "kind: ConfigMap\ndata:\n  a: $${stack.nothing.outputs.x}\n  b: ${env.name}\n"
            "  c: ${stack.network.outputs.vpc_id}\n",
        }
    )
    refs = load_env(root).nodes["layer.platform"].refs
    assert [(r.text, r.location) for r in refs] == [
        ("env.name", Location(manifest, 4)),
        ("stack.network.outputs.vpc_id", Location(manifest, 5)),
    ]


def test_manifest_input_must_be_declared_by_the_layer(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    manifest = "environments/dev/layers/app/extra.yaml"
    root = make_repo({manifest: "kind: ConfigMap\n\ndata:\n  x: ${inputs.missing}\n"})
    with pytest.raises(ConfigError, match="does not declare input 'missing'") as e:
        load_env(root)
    assert e.value.location == Location(manifest, 4)
    assert e.value.node == "layer.app"


def test_manifest_references_are_found_in_values_not_in_keys_or_comments(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    manifest = "environments/dev/layers/platform/cm.yaml"
    text = "kind: ConfigMap\n# uses ${inputs.nothing}\ndata:\n  ${inputs.key}: x\n  b: |\n    ${env.name}\n"
    refs = load_env(make_repo({manifest: text})).nodes["layer.platform"].refs
    assert [(r.text, r.location) for r in refs] == [("env.name", Location(manifest, 6))]


def test_layer_namespace_may_use_the_environment(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    layer = "environments/dev/layers/platform/layer.yaml"
    env = load_env(make_repo({layer: "namespace: shop-${env.name}\n"}))
    assert env.nodes["layer.platform"].layer is not None
    assert env.nodes["layer.platform"].layer.namespace == "shop-dev"


def test_layer_namespace_cannot_wait_for_an_output(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    layer = "environments/dev/layers/platform/layer.yaml"
    root = make_repo({layer: "namespace: shop-${stack.network.outputs.vpc_id}\n"})
    with pytest.raises(ConfigError, match=r"cannot be used in namespace") as e:
        load_env(root)
    assert e.value.location == Location(layer, 1)
    root = make_repo({layer: "namespace: shop-${env.vars.nope}\n"})
    with pytest.raises(ConfigError, match="has no var 'nope'"):
        load_env(root)


def test_stack_inputs_cannot_use_manifest_inputs(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo({"environments/dev/stacks/network/stack.yaml": "inputs:\n  a: ${inputs.b}\n"})
    with pytest.raises(ConfigError, match="only allowed inside a layer's manifests") as e:
        load_env(root)
    assert e.value.location == Location("environments/dev/stacks/network/stack.yaml", 2)


def test_records_the_modules_a_stack_uses_transitively(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo(
        {
            "environments/dev/stacks/network/main.tf": (
                'module "m" {\n  source = "../../../../modules/net"\n}\n'
            ),
        }
    )
    env = load_env(root)
    assert env.nodes["stack.database"].stack.module_dirs == ("modules/db", "modules/net")  # type: ignore[union-attr]
    assert env.nodes["stack.network"].stack.module_dirs == ("modules/net",)  # type: ignore[union-attr]


@pytest.mark.parametrize("module", ["../outside", "modules/../../outside", "/etc", ""])
def test_module_paths_outside_the_repository_are_refused(
    make_repo: MakeRepo, load_env: LoadEnv, module: str
) -> None:
    cfg = "environments/dev/stacks/database/stack.yaml"
    root = make_repo({cfg: f"inputs: {{}}\nmodule: '{module}'\n"})
    with pytest.raises(ConfigError) as e:
        load_env(root)
    assert e.value.location == Location(cfg, 2)
    assert e.value.node == "stack.database"


def test_terraform_module_source_leaving_the_repository_is_refused(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    tf = "environments/dev/stacks/network/main.tf"
    root = make_repo({tf: '\n\nmodule "m" {\n  source = "../../../../../elsewhere"\n}\n'})
    with pytest.raises(ConfigError, match="leads outside the repository") as e:
        load_env(root)
    assert e.value.location == Location(tf, 4)


def test_module_that_is_not_a_terraform_directory_is_an_error(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    cfg = "environments/dev/stacks/database/stack.yaml"
    root = make_repo({cfg: "module: modules/none\n"})
    with pytest.raises(ConfigError, match="not a directory with") as e:
        load_env(root)
    assert e.value.location == Location(cfg, 1)


def test_symlink_leaving_the_repository_is_refused(
    make_repo: MakeRepo, load_env: LoadEnv, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2\n")
    root = make_repo()
    link = root / "environments/dev/layers/platform/stolen.yaml"
    link.symlink_to(secret)
    with pytest.raises(ConfigError, match="symlink that leads outside the repository") as e:
        load_env(root)
    assert "hunter2" not in str(e.value)
    assert e.value.location == Location("environments/dev/layers/platform/stolen.yaml")


def test_symlinked_directory_leaving_the_repository_is_refused(
    make_repo: MakeRepo, load_env: LoadEnv, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "stacks-like").mkdir(parents=True)
    (outside / "stacks-like" / "main.tf").write_text("")
    root = make_repo()
    (root / "environments/dev/stacks/evil").symlink_to(outside / "stacks-like")
    with pytest.raises(ConfigError, match="leads outside the repository"):
        load_env(root)


def test_symlink_loop_is_a_configuration_error(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo()
    d = root / "environments/dev/layers/platform"
    (d / "a.yaml").symlink_to(d / "b.yaml")
    (d / "b.yaml").symlink_to(d / "a.yaml")
    with pytest.raises(ConfigError):
        load_env(root)


def test_symlink_inside_the_repository_is_followed(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo()
    (root / "environments/dev/layers/platform/same.yaml").symlink_to("ns.yaml")
    layer = load_env(root).nodes["layer.platform"].layer
    assert layer is not None and "environments/dev/layers/platform/same.yaml" in layer.manifests


def test_stack_and_layer_with_one_name_are_rejected(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo(
        {"environments/dev/stacks/x/main.tf": "", "environments/dev/layers/x/cm.yaml": "kind: A\n"}
    )
    with pytest.raises(ConfigError, match="two nodes share the name 'x'") as e:
        load_env(root)
    assert "environments/dev/stacks/x" in e.value.message and "environments/dev/layers/x" in e.value.message


def test_names_differing_only_by_dash_and_underscore_are_rejected(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo({"environments/dev/stacks/a_b/main.tf": "", "environments/dev/stacks/a-b/main.tf": ""})
    with pytest.raises(ConfigError, match="two nodes share the name"):
        load_env(root)


def test_invalid_node_name_is_rejected(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo({"environments/dev/stacks/Bad.Name/main.tf": ""})
    with pytest.raises(ConfigError, match="not a valid node name") as e:
        load_env(root)
    assert e.value.location == Location("environments/dev/stacks/Bad.Name")


def test_unknown_environment_is_a_usage_error_listing_the_known_ones(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo({"environments/prod/environment.yaml": "name: prod\n"})
    assert list_environments(WorkTreeSnapshot(root)) == ["dev", "prod"]
    for name in ("staging", "../dev", "", "DEV"):
        with pytest.raises(UsageError) as e:
            load_env(root, name)
        assert e.value.hint is not None and "dev, prod" in e.value.hint


def test_environment_name_must_match_its_directory(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo({"environments/dev/environment.yaml": "# dev\nname: prod\n"})
    with pytest.raises(ConfigError, match="does not match the directory") as e:
        load_env(root)
    assert e.value.location == Location("environments/dev/environment.yaml", 2)


def test_repo_defaults_from_envctl_yaml_are_merged_and_overridden(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo(
        {
            "envctl.yaml": (
                "vars: {a: 1, b: 1}\nterraform: {engine: cli, binary: tofu}\n"
                "approval: {required_for: [all]}\n"
            ),
            "environments/dev/environment.yaml": (
                "vars: {b: 2, replicas: 1, size: s}\nterraform: {binary: terraform}\n"
            ),
        }
    )
    env = load_env(root)
    assert env.vars == {"a": 1, "b": 2, "replicas": 1, "size": "s"}
    assert (env.terraform.engine, env.terraform.binary) == ("cli", "terraform")
    assert env.approval_required_for == ("all",)


def test_error_in_repo_defaults_names_envctl_yaml(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo({"envctl.yaml": "\n\nterraform: {engine: magic}\n"})
    with pytest.raises(ConfigError, match="engine must be embedded or cli") as e:
        load_env(root)
    assert e.value.location == Location("envctl.yaml", 3)


def test_environment_settings_are_read(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo(
        {
            "environments/dev/environment.yaml": (
                "name: dev\nvars: {replicas: 1, size: s}\n"
                "kubernetes: {kubeconfig: ~/.kube/config, context: dev}\n"
                "notifications:\n  - webhook: https://hooks.example.com/x\ndrift: {every: 1h30m}\n"
            ),
        }
    )
    env = load_env(root)
    assert env.kubernetes is not None and env.kubernetes.context == "dev"
    assert env.notifications == ("https://hooks.example.com/x",)
    assert env.drift_every == "1h30m"


@pytest.mark.parametrize(
    ("files", "message", "location"),
    [
        (
            {
                "environments/dev/layers/platform/layer.yaml": "prune: true\nwait: {timeout: 1"
                + "0" * 400
                + "}\n"
            },
            "wait.timeout",
            ("environments/dev/layers/platform/layer.yaml", 2),
        ),
        (
            {"environments/dev/layers/platform/layer.yaml": "wait: {timeout: -5}\n"},
            "wait.timeout",
            ("environments/dev/layers/platform/layer.yaml", 1),
        ),
        (
            {"environments/dev/layers/platform/layer.yaml": "wait: {timeout: .nan}\n"},
            "wait.timeout",
            ("environments/dev/layers/platform/layer.yaml", 1),
        ),
        (
            {"environments/dev/layers/platform/layer.yaml": "wait: {timeout: 0s}\n"},
            "wait.timeout",
            ("environments/dev/layers/platform/layer.yaml", 1),
        ),
        (
            {"environments/dev/layers/platform/layer.yaml": "prune: yes please\n"},
            "prune must be true or false",
            ("environments/dev/layers/platform/layer.yaml", 1),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars:\n  when: 2024-13-45\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars:\n  big: " + "9" * 5000 + "\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars:\n  n: !!int abc\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars:\n  n: !!int\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars:\n  n: !!bool maybe\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars:\n  n: !!timestamp soon\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\n\x00\n"},
            "malformed YAML",
            ("environments/dev/environment.yaml", 2),
        ),
        (
            {"environments/dev/environment.yaml": "a: &x 1\nb: *x\n"},
            "aliases",
            ("environments/dev/environment.yaml", 2),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nname: dev\n"},
            "duplicate key 'name'",
            ("environments/dev/environment.yaml", 2),
        ),
        (
            {"environments/dev/environment.yaml": "- a\n- b\n"},
            "must be a mapping",
            ("environments/dev/environment.yaml", 1),
        ),
        (
            {"environments/dev/environment.yaml": b"name: \xff\xfe\n"},
            "not UTF-8",
            ("environments/dev/environment.yaml", None),
        ),
        (
            {"environments/dev/environment.yaml": "[" * 200 + "]" * 200 + "\n"},
            "nested",
            ("environments/dev/environment.yaml", 1),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\ndrift: {every: soon}\n"},
            "not a duration",
            ("environments/dev/environment.yaml", 2),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nnotifications:\n  - webhook: ftp://x\n"},
            "http",
            ("environments/dev/environment.yaml", 3),
        ),
        (
            {"environments/dev/environment.yaml": "name: dev\nvars: {a: '${env.name}'}\n"},
            "references are not allowed",
            ("environments/dev/environment.yaml", 2),
        ),
        (
            {"environments/dev/layers/app/layer.yaml": "outputs:\n  x: {object: v1/Service, path: .a}\n"},
            "outputs.x",
            ("environments/dev/layers/app/layer.yaml", 2),
        ),
        (
            {"environments/dev/layers/app/layer.yaml": "namespace: Not_Valid\n"},
            "not a valid name",
            ("environments/dev/layers/app/layer.yaml", 1),
        ),
        (
            {"environments/dev/stacks/network/stack.yaml": "inputs:\n  'bad name': 1\n"},
            "input name",
            ("environments/dev/stacks/network/stack.yaml", 2),
        ),
    ],
)
def test_bad_settings_are_configuration_errors_with_file_and_line(
    make_repo: MakeRepo,
    load_env: LoadEnv,
    files: dict[str, str | bytes],
    message: str,
    location: tuple[str, int | None],
) -> None:
    root = make_repo(files)
    with pytest.raises(ConfigError) as e:
        load_env(root)
    assert message in e.value.message
    assert e.value.location == Location(*location)
    assert len(e.value.message) < 300


def test_a_revision_is_read_from_git_without_touching_the_working_tree(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo(git_init=True)
    first = git(root, "rev-parse", "HEAD")
    # change the working tree after the commit: a new stack, an edited and a deleted file
    (root / "environments/dev/stacks/cache").mkdir()
    (root / "environments/dev/stacks/cache/main.tf").write_text("")
    (root / "environments/dev/environment.yaml").write_text("name: dev\nvars: {replicas: 9, size: big}\n")
    (root / "environments/dev/layers/platform/ns.yaml").unlink()
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts)

    for rev in (first, "HEAD", "main"):
        env = load_env(root, rev=rev)
        assert "stack.cache" not in env.nodes
        assert "layer.platform" in env.nodes
        assert env.vars == {"replicas": 2, "size": "small"}
    snapshot = open_snapshot(root, "HEAD")
    assert isinstance(snapshot, GitSnapshot)
    assert snapshot.commit == first and snapshot.dirty is False
    assert list(snapshot.walk_files("environments/dev/layers/platform")) == [
        "environments/dev/layers/platform/ns.yaml"
    ]

    now = load_env(root)
    assert "stack.cache" in now.nodes and "layer.platform" not in now.nodes
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts) == before
    assert git(root, "status", "--porcelain") != ""  # still dirty: nothing was checked out or reset
    tree = WorkTreeSnapshot(root)
    assert tree.commit == first and tree.dirty is True


def test_symlink_in_a_git_revision_is_refused(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo()
    os.symlink("/etc/passwd", root / "environments/dev/layers/platform/passwd.yaml")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "x")
    with pytest.raises(ConfigError, match="symlink") as e:
        load_env(root, rev="HEAD")
    assert "root:" not in str(e.value)


@pytest.mark.parametrize("rev", ["no-such-branch", "0" * 40, "HEAD~5", "HEAD:environments", "--all"])
def test_unknown_revision_is_a_usage_error(make_repo: MakeRepo, rev: str) -> None:
    root = make_repo(git_init=True)
    with pytest.raises(UsageError):
        load_environment(open_snapshot(root, rev), "dev")


def test_rev_outside_a_git_repository_is_a_usage_error(make_repo: MakeRepo) -> None:
    with pytest.raises(UsageError, match="needs a Git repository"):
        open_snapshot(make_repo(), "HEAD")


def test_rev_in_a_repository_without_commits_is_a_usage_error(make_repo: MakeRepo) -> None:
    root = make_repo()
    git(root, "init", "-q", "-b", "main")
    with pytest.raises(UsageError):
        open_snapshot(root, "HEAD")
    assert WorkTreeSnapshot(root).commit is None


def test_module_path_with_a_nul_character_is_a_configuration_error(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    cfg = "environments/dev/stacks/database/stack.yaml"
    root = make_repo({cfg: 'inputs: {}\nmodule: "modules/db\\0x"\n'})
    with pytest.raises(ConfigError, match="NUL") as e:
        load_env(root)
    assert e.value.location == Location(cfg, 2)


def test_reference_in_a_block_scalar_names_its_own_line(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    cfg = "environments/dev/stacks/network/stack.yaml"
    root = make_repo({cfg: "inputs:\n  script: |\n    echo start\n    echo ${env.vars.size}\n"})
    refs = load_env(root).nodes["stack.network"].refs
    assert [(r.text, r.location) for r in refs] == [("env.vars.size", Location(cfg, 4))]


def test_a_fifo_is_not_read(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo()
    os.mkfifo(root / "environments/dev/layers/platform/pipe.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_env(root)


def test_environment_directory_with_an_invalid_name_is_a_configuration_error(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo({"environments/Staging/environment.yaml": "name: Staging\n"})
    assert "Staging" in list_environments(WorkTreeSnapshot(root))
    with pytest.raises(ConfigError, match="'Staging' is not valid") as e:
        load_env(root, "Staging")
    assert e.value.location == Location("environments/Staging")


def test_layer_outputs_are_read_and_referenced_by_stacks(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    layer_cfg = "environments/dev/layers/platform/layer.yaml"
    stack_cfg = "environments/dev/stacks/network/stack.yaml"
    root = make_repo(
        {
            layer_cfg: "outputs:\n  lb_host:\n    object: v1/Service/ingress/edge\n"
            "    path: .status.loadBalancer.ingress[0].hostname\n",
            stack_cfg: "inputs:\n  host: ${layer.platform.outputs.lb_host}\n",
        }
    )
    env = load_env(root)
    layer = env.nodes["layer.platform"].layer
    assert layer is not None
    assert layer.outputs["lb_host"].object == "v1/Service/ingress/edge"
    assert layer.outputs["lb_host"].path == ".status.loadBalancer.ingress[0].hostname"
    [ref] = env.nodes["stack.network"].refs
    assert (ref.kind, ref.node, ref.name, ref.location) == (
        "output",
        "layer.platform",
        "lb_host",
        Location(stack_cfg, 2),
    )


@pytest.mark.parametrize(
    "files",
    [
        {"environments/dev/layers/platform/layer.yaml": "k" * 100_000 + ": 1\n"},
        {"environments/dev/layers/platform/layer.yaml": "depends_on: [" + "x" * 100_000 + "]\n"},
        {"environments/dev/layers/platform/layer.yaml": "inputs: {a: '${env.vars." + "x" * 100_000 + "}'}\n"},
        {"environments/dev/environment.yaml": "name: dev\nterraform: {engine: " + "x" * 100_000 + "}\n"},
        {"environments/dev/stacks/database/stack.yaml": "module: " + "../" * 30_000 + "\n"},
    ],
)
def test_error_messages_quote_only_a_bounded_part_of_huge_values(
    make_repo: MakeRepo, load_env: LoadEnv, files: dict[str, str]
) -> None:
    root = make_repo(files)
    with pytest.raises(ConfigError) as e:
        EnvGraph(load_env(root))
    assert len(e.value.message) < 300


def test_symlinks_inside_the_repository_load_the_same_from_a_revision(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo({"environments/prod/environment.yaml": "name: prod\n"})
    (root / "environments/prod/stacks").mkdir()
    (root / "environments/prod/stacks/network").symlink_to("../../dev/stacks/network")
    (root / "environments/prod/layers/platform").mkdir(parents=True)
    (root / "environments/prod/layers/platform/ns.yaml").symlink_to("../../../dev/layers/platform/ns.yaml")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "x")
    tree, rev = load_env(root, "prod"), load_env(root, "prod", rev="HEAD")
    assert set(tree.nodes) == set(rev.nodes) == {"stack.network", "layer.platform"}
    assert tree.nodes == rev.nodes
    snapshot = open_snapshot(root, "HEAD")
    assert (
        snapshot.read_bytes("environments/prod/layers/platform/ns.yaml")
        == (root / "environments/dev/layers/platform/ns.yaml").read_bytes()
    )


@pytest.mark.parametrize("target", ["loop.yaml", "../../../../../outside.yaml", "/etc/hostname"])
def test_bad_symlinks_in_a_revision_are_configuration_errors(
    make_repo: MakeRepo, load_env: LoadEnv, target: str
) -> None:
    root = make_repo()
    (root / "environments/dev/layers/platform/loop.yaml").symlink_to(target)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "x")
    with pytest.raises(ConfigError, match="symlink that leads outside") as e:
        load_env(root, rev="HEAD")
    assert e.value.location == Location("environments/dev/layers/platform/loop.yaml")


def test_conflicts_and_recreate_are_read_and_force_is_their_deprecated_name(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    layer = "environments/dev/layers/platform/layer.yaml"
    spec = load_env(make_repo({layer: "prune: true\nconflicts: refuse\nrecreate: true\n"})).nodes[
        "layer.platform"
    ].layer
    assert spec is not None and spec.conflicts == "refuse" and spec.recreate and not spec.take_conflicts
    spec = load_env(make_repo({layer: "prune: true\nforce: true\n"})).nodes["layer.platform"].layer
    assert spec is not None and spec.recreate and spec.take_conflicts
    assert spec.deprecations and spec.deprecations[0].startswith(f"{layer}:2: force is deprecated")
    with pytest.raises(ConfigError, match="not take or refuse") as e:
        load_env(make_repo({layer: "conflicts: always\n"}))
    assert e.value.location == Location(layer, 1)
    with pytest.raises(ConfigError, match="deprecated name of recreate"):
        load_env(make_repo({layer: "force: true\nrecreate: true\n"}))
