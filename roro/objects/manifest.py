"""The manifest: the canonical JSON object that describes one model image. Its digest is the image id.

```
{"format": "roro.image/1",
 "model": {"digest": "sha256:…", "size": 1234, "serializer": "cloudpickle", "type": "sklearn.linear_model.LogisticRegression",
           "python": "3.11.7", "cloudpickle": "3.0.0"},
 "attachments": [{"name": "log.txt", "digest": "sha256:…", "size": 42}],
 "metadata": {"Accuracy": 0.89},
 "timestamp": "2026-11-26T15:13:29.123456Z", "author": "ana", "comment": "…",
 "lineage": {…}}                                                        (optional)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..digests import parse_digest
from ..errors import IntegrityError, NotFoundError
from ..names import check_attachment_path
from ..storage import TooLargeError
from .canonical import loads

if TYPE_CHECKING:
    from .store import ObjectStore

FORMAT = "roro.image/1"
#: The most bytes a manifest may hold: metadata (at most 4 MiB of JSON), a comment (64 KiB, up to
#: 384 KiB JSON-escaped), lineage, and the attachment list (~100 to ~1,100 bytes each: thousands
#: fit). A save refuses a larger one; a reader never reads more than this of an object it reads
#: as a manifest (a forged event may name a 1 GiB blob as its image).
MAX_MANIFEST_SIZE = 16 << 20
_REQUIRED: dict[str, type] = {"format": str, "model": dict, "attachments": list, "metadata": dict, "timestamp": str,
             "author": str, "comment": str}
_MODEL: dict[str, type] = {"digest": str, "size": int, "serializer": str, "type": str, "python": str,
          "cloudpickle": str}


def check_manifest(manifest: Any, digest: str) -> dict[str, Any]:
    """Return ``manifest`` if it has the manifest shape, else raise IntegrityError naming it."""
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"object {digest} is not a valid image manifest: {why}", digest=digest)

    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    if manifest.get("format") != FORMAT:
        raise bad(f"unknown format {manifest.get('format')!r}")
    for key, typ in _REQUIRED.items():
        if not isinstance(manifest.get(key), typ):
            raise bad(f"field {key!r} is missing or has the wrong type")
    for key, typ in _MODEL.items():
        if not isinstance(manifest["model"].get(key), typ):
            raise bad(f"field 'model.{key}' is missing or has the wrong type")
    try:
        parse_digest(manifest["model"]["digest"])
        for a in manifest["attachments"]:
            if not (isinstance(a, dict) and isinstance(a.get("name"), str)
                    and isinstance(a.get("size"), int)):
                raise bad("malformed attachment entry")
            parse_digest(a.get("digest"))
            check_attachment_path(a["name"])  # what reading needs; fsck warns of the rest
    except ValueError as e:
        raise bad(str(e)) from None
    return manifest


def parse_manifest(data: bytes, digest: str) -> dict[str, Any]:
    """The manifest in ``data`` (the verified bytes of object ``digest``): JSON with the manifest
    shape, else :class:`~roro.errors.IntegrityError` saying "is not a valid image manifest"."""
    try:
        value = loads(data)
    except ValueError as e:
        raise IntegrityError(f"object {digest} is not a valid image manifest: not valid JSON: {e}",
                             digest=digest) from None
    return check_manifest(value, digest)


def read_manifest(objects: ObjectStore, digest: str,
                  known: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    """The one way manifests are read: ``(manifest, its bytes)``, verified and shape-checked.

    ``known`` are bytes this process already hashed to ``digest`` (a manifest it just wrote), so
    they are not read again. Raises :class:`~roro.errors.NotFoundError` for a missing object,
    :class:`~roro.errors.IntegrityError` with ``actual`` set for bytes that do not hash to
    ``digest``, and :class:`~roro.errors.IntegrityError` without it for a valid object that is
    not a manifest.
    """
    if known is not None:
        data = known
    else:
        try:
            data = objects.read(digest, MAX_MANIFEST_SIZE)
        except TooLargeError as e:
            raise IntegrityError(f"object {digest} is not a valid image manifest: it is {e.size} "
                                 f"bytes, more than the {MAX_MANIFEST_SIZE} a manifest may hold",
                                 digest=digest) from None
    return parse_manifest(data, digest), data


def read_manifest_or_damage(objects: ObjectStore, digest: str,
                            known: bytes | None = None) -> tuple[dict[str, Any], bytes] | str:
    """:func:`read_manifest`, or why a version's manifest is damaged: missing, corrupt (after a
    second read: a read can flip a bit on the way) or not a manifest. Damage stays in its
    version; a failure to read at all (an unreachable store) still raises."""
    for attempt in (1, 2):
        try:
            return read_manifest(objects, digest, known)
        except NotFoundError:
            return f"its manifest {digest} is missing from the store"
        except IntegrityError as e:
            if e.actual is None:
                why = str(e).removeprefix(f"object {digest} is not a valid image manifest: ")
                return f"its manifest {digest} is not a valid image manifest ({why})"
            if attempt == 2:
                return f"its manifest {digest} is corrupted (its bytes hash to {e.actual})"
            known = None
    raise AssertionError("unreachable")  # pragma: no cover


def referenced_digests(manifest: dict[str, Any]) -> list[str]:
    """The digests of the blobs a manifest names (model first, then attachments)."""
    return [manifest["model"]["digest"], *(a["digest"] for a in manifest["attachments"])]
