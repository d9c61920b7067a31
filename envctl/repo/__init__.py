"""Read an environment repository, from the working tree or from a Git revision (GitPython)."""

from envctl.repo.loader import list_environments, load_environment
from envctl.repo.snapshot import GitSnapshot, WorkTreeSnapshot, find_repo_root, open_snapshot

__all__ = [
    "GitSnapshot",
    "WorkTreeSnapshot",
    "find_repo_root",
    "list_environments",
    "load_environment",
    "open_snapshot",
]
