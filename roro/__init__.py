"""roro: a git-like, content-addressed model registry for Python.

>>> import roro
>>> project = roro.get_current_project()
>>> repo = project.get_model_repository("credit-risk")
>>> image = repo.new_image(model); image["Accuracy"] = 0.89; image.save(comment="June data")
"""

from __future__ import annotations

from typing import Any

from .config import current_settings
from .errors import (
    AmbiguousRefError,
    AttributeNameError,
    ConfigError,
    ConflictError,
    ContractError,
    DownloadError,
    FormatError,
    ImmutableError,
    IntegrityError,
    InvalidArgumentError,
    InvalidMetadataError,
    InvalidNameError,
    MissingDependencyError,
    NotFoundError,
    QuerySyntaxError,
    RoroError,
    StoreError,
    TrustError,
)
from .image import Attachment, Downloaded, ImageList, ModelImage, RoroWarning
from .project import Project
from .repository import ModelRepository, TagChange
from .store import Store
from .sync import CopyReport, SyncReport, copy_image, sync

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRefError",
    "Attachment",
    "AttributeNameError",
    "ConfigError",
    "ConflictError",
    "ContractError",
    "CopyReport",
    "DownloadError",
    "Downloaded",
    "FormatError",
    "ImageList",
    "ImmutableError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidMetadataError",
    "InvalidNameError",
    "MissingDependencyError",
    "ModelImage",
    "ModelRepository",
    "NotFoundError",
    "Project",
    "QuerySyntaxError",
    "RoroError",
    "RoroWarning",
    "Store",
    "StoreError",
    "SyncReport",
    "TagChange",
    "TrustError",
    "copy_image",
    "get_current_project",
    "load",
    "sync",
    "__version__",
]


def get_current_project(project: str | None = None, store: str | None = None) -> Project:
    """The project named by ``RORO_PROJECT``/``RORO_STORE``, the nearest ``roro.yml``, or the
    ``default`` project in ``$RORO_HOME`` (default ``~/.roro``)."""
    settings = current_settings(project, store)
    return Project(settings.project, settings.store, **settings.options)


def load(spec: str, *, trust: dict[str, Any] | None = None,
         tensors: list[str] | None = None) -> Any:
    """The model object that ``spec`` names in the current project (see
    :func:`get_current_project`): ``"credit-risk"`` (latest), ``"credit-risk:3"``,
    ``"credit-risk:v3"``, ``"credit-risk:production"``, ``"credit-risk@sha256:3f7bc85"``. Its
    bytes are verified before they are loaded, and the load gate applies (``trust`` tightens the
    caller's trust settings; ``tensors`` selects tensors of a safetensors model; see
    :meth:`ModelImage.get_model`)."""
    return get_current_project().get_model(spec, trust=trust, tensors=tensors)
