"""roro: a git-like, content-addressed model registry for Python.

>>> import roro
>>> project = roro.get_current_project()
>>> repo = project.get_model_repository("credit-risk")
>>> image = repo.new_image(model); image["Accuracy"] = 0.89; image.save(comment="June data")
"""

from __future__ import annotations

from .config import current_settings
from .errors import (
    ConfigError,
    ConflictError,
    ContractError,
    DownloadError,
    FormatError,
    ImmutableError,
    IntegrityError,
    InvalidMetadataError,
    InvalidNameError,
    MissingLibraryError,
    NotFoundError,
    QuerySyntaxError,
    RoroError,
    StoreError,
    TrustError,
)
from .image import Attachment, Downloaded, ModelImage, RoroWarning
from .project import Project
from .repository import ModelRepository, TagChange
from .store import Store
from .sync import CopyReport, SyncReport, copy_image, sync

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "ConfigError",
    "ConflictError",
    "ContractError",
    "CopyReport",
    "DownloadError",
    "Downloaded",
    "FormatError",
    "ImmutableError",
    "IntegrityError",
    "InvalidMetadataError",
    "InvalidNameError",
    "MissingLibraryError",
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
    "sync",
    "__version__",
]


def get_current_project(project: str | None = None, store: str | None = None) -> Project:
    """The project named by ``RORO_PROJECT``/``RORO_STORE``, the nearest ``roro.yml``, or the
    ``default`` project in ``$RORO_HOME`` (default ``~/.roro``)."""
    settings = current_settings(project, store)
    return Project(settings.project, settings.store, **settings.options)
