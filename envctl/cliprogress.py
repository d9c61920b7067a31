"""Progress lines of a command on stderr, for ``envctl.cli``: one writer for every thread; and the
human at the terminal, whose questions hold those lines back while they wait.

Imports only typer at module level, like ``envctl.cli``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import typer


class Progress:
    """Progress lines on stderr; held back while a question waits for its answer (``asking``), so
    a prompt is never interleaved with the lines of nodes converging in parallel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asking = threading.Lock()  # one question at a time
        self._held: list[str] | None = None

    def __call__(self, msg: str) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append(msg)
                return
            typer.echo(msg, err=True)

    @contextlib.contextmanager
    def asking(self) -> Iterator[None]:
        with self._asking:
            with self._lock:
                self._held = []
            try:
                yield
            finally:
                with self._lock:
                    held, self._held = self._held or [], None
                    for msg in held:
                        typer.echo(msg, err=True)


class Terminal:
    """The human at the terminal (``envctl.app.consent.Human``): questions on stderr, answers
    from stdin, ``progress`` lines held back while a question waits."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def ask(self, question: str, expected: str, shown: str = "") -> bool:
        return self._read(question, f"Type '{expected}' to approve: ", shown) == expected

    def choose(self, question: str, choices: Sequence[str], default: str) -> str:
        while True:
            answer = self._read(question, f"[{'/'.join(choices)}] (default {default}): ") or default
            if answer in choices:
                return answer

    def _read(self, question: str, ask: str, shown: str = "") -> str:
        with self.progress.asking():
            if shown:
                typer.echo(shown, err=True)
            typer.echo(question, err=True)
            try:
                return input(ask).strip()
            except EOFError:
                return ""
