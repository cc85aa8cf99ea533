"""The one grammar that names a version, for the CLI and the Python API alike (docs/cli.md).

::

    NAME                  the latest (highest live) version
    NAME:latest           the same
    NAME:3   NAME:v3      version 3 (``v3``/``V3`` is how roro prints versions)
    NAME:prod             the version tag ``prod`` points at
    NAME@sha256:3f7bc85   the version whose image (manifest) digest starts with these hex digits
                          (at least 7; an ambiguous prefix is an error listing the candidates)

Inside one repository (``repo.get_model_image("prod")``) the same grammar without ``NAME``:
``"3"``, ``"v3"``, ``"prod"``, ``"latest"``, ``"sha256:3f7bc85"`` (or ``"@sha256:3f7bc85"``).

A tag never looks like a version: new tags that are all digits or ``v`` + digits are refused
(:func:`validate_new_tag`). A store written before that rule may hold a tag ``v2``; ``NAME:v2`` is
then ambiguous and resolving it raises an error naming both (fsck warns about such tags).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import InvalidNameError
from .names import LATEST, validate_name, validate_tag, validate_version

DIGEST_PREFIX_MIN = 7
_VERSION_WORD = re.compile(r"[vV]([0-9]+)")
_DIGEST_PREFIX = re.compile(r"sha256:([0-9a-f]{1,64})")

GRAMMAR = ("NAME, NAME:latest, NAME:VERSION (3 or v3), NAME:TAG or NAME@sha256:<at least "
           f"{DIGEST_PREFIX_MIN} hex digits>")


class Ref(NamedTuple):
    """A parsed reference to one version. Exactly one of ``version``, ``tag``, ``digest`` is set,
    or none of them (the latest version). ``name`` is None for a reference inside one repository.
    ``version_word`` is the ``vN`` spelling when the version was written so (an old tag of that
    name makes it ambiguous); ``text`` is what was parsed."""

    name: str | None
    version: int | None = None
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex prefix>"
    version_word: str | None = None
    text: str = ""

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.tag is None and self.digest is None

    def __str__(self) -> str:
        return self.text


def looks_like_version(word: str) -> bool:
    """True for ``3``, ``v3``, ``V17``: words that name a version, never a tag."""
    return word.isdigit() or _VERSION_WORD.fullmatch(word) is not None


def validate_new_tag(tag: object) -> str:
    """:func:`~roro.names.validate_tag` plus the rule for tags created from now on: a tag never
    looks like a version (``v2``, ``V17``), because ``NAME:v2`` means version 2."""
    if isinstance(tag, str) and _VERSION_WORD.fullmatch(tag):
        raise InvalidNameError(f"invalid tag name {tag!r}: it looks like a version "
                               f"('name:{tag}' means version {int(tag[1:])}); choose another "
                               f"name", name=tag)
    return validate_tag(tag)


def parse_ref(text: object, *, name: str | None = None) -> Ref:
    """Parse a reference inside a repository: ``latest``, ``3``, ``v3``, ``prod``, ``sha256:…``
    (also ``@sha256:…``). ``name`` is carried into the result."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise InvalidNameError(f"invalid version reference {text!r}: expected {GRAMMAR}",
                               name=text)
    if isinstance(text, int):
        return Ref(name, version=validate_version(text), text=str(text))
    word = text.removeprefix("@")
    if word == LATEST or word == "":
        if word == "" and text != "":
            raise InvalidNameError(f"invalid version reference {text!r}: expected {GRAMMAR}",
                                   name=text)
        return Ref(name, text=text)
    if word.startswith("sha256:") or text.startswith("@"):
        return Ref(name, digest=_digest_prefix(word), text=text)
    if word.isdigit():
        return Ref(name, version=validate_version(word), text=text)
    m = _VERSION_WORD.fullmatch(word)
    if m:
        return Ref(name, version=validate_version(m.group(1)), version_word=word, text=text)
    return Ref(name, tag=validate_tag(word), text=text)


def parse_refspec(spec: object) -> Ref:
    """Parse ``NAME[:VERSION|:vN|:TAG|:latest]`` or ``NAME@sha256:<prefix>`` (see the module)."""
    if not isinstance(spec, str):
        raise InvalidNameError(f"invalid version reference {spec!r}: expected {GRAMMAR}",
                               name=spec)
    at = spec.find("@")
    colon = spec.find(":")
    if at != -1 and (colon == -1 or at < colon):
        name, rest = spec[:at], spec[at:]
    elif colon != -1:
        name, rest = spec[:colon], spec[colon + 1:]
        if rest == "":
            raise InvalidNameError(f"invalid version reference {spec!r}: nothing after ':' "
                                   f"(expected {GRAMMAR})", name=spec)
    else:
        name, rest = spec, LATEST
    validate_name(name)
    ref = parse_ref(rest, name=name)
    return Ref(name, ref.version, ref.tag, ref.digest, ref.version_word, spec)


def _digest_prefix(word: str) -> str:
    m = _DIGEST_PREFIX.fullmatch(word)
    if not m:
        raise InvalidNameError(f"invalid image digest {word!r}: expected sha256: and at least "
                               f"{DIGEST_PREFIX_MIN} lowercase hex digits", name=word)
    if len(m.group(1)) < DIGEST_PREFIX_MIN:
        raise InvalidNameError(f"image digest prefix {word!r} is too short: give at least "
                               f"{DIGEST_PREFIX_MIN} hex digits", name=word)
    return word
