"""Search at 100,000 versions: build an index directly, then time queries through the real
``Index.search`` with queries compiled by ``roro.query``.

    PYTHONPATH=. python bench/bench_search.py [N]

Prints, for each query, the number of matches and the median time of 5 runs (full result and
first page of 20), plus SQLite's query plan for the repository and project searches.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from support.index_rows import Row, insert  # noqa: E402

from roro import ModelImage, Project  # noqa: E402
from roro.query import parse  # noqa: E402
from roro.refs import Index  # noqa: E402

QUERIES = [
    "Accuracy > 0.88 and (\"Input-Data-Source\" like 's3://credit%' or tag = 'production')",
    "Accuracy > 0.88",
    "tag = 'production'",
    "version > 99990",
    "author = 'bob' and timestamp >= '2024-06-15'",
    "\"Input-Data-Source\" in ('s3://credit/june', 's3://credit/july') and not exists dropped",
    "comment ilike '%retrain%'",
    "Accuracy > 0.9499",
]


def build(path: str, n: int, repositories: int = 1) -> Index:
    rnd = random.Random(7)
    index = Index(path)
    rows = []
    for i in range(n):
        repo = f"model-{i % repositories}"
        version = i // repositories + 1
        meta = {"Accuracy": round(rnd.uniform(0.7, 0.95), 4),
                "Input-Data-Source": rnd.choice(["s3://credit/june", "s3://credit/july",
                                                 "s3://other/june", "gs://x"]),
                "epochs": rnd.randint(1, 50), "notes": "x" * rnd.randint(0, 200)}
        if rnd.random() < 0.1:
            meta["dropped"] = True
        day = 1 + (i * 29) // n
        rows.append(Row(repo, version, meta, author=rnd.choice(["ana", "bob", "cy"]),
                        timestamp=f"2024-06-{day:02d}T12:00:{i % 60:02d}.{i:06d}Z",
                        comment=rnd.choice(["", "retrain on June data", "baseline"])))
    insert(index, "bench", rows,
           {(f"model-{r}", "production"): n // repositories // 2 for r in range(repositories)})
    return index


def timed(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index = build(os.path.join(tmp, "index.sqlite3"), n)
        print(f"built {n} versions in 1 repository in {time.perf_counter() - t:.1f} s")
        for text in QUERIES:
            c = parse(text).to_sql()
            fns = dict(c.functions)

            def run(limit=None, c=c, fns=fns):
                return index.search("bench", "model-0", c.sql, c.params, limit, fns)

            count = len(run())
            print(f"  {count:6d} matches  all {timed(run) * 1000:7.1f} ms  first 20 "
                  f"{timed(lambda run=run: run(20)) * 1000:6.1f} ms   {text}")
        c = parse(QUERIES[0]).to_sql()
        rows = index.search("bench", "model-0", c.sql, c.params, None, dict(c.functions))
        repo = Project("bench", os.path.join(tmp, "unused")).get_model_repository("model-0")
        t = time.perf_counter()
        images = [ModelImage.from_index_row(repo, r) for r in rows]
        print(f"  turning {len(images)} rows into ModelImages: "
              f"{(time.perf_counter() - t) * 1000:.1f} ms")
        index.close()
        t = time.perf_counter()
        index = build(os.path.join(tmp, "project.sqlite3"), n, repositories=100)
        print(f"built {n} versions in 100 repositories in {time.perf_counter() - t:.1f} s")
        for text in QUERIES[:3]:
            c = parse(text).to_sql()
            fns = dict(c.functions)

            def prun(limit=None, c=c, fns=fns):
                return index.search("bench", None, c.sql, c.params, limit, fns)

            count = len(prun())
            print(f"  {count:6d} matches  all {timed(prun) * 1000:7.1f} ms  first 20 "
                  f"{timed(lambda prun=prun: prun(20)) * 1000:6.1f} ms   project: {text}")
        c = parse(QUERIES[0]).to_sql()
        for repo in ("model-0", None):
            sql = "SELECT v.* FROM versions AS v WHERE v.project = ? AND v.deleted = 0"
            args = ["bench"]
            if repo:
                sql += " AND v.repository = ?"
                args.append(repo)
            order = "v.version DESC" if repo else "v.time DESC, v.repository, v.version DESC"
            sql += f" AND ({c.sql}) ORDER BY {order} LIMIT 20"
            for name, (arity, fn) in c.functions.items():
                index.conn.create_function(name, arity, fn, deterministic=True)
            plan = index.conn.execute("EXPLAIN QUERY PLAN " + sql, [*args, *c.params, ]).fetchall()
            print(f"plan ({'repository' if repo else 'project'}):")
            for row in plan:
                print("   ", row[-1])
        index.close()


if __name__ == "__main__":
    main()
