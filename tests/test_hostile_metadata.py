"""Hostile metadata: deep nesting, huge values, NaN, lone surrogates, a million keys → a clear
InvalidMetadataError within the documented limits (roro/metadata.py), quickly, in bounded memory."""

from __future__ import annotations

import math
import time
import tracemalloc

import pytest
from conftest import make_store_url

from roro import IntegrityError, InvalidMetadataError, Project
from roro.metadata import MAX_DEPTH, MAX_KEYS, MAX_TOTAL_BYTES, MAX_VALUE_BYTES
from roro.objects.canonical import loads
from roro.refs.events import parse_event

MiB = 1 << 20


@pytest.fixture(params=["memory", "folder"])
def image(request, tmp_path):
    """Metadata is refused when set, before any store is touched, so local stores suffice; and
    tracemalloc would count the allocations of an in-process moto server's threads too."""
    url = make_store_url(request.param, tmp_path)
    return Project("p", store=url).get_model_repository("m").new_image("model")


def nested_list(depth):
    v: list = []
    for _ in range(depth - 1):
        v = [v]
    return v


def nested_dict(depth):
    v: dict = {}
    for _ in range(depth - 1):
        v = {"k": v}
    return v


def refused(call, match, seconds=1.0, peak_bytes=8 * MiB):
    """``call()`` raises InvalidMetadataError matching ``match``, within ``seconds`` of this
    process's CPU time (not wall time: a loaded machine must not fail it, while a quadratic or
    item-by-item refusal still takes many times the bound) and allocating at most ``peak_bytes``
    while doing so (the input itself is built before measuring)."""
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(InvalidMetadataError, match=match) as e:
            call()
    finally:
        elapsed = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s of CPU"
    assert peak < peak_bytes, f"allocated {peak / MiB:.1f} MiB"
    return e.value


def setter(image, key, value):
    def call():
        image[key] = value
    return call


@pytest.mark.parametrize("build", [nested_list, nested_dict])
def test_deep_nesting(image, build):
    image["ok"] = build(MAX_DEPTH)
    hostile = build(200_000)
    refused(setter(image, "deep", hostile), f"nested deeper than {MAX_DEPTH}")
    refused(setter(image, "deep", build(MAX_DEPTH + 1)), "nested deeper")
    assert "deep" not in image


@pytest.mark.parametrize("build", [
    lambda: "x" * (100 * MiB),                        # one huge string: refused without a copy
    lambda: ["x" * (MiB // 2)] * 3,                   # many strings adding up
    lambda: list(range(10_000_000)),                  # a huge list
    lambda: {str(i): i for i in range(1_000_000)},    # a million keys inside a value
    lambda: {"k" * MiB + "k": 1},                     # a huge key inside a value
], ids=["huge-string", "many-strings", "huge-list", "million-key-dict", "huge-inner-key"])
def test_huge_values(image, build):
    """Regression: a huge list or dict was queued item by item before the size check, so a
    10-million-item list took seconds and ~1 GB of memory to refuse."""
    refused(setter(image, "big", build()), "larger than 1 MiB")
    assert "big" not in image


def test_value_at_the_limit_is_accepted(image):
    image["edge"] = "x" * (MAX_VALUE_BYTES - 2)  # + 2 quotes = exactly 1 MiB of JSON
    refused(setter(image, "over", "x" * (MAX_VALUE_BYTES - 1)), "larger than 1 MiB")


def test_total_metadata_limit(image):
    for i in range(MAX_TOTAL_BYTES // MAX_VALUE_BYTES - 1):
        image[f"k{i}"] = "x" * (MAX_VALUE_BYTES - 10)
    refused(setter(image, "last", "x" * (MAX_VALUE_BYTES - 10)), "at most 4194304", seconds=2)
    with pytest.raises(InvalidMetadataError):
        image.set_metadata({f"k{i}": "x" * (MAX_VALUE_BYTES - 10) for i in range(5)})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, {"a": math.nan}],
                                   {"x": [0.5, -math.inf]}])
def test_nan_and_infinity(image, value):
    refused(setter(image, "score", value), "NaN and infinity are not JSON")


@pytest.mark.parametrize("key, value", [
    ("k", "lone \ud800 surrogate"), ("k", ["ok", {"\udcff": 1}]), ("k", {"a": ["\udfff"]}),
    ("key \ud800", 1),
])
def test_lone_surrogates(image, key, value):
    refused(setter(image, key, value), "not valid Unicode")


def test_a_million_keys(image):
    keys = {f"key-{i}": i for i in range(1_000_000)}
    err = refused(lambda: image.set_metadata(keys), f"too many metadata keys .* at most {MAX_KEYS}",
                  seconds=0.5, peak_bytes=MiB)
    assert "1000000" in str(err)


def test_ten_thousand_keys_one_by_one_is_fast(image):
    """Regression: every ``image[key] = value`` re-serialized all metadata, so setting 10,000 keys
    one at a time took ~17 s (quadratic)."""
    start = time.process_time()  # CPU time, as in refused()
    for i in range(MAX_KEYS):
        image[f"k{i}"] = i
    assert time.process_time() - start < 3
    refused(setter(image, "one-too-many", 1), "too many metadata keys")
    image["k0"] = "replacing a key is fine at the limit"
    del image["k1"]
    image["now-fits"] = 1
    image.save()
    assert len(image.get_metadata()) == MAX_KEYS + 2  # + timestamp and author


@pytest.mark.parametrize("value, match", [
    (2**63, "64-bit"), (-(2**63) - 1, "64-bit"), ({1: "x"}, "keys must be strings"),
    ({b"k": 1}, "keys must be strings"), (b"bytes", "not a JSON value"), ({1, 2}, "not a JSON"),
    (object(), "not a JSON value"), ([1, 2, (3, complex(1, 1))], "not a JSON value"),
])
def test_values_that_are_not_json(image, value, match):
    refused(setter(image, "k", value), match)


@pytest.mark.parametrize("key", ["", "x" * 257, "a\x00b", "a\nb", "timestamp", "author", 7, None])
def test_bad_keys(image, key):
    refused(setter(image, key, 1), "metadata key")


def test_a_refused_value_leaves_metadata_unchanged(image):
    image["a"] = 1
    refused(setter(image, "a", math.nan), "NaN")
    refused(setter(image, "b", nested_list(100)), "nested")
    assert image["a"] == 1 and "b" not in image
    image.save()
    assert image.repository.get_model_image().get_metadata()["a"] == 1


def test_comment_limits(image):
    with pytest.raises(InvalidMetadataError, match="64 KiB"):
        image.save(comment="x" * (64 * 1024 + 1))
    with pytest.raises(InvalidMetadataError, match="Unicode"):
        image.save(comment="lone \ud800")
    with pytest.raises(InvalidMetadataError, match="string"):
        image.save(comment=b"bytes")
    assert not image.saved


def test_hostile_json_from_the_store_is_an_integrity_error(image):
    """Bytes read back from a store are hostile too: deep nesting used to escape as a
    RecursionError from json.loads instead of a RoroError."""
    deep = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(deep)
    store = image.repository.project.store
    digest = store.objects.put_bytes(deep)
    with pytest.raises(IntegrityError, match="not valid JSON"):
        store.objects.read_json(digest)
    with pytest.raises(IntegrityError, match="not valid JSON"):
        parse_event(deep, repository="m", seq=1)
    with pytest.raises(IntegrityError, match="not valid JSON"):
        parse_event(b'{"seq": NaN}', repository="m", seq=1)
