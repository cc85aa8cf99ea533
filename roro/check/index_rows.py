"""fsck's cross-check of the local index against the logs: every row the index holds (versions,
their images and what it derived from their manifests, current tags, tag history, positions) must
be what the log says at the event the index last saw. The index is a cache of the log, never its
authority: an edited or damaged row is an ``index-mismatch`` (it does not block gc, which reads
the logs, not the index; ``roro index --rebuild`` repairs it)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..refs import Event, RepoState
from .report import INDEX_MISMATCH, FsckReport, Problem

_EVENT_FIELDS = ("image", "seq", "author", "time", "comment", "deleted", "signer", "signer_key")
_TAG_MOVE_FIELDS = ("seq", "tag", "version", "previous", "author", "time", "signer",
                    "signer_key")
_REBUILD = "the index was edited or damaged (run 'roro index --rebuild')"


class LogFacts(NamedTuple):
    """What the log says at one event: every version (live or deleted), the tags, the tag
    history and the highest version number; what the index must hold at that event."""

    versions: dict[int, dict[str, Any]]
    tags: dict[str, int]
    tag_history: list[tuple[Any, ...]]
    max_version: int


def freeze(state: RepoState, version_events: dict[int, Event]) -> LogFacts:
    """The facts of ``state`` (folded up to some event) and the version events read so far."""
    versions = {}
    for v, e in version_events.items():
        if v in state.versions or v in state.deleted:
            versions[v] = {"image": e["image"], "seq": e.seq, "author": e.author,
                           "time": e.time, "comment": e["comment"],
                           "deleted": int(v in state.deleted), "signer": e.signer,
                           "signer_key": e.signer_key}
    history = [(m.seq, m.tag, m.version, m.previous, m.author, m.time, m.signer, m.signer_key)
               for m in state.tag_history]
    return LogFacts(versions, dict(state.tags), history, state.max_version)


def check_rows(rows: dict[str, Any], facts: LogFacts, manifests: dict[str, tuple[Any, str]],
               project: str, name: str, report: FsckReport) -> None:
    """Compare one repository's index ``rows`` (from ``Index.snapshot``) with ``facts``;
    ``manifests`` are the live manifests fsck read (``digest -> (manifest, text)``), against
    which the columns the index derived from them are checked."""
    from ..refs.index import DERIVED, derived_columns  # sqlite3 (~1 ms): only with an index

    def problem(message: str, version: int | None = None) -> None:
        report.problems.append(Problem(INDEX_MISMATCH, f"{message}: {_REBUILD}", project=project,
                                       repository=name, version=version, blocks_gc=False))

    indexed: dict[int, dict[str, Any]] = rows["versions"]
    for v in sorted(set(indexed) | set(facts.versions)):
        row, fact = indexed.get(v), facts.versions.get(v)
        if row is None:
            problem(f"the local index has no version {v}, which the log has", v)
            continue
        if fact is None:
            problem(f"the local index has a version {v} (image {row['image']}), which the log "
                    f"does not have", v)
            continue
        wrong = [f for f in _EVENT_FIELDS if row[f] != fact[f]]
        if wrong:
            said = "; ".join(f"{f} {row[f]!r} in the index, {fact[f]!r} in the log"
                             for f in wrong)
            problem(f"version {v} differs from its event in the log ({said})", v)
            continue
        if fact["deleted"]:
            derived: list[Any] = [None] * len(DERIVED)
        elif row["damaged"] is not None or fact["image"] not in manifests:
            continue  # damaged (fsck reports the manifest itself)
        else:
            derived = derived_columns(*manifests[fact["image"]])
        wrong = [c for c, want in zip(DERIVED, derived, strict=True) if row[c] != want]
        if wrong:
            problem(f"what the local index holds of version {v}'s manifest differs from the "
                    f"manifest ({', '.join(wrong)})", v)
    for tag in sorted(set(rows["tags"]) | set(facts.tags)):
        have, want = rows["tags"].get(tag), facts.tags.get(tag)
        if have != want:
            problem(f"the local index says tag {tag!r} points at version {have}, the log says "
                    f"{want}")
    history = [tuple(r[f] for f in _TAG_MOVE_FIELDS) for r in rows["tag_events"]]
    if history != facts.tag_history:
        first = next((i for i, (a, b) in enumerate(zip(history, facts.tag_history, strict=False))
                      if a != b),
                     min(len(history), len(facts.tag_history)))
        problem(f"the tag history in the local index differs from the log's from its move "
                f"{first + 1} on")
    if rows["row"] is not None and rows["row"]["max_version"] != facts.max_version:
        problem(f"the local index says the highest version ever saved is "
                f"{rows['row']['max_version']}, the log says {facts.max_version}")
