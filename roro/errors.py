"""Every error a user can cause is a subclass of :class:`RoroError`.

Errors carry attributes (``repository``, ``version``, ``digest``, ``expected``, ``actual``) as well as a
message that says what happened and what to do next. This module imports nothing from roro, so every
layer may raise these.
"""

from __future__ import annotations


class RoroError(Exception):
    """Root of every error a user of roro can cause."""


class RoroWarning(UserWarning):
    """Something the user should know that did not stop the call: a model saved with another
    Python or cloudpickle version than is loading it, a write that happened while the local
    index could not be updated."""


class NotFoundError(RoroError, LookupError):
    """A repository, version, tag, object or store that does not exist."""

    def __init__(self, message: str, *, repository: str | None = None,
                 version: int | None = None, tag: str | None = None, digest: str | None = None):
        super().__init__(message)
        self.repository = repository
        self.version = version
        self.tag = tag
        self.digest = digest


class IntegrityError(RoroError):
    """Stored bytes do not hash to their name, or a ref log is broken."""

    def __init__(self, message: str, *, digest: str | None = None, expected: str | None = None,
                 actual: str | None = None, repository: str | None = None, seq: int | None = None):
        super().__init__(message)
        self.digest = digest
        self.expected = expected
        self.actual = actual
        self.repository = repository
        self.seq = seq


class SignatureError(IntegrityError):
    """A signed ref event whose signature does not verify (changed bytes, a forged signature,
    a public key that is not the one its fingerprint names). The message names the event."""


class ConflictError(RoroError):
    """Lost a race that cannot be retried, an existing name, or a diverged history."""

    def __init__(self, message: str, *, repository: str | None = None):
        super().__init__(message)
        self.repository = repository


class InvalidNameError(RoroError, ValueError):
    """A repository, tag, project or attachment name that breaks the naming rule."""

    def __init__(self, message: str, *, name: object = None):
        super().__init__(message)
        self.name = name


class InvalidArgumentError(RoroError, ValueError):
    """An argument of a call that cannot be used as given (both a version and a tag, a negative
    limit, an unsaved image where a saved one is needed...)."""


class AmbiguousRefError(InvalidNameError):
    """A version reference that names two things: an image digest prefix shared by several
    images, or ``NAME:v2`` in a store that also has a tag ``v2``. ``candidates`` lists them."""

    def __init__(self, message: str, *, name: object = None, candidates: list[str] | None = None):
        super().__init__(message, name=name)
        self.candidates = list(candidates or [])


class AttributeNameError(RoroError, AttributeError):
    """Setting an attribute of a model image that is not metadata: a real attribute
    (``image.comment = …``) or a name within two edits of one (``image.coment = …``)."""


class MissingDependencyError(RoroError, ImportError):
    """An optional package a call needs is not installed (``to_pandas()`` needs pandas; a model
    format its library, and the message names the pip extra that installs it)."""


class InvalidMetadataError(RoroError, ValueError):
    """A metadata key or value that is not allowed (not JSON, NaN, too large, too deep...)."""


class ImmutableError(RoroError, TypeError):
    """Attempt to change a model image that has already been saved."""


class StoreError(RoroError):
    """A store that cannot be used: unknown format, unreachable, unsafe, misconfigured."""


class DiskFullError(StoreError):
    """No space left on the device of a folder store or of the user's cache: a write failed,
    nothing was lost (the message names the path, the bytes free and the bytes needed)."""


class DownloadError(RoroError):
    """A download refused before it wrote anything, or a file it could not write: a file that
    exists (without ``force``), a path that leads outside the target directory."""


class ConfigError(RoroError):
    """A roro.yml that cannot be read or holds invalid values."""


class InvalidDurationError(RoroError, ValueError):
    """A duration (such as gc's grace period) that cannot be parsed."""


class GcRefusedError(IntegrityError):
    """gc refused to delete anything because the store has problems that make reachability unknown.

    ``report`` is the :class:`~roro.check.FsckReport` that found them.
    """

    def __init__(self, message: str, report: object = None):
        super().__init__(message)
        self.report = report


class QuerySyntaxError(RoroError, ValueError):
    """A search query that cannot be parsed; ``column`` (1-based) says where, ``expected`` what."""

    def __init__(self, message: str, *, query: str | None = None, column: int | None = None,
                 expected: str | None = None, found: str | None = None):
        super().__init__(message)
        self.query = query
        self.column = column
        self.expected = expected
        self.found = found


class TrustError(RoroError):
    """A load refused by the loader's trust settings (``trust: pickle: deny``, a skops type not
    listed in ``trust: skops_types``...), before a byte was unpickled. ``setting`` names the
    setting and ``source`` where it was set; ``repository``, ``version`` and ``format`` the
    model refused."""

    def __init__(self, message: str, *, setting: str | None = None, source: str | None = None,
                 repository: str | None = None, version: int | None = None,
                 format: str | None = None):
        super().__init__(message)
        self.setting = setting
        self.source = source
        self.repository = repository
        self.version = version
        self.format = format


class ContractError(RoroError, ValueError):
    """Input that does not match a model's recorded input schema (``image.check_input``)."""


class FormatError(RoroError, ValueError):
    """An object or a file that is not in the format asked for, or an unknown format."""
