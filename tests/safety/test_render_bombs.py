"""Rendering bombs are refused while they are rendered, under a memory limit: ``envctl validate``
(no cluster) runs as a subprocess with its address space capped (``ulimit -v``), so a renderer that
built the bomb first would die of MemoryError (exit 1, "internal error") instead of the refusal
asserted here (exit 78, the limit named at file:line). No wall-clock assertions.
"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest
from harness import envctl_command, git

pytestmark = pytest.mark.safety

MEMORY_LIMIT = 768 << 20  # bytes of address space: far below what any of these bombs would build
BIG = "x" * 900_000  # a 900 KB value, e.g. a Terraform output or an env var


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def validate(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Write an environment ``dev`` holding ``files`` into a new Git repo; ``envctl validate`` it."""
    env = tmp_path / "environments" / "dev"
    (env / "environment.yaml").parent.mkdir(parents=True)
    (env / "environment.yaml").write_text(f"name: dev\nvars:\n  big: {BIG}\n")
    for name, text in files.items():
        path = env / "layers" / "bomb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "bomb")
    return subprocess.run(
        [*envctl_command(), "validate", "-e", "dev"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=_cap_memory,
        check=False,
    )


def config_map(name: str, data: str) -> str:
    return f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}"


def assert_refused(proc: subprocess.CompletedProcess[str], message: str, where: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 78, out[-3000:]
    assert message in out and where in out, out[-3000:]
    assert "internal error" not in out and "Traceback" not in out


def test_a_thousand_references_to_a_large_value_stop_at_the_object_limit(tmp_path: Path) -> None:
    refs = "".join(f"  k{i}: ${{env.vars.big}}\n" for i in range(1000))
    proc = validate(tmp_path, {"cm.yaml": config_map("bomb", refs)})
    assert_refused(proc, "make one object larger than 1572864 bytes", "layers/bomb/cm.yaml:8")


def test_a_large_value_repeated_inside_one_string_stops_at_the_object_limit(tmp_path: Path) -> None:
    proc = validate(tmp_path, {"cm.yaml": config_map("bomb", f"  k: x{'${env.vars.big}' * 1000}\n")})
    assert_refused(proc, "make one object larger than", "layers/bomb/cm.yaml:7")


def test_twenty_thousand_objects_with_a_large_value_stop_at_the_layer_limit(tmp_path: Path) -> None:
    text = "".join(config_map(f"c{i}", "  k: ${env.vars.big}\n") for i in range(20_000))
    proc = validate(tmp_path, {"cms.yaml": text})
    assert_refused(proc, "make the layer larger than 67108864 bytes", "layers/bomb/cms.yaml:")


def test_a_kustomize_source_with_a_thousand_references_stops_before_kustomize_runs(tmp_path: Path) -> None:
    refs = "".join(f"  k{i}: ${{env.vars.big}}\n" for i in range(1000))
    files = {"kustomization.yaml": "resources: [cm.yaml]\n", "cm.yaml": config_map("bomb", refs)}
    assert_refused(validate(tmp_path, files), "make one object larger than", "layers/bomb/cm.yaml:8")


def test_a_million_keys_are_refused_while_parsing(tmp_path: Path) -> None:
    keys = "".join(f"{i}: 1\n" for i in range(1_000_000))  # 9.9 MB, under the 10 MiB file limit
    proc = validate(
        tmp_path, {"keys.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keys\n{keys}"}
    )
    # refused at the line where the 100001st value is read, not after reading a million
    assert_refused(proc, "YAML has more than 100000 values", "layers/bomb/keys.yaml:50000")
