"""The YAML parse cache on disk: ``.envctl/cache/yaml/`` of the repository checkout.

A command parses the same manifests as the last one (a 4 MB CRD bundle costs a third of a second
of CPU to parse, under a twentieth to load back); ``envctl.core.yamlcache`` asks this store for a
parse by its key (parser version, file name, text) before parsing. Like the rest of ``.envctl/``
it is never committed (a ``.gitignore`` of ``*``; envctl refuses a repository that commits
``.envctl/``) and never trusted blindly:

- every entry carries an HMAC-SHA256 over its key and bytes under a random key of this checkout
  (``key``, mode 0600, owned by the user running envctl); an entry that is truncated, flipped,
  written by another envctl, another user or anyone without the key does not verify and is
  ignored (the text is parsed again and the entry rewritten); a damaged key (a regular file of
  the user that is not 32 bytes, or that others may read) is replaced by a new one, which
  voids every entry signed with the old; a key that is not the user's regular file (a symlink,
  another user's file, a directory, a FIFO) is never followed, read, trusted or removed: it
  turns the disk cache off, and envctl says so once, naming the file to delete;
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
from collections.abc import Callable
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


class Untrusted(OSError):
    """A file of the cache that envctl must neither use nor touch; the message says what to do."""


class DiskParseStore:
    """Parses kept under ``<root>/.envctl/cache/yaml``: a ``yamlcache.ParseStore``.

    ``warn``: told once, in words for the user, when the disk cache is off for a reason the user
    can fix, or when a damaged key was replaced.
    """

    def __init__(self, root: Path, warn: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.dir = root / ".envctl" / "cache" / "yaml"
        self.version = parser_version()
        self._secret: bytes | None = None
        self._off = False
        self._warn = warn

    def _key(self) -> bytes | None:
        """This checkout's HMAC key, made on first use; None: the disk cache is off."""
        if self._secret is not None or self._off:
            return self._secret
        try:
            self._own_dirs()
            self._secret = self._read_key() or self._make_key()
        except Untrusted as e:
            self._secret = None
            self._say(f"the YAML parse cache is off: {e}")
        except OSError:
            self._secret = None
        self._off = self._secret is None
        return self._secret

    def _say(self, message: str) -> None:
        if self._warn is not None:
            with contextlib.suppress(Exception):  # the cache never fails a command
                self._warn(message)

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
                raise Untrusted(
                    f"{path} is not a directory of this user (a symlink, a file, or another user's); "
                    "envctl leaves it alone: remove it to turn the cache back on"
                )

    def _read_key(self) -> bytes | None:
        """This checkout's key; None when there is none yet. A damaged key of the user is replaced
        (a new key voids every entry); one that is not the user's regular file is Untrusted."""
        path = self.dir / "key"
        try:
            # O_NONBLOCK: a FIFO planted as the key must not hang the command
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as e:  # ELOOP: a symlink, never followed
            if os.path.islink(path):
                raise Untrusted(f"{path} is a symbolic link; envctl does not follow it: remove it") from e
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                raise Untrusted(
                    f"{path} is not a regular file of this user; envctl does not use or remove it: "
                    "remove it to turn the cache back on"
                )
            data = os.read(fd, _KEY_BYTES + 1)
        finally:
            os.close(fd)
        if st.st_mode & 0o077 or len(data) != _KEY_BYTES:
            faults = [f"{len(data)} bytes, not {_KEY_BYTES}"] if len(data) != _KEY_BYTES else []
            why = ", ".join([*faults, *(["readable by others"] if st.st_mode & 0o077 else [])])
            secret = self._replace_key()
            self._say(f"the YAML parse cache key {path} was damaged ({why}): replaced with a new one")
            return secret
        return data

    def _replace_key(self) -> bytes:
        """A new key in place of a damaged one: written aside (mode 0600), then renamed over it
        (a rename replaces the directory entry, whatever it is now; it never follows a link)."""
        secret = secrets.token_bytes(_KEY_BYTES)
        fd, tmp = tempfile.mkstemp(prefix=".key.", dir=self.dir)  # mode 0600
        try:
            os.write(fd, secret)
            os.close(fd)
            os.replace(tmp, self.dir / "key")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return secret

    def _make_key(self) -> bytes | None:
        ignore = self.dir.parent / ".gitignore"
        with contextlib.suppress(FileExistsError):  # never through a link planted there
            fd = os.open(ignore, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("# envctl's parse cache: not part of the repository\n*\n")
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
