"""The naming rules, in one place, applied before any name becomes a path, a key or a SQL value.

Repository, project and tag names: 1 to 100 characters from lowercase ``a-z``, digits, ``.``, ``_`` and
``-``; the first character a letter or digit; never containing ``..``. A tag is additionally never all
digits (``name:3`` always means version 3) and never ``latest`` (which always means the highest
version).

Attachment names: a relative POSIX path (``log.txt``, ``plots/roc.png``) of at most 255 characters,
each part 1 to 100 characters, no part ``.`` or ``..``, no leading ``/``, no backslash, no drive
letter or ``:``, no control characters (NUL included), none of ``<>:"|?*`` and no leading or
trailing spaces or dots in a part, no Windows device name (``CON``, ``NUL.txt``, ``COM1``…). Such a name can be written below any directory on Linux, macOS or
Windows without escaping it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .errors import InvalidNameError

NAME_RULE = ("lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, "
             "at most 100 characters, no '..'")
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
LATEST = "latest"
MAX_ATTACHMENT_NAME = 255
_BAD_ATTACHMENT_CHARS = set('\\:<>"|?*')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
                    *(f"LPT{i}" for i in range(10)), "CONIN$", "CONOUT$"}


def validate_name(name: object, kind: str = "repository") -> str:
    """Return ``name`` if it is a valid repository or project name, else raise InvalidNameError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidNameError(f"invalid {kind} name {name!r}: use {NAME_RULE}", name=name)
    return name


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid tag name (not all digits, not 'latest')."""
    validate_name(tag, "tag")
    assert isinstance(tag, str)
    if tag.isdigit():
        raise InvalidNameError(f"invalid tag name {tag!r}: a tag may not be all digits "
                               f"('name:{tag}' means version {tag})", name=tag)
    if tag == LATEST:
        raise InvalidNameError("invalid tag name 'latest': it always means the highest version "
                               "and cannot be set", name=tag)
    return tag


def validate_version(version: object) -> int:
    """Return ``version`` as a positive int (accepts ints and digit strings)."""
    if isinstance(version, bool):
        raise InvalidNameError(f"invalid version {version!r}: expected a positive integer", name=version)
    if isinstance(version, str) and version.isdigit() and version.isascii():
        version = int(version)
    if not isinstance(version, int) or version < 1:
        raise InvalidNameError(f"invalid version {version!r}: expected a positive integer", name=version)
    return version


def validate_attachment_name(name: object) -> str:
    """Return ``name`` if it is a safe relative attachment path, else raise InvalidNameError."""
    def bad(why: str) -> InvalidNameError:
        return InvalidNameError(f"invalid attachment name {name!r}: {why}", name=name)

    if not isinstance(name, str):
        raise bad("expected a string")
    if not name:
        raise bad("it is empty")
    if len(name) > MAX_ATTACHMENT_NAME:
        raise bad(f"longer than {MAX_ATTACHMENT_NAME} characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("not valid Unicode text") from None
    if name.startswith("/"):
        raise bad("absolute paths are not allowed")
    for ch in name:
        if ch in _BAD_ATTACHMENT_CHARS or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise bad(f"character {ch!r} is not allowed")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise bad("empty, '.' and '..' path parts are not allowed")
        if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
            raise bad(f"{part!r} is a device name on Windows")
        if len(part) > 100:
            raise bad("a path part is longer than 100 characters")
        if part != part.strip(" ") or part.endswith("."):
            raise bad("a path part may not start or end with a space or end with a dot")
    return name


def _fold(name: str) -> str:
    """The form two names must not share: file systems that ignore case (Windows, macOS) or
    normalize Unicode (macOS) would store them as one file."""
    return unicodedata.normalize("NFC", name).casefold()


def attachment_name_conflict(name: str, others: Iterable[str]) -> str | None:
    """Why attachment ``name`` cannot be stored next to ``others`` (one directory tree), or None.

    Names that differ only in case or Unicode normalization would collide on some file systems,
    and a name cannot be both a file and a folder of another (``a`` and ``a/b``).
    """
    folded = _fold(name)
    for other in others:
        if other == name:
            continue
        f = _fold(other)
        if f == folded:
            return (f"attachment name {name!r} differs from {other!r} only in case or Unicode "
                    f"normalization; that would collide on case-insensitive filesystems")
        if f.startswith(folded + "/") or folded.startswith(f + "/"):
            return (f"attachment name {name!r} and {other!r} would need the same path as a file "
                    f"and as a folder")
    return None
