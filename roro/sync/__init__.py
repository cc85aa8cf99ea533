"""Sync and copy between stores (DESIGN.md §6; docs/sync.md).

- :func:`sync` (``fastforward.py``): make DST hold SRC's history, repository by repository;
- :func:`copy_image` (``copy.py``): append one image across, whatever the histories;
- ``report.py``: what they return; ``stores.py``: their two stores, with requests counted.

Objects move through :class:`roro.objects.transfer.ObjectTransfer` (verified, only the missing
ones), events through the fold's rules and create-if-absent.
"""

from .copy import copy_image
from .fastforward import sync
from .report import CopyReport, RepositorySync, SyncProgress, SyncReport

__all__ = ["CopyReport", "RepositorySync", "SyncProgress", "SyncReport", "copy_image", "sync"]
