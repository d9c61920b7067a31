"""SOPS-encrypted files from the repository, decrypted in memory by the ``sops`` binary.

The one adapter to ``sops``, shared by layer rendering (``envctl.kube.render``: encrypted
manifests) and Terraform stacks (``envctl.terraform.stack``: an encrypted values file beside
``stack.yaml``). It may import ``subprocess`` and ``envctl.core``; never another adapter.

The encrypted text goes to ``sops decrypt`` on stdin and the plaintext comes back on stdout:
nothing decrypted is ever written to disk. ``sops`` finds its keys as it always does
(``SOPS_AGE_KEY_FILE``, ``SOPS_AGE_KEY``, ``~/.config/sops/age/keys.txt``, a GPG keyring, cloud
KMS credentials, ...): envctl passes its environment through and holds no key itself. The texts
of every value that was encrypted (``Decrypted.secrets``) join ``envctl.core.secrets.KNOWN``, the
one masker's memory, before the plaintext is returned: scrubbed from everything envctl prints,
stores or sends.

Errors (never a traceback, never a decrypted value):

* no ``sops`` binary: ``SopsUnavailableError``, an ``UnavailableError`` (exit 69), with the
  command that builds it;
* no key here opens the file (none given, or the wrong one): ``SopsKeyError``, a ``ConfigError``
  (exit 78: the machine running envctl lacks configuration; retrying cannot help), naming the
  file and every key the file is encrypted for;
* a damaged file (MAC mismatch, broken ciphertext, not YAML): ``ConfigError`` (exit 78).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.core.errors import ConfigError, Location, UnavailableError
from envctl.core.secrets import KNOWN, collect_secret_texts
from envctl.core.yamldoc import load_yaml_documents

SOPS_VERSION = "v3.13.3"
BUILD_COMMAND = "scripts/build-secret-tools sops"
TIMEOUT = 120.0  # a cloud KMS may be slow; a hung one must not hang envctl
# sops' own exit codes (cmd/sops/codes): no data key could be retrieved with the keys at hand
_CODE_NO_KEY = 128
_DAMAGE = {
    24: "its MAC does not decrypt (the file was changed after encryption)",
    25: "a value does not decrypt (the file was changed after encryption)",
    51: "its MAC does not match (the file was changed after encryption)",
    52: "it has no MAC",
}
_TOP_LEVEL_SOPS = re.compile(r"^sops:[ \t]*(#.*)?$", re.MULTILINE)
_ENCRYPTED = re.compile(r"^ENC\[[A-Za-z0-9_]+,data:")
_KEY_HINT = (
    "give sops the private key of one of those recipients: SOPS_AGE_KEY_FILE=<file> or "
    "SOPS_AGE_KEY=AGE-SECRET-KEY-... for age (or ~/.config/sops/age/keys.txt), a GPG key in your "
    "keyring for pgp, cloud credentials for KMS (see docs/secrets.md)"
)


class SopsKeyError(ConfigError):
    """No key available here decrypts a SOPS file (none given, or not one of its recipients)."""

    reference = "sops-key-missing"


class SopsUnavailableError(UnavailableError):
    """The ``sops`` binary is not installed (neither on ``PATH`` nor in envctl's cache)."""

    reference = "sops-missing"


@dataclass(frozen=True)
class Decrypted:
    """The plaintext of a SOPS file and the texts of its decrypted values (for the masker).

    ``repr`` shows neither: an accidental log line or traceback never carries a secret.
    """

    text: str
    secrets: frozenset[str]

    def __repr__(self) -> str:
        return f"Decrypted(<{len(self.text)} characters>, {len(self.secrets)} secret texts)"


def is_encrypted(text: str) -> bool:
    """Whether ``text`` is a SOPS-encrypted YAML file: a document with a top-level ``sops:`` key."""
    return "sops:" in text and _TOP_LEVEL_SOPS.search(text) is not None  # `in`: 20x faster, 4 MB


def cache_root() -> Path:
    return Path(os.environ.get("ENVCTL_CACHE") or Path.home() / ".cache" / "envctl")


def find_sops() -> str:
    """The ``sops`` binary: on ``PATH``, else the one ``scripts/build-secret-tools`` cached."""
    found = shutil.which("sops")
    if found:
        return found
    cached = cache_root() / "sops" / SOPS_VERSION / "sops"
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    raise SopsUnavailableError(
        "sops is not installed: it is needed to decrypt SOPS-encrypted files",
        hint=f"run `{BUILD_COMMAND}` in the envctl source tree (builds sops {SOPS_VERSION} from its "
        f"Go module into {cached.parent}/), or put sops on PATH",
    )


def recipients(text: str) -> list[str]:
    """The keys a SOPS file is encrypted for, as ``age age1...``, ``pgp FINGERPRINT``, ``kms ARN``."""
    try:
        docs = [d.data for d in load_yaml_documents(text, "sops") if isinstance(d.data, dict)]
    except ConfigError:
        return []
    out: list[str] = []
    for doc in docs:
        meta = doc.get("sops")
        if not isinstance(meta, dict):
            continue
        groups: list[Mapping[str, Any]] = [meta]
        groups += [g for g in meta.get("key_groups") or [] if isinstance(g, dict)]
        for group in groups:
            for kind, field in (
                ("age", "recipient"),
                ("pgp", "fp"),
                ("kms", "arn"),
                ("gcp_kms", "resource_id"),
                ("azure_kv", "name"),
                ("hc_vault", "key_name"),
            ):
                for entry in group.get(kind) or []:
                    if isinstance(entry, dict) and entry.get(field):
                        item = f"{kind} {entry[field]}"
                        if item not in out:
                            out.append(item)
    return out


def plain_keys(text: str, file: str) -> list[str]:
    """Top-level keys of a SOPS-encrypted YAML mapping (sops leaves keys in the clear), no key needed."""
    docs = load_yaml_documents(text, file)
    doc = docs[0].data if len(docs) == 1 else None
    if not isinstance(doc, dict) or not isinstance(doc.get("sops"), dict):
        raise ConfigError(
            f"{file} is not a SOPS-encrypted YAML mapping",
            location=Location(file),
            hint=f"encrypt it with `sops encrypt --age <recipient> --in-place {file}`",
        )
    return sorted(str(k) for k in doc if k != "sops")


_CACHE: dict[str, Decrypted] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 64


def decrypt(text: str, file: str, *, node: str | None = None) -> Decrypted:
    """Decrypt a SOPS-encrypted YAML file in memory (stdin to stdout of ``sops decrypt``).

    Remembered in this process by the hash of the encrypted text (a command renders a layer
    several times); only successes are remembered, so a key given later is used.
    """
    digest = hashlib.sha256(text.encode()).hexdigest()
    with _CACHE_LOCK:
        hit = _CACHE.get(digest)
    if hit is not None:
        return hit
    # `sops decrypt` with no file reads stdin: the plaintext never touches a disk
    cmd = [find_sops(), "decrypt", "--input-type", "yaml", "--output-type", "yaml"]
    try:
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise UnavailableError(
            f"sops did not decrypt {file} within {TIMEOUT:g}s",
            node=node,
            location=Location(file),
            hint="a key service (KMS, Vault, a GPG agent) may be unreachable",
        ) from None
    if proc.returncode != 0:
        raise _failure(proc.returncode, proc.stderr, text, file, node)
    out = Decrypted(proc.stdout, frozenset(decrypted_texts(text, proc.stdout, file)))
    KNOWN.add_texts(out.secrets)  # masked in everything envctl prints, stores or sends
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[digest] = out
    return out


def _failure(code: int, stderr: str, text: str, file: str, node: str | None) -> ConfigError:
    tail = "\n".join(stderr.strip().splitlines()[-12:])
    detail = f"$ sops decrypt {file}  (exit {code})\n{tail}"
    if code == _CODE_NO_KEY:
        keys = recipients(text)
        return SopsKeyError(
            f"cannot decrypt {file}: no key here opens it; it is encrypted for "
            + (", ".join(keys) if keys else "keys sops could not name"),
            node=node,
            location=Location(file),
            hint=_KEY_HINT,
            detail=detail,
        )
    what = _DAMAGE.get(code, "sops cannot read it")
    return ConfigError(
        f"{file} is a damaged SOPS file: {what}",
        node=node,
        location=Location(file),
        hint="re-encrypt it from the plaintext (`sops encrypt`), or edit it only with `sops edit`",
        detail=detail,
    )


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        if (isinstance(value, dict) and p in value) or (
            isinstance(value, list) and isinstance(p, int) and p < len(value)
        ):
            value = value[p]
        else:
            return None
    return value


def decrypted_texts(encrypted: str, plain: str, file: str) -> set[str]:
    """The texts of every value that was encrypted (``ENC[...]``), plus the base64-decoded text of
    each (a Secret's ``data``), as ``collect_secret_texts`` forms."""
    out: set[str] = set()
    try:
        before = [d.data for d in load_yaml_documents(encrypted, file)]
        after = [d.data for d in load_yaml_documents(plain, file)]
    except ConfigError:
        # the parse error would quote decrypted text: say only where
        raise ConfigError(f"{file}: sops printed no valid YAML", location=Location(file)) from None
    for enc_doc, dec_doc in zip(before, after, strict=False):
        for path, value in _leaves(enc_doc):
            if not (isinstance(value, str) and _ENCRYPTED.match(value)):
                continue
            clear = _at(dec_doc, path)
            collect_secret_texts(clear, out)
            if isinstance(clear, str):
                try:
                    decoded = base64.b64decode(clear, validate=True).decode()
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    continue
                collect_secret_texts(decoded, out)
    return out
