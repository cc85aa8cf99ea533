"""Checking and collecting a store: ``fsck`` (git fsck / restic check) and ``gc`` (git gc --prune).

Both work on a whole store, every project: objects are shared by all of them.

:func:`fsck` reads every ref log, folds it with the rules of :mod:`roro.refs.state` without stopping
at the first problem, reads every manifest a live version names, and checks that every blob those
manifests name exists; with ``read_data`` it also re-hashes every object in the store. It returns an
:class:`FsckReport`: the problems (each naming what it can of project, repository, event, version,
object digest, expected and actual hash), and the objects no live version reaches.

:func:`gc` deletes the objects no live version reaches that are older than a grace period, and stale
temporary files of a folder store. It refuses to run when fsck finds a problem that makes
reachability unknown (a broken log, a missing or unreadable manifest).

Reachability: an object is *live* if a live (not deleted) version's manifest is it or names it.
Objects that only deleted versions name are collectable, like objects of a save that crashed.
"""

from ..units import parse_duration
from .fsck import fsck
from .gc import DEFAULT_GRACE_SECONDS, gc
from .report import (
    BROKEN_LOG,
    CORRUPT_OBJECT,
    INDEX_MISMATCH,
    INVALID_MANIFEST,
    MISSING_OBJECT,
    NAME_WARNING,
    SPECIAL_FILE,
    STRAY_FILE,
    CollectedObject,
    FsckReport,
    GcReport,
    Problem,
)

__all__ = ["BROKEN_LOG", "CORRUPT_OBJECT", "DEFAULT_GRACE_SECONDS", "INDEX_MISMATCH",
           "INVALID_MANIFEST", "MISSING_OBJECT", "NAME_WARNING", "SPECIAL_FILE", "STRAY_FILE", "CollectedObject", "FsckReport",
           "GcReport", "Problem", "fsck", "gc", "parse_duration"]
