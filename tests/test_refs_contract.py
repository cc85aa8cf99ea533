"""The ref-log and index contract: events, the fold against a dict model, rebuilt index equality."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from roro.digests import digest_bytes
from roro.errors import IntegrityError
from roro.objects import ObjectStore, canonical_json
from roro.objects.manifest import FORMAT_V1 as FORMAT  # these tests write version 1 manifests
from roro.refs import Index, RefLog, RepoState, fold
from roro.refs.events import make_event, parse_event
from roro.storage import open_backend
from roro.storage.layout import log_key


def manifest_for(objects: ObjectStore, n: int) -> str:
    blob = objects.put_bytes(f"model {n}".encode())
    return objects.put_json({
        "format": FORMAT, "model": {"digest": blob, "size": 7, "serializer": "cloudpickle",
                                    "type": "builtins.str", "python": "3.11", "cloudpickle": "3"},
        "attachments": [], "metadata": {"n": n}, "timestamp": "2026-01-01T00:00:00.000000Z",
        "author": "t", "comment": f"c{n}"})


class Writer:
    """Appends valid events to a log the way the API does, judging them by an in-memory fold."""

    def __init__(self, backend, objects, repo="r"):
        self.log = RefLog(backend, "p", repo)
        self.objects = objects
        self.state = RepoState(repo)

    def append(self, type_, **payload):
        e = self.log.append(self.state.last_seq + 1, self.state.last_hash, type_, "t",
                            "2026-01-01T00:00:00.000000Z", **payload)
        assert e is not None
        self.state.apply(e)
        return e

    def save(self):
        v = self.state.max_version + 1
        return self.append("version", version=v, image=manifest_for(self.objects, v), comment="")


def test_event_roundtrip_and_chain():
    e1 = make_event(1, None, "create", "a", "t")
    e2 = make_event(2, e1.hash, "version", "a", "t", version=1, image=digest_bytes(b"m"), comment="x")
    assert parse_event(e2.raw, repository="r", seq=2) == e2
    assert e2.hash == digest_bytes(e2.raw)
    fold("r", [e1, e2])
    with pytest.raises(IntegrityError, match="hash chain"):
        fold("r", [e1, make_event(2, digest_bytes(b"other"), "create", "a", "t")])


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"seq": 1}', canonical_json(
    {"seq": 1, "prev": None, "type": "bogus", "author": "a", "time": "t"}),
    b'{"seq":1, "prev":null,"type":"create","author":"a","time":"t"}',  # not canonical
    canonical_json({"seq": 2, "prev": None, "type": "create", "author": "a", "time": "t"})])
def test_malformed_events_are_integrity_errors(raw):
    with pytest.raises(IntegrityError):
        parse_event(raw, repository="r", seq=1)


def test_fold_rules():
    s = RepoState("r")
    img = digest_bytes(b"i")
    events = [make_event(1, None, "version", "a", "t", version=1, image=img, comment="")]
    s.apply(events[0])
    bad = [
        make_event(2, events[0].hash, "version", "a", "t", version=3, image=img, comment=""),
        make_event(2, events[0].hash, "tag", "a", "t", tag="prod", version=2, previous=None),
        make_event(2, events[0].hash, "tag", "a", "t", tag="prod", version=1, previous=1),
        make_event(2, events[0].hash, "delete", "a", "t", version=5),
        make_event(3, events[0].hash, "create", "a", "t"),
    ]
    for e in bad:
        with pytest.raises(IntegrityError):
            s.apply(e)
    s.apply(make_event(2, events[0].hash, "tag", "a", "t", tag="prod", version=1, previous=None))
    with pytest.raises(IntegrityError, match="tags"):
        s.apply(make_event(3, s.last_hash, "delete", "a", "t", version=1))


def test_gap_in_log_is_detected(store_url):
    backend = open_backend(store_url)
    w = Writer(backend, ObjectStore(backend))
    for _ in range(3):
        w.save()
    backend.delete(log_key("p", "r", 2))
    with pytest.raises(IntegrityError, match="event 2 is missing"):
        w.log.read_all()


def test_index_detects_edited_event(store_url, tmp_path):
    backend = open_backend(store_url)
    objects = ObjectStore(backend)
    w = Writer(backend, objects)
    for _ in range(3):
        w.save()
    raw = backend.get(log_key("p", "r", 2)).replace(b'"comment":""', b'"comment":"x"')
    backend.delete(log_key("p", "r", 2))
    backend.put(log_key("p", "r", 2), raw)
    index = Index(str(tmp_path / "i.sqlite3"))
    with pytest.raises(IntegrityError, match="event 3: hash chain broken"):
        index.refresh(RefLog(backend, "p", "r"), objects)
    assert index.repository("p", "r") is None  # nothing half-applied


class LogMachine(RuleBasedStateMachine):
    """Random histories: the fold, the incremental index and a rebuilt index agree with a dict model.
    Each example runs on a fresh store from the ``store_factory`` fixture."""

    def __init__(self, new_store_url):
        super().__init__()
        self.new_store_url = new_store_url

    @initialize()
    def setup(self):
        import tempfile
        self.tmp = tempfile.mkdtemp()
        backend = open_backend(self.new_store_url())
        self.objects = ObjectStore(backend)
        self.writer = Writer(backend, self.objects)
        self.index = Index(f"{self.tmp}/inc.sqlite3")
        self.model_versions: dict[int, str] = {}
        self.model_tags: dict[str, int] = {}
        self.model_history: list[tuple[str, int | None, int | None]] = []
        self.next_version = 1

    @rule()
    def save(self):
        e = self.writer.save()
        self.model_versions[self.next_version] = e["image"]
        self.next_version += 1

    @precondition(lambda self: self.model_versions)
    @rule(tag=st.sampled_from(["prod", "staging", "a-b"]), data=st.data())
    def tag(self, tag, data):
        v = data.draw(st.sampled_from(sorted(self.model_versions)))
        prev = self.model_tags.get(tag)
        self.writer.append("tag", tag=tag, version=v, previous=prev)
        self.model_tags[tag] = v
        self.model_history.append((tag, v, prev))

    @precondition(lambda self: self.model_tags)
    @rule(data=st.data())
    def untag(self, data):
        tag = data.draw(st.sampled_from(sorted(self.model_tags)))
        prev = self.model_tags.pop(tag)
        self.writer.append("tag", tag=tag, version=None, previous=prev)
        self.model_history.append((tag, None, prev))

    @precondition(lambda self: set(self.model_versions) - set(self.model_tags.values()))
    @rule(data=st.data())
    def delete(self, data):
        v = data.draw(st.sampled_from(sorted(set(self.model_versions) - set(self.model_tags.values()))))
        self.writer.append("delete", version=v)
        del self.model_versions[v]

    @rule()
    def refresh(self):
        self.index.refresh(self.writer.log, self.objects)

    @invariant()
    def fold_matches_model(self):
        if not hasattr(self, "writer"):
            return
        state = fold("r", self.writer.log.read_all())
        assert {v: r.image for v, r in state.versions.items()} == self.model_versions
        assert state.tags == self.model_tags
        assert [(m.tag, m.version, m.previous) for m in state.tag_history] == self.model_history
        assert state.latest == (max(self.model_versions) if self.model_versions else None)

    def teardown(self):
        if not hasattr(self, "writer"):
            return
        self.index.refresh(self.writer.log, self.objects)
        rebuilt = Index(f"{self.tmp}/rebuilt.sqlite3")
        rebuilt.refresh(self.writer.log, self.objects)
        assert rebuilt.dump() == self.index.dump()
        live = {r["version"]: r["image"] for r in self.index.versions("p", "r")}
        assert live == self.model_versions
        assert self.index.tags("p", "r") == self.model_tags
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)


# Every step of an S3 example is a few real requests (and the invariant re-reads the whole log):
# fewer, shorter examples there keep the suite fast; memory and folder explore widely.
EXAMPLES = {"memory": (30, 25), "folder": (30, 25), "moto": (6, 15), "seaweedfs": (6, 15)}


def test_log_machine(store_factory):
    examples, steps = EXAMPLES[store_factory.kind]
    run_state_machine_as_test(
        lambda: LogMachine(store_factory),
        settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                          suppress_health_check=list(HealthCheck), database=None))
