"""Hostile input never crashes the loader: random bytes, random YAML and random text give either a
loaded environment or a typed ``EnvctlError``, never a traceback of some other type."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unithelpers import BASE_FILES, write_files

from envctl.core.errors import EnvctlError
from envctl.core.graph import EnvGraph
from envctl.core.paths import repo_path as _clean
from envctl.repo import WorkTreeSnapshot, load_environment

TARGETS = {
    "environment.yaml": "environments/dev/environment.yaml",
    "envctl.yaml": "envctl.yaml",
    "stack.yaml": "environments/dev/stacks/database/stack.yaml",
    "layer.yaml": "environments/dev/layers/app/layer.yaml",
    "manifest": "environments/dev/layers/app/app.yaml",
    "terraform": "environments/dev/stacks/network/main.tf",
}


class DictSnapshot:
    """An in-memory repository (the ``Snapshot`` protocol), so each example costs no disk I/O."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(len(p.split("/")))}

    commit = None
    dirty = True

    def read_bytes(self, path: str) -> bytes:
        return self.files[_clean(path)]

    def exists(self, path: str) -> bool:
        p = _clean(path)
        return p in self.files or p in self.dirs

    def is_dir(self, path: str) -> bool:
        return _clean(path) in self.dirs

    def listdir(self, path: str) -> list[str]:
        p = _clean(path)
        prefix = f"{p}/" if p else ""
        return sorted(
            {
                f[len(prefix) :].split("/")[0]
                for f in [*self.files, *self.dirs]
                if f.startswith(prefix) and f != p and f[len(prefix) :]
            }
        )

    def walk_files(self, path: str) -> Iterator[str]:
        p = _clean(path)
        yield from sorted(f for f in self.files if f.startswith(f"{p}/"))


def base() -> dict[str, bytes]:
    return {k: v.encode() if isinstance(v, str) else v for k, v in BASE_FILES.items() if v is not None}


def load_and_graph(files: dict[str, bytes]) -> None:
    try:
        EnvGraph(load_environment(DictSnapshot(files), "dev"))
    except EnvctlError as e:
        assert e.message, "an error must say what went wrong"
        assert len(e.message) < 1000, "an error quotes a bounded part of the input"
        str(e)  # rendering the error must not fail either


def test_in_memory_snapshot_loads_the_base_environment() -> None:
    g = EnvGraph(load_environment(DictSnapshot(base()), "dev"))
    assert len(g.edges) == 3


# --- strategies ---------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "${env.name}",
            "${env.vars.replicas}",
            "${stack.network.outputs.vpc_id}",
            "${layer.app.outputs.x}",
            "${inputs.endpoint}",
            "$${x}",
            "${",
            "${}",
            "stack.network",
            "layer.platform",
            "modules/net",
            "modules/\x00",
            "modules/db/../db",
            "/etc",
            "../x",
            "5m",
            "true",
            "app",
            "-1",
        ]
    )
)
keys = st.sampled_from(
    sorted(
        {
            "name",
            "vars",
            "kubernetes",
            "terraform",
            "approval",
            "notifications",
            "drift",
            "depends_on",
            "inputs",
            "module",
            "namespace",
            "prune",
            "wait",
            "outputs",
            "force",
            "allow_empty",
            "allow_secrets",
            "timeout",
            "every",
            "required_for",
            "webhook",
            "engine",
            "backend",
            "binary",
            "object",
            "path",
            "context",
        }
    )
) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
# mappings whose keys are mostly the ones envctl knows, so examples get past the unknown-key check
documents = st.dictionaries(keys, values, max_size=6) | values


def dump(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True).encode()


yamlish_text = st.lists(
    st.sampled_from(
        [
            *"abcxyz019 :-[]{},'\"\n\t#&*!|>%@`$.?\x00\ufeff",
            "${",
            "}",
            "---\n",
            "  ",
            "- ",
            "inputs:",
            "depends_on:",
            "${inputs.",
            "${env.vars.",
            "!!int ",
            "!!binary ",
            "2024-13-45",
        ]
    ),
    max_size=60,
).map("".join)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(target=st.sampled_from(sorted(TARGETS)), data=st.binary(max_size=300))
def test_random_bytes_never_crash_the_loader(target: str, data: bytes) -> None:
    files = base()
    files[TARGETS[target]] = data
    load_and_graph(files)


@FUZZ
@given(target=st.sampled_from(sorted(TARGETS)), doc=documents)
def test_random_yaml_never_crashes_the_loader(target: str, doc: Any) -> None:
    files = base()
    files[TARGETS[target]] = dump(doc)
    load_and_graph(files)


@FUZZ
@given(target=st.sampled_from(sorted(TARGETS)), text=yamlish_text | st.text(max_size=200))
def test_random_text_never_crashes_the_loader(target: str, text: str) -> None:
    files = base()
    files[TARGETS[target]] = text.encode("utf-8", "surrogatepass")
    load_and_graph(files)


@FUZZ
@given(
    env=st.dictionaries(keys, values, max_size=6),
    stack=st.dictionaries(keys, values, max_size=4),
    layer=st.dictionaries(keys, values, max_size=6),
)
def test_random_documents_everywhere_at_once_never_crash_the_loader(
    env: dict[str, Any], stack: dict[str, Any], layer: dict[str, Any]
) -> None:
    files = base()
    files[TARGETS["environment.yaml"]] = dump({"name": "dev", **env})
    files[TARGETS["stack.yaml"]] = dump({"module": "modules/db", **stack})
    files[TARGETS["layer.yaml"]] = dump(layer)
    load_and_graph(files)


@pytest.mark.parametrize("target", sorted(TARGETS))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | yamlish_text.map(str.encode))
def test_random_files_on_disk_never_crash_the_loader(target: str, data: bytes) -> None:
    # the same through the real working-tree snapshot (files on disk, path checks, symlink checks)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_files(root, {**BASE_FILES, TARGETS[target]: data})
        with contextlib.suppress(EnvctlError):
            EnvGraph(load_environment(WorkTreeSnapshot(root), "dev"))
