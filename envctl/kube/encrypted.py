"""SOPS-encrypted manifests of a layer: decrypted in memory at render, marked, masked.

``render.render_layer`` hands every manifest file whose text carries SOPS metadata here instead
of substituting and parsing it. The file is decrypted by ``envctl.sops`` (the ``sops`` binary,
stdin to stdout) and parsed; its objects get the annotation ``envctl.io/sops-file`` naming the
file (so the plaintext-Secret policy knows their values were encrypted in Git); ``envctl.sops``
has added the texts of the decrypted values to ``KNOWN``, the one masker's memory.

A SOPS file is taken as it was encrypted: no ``${...}`` substitution (its MAC covers the values,
and a ``$`` in a password stays a ``$``). May import ``envctl.sops`` and ``envctl.core``; never
``kubernetes``: rendering works offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envctl.core.errors import ConfigError, EnvctlError, Location
from envctl.kube.objects import ANNOTATION_SOPS
from envctl.sops import SopsKeyError, SopsUnavailableError, decrypt

Parsed = list[tuple[dict[str, Any], int]]


def is_from_sops(obj: dict[str, Any]) -> bool:
    """Whether render took ``obj`` from a SOPS-encrypted file (its values were never plain in Git)."""
    return bool(((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SOPS))


def sops_manifests(
    text: str,
    file: str,
    node: str,
    undecrypted: list[str] | None,
    parse: Callable[[str, str], Parsed],
) -> Parsed:
    """The objects of the SOPS-encrypted manifest file ``file`` (``parse``: text -> (object, line)).

    With ``undecrypted`` given (``envctl validate``), a file that cannot be decrypted here (no
    key, no ``sops``) is parsed as encrypted, without its ``sops`` metadata, and the reason is
    appended to ``undecrypted``; without it, that is an error (plan, apply, drift).
    """
    try:
        plain = decrypt(text, file, node=node)
    except (SopsKeyError, SopsUnavailableError) as e:
        if undecrypted is None:
            raise
        undecrypted.append(f"{file}: not decrypted here, so only its shape was checked: {e.message}")
        out = parse(text, file)
        for obj, _ in out:
            obj.pop("sops", None)
    else:
        try:
            out = parse(plain.text, file)
        except EnvctlError:
            # the parser's message may quote a decrypted line: say only where
            raise ConfigError(
                f"{file} decrypts to invalid manifests", node=node, location=Location(file)
            ) from None
    for obj, _ in out:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_SOPS: file}
    return out


def strip_sops_marker(obj: dict[str, Any]) -> None:
    """Remove a hand-written ``envctl.io/sops-file`` annotation: only render may set it."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(ANNOTATION_SOPS, None)
