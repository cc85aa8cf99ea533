"""The naming rules, in one place, applied before any name becomes a path, a key or a SQL value.

Repository, project and tag names: 1 to 100 characters from lowercase ``a-z``, digits, ``.``, ``_`` and
``-``; the first character a letter or digit; never containing ``..``. A tag is additionally never all
digits (``name:3`` always means version 3) and never ``latest`` (which always means the highest
version).

Attachment names: a relative POSIX path (``log.txt``, ``plots/roc.png``) of at most 255 characters,
each part 1 to 100 characters, no part ``.`` or ``..``, no leading ``/``, no backslash, no drive
letter or ``:``, no control characters (NUL included), none of ``<>:"|?*`` and no leading or
trailing spaces or dots in a part, no Windows device name (``CON``, ``NUL.txt``, ``COM1``,
``COM¹``…). Such a name can be written below any directory on Linux, macOS or Windows without
escaping it.

Two strengths of each rule (DESIGN.md §14): names given for a *new* write (a new repository, project
or tag, an attachment of a new image) must pass every rule; names *read* from a store only need
the rules that keep reading and downloading safe (:func:`check_attachment_path`: no path escapes),
so that stores written under older rules stay readable, and fsck warns about the rest
(:func:`name_warning`, :func:`attachment_name_warning`).
"""

from __future__ import annotations

import os
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
#: Windows reserves these names in every directory, with any extension (``nul.txt``), in any case;
#: it reads the superscript digits ¹ ² ³ as digits too (``COM¹``).
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                    *(f"{port}{d}" for port in ("COM", "LPT") for d in "0123456789\u00b9\u00b2\u00b3")}


def validate_name(name: object, kind: str = "repository") -> str:
    """Return ``name`` if it is a valid repository or project name, else raise InvalidNameError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidNameError(f"invalid {kind} name {name!r}: use {NAME_RULE}", name=name)
    return name


def windows_name_problem(part: str) -> str | None:
    """Why ``part`` (a repository, project or tag name, or one part of an attachment path) would
    break as a file name on Windows, or None: a device name (``con``, ``nul.txt``, ``COM¹``), or
    a name ending with a dot or a space (Windows drops them: ``x.`` is ``x``)."""
    if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return f"{part!r} is a device name on Windows"
    if part.endswith((".", " ")):
        return f"{part!r} ends with a dot or a space, which Windows drops"
    return None


def validate_new_name(name: object, kind: str = "repository") -> str:
    """:func:`validate_name` plus the rules for a name a write is about to create: not a Windows
    device name, not ending with a dot (a repository, project or tag that exists already stays
    usable: fsck only warns about it)."""
    validate_name(name, kind)
    assert isinstance(name, str)
    why = windows_name_problem(name)
    if why is not None:
        raise InvalidNameError(f"invalid {kind} name {name!r}: {why}; choose another name",
                               name=name)
    return name


def name_warning(name: str, kind: str = "repository") -> str | None:
    """What a new write of ``name`` would be refused for, though reading it is fine (fsck warns)."""
    why = windows_name_problem(name)
    return None if why is None else f"{kind} name {name!r}: {why}; a new one would be refused"


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


def check_attachment_path(name: object) -> str:
    """Return ``name`` if it is safe to read and to write below a directory, else raise
    InvalidNameError: a non-empty relative POSIX path with no ``.``/``..``/empty part, no
    backslash, no ``:`` (drive letters, alternate data streams) and no control character. The rules
    a manifest read from a store must pass (names written under older rules stay readable)."""
    def bad(why: str) -> InvalidNameError:
        return InvalidNameError(f"invalid attachment name {name!r}: {why}", name=name)

    if not isinstance(name, str):
        raise bad("expected a string")
    if not name:
        raise bad("it is empty")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("not valid Unicode text") from None
    if name.startswith("/"):
        raise bad("absolute paths are not allowed")
    for ch in name:
        if ch in "\\:" or unicodedata.category(ch) == "Cc":
            raise bad(f"character {ch!r} is not allowed")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise bad("empty, '.' and '..' path parts are not allowed")
    return name


def attachment_name_problem(name: str) -> str | None:
    """Why a new attachment may not be called ``name`` (which passed
    :func:`check_attachment_path`), or None."""
    if len(name) > MAX_ATTACHMENT_NAME:
        return f"longer than {MAX_ATTACHMENT_NAME} characters"
    for ch in name:
        if ch in _BAD_ATTACHMENT_CHARS or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return f"character {ch!r} is not allowed"
    for part in name.split("/"):
        if len(part) > 100:
            return "a path part is longer than 100 characters"
        if part != part.strip(" ") or part.endswith("."):
            return "a path part may not start or end with a space or end with a dot"
        why = windows_name_problem(part)
        if why is not None:
            return why
    return None


def validate_attachment_name(name: object) -> str:
    """Return ``name`` if it is a valid name for a new attachment (every rule of the module
    docstring), else raise InvalidNameError."""
    check_attachment_path(name)
    assert isinstance(name, str)
    why = attachment_name_problem(name)
    if why is not None:
        raise InvalidNameError(f"invalid attachment name {name!r}: {why}", name=name)
    return name


def check_download_name(name: object) -> str:
    """Return ``name`` if an attachment of that name, read from a store, can be written below a
    directory here: :func:`check_attachment_path`, and on Windows no device name and no part
    ending with a dot or a space. Else raise InvalidNameError."""
    check_attachment_path(name)
    assert isinstance(name, str)
    if os.name == "nt":
        for part in name.split("/"):
            why = windows_name_problem(part)
            if why is not None:
                raise InvalidNameError(f"cannot write attachment {name!r} here: {why}", name=name)
    return name


def attachment_name_warning(name: str) -> str | None:
    """What a new attachment called ``name`` (read from a store) would be refused for, or None."""
    why = attachment_name_problem(name)
    return None if why is None else (f"attachment name {name!r}: {why}; a new one would be "
                                     f"refused")


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


def attachment_collision(names: Iterable[str]) -> str | None:
    """Why ``names`` (one image's attachments) cannot all be written below one directory, or
    None: two that are one file where case or Unicode normalization is ignored (or the same name
    twice), or one that is both a file and a folder (``a`` and ``a/b``). O(names × depth), for
    manifests read from a store (which may hold many names)."""
    seen: dict[str, str] = {}
    for name in names:
        folded = _fold(name)
        other = seen.get(folded)
        if other is not None:
            return (f"attachment names {other!r} and {name!r} would be one file (they differ only "
                    f"in case or Unicode normalization, or not at all)")
        seen[folded] = name
    for folded, name in seen.items():
        parts = folded.split("/")
        for i in range(1, len(parts)):
            other = seen.get("/".join(parts[:i]))
            if other is not None:
                return (f"attachment names {other!r} and {name!r} would need the same path as a "
                        f"file and as a folder")
    return None

