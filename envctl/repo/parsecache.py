"""The YAML parse cache on disk: ``.envctl/cache/yaml/`` of the repository checkout.

A command parses the same manifests as the last one (a 4 MB CRD bundle costs a third of a second
of CPU to parse, under a twentieth to load back); ``envctl.core.yamlcache`` asks this store for a
parse by its key (parser version, file name, text) before parsing. Like the rest of ``.envctl/``
it is never committed (a ``.gitignore`` of ``*``; envctl refuses a repository that commits
``.envctl/``) and never trusted blindly:

- every entry carries an HMAC-SHA256 over its key and bytes under a random key of this checkout
  (``key``, mode 0600, owned by the user running envctl); an entry that is truncated, flipped,
  written by another envctl, another user or anyone without the key does not verify and is
  ignored (the text is parsed again and the entry rewritten); a key file that is not private to
  the user turns the disk cache off;
- nothing is written outside ``.envctl/``: ``.envctl``, ``cache`` and ``yaml`` must be real
  directories owned by the user (a symlink among them, e.g. out of the repository, turns the disk
  cache off); the ones envctl creates are private to the user (mode 0700);
- entries are bounded (``MAX_ENTRY_BYTES`` each; ``MAX_TOTAL_BYTES`` and ``MAX_ENTRIES`` in all,
  the least recently used removed first);
- any I/O error means "not cached": the cache never fails a command.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import sys
import tempfile
import time
from pathlib import Path

import yaml

import envctl
from envctl.core import kubescalars, refs, yamlcache, yamldoc

MAGIC = b"envctl-yaml-cache 1\n"
MAX_ENTRY_BYTES = 64 << 20
MAX_TOTAL_BYTES = 256 << 20
MAX_ENTRIES = 512
_KEY_BYTES = 32
_MAC_BYTES = hashlib.sha256().digest_size
_SUFFIX = ".bin"


def parser_version() -> str:
    """What a parse depends on besides the text: envctl, the reader's sources, PyYAML, Python."""
    h = hashlib.sha256()
    for module in (yamldoc, kubescalars, refs, yamlcache):
        h.update(Path(str(module.__file__)).read_bytes())
    libyaml = getattr(yaml, "__with_libyaml__", False)
    return f"envctl {envctl.__version__} {h.hexdigest()} pyyaml {yaml.__version__} {libyaml} {sys.version}"


class DiskParseStore:
    """Parses kept under ``<root>/.envctl/cache/yaml``: a ``yamlcache.ParseStore``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / ".envctl" / "cache" / "yaml"
        self.version = parser_version()
        self._secret: bytes | None = None
        self._off = False

    def _key(self) -> bytes | None:
        """This checkout's HMAC key, made on first use; None: the disk cache is off."""
        if self._secret is not None or self._off:
            return self._secret
        try:
            self._own_dirs()
            self._secret = self._read_key() or self._make_key()
        except OSError:
            self._secret = None
        self._off = self._secret is None
        return self._secret

    def _own_dirs(self) -> None:
        """Make ``.envctl/cache/yaml`` (mode 0700 where envctl creates it); OSError unless each of
        its three directories is a real one (no symlink) owned by this user."""
        path = self.root
        for part in self.dir.relative_to(self.root).parts:
            path = path / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                raise OSError(f"{path} is not a directory of this user")

    def _read_key(self) -> bytes | None:
        try:
            fd = os.open(self.dir / "key", os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            private = st.st_uid == os.getuid() and not st.st_mode & 0o077 and stat.S_ISREG(st.st_mode)
            data = os.read(fd, _KEY_BYTES + 1)
        finally:
            os.close(fd)
        if not private or len(data) != _KEY_BYTES:
            raise OSError("the parse cache key is not private to this user")
        return data

    def _make_key(self) -> bytes | None:
        ignore = self.dir.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# envctl's parse cache: not part of the repository\n*\n")
        secret = secrets.token_bytes(_KEY_BYTES)
        fd, tmp = tempfile.mkstemp(prefix=".key.", dir=self.dir)  # mode 0600
        try:
            os.write(fd, secret)
            os.close(fd)
            os.link(tmp, self.dir / "key")  # fails if another envctl made the key meanwhile
        except FileExistsError:
            return self._read_key()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return secret

    def _mac(self, secret: bytes, key: str, blob: bytes) -> bytes:
        return hmac.new(secret, key.encode() + b"\0" + blob, hashlib.sha256).digest()

    def load(self, key: str) -> bytes | None:
        secret = self._key()
        if secret is None:
            return None
        path = self.dir / (key + _SUFFIX)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES + len(MAGIC) + _MAC_BYTES:
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        except OSError:
            return None
        finally:
            os.close(fd)
        start = len(MAGIC) + _MAC_BYTES
        head, mac, blob = data[: len(MAGIC)], data[len(MAGIC) : start], data[start:]
        if head != MAGIC or not hmac.compare_digest(mac, self._mac(secret, key, blob)):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return blob

    def save(self, key: str, blob: bytes) -> None:
        secret = self._key()
        if secret is None or len(blob) > MAX_ENTRY_BYTES:
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=".entry.", dir=self.dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(MAGIC + self._mac(secret, key, blob) + blob)
                os.replace(tmp, self.dir / (key + _SUFFIX))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._prune()
        except OSError:
            return

    def _prune(self) -> None:
        """Remove the least recently used entries beyond the bounds."""
        entries = []
        abandoned = time.time() - 3600  # a temporary file of a killed envctl
        with os.scandir(self.dir) as it:
            for e in it:
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
                if e.name.endswith(_SUFFIX):
                    entries.append((st.st_mtime, st.st_size, e.path))
                elif e.name.startswith((".entry.", ".key.")) and st.st_mtime < abandoned:
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)
        total = sum(size for _, size, _ in entries)
        entries.sort()
        while entries and (len(entries) > MAX_ENTRIES or total > MAX_TOTAL_BYTES):
            _, size, path = entries.pop(0)
            with contextlib.suppress(OSError):
                os.unlink(path)
            total -= size
