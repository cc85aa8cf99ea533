"""ModelImage: one version of a model, with metadata and attachments; Attachment: one attached file."""

from __future__ import annotations

import io
import json
import os
import warnings
import weakref
from collections.abc import KeysView
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol

from . import writer
from .bundle import BUNDLE_FILE, MAX_BUNDLE_SIZE, model_file_name, source_bundles
from .bundle import EXTENSIONS as _EXTENSIONS
from .config import trust_settings
from .digests import digest_bytes
from .environment import cloudpickle_version, python_version
from .errors import (
    AttributeNameError,
    FormatError,
    ImmutableError,
    IntegrityError,
    InvalidArgumentError,
    InvalidMetadataError,
    InvalidNameError,
    NotFoundError,
    RoroError,
    RoroWarning,
    TrustError,
)
from .localfs import (
    attachment_target,
    check_inside,
    check_no_collision,
    copy_verified,
    plan_attachments,
    refuse_existing,
    same_file_bytes,
    write_verified,
)
from .metadata import (
    AUTOMATIC_KEYS,
    MetadataBudget,
    normalize_metadata,
    normalize_value,
    validate_key,
)
from .names import attachment_name_conflict, validate_attachment_name
from .notebook import image_html, images_html, images_to_pandas
from .objects import SpooledObject
from .objects.canonical import loads
from .objects.manifest import FORMAT, model_format
from .objects.store import HashingWriter
from .suggest import edit_distance

if TYPE_CHECKING:
    from .diff import ImageDiff
    from .formats import ModelFormat
    from .formats.scan import PickleScan
    from .repository import ModelRepository

CHUNK = 1 << 20


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _plain(text: str, limit: int = 100) -> str:
    """``text`` as is when it is short and printable, else its cut ``repr`` (a name or version
    read from a manifest goes into a warning: no terminal escapes, no pages of it)."""
    if len(text) <= limit and text.isprintable():
        return text
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


class Attachment:
    """A file attached to a model image."""

    def __init__(self, image: ModelImage, name: str, digest: str, size: int,
                 spooled: SpooledObject | None = None, chunks: dict[str, Any] | None = None):
        self._image = image
        self.name = name
        self.digest = digest
        self.size = size
        self._spooled = spooled
        self._chunks = chunks  # the chunk index of a chunked attachment

    def open(self) -> BinaryIO:
        """A binary file of the attachment's (verified) bytes; close it when done."""
        if self._spooled is not None:
            return open(self._spooled.path, "rb")
        self._image.authenticate()
        entry = {"digest": self.digest, "size": self.size}
        if self._chunks is not None:
            entry["chunks"] = self._chunks
        image = self._image
        return image._repository.project.store.objects.open_blob(
            entry, f"attachment {self.name!r} of {image._repository.name}:{image._version}")

    def read(self) -> bytes:
        """The attachment's bytes, verified against its digest."""
        with self.open() as f:
            return f.read()

    def download(self, directory: str | os.PathLike[str]) -> str:
        """Write the attachment's verified bytes to ``directory/<name>`` and return that path.

        Sub-folders of the name are created. The file never lands outside ``directory``: the name
        is validated again, and a path part that is a symbolic link is refused
        (:class:`~roro.errors.ConflictError`) rather than followed. The file appears whole or not
        at all (written to a temporary name, then renamed); an existing file is replaced.
        """
        target = attachment_target(directory, self.name)
        with self.open() as src:
            write_verified(src, target, self.digest, f"attachment {self.name!r}", replace=True)
        return target

    def __repr__(self) -> str:
        return f"<Attachment {self.name!r} {self.size} bytes {self.digest[:19]}>"


class DownloadProgress(Protocol):
    """What :meth:`ModelImage.download` reports while it works (a progress bar, say)."""

    def phase(self, description: str) -> None:
        """A new step: fetching and verifying an object, or writing it."""

    def advance(self, n: int) -> None:
        """``n`` more bytes were written."""


class _Silent:
    def phase(self, description: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class SignatureBundle(NamedTuple):
    """A version's OpenSSF Model Signing bundle (:meth:`ModelImage.signature_bundle`): its
    bytes and digest, the signer's name and key fingerprint, and whether it is the bundle of
    the version this one was copied from (``source``)."""

    data: bytes
    digest: str
    signer: str
    key: str
    source: bool


class Downloaded(NamedTuple):
    """What :meth:`ModelImage.download` wrote: the model's file (None: it went to a stream) and
    the attachments' files, in name order; ``unchanged`` lists those of them that already held
    exactly these bytes and were left as they were."""

    model: str | None
    attachments: list[str]
    unchanged: list[str] = []
    #: the OpenSSF Model Signing bundle written beside them (``signature=True``), else None
    signature: SignatureBundle | None = None


class ModelImage:
    """One version of a model: the model object, metadata (dict- and attribute-style) and files.

    A new image (from :meth:`ModelRepository.new_image`) can be changed until :meth:`save`; a saved
    image is immutable and raises :class:`~roro.errors.ImmutableError` on any change.
    """

    def __init__(self, repository: ModelRepository, model: Any = None, *,
                 manifest: dict[str, Any] | None = None, digest: str | None = None,
                 version: int | None = None, format: str = "cloudpickle",
                 input_example: Any = None, signature: dict[str, Any] | None = None):
        if format != "auto" and manifest is None:
            from .formats import get_format  # the format table: only for a new image
            get_format(format)  # an unknown name is refused now, not at save
        s = object.__setattr__
        s(self, "_repository", repository)
        s(self, "_model", model)
        s(self, "_format", format)
        schema = None
        if input_example is not None:
            from .formats.contract import schema_of  # only for an image with an input example
            schema = schema_of(input_example)
        s(self, "_input_schema", schema)
        s(self, "_summary", None)
        s(self, "_manifest", manifest)
        s(self, "_digest", digest)
        s(self, "_version", version)
        # An image read from the index (a listing) is checked against the log before any of
        # its bytes are served: the index row it came from, until authenticate() has run.
        s(self, "_unconfirmed", None)
        s(self, "_damaged", None)
        s(self, "_signature", signature)  # {signer, key, verified} of a signed version's event
        s(self, "_transfer", None)  # (bytes sent, bytes newly stored) of a save by this object
        s(self, "_metadata", dict(manifest["metadata"]) if manifest else {})
        s(self, "_budget", None)  # MetadataBudget of a draft, made on the first __setitem__
        s(self, "_attachments", {})  # name -> Attachment (drafts only)
        s(self, "_finalizer", weakref.finalize(self, _discard_all, self._attachments))

    @classmethod
    def from_index_row(cls, repository: ModelRepository, row: dict[str, Any]) -> ModelImage:
        """The saved image an index row describes. The index is a cache of the log, never its
        authority: before any byte of the model or an attachment is served,
        :meth:`authenticate` checks the row against the log. A version whose manifest was
        damaged when indexed is an image with :attr:`damaged` set, the facts its event
        records (author, time, comment) and nothing to load."""
        if row["damaged"] is not None:
            facts = {"format": FORMAT, "model": None, "attachments": [], "metadata": {},
                     "timestamp": row["time"], "author": row["author"],
                     "comment": row["comment"]}
            image = cls(repository, manifest=facts, digest=row["image"], version=row["version"])
            object.__setattr__(image, "_damaged", row["damaged"])
        else:
            image = cls(repository, manifest=json.loads(row["manifest"]), digest=row["image"],
                        version=row["version"])
            object.__setattr__(image, "_unconfirmed", row)
        if row.get("signer_key"):
            object.__setattr__(image, "_signature", {"signer": row["signer"],
                                                     "key": row["signer_key"],
                                                     "verified": None})
        return image

    def _set_signature(self, sig: dict[str, str] | None) -> None:
        """This version's event was read and its signature ``sig`` (None: unsigned) checked."""
        object.__setattr__(self, "_signature", verified_signature(sig))

    @property
    def signature(self) -> dict[str, Any] | None:
        """Who signed this version's event: ``{"signer": name, "key": fingerprint, "verified":
        True}`` once the signature was checked (a read with ``get_model_image`` checks it,
        :meth:`verify` does), ``"verified": None`` for an image from a listing not checked yet;
        None for an unsigned version. A signature that does not verify is never shown: checking
        it raises :class:`~roro.errors.SignatureError` naming the event."""
        return dict(self._signature) if self._signature is not None else None

    def verify(self) -> dict[str, Any] | None:
        """Check this version's event against the log and its signature (one read of the
        event, memoised per process); :attr:`signature` after the check."""
        self.authenticate()
        repo = self._repository
        if self._version is not None:
            row = repo.store.index.version(repo.project.name, repo.name, self._version)
            if row is not None and self._signature is not None \
                    and self._signature["verified"] is None:
                repo.confirm_version(row)
                event = repo.store.confirmed_event(repo.project.name, repo.name, row["seq"])
                self._set_signature(event.sig if event is not None else None)
        return self.signature

    @property
    def damaged(self) -> str | None:
        """Why this version cannot be read (its manifest is missing or unreadable), or None.
        Only images from a listing can be damaged; the rest of the repository is readable."""
        return self._damaged

    def authenticate(self) -> None:
        """Make sure the log names this image for this version and that the manifest came
        from the index unaltered, before any of its bytes are served (an edited index never
        serves another model): one read of the event, memoised per process. Images that were
        saved, copied or read with ``get_model_image`` need nothing more."""
        if self._damaged is not None:
            raise IntegrityError(f"version {self._version} of model repository "
                                 f"{self._repository.name!r} is damaged: {self._damaged}; run "
                                 f"'roro fsck' (the other versions are readable)",
                                 digest=self._digest, repository=self._repository.name)
        row = self._unconfirmed
        if row is None:
            return
        if digest_bytes(row["manifest"].encode("utf-8")) != self._digest:
            raise IntegrityError(f"the local index holds a manifest for version "
                                 f"{self._version} of {self._repository.name!r} that is not "
                                 f"image {self._digest}: the index was edited or damaged; "
                                 f"refusing to serve it. Run 'roro index --rebuild'",
                                 digest=self._digest, repository=self._repository.name)
        self._repository.confirm_version(row)
        object.__setattr__(self, "_unconfirmed", None)

    # -- identity --------------------------------------------------------------------------------
    @property
    def repository(self) -> ModelRepository:
        return self._repository

    @property
    def version(self) -> int | None:
        """The version number, or None before the image is saved."""
        return self._version

    @property
    def digest(self) -> str | None:
        """``sha256:…`` of the image's manifest (its id), or None before it is saved."""
        return self._digest

    @property
    def comment(self) -> str | None:
        return self._manifest["comment"] if self._manifest else None

    @property
    def saved(self) -> bool:
        return self._manifest is not None

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The manifest (a copy) of a saved image."""
        return json.loads(json.dumps(self._manifest)) if self._manifest else None

    @property
    def lineage(self) -> dict[str, Any] | None:
        """Where a saved image was saved from (a copy): ``python``, ``platform``, ``package``
        (the model's top-level package and its version) and, inside a git work tree, ``git``
        (``commit``, ``dirty``). See :mod:`roro.lineage`. ``{}`` for an image saved without
        lineage; None before the image is saved."""
        if self._manifest is None:
            return None
        lineage = self._manifest.get("lineage")
        return json.loads(json.dumps(lineage)) if isinstance(lineage, dict) else {}

    @property
    def model_type(self) -> str | None:
        """The model's type (``sklearn.linear_model.LogisticRegression``), or its format for a
        file saved from the command line."""
        if not self._manifest or not self._manifest["model"]:
            return None  # a new image, or a damaged version
        return self._manifest["model"].get("type") or self.model_format

    @property
    def model_format(self) -> str | None:
        """The format the model is stored in (``cloudpickle``, ``safetensors``, ``onnx``,
        ``skops``, ``file``); for a new image, the format asked for (perhaps ``auto``); None
        for a damaged version."""
        if self._manifest is None:
            return self._format
        return model_format(self._manifest) if self._manifest["model"] else None

    @property
    def summary(self) -> dict[str, Any] | None:
        """What the model is, recorded at save in a small verified object (the model's bytes are
        not read): for safetensors ``tensors`` (name, dtype, shape), ``parameters`` and the
        header's ``metadata``; for ONNX ``inputs``, ``outputs``, ``initializers``, ``opset``…;
        for skops ``untrusted_types``. None for a format without one, or a new image."""
        if self._manifest is None or not self._manifest["model"]:
            return None
        ref = self._manifest["model"].get("summary")
        if not isinstance(ref, dict):
            return None
        if self._summary is None:
            self.authenticate()  # an image from a listing: its manifest must be the log's
            # Never more than the manifest says (a forged one may name a 1 GiB blob).
            data = self._repository.project.store.objects.read(ref["digest"], ref["size"])
            try:
                value = loads(data)
            except ValueError as e:
                raise IntegrityError(f"the summary {ref['digest']} of {self!r} is not JSON: {e}",
                                     digest=ref["digest"]) from None
            from .formats.base import summary_problem  # only when a summary is read
            problem = summary_problem(value)
            if problem is not None:
                raise IntegrityError(f"the summary {ref['digest']} of {self!r} is invalid: "
                                     f"{problem}", digest=ref["digest"])
            object.__setattr__(self, "_summary", value)
        return json.loads(json.dumps(self._summary))

    @property
    def contract(self) -> dict[str, Any] | None:
        """The model's contract (a copy): ``libraries`` (distribution → version at save) and, if
        an input example was given, ``input`` (its schema). None if none was recorded."""
        if self._manifest is None:
            return {"input": self._input_schema} if self._input_schema else None
        contract = self._manifest.get("contract")
        return json.loads(json.dumps(contract)) if isinstance(contract, dict) else None

    @property
    def input_schema(self) -> dict[str, Any] | None:
        """The schema of the input example given at save (see :meth:`check_input`)."""
        contract = self.contract or {}
        schema = contract.get("input")
        return schema if isinstance(schema, dict) else None

    @property
    def input_example(self) -> Any:
        """The first rows of the input example given at save (a list of rows, or a DataFrame's
        ``{column: values}``), when they were small and plain enough to keep; else None."""
        schema = self.input_schema or {}
        return schema.get("example")

    def check_input(self, batch: Any) -> None:
        """Check a batch (numpy array or pandas DataFrame) against the recorded input schema:
        dtype and shape (the first axis is the batch), or columns and dtypes. Raises
        :class:`~roro.errors.ContractError` listing every mismatch."""
        from .formats.contract import check_input  # only when an input is checked
        check_input((self.contract or {}).get("input"), batch, repr(self))

    def scan(self) -> PickleScan | None:
        """What the model's pickle would import, read statically from its verified bytes (never
        unpickled): a :class:`~roro.formats.scan.PickleScan` with the verdict ``clean``,
        ``contains code`` or ``flagged``. None for a model that is not a pickle. A clean scan is
        no proof of safety: the load gate (``trust: pickle``) is the control."""
        if self._manifest is None:
            raise RoroError(f"{self!r} is not saved yet: there are no stored bytes to scan")
        self.authenticate()  # a damaged version raises here
        if not self._format_of_saved().pickled:
            return None
        from .formats.scan import scan_pickle  # pickletools (~5 ms): only when a pickle is scanned
        with self.open_model() as f:
            return scan_pickle(f)

    @property
    def pickle_imports(self) -> list[str] | None:
        """The ``module.name`` globals (and modules) the model's pickle would import, read from
        its opcodes without running it (see :meth:`scan`); None for a model that is not a pickle."""
        result = self.scan()
        return result.imports if result is not None else None

    def _format_of_saved(self) -> ModelFormat:
        from .formats import get_format  # the format table: only when a model's bytes are used
        assert self._manifest is not None and self._manifest["model"]  # authenticated
        return get_format(model_format(self._manifest))

    @property
    def model_size(self) -> int | None:
        return self._manifest["model"]["size"] if self._manifest and self._manifest["model"] else None

    def __repr__(self) -> str:
        where = f"v{self._version}" if self._version else "unsaved"
        return f"<ModelImage {self._repository.name}:{where}>"

    def _repr_html_(self) -> str:
        """A compact table in a notebook: version, image, saved, author, comment, metadata,
        attachments."""
        return image_html(self)

    @property
    def tags(self) -> list[str]:
        """The tags pointing at this saved version (``latest`` first where it applies), read
        from the index; ``[]`` for an image not saved yet."""
        if self._version is None:
            return []
        return self._repository.get_tags_by_version([self._version]).get(self._version, [])

    # -- metadata --------------------------------------------------------------------------------
    def _check_mutable(self) -> None:
        if self.saved:
            raise ImmutableError(f"model image {self._repository.name}:{self._version} is saved and "
                                 f"cannot be changed; create a new image with new_image()")

    def get_metadata(self) -> dict[str, Any]:
        """User metadata plus the automatic ``timestamp`` (ISO 8601 UTC) and ``author``."""
        out = json.loads(json.dumps(self._metadata))
        if self._manifest:
            out.update({k: self._manifest[k] for k in AUTOMATIC_KEYS})
        else:
            out.update({"timestamp": None, "author": None})
        return out

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace all user metadata."""
        self._check_mutable()
        object.__setattr__(self, "_metadata", normalize_metadata(metadata))
        object.__setattr__(self, "_budget", None)

    def __getitem__(self, key: str) -> Any:
        if key in AUTOMATIC_KEYS:
            return self.get_metadata()[key]
        return json.loads(json.dumps(self._metadata[key]))

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_mutable()
        validate_key(key)
        value = normalize_value(key, value)
        if self._budget is None:
            object.__setattr__(self, "_budget", MetadataBudget(self._metadata))
        size = self._budget.check_set(key, value)  # O(value), not O(all metadata): see #5
        self._metadata[key] = value
        self._budget.set(key, size)

    def __delitem__(self, key: str) -> None:
        self._check_mutable()
        del self._metadata[key]
        if self._budget is not None:
            self._budget.remove(key)

    def __contains__(self, key: object) -> bool:
        return key in self._metadata or (key in AUTOMATIC_KEYS and self.saved)

    def keys(self) -> KeysView[str]:
        return self.get_metadata().keys()

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"model image has no metadata {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or hasattr(type(self), name):
            raise AttributeNameError(f"{name!r} is not metadata and cannot be set; "
                                     f"use image[{name!r}] = … for metadata with that name")
        if name not in self._metadata:
            near = sorted((a for a in _public_attributes() if edit_distance(name, a) <= 2),
                          key=lambda a: edit_distance(name, a))
            if near:
                raise AttributeNameError(
                    f"{name!r} is close to the image's attribute {near[0]!r}; did you mean "
                    f"{near[0]!r}? To store metadata named {name!r}, write image[{name!r}] = …")
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    # -- attachments -----------------------------------------------------------------------------
    def attach(self, filename: str, fileobj: Any = None, *, text: str | None = None) -> Attachment:
        """Attach a file: a binary or text file object (text is stored UTF-8), ``bytes``, a path
        to a file, or, with ``text=``, a string's contents (``attach("labels.csv",
        text="a,b\\n")``). A whole folder is :meth:`attach_dir`.

        The content is copied (and hashed) now; later changes to the source do not affect the image.
        Attaching the same name again replaces the earlier attachment.
        """
        self._check_mutable()
        if text is not None:
            if fileobj is not None:
                raise InvalidArgumentError("give a file (or bytes, or a path) or text=, not both")
            if not isinstance(text, str):
                raise InvalidArgumentError(f"text= takes a str, not {type(text).__name__}; pass "
                                           f"bytes as the second argument")
            fileobj = _text_bytes(text)
        elif fileobj is None:
            raise InvalidArgumentError(f"attach({filename!r}) needs the content: a file object, "
                                       f"bytes, a path, or text=")
        if isinstance(fileobj, (str, os.PathLike)) and os.path.isdir(fileobj):
            raise InvalidArgumentError(f"{os.fspath(fileobj)!r} is a folder: attach it with "
                                       f"attach_dir({filename!r}, {os.fspath(fileobj)!r}), which "
                                       f"keeps the names of the files below it")
        name = validate_attachment_name(filename)
        conflict = attachment_name_conflict(name, self._attachments)
        if conflict is not None:
            raise InvalidNameError(conflict, name=name)
        spooled = self._spool(fileobj)
        old = self._attachments.pop(name, None)
        if old is not None and old._spooled is not None:
            old._spooled.discard()
        att = Attachment(self, name, spooled.digest, spooled.size, spooled)
        self._attachments[name] = att
        return att

    def attach_dir(self, name: str, path: str | os.PathLike[str]) -> list[Attachment]:
        """Attach every file below the folder ``path``, each under ``name/<its path relative to
        the folder>`` (``attach_dir("plots", "out/plots")`` gives ``plots/roc.png``,
        ``plots/pr/curve.png``); ``name=""`` puts them at the top. Sub-folders are walked,
        symbolic links to folders are not followed. Returns the attachments, in name order."""
        self._check_mutable()
        root = os.fspath(path)
        if not os.path.isdir(root):
            raise InvalidArgumentError(f"attach_dir: {root!r} is not a folder")
        prefix = name.strip("/")
        if prefix:
            validate_attachment_name(prefix)
        files = []
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for n in sorted(names):
                full = os.path.join(folder, n)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                files.append((f"{prefix}/{rel}" if prefix else rel, full))
        files.sort()
        for attachment_name, _ in files:  # every name is checked before anything is copied
            validate_attachment_name(attachment_name)
        return [self.attach(attachment_name, full) for attachment_name, full in files]

    def _spool(self, source: Any) -> SpooledObject:
        objects = self._repository.project.store.objects
        if isinstance(source, (bytes, bytearray, memoryview)):
            return objects.spool_stream(io.BytesIO(bytes(source)))
        if isinstance(source, (str, os.PathLike)):
            try:
                with open(source, "rb") as f:
                    return objects.spool_stream(f)
            except OSError as e:
                hint = ""
                if isinstance(source, str) and not os.path.exists(source):
                    hint = ("; a string is a path: to attach the string itself, use "
                            "attach(name, text=...)")
                raise RoroError(f"cannot read attachment {os.fspath(source)[:80]!r}: "
                                f"{e.strerror}{hint}") from None
        if hasattr(source, "read"):
            def fill(w: HashingWriter) -> None:
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    if isinstance(chunk, str):
                        try:
                            chunk = chunk.encode("utf-8")
                        except UnicodeEncodeError as e:
                            raise InvalidMetadataError(f"attachment text is not valid Unicode: {e}") from None
                    w.write(chunk)
            return objects.spool_writer(fill)
        raise TypeError(f"cannot attach a {type(source).__name__}: pass a file object, bytes or a path")

    def get_attachments(self) -> list[Attachment]:
        """The attachments, sorted by name."""
        if self._manifest is None:
            return [self._attachments[n] for n in sorted(self._attachments)]
        return [Attachment(self, a["name"], a["digest"], a["size"], chunks=a.get("chunks"))
                for a in self._manifest["attachments"]]

    def download_attachments(self, directory: str | os.PathLike) -> list[str]:
        """Write every attachment below ``directory`` (see :meth:`Attachment.download`); returns
        the paths written, in name order."""
        attachments = self.get_attachments()
        # A hostile manifest could name colliding files: refuse before anything is written.
        check_no_collision(a.name for a in attachments)
        return [a.download(directory) for a in attachments]

    def get_attachment(self, name: str) -> Attachment:
        for a in self.get_attachments():
            if a.name == name:
                return a
        raise NotFoundError(f"{self!r} has no attachment {name!r}", repository=self._repository.name)

    # -- model -----------------------------------------------------------------------------------
    def get_model(self, *, trust: dict[str, Any] | None = None,
                  tensors: list[str] | None = None) -> Any:
        """The model object. For a saved image, its bytes are verified before they are loaded.

        ``trust`` tightens the loader's trust settings for this call (``{"pickle": "deny"}``,
        ``{"skops_types": [...]}``; see "Formats and trust" in the README): a pickle is refused
        with :class:`~roro.errors.TrustError` before a byte is read. ``tensors`` loads only
        those tensors of a safetensors model. A ``file`` model comes back as a verified binary
        file (close it when done). A recorded library (or Python, or cloudpickle) whose
        major.minor version differs here gives a :class:`RoroWarning` naming both versions.
        """
        if self._manifest is None:
            return self._model
        self.authenticate()
        fmt = self._format_of_saved()
        settings = trust_settings(trust)
        what = f"{self._repository.name}:{self._version}"
        if fmt.pickled:
            if settings.pickle == "signed":
                settings = self._with_policy_keys(settings)
            settings.gate_pickle(what, fmt.name, self._repository.name, self._version,
                                 signature=self.verify)
        if tensors is not None:
            if fmt.name != "safetensors":
                raise FormatError(f"tensors=... selects tensors of a safetensors model; "
                                  f"{what} is {fmt.name}")
            if isinstance(tensors, str) or not all(isinstance(t, str) for t in tensors):
                raise TypeError("tensors must be a list of tensor names")
        self._warn_versions(fmt)
        # A whole safetensors model is memory-mapped from one file (a chunked one on a remote
        # store is reassembled in the cache first); a subset reads only its tensors' ranges.
        f = self._open_model_bytes(as_file=fmt.name == "safetensors" and tensors is None)
        if fmt.name == "file":
            return f
        with f:
            try:
                return fmt.load(f, tensors=tensors, trusted=settings.skops_types or ())
            except TrustError as e:
                raise TrustError(f"refusing to load {what} ({fmt.name}): {e}", setting=e.setting,
                                 source=settings.skops_source, repository=self._repository.name,
                                 version=self._version, format=fmt.name) from None

    def _with_policy_keys(self, settings: Any) -> Any:
        """``trust: pickle: signed`` on a store whose policy this reader pinned: the keys whose
        signatures pass are the pinned and the allowed ones (plus ``trust: keys``); a policy the
        reader did not pin adds nothing (a bucket writer could have written it)."""
        store = self._repository.project.store
        found = store.policy()
        if found is None:
            return settings
        from .policy import pinned_keys  # loaded by store.policy() above
        pins = pinned_keys(store.url)
        if found.policy.owner not in pins:
            return settings
        rules = found.policy.rules()
        accepted = (pins | set(rules.allowed)) - rules.revoked - found.policy.compromised()
        return settings.with_keys(tuple(sorted(accepted | set(settings.keys or ()))))

    def _warn_versions(self, fmt: ModelFormat) -> None:
        assert self._manifest is not None
        model = self._manifest["model"]
        mismatches: list[tuple[str, str, str | None]] = []
        if fmt.pickled:
            mine = {"python": python_version(), "cloudpickle": cloudpickle_version()}
            for what in ("python", "cloudpickle"):
                theirs = model.get(what)
                if isinstance(theirs, str) and _minor(theirs) != _minor(mine[what]):
                    mismatches.append((what, theirs, mine[what]))
        contract = self._manifest.get("contract")
        libraries = contract.get("libraries") if isinstance(contract, dict) else None
        if isinstance(libraries, dict):
            from .formats.contract import MAX_CHECKED, library_mismatches  # only at a load
            mismatches.extend(library_mismatches(libraries))
            if len(libraries) > MAX_CHECKED:
                warnings.warn(f"the contract of {self!r} records {len(libraries)} libraries; only "
                              f"the first {MAX_CHECKED} by name were checked", RoroWarning,
                              stacklevel=3)
        for what, theirs, here in mismatches:
            what, theirs = _plain(what), _plain(theirs)  # from the manifest: maybe forged
            loaded = f"is loaded with {here}" if here else f"{what} is not installed here"
            warnings.warn(f"{self!r} was saved with {what} {theirs} and {loaded}; the model may "
                          f"not load or behave the same", RoroWarning, stacklevel=3)

    def open_model(self) -> BinaryIO:
        """A binary file of the saved model's pickled bytes, verified against the manifest's digest
        before it is handed out (nothing is unpickled); close it when done. For copying a model
        without loading it, e.g. ``roro models:download``."""
        if self._manifest is None:
            raise RoroError(f"{self!r} is not saved yet: it has no stored bytes to open; "
                            f"use get_model() for the object")
        self.authenticate()
        return self._open_model_bytes()

    def _open_model_bytes(self, as_file: bool = False) -> BinaryIO:
        """The model's bytes, verified: a single object hashed before it is handed out, or a
        chunked one streamed chunk by chunk, each verified before its bytes are handed out
        (with ``as_file``, on a remote store, reassembled into one verified cached file)."""
        assert self._manifest is not None
        model = self._manifest["model"]
        return self._repository.project.store.objects.open_blob(
            model, f"the model of {self._repository.name}:{self._version}", as_file=as_file)

    def signature_bundle(self) -> SignatureBundle | None:
        """This version's OpenSSF Model Signing bundle (:mod:`roro.bundle`): the verified bytes
        and who signed it. A version saved with a ``p256`` key has its own; a copy made without
        one has its source's (``lineage.copied_from``: the same files under the same names, so
        the source's signature verifies them). None: neither. The version's event is read and
        its signature checked first (one read, memoised per process)."""
        if self._manifest is None or self._version is None:
            return None
        self.authenticate()
        event = self._repository.version_event(self)
        digest = event.payload.get("bundle") if event is not None else None
        if event is not None and event.sig is not None and digest is not None:
            signer, key, source = event.sig["name"], event.sig["key"], False
        else:
            found = source_bundles(self._manifest)
            origin = (self.lineage or {}).get("copied_from")
            if not found or not isinstance(origin, dict) or \
                    not isinstance(origin.get("signer"), dict):
                return None
            digest, source = found[0], True
            signer, key = str(origin["signer"].get("name")), str(origin["signer"].get("key"))
        data = self._repository.project.store.objects.read(digest, MAX_BUNDLE_SIZE)
        return SignatureBundle(data, digest, signer, key, source)

    def download(self, to: str | os.PathLike[str] | IO[bytes] | None = None, *,
                 attachments: str | os.PathLike[str] | None = None, force: bool = False,
                 progress: DownloadProgress | None = None,
                 signature: bool = False) -> Downloaded:
        """Write the saved model's bytes (the pickle; nothing is unpickled) and, with
        ``attachments``, every attachment below that directory. What ``roro models:download`` does.

        ``to`` is a file path, a directory (``NAME-vN.pkl`` inside it), a binary stream, or None
        (``NAME-vN.pkl`` here). Every file is checked against its digest while it is written and
        appears, complete and fsynced, only under its final name. A file that already holds
        exactly these bytes is left as it is (listed in ``unchanged``), so running a download
        again is harmless. Before any byte is fetched, an existing file with other bytes (without
        ``force``), an attachment name that is invalid, collides with another on a
        case-insensitive filesystem, or leads outside the directory (symbolic links included) is
        refused with :class:`~roro.errors.DownloadError`.

        ``signature``: also write the version's OpenSSF Model Signing bundle as
        ``model.sig`` in the ``attachments`` directory, with the model beside it as ``model``
        plus its format's extension (``model.pkl``…; ``to`` must be None): the directory the
        bundle signs, which ``model_signing`` verifies (README "Signatures"). A version saved
        without a ``p256`` key has no bundle: :class:`~roro.errors.NotFoundError`, before any
        byte is written.
        """
        if self._manifest is None:
            raise RoroError(f"{self!r} is not saved yet: it has nothing to download")
        self.authenticate()
        bundle = self._bundle_for_download(to, attachments, force) if signature else None
        if bundle is not None:
            os.makedirs(os.fspath(attachments), exist_ok=True)  # type: ignore[arg-type]
            to = os.path.join(os.fspath(attachments),  # type: ignore[arg-type]
                              model_file_name(self.model_format or ""))
        progress = progress or _Silent()
        stream = None if to is None or isinstance(to, (str, os.PathLike)) else to
        target = None
        if stream is None:
            default = (f"{self._repository.name}-v{self._version}"
                       f"{_EXTENSIONS.get(self.model_format or '', '.bin')}")
            target = os.fspath(to) if to is not None else default  # type: ignore[arg-type]
            if os.path.isdir(target):
                target = os.path.join(target, default)
        digest, size = self._manifest["model"]["digest"], self._manifest["model"]["size"]
        model_same = target is not None and refuse_existing(target, force, digest, size)
        directory = os.fspath(attachments) if attachments is not None else None
        atts = self.get_attachments() if directory is not None else []
        planned = plan_attachments(directory, [a.name for a in atts], force,
                                   {a.name: (a.digest, a.size) for a in atts}) if directory else []
        unchanged = [target] if model_same and target is not None else []
        if not model_same:
            progress.phase("model: fetching and verifying")
            with self.open_model() as src:
                progress.phase("model: writing")
                if stream is not None:
                    copy_verified(src, stream, digest, "the model", progress.advance)
                else:
                    assert target is not None
                    write_verified(src, target, digest, "the model", replace=force,
                                   on_chunk=progress.advance)
        else:
            progress.advance(size)
        for att, path in zip(atts, planned, strict=True):
            assert directory is not None
            if same_file_bytes(path, att.digest, att.size):
                unchanged.append(path)
                progress.advance(att.size)
                continue
            self._download_attachment(att, directory, path, force, progress)
        if bundle is not None:
            assert directory is not None
            self._write_bundle(bundle, directory, force, unchanged)
        return Downloaded(target, planned, unchanged, bundle)

    def _bundle_for_download(self, to: Any, attachments: Any, force: bool) -> SignatureBundle:
        """The bundle a ``signature`` download writes; refused before anything is written."""
        if attachments is None or to is not None:
            raise InvalidArgumentError("a download with the signature bundle writes the model "
                                       "and the attachments into one directory: give the "
                                       "attachments directory and no other destination")
        bundle = self.signature_bundle()
        if bundle is None:
            raise NotFoundError(f"{self!r} has no OpenSSF Model Signing bundle: only a save "
                                f"signed with a p256 key stores one (roro keys:generate --type "
                                f"p256)", repository=self._repository.name)
        refuse_existing(os.path.join(os.fspath(attachments), BUNDLE_FILE), force,
                        bundle.digest, len(bundle.data))
        return bundle

    @staticmethod
    def _write_bundle(bundle: SignatureBundle, directory: str, force: bool,
                      unchanged: list[str]) -> None:
        path = os.path.join(directory, BUNDLE_FILE)
        if refuse_existing(path, force, bundle.digest, len(bundle.data)):
            unchanged.append(path)
            return
        write_verified(io.BytesIO(bundle.data), path, bundle.digest, "the signature bundle",
                       replace=force)

    @staticmethod
    def _download_attachment(att: Attachment, directory: str, path: str, force: bool,
                             progress: DownloadProgress) -> None:
        check_inside(directory, path, att.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        check_inside(directory, path, att.name)  # again: a folder may have been swapped meanwhile
        progress.phase(f"{att.name}: fetching and verifying")
        with att.open() as src:
            progress.phase(f"{att.name}: writing")
            write_verified(src, path, att.digest, f"attachment {att.name!r}", replace=force,
                           on_chunk=progress.advance)

    # -- save --------------------------------------------------------------------------------------
    def save(self, comment: str = "", *, sign: bool | str = True) -> ModelImage:
        """Save this image as the next version of its repository; returns the image.

        The version is signed when a key is configured (``$RORO_SIGNING_KEY``, or
        ``signing_key`` in roro.yml; README "Signatures"): ``sign=False`` does not sign, a key
        name signs with that key."""
        self._check_comment(comment)
        repo = self._repository
        published = writer.save_model(repo.project.store, repo.project.name, repo.name,
                                      self._model, self._metadata, self._spooled_attachments(),
                                      comment, self._format, self._input_schema, sign=sign)
        self._mark_saved(published.manifest, published.digest, published.version)
        self._set_signature(published.sig)
        object.__setattr__(self, "_transfer", (published.bytes_sent, published.bytes_stored))
        return self

    def save_file(self, path: str | os.PathLike[str], comment: str = "", *,
                  sign: bool | str = True) -> ModelImage:
        """Save the model file at ``path``, as it is and without loading it, in this image's
        format (checked, see :func:`roro.writer.save_file`), as the next version (signed as
        :meth:`save` says)."""
        self._check_comment(comment)
        if self._format == "auto":
            raise FormatError("a file is saved in a named format: file, cloudpickle, "
                              "safetensors, onnx or skops")
        repo = self._repository
        published = writer.save_file(repo.project.store, repo.project.name, repo.name,
                                     os.fspath(path), self._format, self._metadata,
                                     self._spooled_attachments(), comment, sign=sign)
        self._mark_saved(published.manifest, published.digest, published.version)
        self._set_signature(published.sig)
        object.__setattr__(self, "_transfer", (published.bytes_sent, published.bytes_stored))
        return self

    @property
    def bytes_sent(self) -> int | None:
        """Bytes this object's :meth:`save` sent to the store (objects only: chunks the store
        already held are not sent again); None if it was not saved by this object."""
        return self._transfer[0] if self._transfer is not None else None

    @property
    def bytes_stored(self) -> int | None:
        """Bytes of objects the store did not hold before this object's :meth:`save` (a
        re-save of an unchanged model stores only its manifest); None if not saved here."""
        return self._transfer[1] if self._transfer is not None else None

    def _check_comment(self, comment: object) -> None:
        self._check_mutable()
        if not isinstance(comment, str):
            raise InvalidMetadataError("comment must be a string")
        if len(comment.encode("utf-8", "surrogatepass")) > 64 * 1024:
            raise InvalidMetadataError("comment is longer than 64 KiB")
        normalize_value("comment", comment)

    def _spooled_attachments(self) -> list[tuple[str, SpooledObject]]:
        return [(a.name, a._spooled) for a in self.get_attachments() if a._spooled is not None]

    def _mark_saved(self, manifest: dict[str, Any], digest: str, version: int) -> None:
        s = object.__setattr__
        s(self, "_manifest", manifest)
        s(self, "_digest", digest)
        s(self, "_version", version)
        s(self, "_model", None)
        _discard_all(self._attachments)
        self._attachments.clear()

    # -- comparison --------------------------------------------------------------------------------
    def diff(self, other: ModelImage) -> ImageDiff:
        """What changed from this saved image to ``other``: metadata, attachments (by digest),
        model (by digest), comment and lineage. See :class:`~roro.diff.ImageDiff`."""
        from .diff import diff_images  # its dataclasses (~1 ms) only when images are compared
        return diff_images(self, other)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data describing the image (what ``--json`` output shows; no model bytes)."""
        m = self._manifest
        return {
            "repository": self._repository.name,
            "version": self._version,
            "digest": self._digest,
            "timestamp": m["timestamp"] if m else None,
            "author": m["author"] if m else None,
            "comment": m["comment"] if m else None,
            "metadata": json.loads(json.dumps(self._metadata)),
            "model": ({"digest": m["model"]["digest"], "size": m["model"]["size"],
                       "type": self.model_type, "format": self.model_format,
                       "serializer": self.model_format,
                       "python": m["model"].get("python"),
                       "cloudpickle": m["model"].get("cloudpickle"),
                       "summary": (m["model"]["summary"]["digest"]
                                   if isinstance(m["model"].get("summary"), dict) else None)}
                      if m and m["model"] else None),
            "contract": self.contract,
            "attachments": [{"name": a.name, "digest": a.digest, "size": a.size}
                            for a in self.get_attachments()],
            "lineage": self.lineage,
            "signature": self.signature,
            **({"damaged": self._damaged} if self._damaged is not None else {}),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelImage):
            return NotImplemented
        if not (self.saved and other.saved):
            return self is other
        return (self._digest, self._version, self._repository.name) == (
            other._digest, other._version, other._repository.name)

    def __hash__(self) -> int:
        return hash((self._digest, self._version)) if self.saved else id(self)


def verified_signature(sig: dict[str, str] | None) -> dict[str, Any] | None:
    """What :attr:`ModelImage.signature` shows of an event's checked signature ``sig``."""
    return None if sig is None else {"signer": sig["name"], "key": sig["key"], "verified": True}


def _text_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidMetadataError(f"attachment text is not valid Unicode: {e}") from None


class ImageList(list[ModelImage]):
    """The images a listing or a search returned: a plain list (``len``, indexing, iteration,
    slicing as before) that also converts to a pandas DataFrame and shows as a table in a
    notebook."""

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per image: ``repository``, ``version``, ``image``,
        ``tags``, ``timestamp`` (timezone-aware), ``author``, ``comment``, ``model_type``,
        ``model_size``, then one column per metadata key path (``params.C`` for nested
        objects; a key that clashes with a fixed column is prefixed ``metadata.``). Needs
        pandas (:class:`~roro.errors.MissingDependencyError` names it when it is missing)."""
        return images_to_pandas(self)

    def _repr_html_(self) -> str:
        return images_html(self)


_ATTRIBUTES: list[str] = []


def _public_attributes() -> list[str]:
    """The public attributes and methods of :class:`ModelImage` (what a typo may be near)."""
    if not _ATTRIBUTES:
        _ATTRIBUTES.extend(a for a in dir(ModelImage) if not a.startswith("_"))
    return _ATTRIBUTES


def _discard_all(attachments: dict[str, Attachment]) -> None:
    for a in attachments.values():
        if a._spooled is not None:
            a._spooled.discard()
