"""The fast path of ``parse_event`` (the exact shapes roro writes, one regular expression) and the
lazily parsed manifests of a refresh give exactly what the full parser and an eager parse give:
the same events on valid, unusual and corrupted bytes (the full parser runs for anything unusual,
and decides every error), and the same index rows on a store with both kinds of events."""

from __future__ import annotations

import os
import random

import pytest
from support.history import MODEL, manifest

from roro.digests import digest_bytes
from roro.errors import IntegrityError
from roro.objects.canonical import canonical_json
from roro.project import Project
from roro.refs import events as events_module
from roro.refs.events import _parse_fast, make_event, parse_event, parse_event_fully
from roro.storage import layout
from roro.storage.layout import log_key, object_key
from roro.store import Store

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "a" * 64
TIME = "2026-11-27T10:00:00.000001Z"

#: Valid events the fast path takes.
USUAL = [
    make_event(1, None, "version", "ana", TIME, version=1, image=D1, comment="v1"),
    make_event(7, D2, "version", "émile ☃", TIME, version=123456, image=D1, comment=""),
    make_event(8, D2, "version", "a", "", version=0, image=D2, comment="\x7f\u2028 ünï"),
    make_event(9, D2, "tag", "ana", TIME, tag="production", version=3, previous=None),
    make_event(9, D2, "tag", "ana", TIME, tag="production", version=None, previous=2),
    make_event(2, D1, "tag", "ana", TIME, tag="x", version=0, previous=0),
]
#: Valid events the fast path leaves to the full parser: escapes, negative or huge numbers,
#: other types, version 2 fields.
UNUSUAL = [
    make_event(3, D1, "version", "ana", TIME, version=2, image=D1, comment='say "hi"\n'),
    make_event(3, D1, "version", "a\\b", TIME, version=2, image=D1, comment="c"),
    make_event(3, D1, "version", "ana", "t\x01", version=2, image=D1, comment="c"),
    make_event(3, D1, "version", "ana", TIME, version=-1, image=D1, comment="c"),
    make_event(3, D1, "version", "ana", TIME, version=10 ** 30, image=D1, comment="c"),
    make_event(3, D1, "tag", "ana", TIME, tag='q"', version=1, previous=None),
    make_event(3, D1, "delete", "ana", TIME, version=2),
    make_event(1, None, "create", "ana", TIME),
    make_event(3, D1, "version", "ana", TIME, version=2, image=D1, comment="c", policy="4:x"),
]


def _same(raw: bytes, seq: int) -> Exception | None:
    """parse_event and parse_event_fully agree on ``raw`` (the same event, or both refuse it with
    the same message); returns the error, if any."""
    try:
        full = parse_event_fully(raw, repository="r", seq=seq)
    except IntegrityError as e:
        with pytest.raises(IntegrityError) as caught:
            parse_event(raw, repository="r", seq=seq)
        assert str(caught.value) == str(e)
        return e
    assert parse_event(raw, repository="r", seq=seq) == full
    return None


def test_the_fast_path_takes_the_usual_shapes_and_gives_the_full_parsers_event():
    for e in USUAL:
        fast = _parse_fast(e.raw, e.seq)
        assert fast is not None, e.raw
        assert fast == parse_event_fully(e.raw, repository="r", seq=e.seq) == e
        assert fast.payload == e.payload and list(fast.payload) == list(e.payload)


def test_unusual_valid_events_go_to_the_full_parser_with_the_same_result():
    for e in UNUSUAL:
        assert _parse_fast(e.raw, e.seq) is None, e.raw
        assert parse_event(e.raw, repository="r", seq=e.seq) == e
    # a usual shape stored at another position: the full parser says why it is wrong
    assert _parse_fast(USUAL[0].raw, 2) is None
    assert "it says it is event 1" in str(_same(USUAL[0].raw, 2))


def test_corrupted_events_are_refused_exactly_as_the_full_parser_refuses_them():
    rng = random.Random(18)
    alphabet = b'{}[]":,\\ 0123456789-.eE+nulltruefalse\x00\x1f\x7f\xc3\xa9\xff' + b"abcdef"
    refused = 0
    for _ in range(3000):
        base = rng.choice(USUAL)
        raw = bytearray(base.raw)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(raw) + 1)
            what = rng.random()
            if what < 0.4 and pos < len(raw):
                raw[pos] = rng.choice(alphabet)
            elif what < 0.7:
                raw[pos:pos] = bytes([rng.choice(alphabet)])
            else:
                del raw[pos:pos + rng.randint(1, 3)]
        refused += _same(bytes(raw), base.seq) is not None
    assert refused > 2500  # nearly every mutation breaks the event; each broke it the same way
    # key order, white space, escapes that decode to the same strings: never canonical
    body = USUAL[0].to_dict()
    for raw in (canonical_json(body).replace(b'"ana"', b'"\\u0061na"'),
                canonical_json(body).replace(b",", b", "),
                b'{"type":"version",' + canonical_json(body)[1:].replace(b',"type":"version"', b""),
                canonical_json({**body, "version": True}),
                canonical_json({**body, "seq": 1.0})):
        assert _parse_fast(raw, 1) is None
        assert _same(raw, 1) is not None


def _odd_history(url: str) -> None:
    """A log mixing the usual events with unusual-but-valid ones (escaped strings, a delete),
    each version with its manifest (one with escapes and a NUL in its metadata)."""
    store = Store(url)
    store.ensure_initialized()
    backend = store.backend
    blob = digest_bytes(MODEL)
    backend.put_bytes_if_absent(object_key(blob), MODEL)
    prev, seq, tag_target = None, 0, None
    comments = ["plain", 'a "quoted"\ncomment', "tab\there", "ünïcödé", "back\\slash", "last"]
    for version, comment in enumerate(comments * 4, 1):
        m = manifest(version, blob)
        if version % 5 == 0:
            m = m.replace(b'"name":"run-', b'"name":"r\\"u\\u0000n-')
        backend.put_bytes_if_absent(object_key(digest_bytes(m)), m)
        seq += 1
        e = make_event(seq, prev, "version", f"ana{version % 3}", f"2026-11-27T10:00:{seq:02d}Z",
                       version=version, image=digest_bytes(m), comment=comment)
        backend.put_if_absent(log_key("p", "r", seq), e.raw)
        prev = e.hash
        if version % 4 == 0:
            seq += 1
            e = make_event(seq, prev, "tag", "bo\\b" if version % 8 else "bob", "t", tag="best",
                           version=version, previous=tag_target)
            tag_target = version
            backend.put_if_absent(log_key("p", "r", seq), e.raw)
            prev = e.hash
    seq += 1
    e = make_event(seq, prev, "delete", "ana", "t", version=2)
    backend.put_if_absent(log_key("p", "r", seq), e.raw)
    store.close()


def _cold_rows(url: str, tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / f"cache-{os.urandom(4).hex()}"))
    for name in os.listdir(url):
        if name.startswith(layout.INDEX_KEY):
            os.remove(os.path.join(url, name))
    store = Store(url)
    try:
        Project("p", store).get_model_repository("r").list_model_images(limit=5)
        return store.index.dump()
    finally:
        store.close()


def test_index_rows_are_the_same_with_and_without_the_fast_path(tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    _odd_history(url)
    fast = _cold_rows(url, tmp_path, monkeypatch)  # from the log: manifests read
    Project("p", url).get_model_repository("r").checkpoint()
    from_checkpoint = _cold_rows(url, tmp_path, monkeypatch)  # manifests handed, parsed lazily
    taken = []
    monkeypatch.setattr(events_module, "_parse_fast", lambda raw, seq: taken.append(seq))
    slow = _cold_rows(url, tmp_path, monkeypatch)
    assert taken  # the fast path was asked, declined, and the full parser ran
    assert fast == slow == from_checkpoint
    assert len(fast["versions"]) == 24 and len(fast["tag_events"]) == 6
    assert fast["versions"][1]["deleted"] == 1
    assert {r["comment"] for r in fast["versions"]} >= {'a "quoted"\ncomment', "back\\slash"}


def test_the_column_json_is_the_encoders():
    from roro.refs.index import _COLUMN_JSON, _column_json
    for value in ({"a": [1, 2.5, None, True, {"x": "é\n\u2028\x00\"\\"}], "b": 1e300, "c": -0.0,
                   "d": 10 ** 40, "ключ": "значение"}, {}, [], [{"name": "a", "size": 3}]):
        assert _column_json(value) == _COLUMN_JSON.encode(value)
