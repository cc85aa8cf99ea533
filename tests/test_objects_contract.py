"""The object-store contract, run unchanged against every backend."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roro.digests import digest_bytes, parse_digest
from roro.errors import IntegrityError, InvalidNameError, NotFoundError
from roro.objects import ObjectStore, canonical_json
from roro.storage import open_backend
from roro.storage.layout import object_key


@pytest.fixture
def objects(store_url):
    return ObjectStore(open_backend(store_url))


def corrupt(objects: ObjectStore, digest: str, data: bytes) -> None:
    """Replace an object's bytes behind the store's back (through the raw backend)."""
    key = object_key(digest)
    objects.backend.delete(key)
    objects.backend.put(key, data)


def test_put_bytes_named_by_sha256(objects):
    d = objects.put_bytes(b"hello")
    assert d == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert objects.read(d) == b"hello"
    assert objects.has(d) and objects.size(d) == 5


def test_key_layout_is_pure_function_of_digest():
    d = digest_bytes(b"x")
    h = d.split(":")[1]
    assert object_key(d) == f"objects/sha256/{h[:2]}/{h[2:]}"


def test_folder_object_file_sha256sum_equals_name(tmp_path):
    objects = ObjectStore(open_backend(str(tmp_path / "s")))
    d = objects.put_bytes(b"some bytes")
    path = tmp_path / "s" / object_key(d)
    assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == d


def test_spool_streams_and_dedups(objects):
    chunks = [bytes([i]) * 100_000 for i in range(5)]
    s = objects.spool_writer(lambda w: [w.write(c) for c in chunks])
    assert s.digest == digest_bytes(b"".join(chunks)) and s.size == 500_000
    assert objects.put_spooled(s) is True
    s.discard()
    again = objects.spool_stream(io.BytesIO(b"".join(chunks)))
    assert objects.put_spooled(again) is False  # already present: not uploaded again
    again.discard()
    with objects.open_verified(s.digest) as f:
        assert f.read() == b"".join(chunks)


def test_missing_object(objects):
    d = digest_bytes(b"never stored")
    with pytest.raises(NotFoundError) as e:
        objects.read(d)
    assert e.value.digest == d
    with pytest.raises(NotFoundError):
        objects.open_verified(d)


def test_corrupted_object_raises_integrity_error_naming_it(objects):
    d = objects.put_bytes(b"original bytes")
    corrupt(objects, d, b"originaL bytes")
    with pytest.raises(IntegrityError) as e:
        objects.read(d)
    assert e.value.digest == d and e.value.actual == digest_bytes(b"originaL bytes")
    assert d in str(e.value)
    with pytest.raises(IntegrityError):
        objects.open_verified(d)
    with pytest.raises(IntegrityError):
        objects.verify(d)


def test_list_digests(objects):
    ds = {objects.put_bytes(bytes([i])) for i in range(5)}
    assert set(objects.list_digests()) == ds


@pytest.mark.parametrize("bad", ["sha256:XYZ", "md5:" + "0" * 32, "sha256:" + "A" * 64,
                                 "sha256:" + "0" * 63, "../../etc/passwd", None, 42])
def test_bad_digests_refused(objects, bad):
    with pytest.raises(InvalidNameError):
        parse_digest(bad)
    with pytest.raises(InvalidNameError):
        objects.read(bad)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=5000))
def test_put_read_roundtrip_property(objects, data):
    d1 = objects.put_bytes(data)
    d2 = objects.put_bytes(data)  # idempotent
    assert d1 == d2 == digest_bytes(data)
    assert objects.read(d1) == data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=8), st.randoms())
def test_canonical_json_ignores_key_order(value, rnd):
    items = list(value.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert canonical_json(shuffled) == canonical_json(value)
    assert digest_bytes(canonical_json(shuffled)) == digest_bytes(canonical_json(value))
    assert json.loads(canonical_json(value)) == value


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
