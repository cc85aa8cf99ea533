"""The manifest: the canonical JSON object that describes one model image. Its digest is the image id.

Version 2 (``roro.image/2``), written by every save since formats (DESIGN §12, §14)::

    {"format": "roro.image/2",
     "model": {"format": "safetensors", "digest": "sha256:…", "size": 1234,
               "type": "dict[str, numpy.ndarray]",                        (optional)
               "python": "3.11.7", "cloudpickle": "3.0.0",                (pickles saved from Python)
               "summary": {"digest": "sha256:…", "size": 812}},           (optional)
     "contract": {"libraries": {"numpy": "2.4.6"}, "input": {…}},         (optional)
     "attachments": [{"name": "log.txt", "digest": "sha256:…", "size": 42}],
     "metadata": {"Accuracy": 0.89},
     "timestamp": "2026-11-26T15:13:29.123456Z", "author": "ana", "comment": "…",
     "lineage": {…}}                                                       (optional)

``model.digest`` names the model's bytes and ``model.size`` their length. A chunked model
(issue 17, :mod:`roro.objects.chunks`) also has ``"chunks": {"digest": "sha256:…", "size": 812}``,
its chunk index: then no object is stored under ``model.digest`` (it is the sha256 of the whole
blob, what a download hashes to), and the store records the ``chunked-blobs`` feature first.
Version 1 (``roro.image/1``) manifests stay readable unchanged: their ``model`` has
``serializer`` (always ``cloudpickle``), ``type``, ``python`` and ``cloudpickle``. A store that
holds a version 2 manifest records the ``manifest-v2`` format feature first, so an older roro
refuses the store ("upgrade roro") instead of calling the manifest corrupt.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..digests import parse_digest
from ..errors import IntegrityError, NotFoundError
from ..names import check_attachment_path
from .canonical import loads
from .chunks import MAX_INDEX_SIZE, index_of, read_index

if TYPE_CHECKING:
    from .store import ObjectStore

FORMAT_V1 = "roro.image/1"
FORMAT = "roro.image/2"
#: The store format feature a version 2 manifest needs (DESIGN §14).
MANIFEST_FEATURE = "manifest-v2"
#: The largest summary object a manifest may name (a summary is read whole, verified, and never
#: more than this of it: a forged manifest may name a 1 GiB blob as its summary).
MAX_SUMMARY = 16 << 20
#: The most bytes a manifest may hold: metadata (at most 4 MiB of JSON), a comment (64 KiB, up to
#: 384 KiB JSON-escaped), lineage, and the attachment list (~100 to ~1,100 bytes each: thousands
#: fit). A save refuses a larger one; a reader never reads more than this of an object it reads
#: as a manifest (a forged event may name a 1 GiB blob as its image).
MAX_MANIFEST_SIZE = 16 << 20
_REQUIRED: dict[str, type] = {"format": str, "model": dict, "attachments": list, "metadata": dict, "timestamp": str,
             "author": str, "comment": str}
_MODEL: dict[str, type] = {"digest": str, "size": int, "serializer": str, "type": str, "python": str,
          "cloudpickle": str}
_MODEL_V2: dict[str, type] = {"format": str, "digest": str, "size": int}
_MODEL_V2_OPTIONAL: dict[str, type] = {"type": str, "python": str, "cloudpickle": str,
                                       "summary": dict, "chunks": dict}
_FORMAT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def check_manifest(manifest: Any, digest: str) -> dict[str, Any]:
    """Return ``manifest`` if it has the manifest shape, else raise IntegrityError naming it."""
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"object {digest} is not a valid image manifest: {why}", digest=digest)

    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    version = manifest.get("format")
    if version not in (FORMAT_V1, FORMAT):
        raise bad(f"unknown format {version!r}")
    for key, typ in _REQUIRED.items():
        if not isinstance(manifest.get(key), typ):
            raise bad(f"field {key!r} is missing or has the wrong type")
    model = manifest["model"]
    required = _MODEL if version == FORMAT_V1 else _MODEL_V2
    optional = {} if version == FORMAT_V1 else _MODEL_V2_OPTIONAL
    for key, typ in required.items():
        if not isinstance(model.get(key), typ):
            raise bad(f"field 'model.{key}' is missing or has the wrong type")
    for key, typ in optional.items():
        if key in model and not isinstance(model[key], typ):
            raise bad(f"field 'model.{key}' has the wrong type")
    # Stricter rules apply to version 2 only: reads of version 1 data check what they always did.
    if version == FORMAT and not _FORMAT_NAME.fullmatch(model["format"]):
        raise bad("field 'model.format' is not a format name")
    if version == FORMAT and (isinstance(model["size"], bool) or model["size"] < 0):
        raise bad("field 'model.size' is not a size")
    summary = model.get("summary")
    if summary is not None and not (isinstance(summary.get("size"), int)
                                    and not isinstance(summary.get("size"), bool)
                                    and 0 <= summary["size"] <= MAX_SUMMARY):
        raise bad("field 'model.summary' is malformed")
    chunks = model.get("chunks") if version == FORMAT else None
    if chunks is not None and not _chunks_entry(chunks):
        raise bad("field 'model.chunks' is malformed")
    if "contract" in manifest and not isinstance(manifest["contract"], dict):
        raise bad("field 'contract' has the wrong type")
    try:
        parse_digest(model["digest"])
        if summary is not None:
            parse_digest(summary.get("digest"))
        if chunks is not None:
            parse_digest(chunks.get("digest"))
        for a in manifest["attachments"]:
            if not (isinstance(a, dict) and isinstance(a.get("name"), str)
                    and isinstance(a.get("size"), int)):
                raise bad("malformed attachment entry")
            parse_digest(a.get("digest"))
            check_attachment_path(a["name"])  # what reading needs; fsck warns of the rest
            if version == FORMAT and "chunks" in a:
                if not _chunks_entry(a["chunks"]):
                    raise bad("malformed attachment entry")
                parse_digest(a["chunks"].get("digest"))
    except ValueError as e:
        raise bad(str(e)) from None
    return manifest


def _chunks_entry(value: Any) -> bool:
    """Has ``value`` the shape of a blob entry's ``chunks`` (``{digest, size}`` of an index)?"""
    return (isinstance(value, dict) and isinstance(value.get("size"), int)
            and not isinstance(value.get("size"), bool) and 0 <= value["size"] <= MAX_INDEX_SIZE)


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
        data = objects.read_as(digest, MAX_MANIFEST_SIZE, "image manifest")
    return parse_manifest(data, digest), data


def model_format(manifest: dict[str, Any]) -> str:
    """The model's format: ``model.format`` (version 2) or ``model.serializer`` (version 1)."""
    model = manifest["model"]
    return str(model["format"] if manifest["format"] != FORMAT_V1 else model["serializer"])


def named_blobs(manifest: dict[str, Any]) -> list[tuple[str, int, str]]:
    """``(digest, size, role)`` of every object a manifest names: the model, its summary object
    (``model summary``), then each attachment (``attachment NAME``); for a chunked blob, its
    chunk index instead (``model chunk index``; its chunks are in :func:`chunk_blobs`)."""
    v2 = manifest["format"] != FORMAT_V1
    model = manifest["model"]

    def blob(entry: dict[str, Any], role: str) -> tuple[str, int, str]:
        found = index_of(entry) if v2 else None
        return (*found, f"{role} chunk index") if found else (entry["digest"], entry["size"], role)

    out = [blob(model, "model")]
    summary = model.get("summary")
    if isinstance(summary, dict):
        out.append((summary["digest"], summary["size"], "model summary"))
    out.extend(blob(a, f"attachment {a['name']}") for a in manifest["attachments"])
    return out


def chunked_entries(manifest: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """``(index digest, index size, blob size, role)`` of each chunked blob a manifest names."""
    if manifest["format"] == FORMAT_V1:
        return []
    named = [(manifest["model"], "model")]
    named += [(a, f"attachment {a['name']}") for a in manifest["attachments"]]
    return [(*found, entry["size"], role) for entry, role in named
            if (found := index_of(entry)) is not None]


def chunk_blobs(objects: ObjectStore, manifest: dict[str, Any]) -> list[tuple[str, int, str]]:
    """``(digest, size, role)`` of every chunk of the chunked blobs a manifest names, read from
    their (verified) chunk indexes in ``objects``: ``model chunk 3``. NotFoundError or
    IntegrityError if an index is missing, corrupt or malformed."""
    out: list[tuple[str, int, str]] = []
    for digest, _, size, role in chunked_entries(manifest):
        index = read_index(objects, digest, size)
        out.extend((d, n, f"{role} chunk {i}") for i, (d, n) in enumerate(index.chunks))
    return out


def blob_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    """``{digest: size}`` of the blobs a manifest names (see :func:`named_blobs`)."""
    return {d: size for d, size, _ in named_blobs(manifest)}


def blob_sizes_with_chunks(objects: ObjectStore, manifest: dict[str, Any],
                           required: bool = True) -> dict[str, int]:
    """:func:`blob_sizes` plus the chunks of its chunked blobs (their indexes read verified from
    ``objects``): every object a copy of the image needs. A missing index is NotFoundError,
    unless not ``required`` (a deleted version's, copied while it lasts: its chunks are left)."""
    sizes = blob_sizes(manifest)
    try:
        sizes.update({d: n for d, n, _ in chunk_blobs(objects, manifest)})
    except NotFoundError:
        if required:
            raise
    return sizes


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
                return _not_a_manifest(digest, e)
            if attempt == 2:
                return f"its manifest {digest} is corrupted (its bytes hash to {e.actual})"
            known = None
    raise AssertionError("unreachable")  # pragma: no cover


def parse_manifest_or_damage(data: bytes, digest: str) -> dict[str, Any] | str:
    """:func:`parse_manifest` of bytes already verified to be object ``digest``, or why they are
    not a manifest, worded as :func:`read_manifest_or_damage` words it."""
    try:
        return parse_manifest(data, digest)
    except IntegrityError as e:
        return _not_a_manifest(digest, e)


def _not_a_manifest(digest: str, error: IntegrityError) -> str:
    why = str(error).removeprefix(f"object {digest} is not a valid image manifest: ")
    return f"its manifest {digest} is not a valid image manifest ({why})"


def referenced_digests(manifest: dict[str, Any]) -> list[str]:
    """The digests of the blobs a manifest names (model first, its summary, then attachments)."""
    return [d for d, _, _ in named_blobs(manifest)]
