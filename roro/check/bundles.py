"""What fsck checks of OpenSSF Model Signing bundles (:mod:`roro.bundle`): each live version's
bundle, named by its signed event, is a bundle over the files of that version's manifest, signed
by the key that signed the event. A bad bundle is a ``bad-bundle`` problem; it never blocks gc
(the version's bytes are intact; only its OpenSSF signature is unusable). A missing one is a
``missing-object`` problem, reported with the other objects live versions need."""

from __future__ import annotations

import base64
import binascii
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..bundle import MAX_BUNDLE_SIZE, bundle_files, bundle_problem
from ..errors import IntegrityError, NotFoundError, SignatureError
from ..objects import ObjectStore
from ..signing import SigningUnavailableError
from ..storage import Backend
from .report import BAD_BUNDLE, FsckReport, Problem

#: the role of a bundle among the objects a version references (fsck's references)
ROLE = "signature bundle"
#: the role of the bundle of a copy's source (``lineage.copied_from``): kept and copied, and
#: checked where it was made
SOURCE_ROLE = "source signature bundle"
Refs = dict[str, list[tuple[str, str, int, str]]]


def check_bundles(backend: Backend, refs: Refs, manifests: dict[str, Any], report: FsckReport,
                  pool: ThreadPoolExecutor) -> None:
    """Check every bundle a live version names (``refs`` entries of role :data:`ROLE`) against
    its version's manifest and its event's key (``report.bundle_keys``)."""
    images = {(p, n, v): d for d, who in refs.items() for p, n, v, role in who
              if role == "manifest"}
    todo = sorted(d for d, who in refs.items() if any(r == ROLE for *_, r in who))
    uncached = ObjectStore(backend)

    def read(digest: str) -> bytes | str | None:
        try:
            return uncached.read(digest, MAX_BUNDLE_SIZE)
        except NotFoundError:
            return None  # reported as a missing object
        except IntegrityError as e:
            return f"it cannot be read intact ({e})"

    for digest, data in zip(todo, pool.map(read, todo), strict=True):
        if data is None:
            continue
        for p, n, v, role in sorted(refs[digest]):
            if role != ROLE:
                continue
            found = manifests.get(images.get((p, n, v), ""))
            if found is None:
                continue  # the manifest's own problem is reported
            why = data if isinstance(data, str) else \
                _problem(data, found[0], report.bundle_keys.get(digest))
            if why is not None:
                report.problems.append(Problem(
                    BAD_BUNDLE, f"the OpenSSF Model Signing bundle {digest} of {n}:{v} is "
                    f"unusable: {why}; 'roro models:download --signature' refuses it (the "
                    f"version itself is intact)", project=p, repository=n, version=v,
                    digest=digest, object=ROLE, blocks_gc=False))


def _problem(data: bytes, manifest: dict[str, Any], pub: str | None) -> str | None:
    files = bundle_files(manifest)
    if isinstance(files, str):
        return f"the version cannot have one: {files}"
    if pub is None:
        return "the event naming it is not signed"
    try:
        return bundle_problem(data, files, base64.b64decode(pub, validate=True))
    except (binascii.Error, ValueError):
        return "the event naming it has a malformed public key"
    except SigningUnavailableError as e:
        return f"it cannot be checked here: {e}"
    except SignatureError as e:
        return str(e)
