"""Read an environment repository, from the working tree or from a Git revision.

The working tree's Git facts (top level, HEAD, dirty, changed paths) come from the ``git``
command (``gitcli``); a revision's files are read through GitPython (``GitSnapshot``).
"""

from envctl.repo.gitcli import changed_paths
from envctl.repo.loader import list_environments, load_environment
from envctl.repo.snapshot import GitSnapshot, WorkTreeSnapshot, find_repo_root, open_snapshot

__all__ = [
    "GitSnapshot",
    "WorkTreeSnapshot",
    "changed_paths",
    "find_repo_root",
    "list_environments",
    "load_environment",
    "open_snapshot",
]
