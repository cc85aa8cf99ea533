"""Fill an index directly with version rows (no store, no ref log): for query tests and benchmarks.

The rows look exactly like those the index writes from real saves (the ``metadata`` column goes
through :func:`roro.refs.index.queryable_metadata`); :func:`records` reads them back as the
:class:`roro.query.Record` the reference evaluator sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from roro.query import Record
from roro.refs import Index
from roro.refs.index import queryable_metadata

DIGEST = "sha256:" + "0" * 64


@dataclass
class Row:
    repository: str
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    author: str = "ana"
    timestamp: str = "2024-06-01T00:00:00.000000Z"
    comment: str = ""
    deleted: bool = False
    signer: str | None = None


def manifest_text(row: Row) -> str:
    manifest = {"format": "roro.image/1",
                "model": {"digest": DIGEST, "size": 1, "serializer": "cloudpickle",
                          "type": "builtins.dict", "python": "3.11.7", "cloudpickle": "3.0.0"},
                "attachments": [], "metadata": row.metadata, "timestamp": row.timestamp,
                "author": row.author, "comment": row.comment}
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def insert(index: Index, project: str, rows: Iterable[Row],
           tags: dict[tuple[str, str], int] | None = None) -> None:
    """Insert ``rows`` and ``tags`` ({(repository, tag): version}) in one transaction."""
    rows = list(rows)
    with index.transaction() as db:
        db.executemany(
            "INSERT INTO versions (project, repository, version, image, seq, author, time, comment, "
            "deleted, metadata, model_type, model_size, size, attachments, manifest, signer) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'builtins.dict', 1, 1, '[]', ?, ?)",
            ([project, r.repository, r.version, DIGEST, r.version, r.author, r.timestamp,
              r.comment, int(r.deleted), queryable_metadata(r.metadata), manifest_text(r),
              r.signer]
             for r in rows))
        tops: dict[str, int] = {}
        for r in rows:
            tops[r.repository] = max(tops.get(r.repository, 0), r.version)
        for repo, top in tops.items():
            db.execute("INSERT OR REPLACE INTO repositories (project, name, last_seq, "
                       "max_version) VALUES (?, ?, ?, ?)", [project, repo, top, top])
        for (repo, tag), version in (tags or {}).items():
            db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)", [project, repo, tag, version])


def records(index: Index, project: str) -> list[tuple[str, float | str, Record]]:
    """Every live row of ``project`` as (repository, time, Record), read back from the index."""
    rows = list(index._rows("SELECT * FROM versions WHERE project = ? AND deleted = 0",
                               [project]))
    latest: dict[str, int] = {}
    for r in rows:
        latest[r["repository"]] = max(latest.get(r["repository"], 0), r["version"])
    tags: dict[tuple[str, int], list[str]] = {}
    for t in index._rows("SELECT * FROM tags WHERE project = ?", [project]):
        tags.setdefault((t["repository"], t["version"]), []).append(t["tag"])
    out = []
    for r in rows:
        manifest = json.loads(r["manifest"])
        row_tags = tags.get((r["repository"], r["version"]), [])
        if latest[r["repository"]] == r["version"]:
            row_tags = [*row_tags, "latest"]
        out.append((r["repository"], r["time"], Record(
            version=r["version"], author=r["author"], timestamp=manifest["timestamp"],
            comment=r["comment"], tags=tuple(row_tags), signer=r["signer"],
            metadata=manifest["metadata"])))
    return out
