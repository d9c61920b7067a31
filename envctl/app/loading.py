"""Open the environment repository and load one environment: what every command starts with.

Finds the repository root (``--repo`` or the Git repository around the current directory), takes
its snapshot (the working tree, or ``--rev``), picks the environment (the one named, or the only
one there is), loads it and builds its graph; ``open_session`` wraps all of it in a ``Session``.
Imported by the CLI inside its commands, so ``import envctl.cli`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from envctl.app.session import Session, prewarm_plans
from envctl.core import yamlcache
from envctl.core.errors import UsageError
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, Snapshot
from envctl.repo import find_repo_root, list_environments, load_environment, open_snapshot
from envctl.repo.parsecache import DiskParseStore


def repo_root(repo: Path | None) -> Path:
    """The repository's top level: ``repo`` as given, or the Git repository around the cwd."""
    return repo.resolve() if repo else find_repo_root(Path.cwd())


def snapshot_of(repo: Path | None, rev: str | None, warn: Callable[[str], None] | None = None) -> Snapshot:
    """The repository's files: its working tree, or what Git revision ``rev`` holds."""
    root = repo_root(repo)
    return _with_parse_cache(open_snapshot(root, rev), root, warn)


def _with_parse_cache(snapshot: Snapshot, root: Path, warn: Callable[[str], None] | None) -> Snapshot:
    """``snapshot``, once its repository is known to be one envctl may keep state in (it does not
    commit ``.envctl/``): YAML parses are kept in its ``.envctl/cache/`` from now on. ``warn``:
    where the cache says, once, that it is off (or replaced a damaged key)."""
    say = None if warn is None else (lambda text: warn(f"warning: {text}"))
    yamlcache.use_store(DiskParseStore(root, say))
    return snapshot


def pick_environment(snapshot: Snapshot, env: str | None) -> str:
    """``env`` if given, else the repository's only environment; several is a usage error."""
    if env:
        return env
    envs = list_environments(snapshot)
    if len(envs) == 1:
        return envs[0]
    raise UsageError(
        "choose an environment with -e/--env",
        hint="environments in this repository: "
        + (", ".join(envs) or "none (add environments/<name>/environment.yaml)"),
    )


def load(
    repo: Path | None,
    rev: str | None,
    env: str | None,
    loaded: Callable[[Snapshot, Environment], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[Snapshot, Environment, EnvGraph]:
    """The environment and its graph; ``loaded`` runs in between (the graph may import networkx);
    ``warn``: where warnings of the load go (the parse cache's)."""
    snapshot = snapshot_of(repo, rev, warn)
    environment = load_environment(snapshot, pick_environment(snapshot, env))
    if loaded is not None:
        loaded(snapshot, environment)
    return snapshot, environment, EnvGraph(environment)


def open_session(
    repo: Path | None,
    rev: str | None,
    env: str | None,
    progress: Callable[[str], None],
    parallelism: int = 4,
    *,
    terraform: bool = False,
) -> Session:
    """A converge session. ``terraform``: the command will run Terraform, so its workers start
    loading in the background as soon as the environment is known."""
    root = repo_root(repo)

    def start_workers(snapshot: Snapshot, environment: Environment) -> None:
        prewarm_plans(environment, snapshot, root, environment.nodes, parallelism)

    snapshot, environment, g = load(repo, rev, env, start_workers if terraform else None, progress)
    return Session(root, snapshot, environment, g, parallelism=parallelism, progress=progress, rev=rev)


def validate_sessions(
    repo: Path | None, rev: str | None, env: str | None, progress: Callable[[str], None]
) -> list[Session]:
    """One session per environment ``envctl validate`` checks: ``env``, or every one of the repo."""
    from envctl.core.errors import ConfigError

    root = repo_root(repo)
    snapshot = _with_parse_cache(open_snapshot(root, rev), root, progress)
    names = [env] if env else list_environments(snapshot)
    if not names:
        raise ConfigError(
            "no environments found", hint="add environments/<name>/environment.yaml to the repository"
        )
    sessions = []
    for name in names:
        g = EnvGraph(load_environment(snapshot, name))
        sessions.append(Session(root, snapshot, g.env, g, progress=progress, rev=rev))
    return sessions
