"""The masking boundary: stdout and stderr as envctl writes them, every known secret masked."""

from __future__ import annotations

import io
from typing import TextIO


class MaskedStream(io.TextIOBase):
    """stdout/stderr as envctl writes them: every known secret masked (the masking boundary).

    Whatever prints - a view, a progress line, an error from Terraform, kubectl or the API
    server - goes through ``core.secrets.KNOWN`` here, including texts no caller scrubbed.
    """

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for a binary stream with b""
            raise TypeError("a text stream")
        from envctl.core.secrets import KNOWN

        self._inner.write(KNOWN.mask(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._inner.errors
