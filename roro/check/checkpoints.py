"""What fsck and gc know of checkpoints (DESIGN §10, §14): the pointers under ``checkpoints/``,
the newest one of each repository verified as a cold reader verifies it, and the objects its
chain holds (gc keeps them; older pointers are what gc deletes).

A checkpoint is derived data: a wrong one is a ``bad-checkpoint`` problem that does not block
gc (readers ignore it and read the log), and objects a crashed checkpoint writer left without a
pointer are ordinary unreferenced objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import IntegrityError
from ..objects import ObjectStore
from ..refs import checkpoint as ck
from ..refs.events import MAX_EVENT_SIZE
from ..storage import Backend, KeyNotFoundError
from ..storage.layout import CHECKPOINTS_PREFIX, log_key, parse_checkpoint_key
from .report import BAD_CHECKPOINT, STRAY_FILE, FsckReport, Problem


@dataclass
class CheckpointScan:
    """Every pointer by repository (newest first), and the objects the newest chains hold."""

    pointers: dict[tuple[str, str], list[ck.Pointer]] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)
    young: set[str] = field(default_factory=set)  # keys of pointers gc must not delete yet

    def named(self) -> set[str]:
        """The objects of the newest chains, and every object a pointer names (fsck does not
        call those unreferenced: gc deletes an older pointer first, then its objects)."""
        return self.kept | {p.digest for found in self.pointers.values() for p in found}

    def older_pointers(self) -> list[str]:
        """Keys of every pointer but the newest of its repository and the young ones (what
        gc deletes)."""
        return [p.key for found in self.pointers.values() for p in found[1:]
                if p.key not in self.young]


def scan_checkpoints(backend: Backend, objects: ObjectStore, report: FsckReport,
                     young: Callable[[float], bool] | None = None) -> CheckpointScan:
    """List the pointers (a stray key under ``checkpoints/`` is reported), verify the newest of
    each repository (its chain, its events by hash, its event N against the log) and note the
    objects its chain holds. ``young(mtime)`` (gc): the chains of the pointers it calls young
    are kept too, and those pointers are not deleted: a writer may be building on one without
    protecting its objects (docs/trust.md, "Checkpoints and gc")."""
    scan = CheckpointScan()
    parents: dict[str, str | None] = {}
    for info in backend.list_info(CHECKPOINTS_PREFIX):
        key = info.key
        parsed = parse_checkpoint_key(key)
        if parsed is None:
            report.problems.append(Problem(
                STRAY_FILE, "not a checkpoint pointer "
                "(checkpoints/<project>/<repository>/<10 digits>-<64 hex>.json); move it out of "
                "the store", key=key, blocks_gc=False))
            continue
        project, repository, seq, digest = parsed
        scan.pointers.setdefault((project, repository), []).append(
            ck.Pointer(key, seq, digest, info.mtime))
    for (project, repository), found in sorted(scan.pointers.items()):
        found.sort(key=lambda p: (-p.seq, p.key))
        newest = found[0]
        scan.kept.update(ck.chain_digests(objects, newest, project, repository))
        for p in found[1:]:
            if young is not None and p.mtime is not None and young(p.mtime):
                scan.young.add(p.key)
                scan.kept.update(_chain(objects, p, project, repository, parents))
        why = verify(backend, objects, project, repository, newest)
        if why is not None:
            report.problems.append(Problem(
                BAD_CHECKPOINT, f"{why}: readers ignore it and read the log (slower); make a "
                f"new one with 'roro checkpoint {repository}' (gc then deletes this pointer)",
                project=project, repository=repository, seq=newest.seq, digest=newest.digest,
                key=newest.key, blocks_gc=False))
    report.checkpoints = sum(len(v) for v in scan.pointers.values())
    return scan


def _chain(objects: ObjectStore, pointer: ck.Pointer, project: str, repository: str,
           parents: dict[str, str | None]) -> list[str]:
    """The objects of ``pointer``'s chain as far as they can be read (``parents``: each
    object's parent, read once for every chain that shares it)."""
    out: list[str] = []
    digest: str | None = pointer.digest
    while digest is not None and len(out) <= len(ck.PERIODS):
        out.append(digest)
        if digest not in parents:
            try:
                parents[digest] = ck.read_object(objects, digest, project, repository).parent
            except IntegrityError:
                break
        digest = parents[digest]
    return out


def verify(backend: Backend, objects: ObjectStore, project: str, repository: str,
           pointer: ck.Pointer) -> str | None:
    """Why the checkpoint ``pointer`` names is wrong, or None: what a cold reader checks."""
    try:
        chain = ck.load_chain(objects, project, repository, pointer.digest, pointer.seq)
        events = ck.verified_events(chain, project, repository)
        if len(events) != pointer.seq:
            return "its chain does not start at event 1"
        try:
            real = backend.get(log_key(project, repository, pointer.seq), MAX_EVENT_SIZE)
        except KeyNotFoundError:
            return f"the log has no event {pointer.seq}"
        if real != events[-1].raw:
            return f"its event {pointer.seq} is not the log's event {pointer.seq}"
        ck.chain_manifests(chain, events)
    except IntegrityError as e:
        return str(e)
    return None
