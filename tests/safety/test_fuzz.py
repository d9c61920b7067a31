"""Hypothesis: hostile input to the loader, the reference parser and the plan bundle reader gives a
typed ``EnvctlError`` or a result, never any other exception.

The loader runs on a real temporary repository (a copy of the example environment, one file
replaced per example) through ``WorkTreeSnapshot``; the bundle reader on mutated ``bundle.json``
files through ``Store.read_bundle``. These tests need no cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envctl.core.bundle import PlanBundle, canonical, sha256
from envctl.core.changes import Action, Change, NodePlan
from envctl.core.errors import EnvctlError, Location
from envctl.core.graph import EnvGraph
from envctl.core.refs import find_refs, parse_ref
from envctl.repo import WorkTreeSnapshot, load_environment
from envctl.store import Store

pytestmark = pytest.mark.safety

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("ENVCTL_SAFETY_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)


# --- the loader ----------------------------------------------------------------------------------

TARGETS = [
    "envctl.yaml",
    "environments/fz/environment.yaml",
    "environments/fz/stacks/network/stack.yaml",
    "environments/fz/stacks/database/stack.yaml",
    "environments/fz/layers/app/layer.yaml",
    "environments/fz/layers/app/app.yaml",
    "environments/fz/layers/platform/layer.yaml",
    "environments/fz/stacks/local/main.tf",
    "modules/network/main.tf",
]


@pytest.fixture(scope="module")
def fuzz_repo() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="envctl-fuzz-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "modules", root / "modules")
        shutil.copytree(REPO / "environments" / "dev", root / "environments" / "fz")
        env_yaml = root / "environments" / "fz" / "environment.yaml"
        env_yaml.write_text(env_yaml.read_text().replace("name: dev", "name: fz"))
        yield root


def _original(root: Path, rel: str) -> bytes | None:
    p = root / rel
    return p.read_bytes() if p.is_file() else None


def _mutations(original: bytes) -> st.SearchStrategy[bytes]:
    def mutate(data: tuple[list[tuple[int, int, bytes]], bool]) -> bytes:
        out = bytearray(original)
        edits, truncate = data
        for kind, pos, chunk in edits:
            i = pos % (len(out) + 1)
            if kind == 0:
                out[i:i] = chunk
            elif kind == 1:
                del out[i : i + len(chunk)]
            else:
                out[i : i + len(chunk)] = chunk
        return bytes(out[: len(out) // 2] if truncate else out)

    edit = st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.binary(min_size=1, max_size=8))
    return st.tuples(st.lists(edit, min_size=1, max_size=6), st.booleans()).map(mutate)


YAML_TOKENS = st.sampled_from(
    ["${", "}", "$${", "${env.name}", "${env.vars.x}", "${stack.network.outputs.vpc_id}", "${inputs.env}",
     "&a", "*a", "<<: *a", "!!python/object:os.system", "---", "...", "- ", ": ", "{", "[", "\n", "  ",
     "\t", "'", '"', "#", "|", ">", "? ", "%YAML 1.1\n", "\x00", "\ufeff", "module: ../../x\n",
     "depends_on: [stack.x]\n", "name: fz\n", "kind: Secret\n"]
)


def _contents(rel: str, original: bytes | None) -> st.SearchStrategy[bytes]:
    options = [
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode()),
        st.lists(YAML_TOKENS | st.text(max_size=5), max_size=40).map(lambda xs: "".join(xs).encode()),
        json_values.map(lambda v: yaml.safe_dump(v).encode()),
    ]
    if original is not None:
        options.append(_mutations(original))
    return st.one_of(*options)


@FUZZ
@given(data=st.data())
def test_the_loader_gives_an_environment_or_a_typed_error(fuzz_repo: Path, data: st.DataObject) -> None:
    rel = data.draw(st.sampled_from(TARGETS), label="file")
    original = _original(fuzz_repo, rel)
    content = data.draw(_contents(rel, original), label="content")
    path = fuzz_repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    try:
        env = load_environment(WorkTreeSnapshot(fuzz_repo), "fz")
        EnvGraph(env)
    except EnvctlError as e:
        assert e.message
        str(e)
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)


# --- the reference parser ------------------------------------------------------------------------

REF_PIECES = st.sampled_from(
    ["${", "}", "$${", "$", "{", "stack.", "layer.", "env.", "inputs.", "outputs.", "vars.", "name", ".",
     "a", "-", "_", "0", "\n", " ", "${env.name}", "${stack.a.outputs.b}", "\\", "$$", "}}", "${{"]
)


@FUZZ
@given(
    text=st.one_of(st.text(max_size=400), st.lists(REF_PIECES, max_size=80).map("".join)),
    first_line=st.integers(min_value=-5, max_value=10**9),
    allow_inputs=st.booleans(),
)
def test_find_refs_gives_refs_or_a_typed_error(text: str, first_line: int, allow_inputs: bool) -> None:
    try:
        refs = list(find_refs(text, "fuzz.yaml", first_line, allow_inputs=allow_inputs))
    except EnvctlError as e:
        assert e.message and len(e.message) < 1000
        return
    for ref in refs:
        assert ref.location.file == "fuzz.yaml"


@FUZZ
@given(
    expr=st.one_of(st.text(max_size=200), st.lists(REF_PIECES, max_size=30).map("".join)),
    allow_inputs=st.booleans(),
)
def test_parse_ref_gives_a_ref_or_a_typed_error(expr: str, allow_inputs: bool) -> None:
    try:
        parse_ref(expr, Location("fuzz.yaml", 1), allow_inputs=allow_inputs)
    except EnvctlError as e:
        assert e.message and len(e.message) < 1000


# --- the plan bundle reader ----------------------------------------------------------------------

PLANFILE = b"PK\x03\x04 a saved terraform plan"


def _valid_bundle() -> dict[str, Any]:
    nodes = {
        "stack.network": NodePlan(
            node="stack.network",
            changes=(Change("terraform_data.vpc", Action("create"), None, {"cidr": "10.0.0.0/16"}),),
            outputs_unknown=("vpc_id",),
            artifacts={"planfile": "stacks/network.tfplan", "planfile_sha256": sha256(PLANFILE)},
        ),
        "layer.app": NodePlan(node="layer.app", pending_upstream=("db_endpoint",), notes=("later",)),
    }
    bundle = PlanBundle(
        id="fz-1", environment="fz", commit="a" * 40, dirty=False, created="2026-01-01T00:00:00Z",
        order=("stack.network", "layer.app"), nodes=nodes, inputs_hash={"layer.app": "x"},
    )
    data = bundle.to_json()
    assert PlanBundle.from_json(json.loads(json.dumps(data))) == bundle
    return data


VALID = _valid_bundle()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in _paths(VALID) if p]


def _set(data: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    data = json.loads(json.dumps(data))  # a deep copy (VALID itself is shallow)
    cur = data
    for k in path[:-1]:
        cur = cur[k]
    if delete:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return data


def _nested(n: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(n):
        value = [value]
    return value


def _reseal(data: Any) -> Any:
    """What a deliberate forger does: recompute the fingerprint over the edited body."""
    if isinstance(data, dict):
        body = {k: v for k, v in data.items() if k != "fingerprint"}
        try:
            return {**body, "fingerprint": sha256(canonical(body))}
        except RecursionError:  # too deep for the test's own encoder: leave the old fingerprint
            return data
    return data


def _dumps(data: Any) -> bytes:
    try:
        return json.dumps(data).encode()
    except RecursionError:
        return b"[" * 5000 + b"]" * 5000


bundle_inputs = st.one_of(
    json_values,
    st.tuples(st.sampled_from(ALL_PATHS), json_values, st.booleans()).map(lambda t: _set(VALID, *t)),
    st.tuples(st.sampled_from(ALL_PATHS), json_values, st.booleans()).map(lambda t: _reseal(_set(VALID, *t))),
)


@FUZZ
@given(data=bundle_inputs)
def test_planbundle_from_json_gives_a_bundle_or_a_typed_error(data: Any) -> None:
    try:
        PlanBundle.from_json(data)
    except EnvctlError as e:
        assert e.message


@FUZZ
@given(depth=st.integers(1, 5000), reseal=st.booleans())
def test_planbundle_from_json_survives_deep_nesting(depth: int, reseal: bool) -> None:
    data = _set(VALID, ("nodes", "layer.app", "notes"), _nested(depth), False)
    if reseal:
        data = _reseal(data)
    try:
        PlanBundle.from_json(data)
    except EnvctlError as e:
        assert e.message


def _bytes_mutation() -> st.SearchStrategy[bytes]:
    raw = json.dumps(VALID, indent=2).encode()
    return st.one_of(
        _mutations(raw),
        st.binary(max_size=500),
        st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        bundle_inputs.map(_dumps),
    )


@pytest.fixture(scope="module")
def store_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="envctl-fuzz-store-") as tmp:
        yield Path(tmp)


@FUZZ
@given(raw=_bytes_mutation(), planfile=st.one_of(st.just(PLANFILE), st.binary(max_size=50)))
def test_store_read_bundle_gives_a_bundle_or_a_typed_error(
    store_root: Path, raw: bytes, planfile: bytes
) -> None:
    plan_dir = store_root / ".envctl" / "plans" / "fz-1"
    (plan_dir / "stacks").mkdir(parents=True, exist_ok=True)
    (plan_dir / "bundle.json").write_bytes(raw)
    (plan_dir / "stacks" / "network.tfplan").write_bytes(planfile)
    try:
        Store(store_root).read_bundle("fz-1")
    except EnvctlError as e:
        assert e.message
