"""Regressions: two processes opening or refreshing one index at the same moment lose nothing."""

from __future__ import annotations

from roro import Project
from roro.objects import ObjectStore
from roro.refs import RefLog
from roro.refs.index import Index
from roro.storage import open_backend


def saved_store(tmp_path, n=3):
    url = str(tmp_path / "s")
    repo = Project("p", url).get_model_repository("m")
    for i in range(n):
        repo.new_image(i).save()
    return url


def test_schema_created_meanwhile_is_not_dropped(tmp_path, monkeypatch):
    """A process that saw no schema, then waited for the write lock while another created it and
    indexed rows, used to drop the tables again (16 concurrent savers hit it in CI)."""
    url = saved_store(tmp_path)
    first = Index(str(tmp_path / "i.sqlite3"))
    backend = open_backend(url)
    first.refresh(RefLog(backend, "p", "m"), ObjectStore(backend))
    real = Index.table_names
    looks = []

    def table_names(self):  # its first look (before the lock) sees no table yet
        looks.append(1)
        return [] if len(looks) == 1 else real(self)

    monkeypatch.setattr(Index, "table_names", table_names)
    Index(str(tmp_path / "i.sqlite3"))  # a second process opening the index meanwhile
    assert len(looks) == 2
    assert first.repository("p", "m")["last_seq"] == 3


def test_refresh_survives_an_index_that_lost_rows_meanwhile(tmp_path):
    """Rows forgotten between a refresher's look and its lock (a rebuild next door) used to fail
    the refresh with 'expected event 1, found N'."""
    url = saved_store(tmp_path, 2)
    index = Index(str(tmp_path / "i.sqlite3"))
    backend = open_backend(url)
    log, objects = RefLog(backend, "p", "m"), ObjectStore(backend)
    index.refresh(log, objects)
    Project("p", url).get_model_repository("m").new_image(9).save()  # event 3, not indexed here

    class ForgetfulLog(RefLog):
        def read_after(self, seq, tail=None, *, confirm=False):
            events = super().read_after(seq, tail, confirm=confirm)
            if seq:  # after reading from seq 2, the rows vanish
                index.reset()
            return events

    row = index.refresh(ForgetfulLog(backend, "p", "m"), objects)
    assert row["last_seq"] == 3 and [v["version"] for v in index.versions("p", "m")] == [3, 2, 1]
