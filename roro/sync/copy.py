""":func:`copy_image`: append one image of a store to a repository of another (or the same) store,
whatever its history: the promotion path when histories differ (where sync reports a conflict).
The new version records where it came from in the manifest's ``lineage.copied_from``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ..config import current_settings
from ..names import validate_name
from ..project import Project
from ..refspec import parse_refspec
from ..repository import copy_into
from .fastforward import DEFAULT_WORKERS
from .report import CopyReport, requests_dict
from .stores import StoreSpec, counted_pair


def copy_image(src: StoreSpec, ref: str, dst: StoreSpec, new_name: str | None = None,
               project: str | None = None, dst_project: str | None = None, *,
               workers: int = DEFAULT_WORKERS) -> CopyReport:
    """Append one image of SRC as a new version of a repository in DST, whatever DST's history:
    the promotion path when histories differ (where :func:`sync` reports a conflict).

    The blobs the image needs are copied (only those DST lacks, verified); then a new manifest,
    equal to the source's plus ``lineage.copied_from = {store, project, repository, version,
    image}`` (and ``previous``: the source's own ``copied_from``, if it was itself a copy), is
    published as the next version through the normal write path. The event records who copied
    and when. If DST's latest version already is that very copy, nothing is appended
    (``created`` is False), so re-running a promotion script is harmless.

    Args:
        src, dst: stores, URLs/paths or ``roro.yml`` remote names (they may be the same store).
        ref: a version of SRC in the one grammar (``NAME``, ``NAME:3``, ``NAME:v3``,
            ``NAME:TAG``, ``NAME@sha256:…``; see :mod:`roro.refspec`).
        new_name: the repository in DST (default: the same name).
        project: the project in SRC (default: the current project, from ``roro.yml`` etc.).
        dst_project: the project in DST (default: ``project``).
    """
    start = time.monotonic()
    parsed = parse_refspec(ref)
    name = parsed.name
    assert name is not None
    project = validate_name(project or current_settings().project, "project")
    dst_project = validate_name(dst_project or project, "project")
    new_name = validate_name(new_name or name)
    with counted_pair(src, dst) as (src_c, dst_c, src_n, dst_n), \
            ThreadPoolExecutor(max(1, workers), thread_name_prefix="roro-copy") as pool:
        image = Project(project, src_c).get_model_image(parsed)
        target = Project(dst_project, dst_c).get_model_repository(new_name)
        copied, created, stats = copy_into(image, target, pool)
        assert image.version is not None and image.digest is not None
        assert copied.version is not None and copied.digest is not None
        return CopyReport(src_c.url, dst_c.url, project, name, image.version, image.digest,
                          dst_project, new_name, copied.version, copied.digest, created,
                          stats.objects_transferred, stats.bytes_transferred,
                          stats.objects_skipped, stats.bytes_skipped,
                          requests_dict(src_n, dst_n), time.monotonic() - start)
