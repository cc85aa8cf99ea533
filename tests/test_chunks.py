"""Chunked blobs (issue 17): a big model is stored as content-defined chunks listed by a chunk
index that the manifest names. Every chunk is verified before any of its bytes reaches the
unpickler (or a caller of ``open_model``); a flipped, missing or forged piece is refused naming
the chunk and the version; a 10 % change stores about 10 % new bytes; a re-save sends nothing
but its manifest and event; fsck, gc, sync and downloads follow the chunks.

Small chunk parameters (``RORO_CHUNKS``, a test-only setting) keep the models a few MiB.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner
from support.trust_helpers import corrupt_object_uncached

import roro
from roro import IntegrityError, NotFoundError, Project, Store
from roro.check import CORRUPT_OBJECT, MISSING_OBJECT, fsck, gc
from roro.cli import main
from roro.objects.canonical import canonical_json
from roro.objects.chunks import CHUNKED_FEATURE, ChunkParams, parse_index, read_index
from roro.storage.layout import feature_key, object_key
from roro.storage.wrappers import CountingBackend

MiB = 1 << 20
#: threshold, min, avg, max: blobs of 64 KiB and up, chunks of 16 KiB on average
SMALL = "65536,4096,16384,65536"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch) -> None:
    monkeypatch.setenv("RORO_CHUNKS", SMALL)


class WritesMarker:
    """Unpickling this writes the marker file: proof that the unpickler reached it."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "pwned"))


def weights(seed: int = 0, n: int = 2 * MiB // 8) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def chunks_of(project: Project, image) -> list[tuple[str, int]]:
    model = image.manifest["model"]
    return read_index(project.store.objects, model["chunks"]["digest"], model["size"]).chunks


@pytest.fixture
def project(real_store_url) -> Project:
    return Project("p", store=real_store_url)


def test_a_big_model_is_stored_as_chunks_and_round_trips(project, tmp_path):
    repo = project.get_model_repository("m")
    w = weights()
    image = repo.new_image({"w": w})
    image.save("first")
    model = image.manifest["model"]
    chunks = chunks_of(project, image)
    assert len(chunks) > 16 and sum(n for _, n in chunks) == model["size"]
    assert max(n for _, n in chunks) <= 65536
    backend = project.store.backend
    assert backend.exists(feature_key(CHUNKED_FEATURE))  # an older roro refuses the store
    assert not backend.exists(object_key(model["digest"]))  # the whole blob is stored nowhere
    assert all(backend.exists(object_key(d)) for d, _ in chunks)
    assert image.bytes_stored >= model["size"] and image.bytes_sent >= image.bytes_stored

    fresh = Project("p", store=project.store.url).get_model_repository("m")
    assert (fresh.get_model(1)["w"] == w).all()
    with fresh.get_model_image(1).open_model() as f:
        data = f.read()
        f.seek(100)
        assert f.read(10) == data[100:110]
    assert hashlib.sha256(data).hexdigest() == model["digest"].split(":")[1]
    # a download is the whole blob, byte for byte: sha256sum of the file = model.digest
    path = fresh.get_model_image(1).download(tmp_path / "m.pkl").model
    assert "sha256:" + hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest() == \
        model["digest"]
    assert fsck(project.store).ok


def test_small_models_stay_single_objects(project):
    image = project.get_model_repository("m").new_image({"w": weights(n=1000)})
    image.save()
    assert "chunks" not in image.manifest["model"]
    assert project.store.backend.exists(object_key(image.manifest["model"]["digest"]))


def save_marked(repo, marker: pathlib.Path):
    """A model whose last bytes unpickle into a write of ``marker``."""
    return repo.new_image({"w": weights(), "z": WritesMarker(marker)}).save("marked")


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_a_flipped_chunk_is_refused_naming_chunk_and_version(project, tmp_path, which):
    repo = project.get_model_repository("m")
    image = save_marked(repo, tmp_path / "control")
    repo.get_model(1)
    assert (tmp_path / "control").exists()  # the control: intact, the unpickler gets there

    image = save_marked(repo, tmp_path / "marker")
    chunks = chunks_of(project, image)
    i = {"first": 0, "middle": len(chunks) // 2, "last": len(chunks) - 1}[which]
    flipped = chunks[i][0]
    corrupt_object_uncached(project.store, flipped)
    fresh = Project("p", store=project.store.url).get_model_repository("m")
    with pytest.raises(IntegrityError) as e:
        fresh.get_model(2)
    assert f"chunk {i} ({flipped}) of the model of m:2" in str(e.value)
    assert e.value.digest == flipped and e.value.actual not in (None, flipped)
    assert not (tmp_path / "marker").exists(), "the unpickler ran past a corrupted chunk"
    with pytest.raises(IntegrityError, match=f"chunk {i} "):
        with fresh.get_model_image(2).open_model() as f:
            f.read()
    with pytest.raises(IntegrityError):
        fresh.get_model_image(2).download(tmp_path / "out.pkl")
    assert not (tmp_path / "out.pkl").exists()
    report = fsck(project.store, read_data=True)
    assert [(p.kind, p.digest, p.object) for p in report.problems] == \
        [(CORRUPT_OBJECT, flipped, f"model chunk {i}")]


def test_a_missing_chunk_is_refused_and_reported(project, tmp_path):
    repo = project.get_model_repository("m")
    image = save_marked(repo, tmp_path / "marker")
    chunks = chunks_of(project, image)
    gone = chunks[3][0]
    project.store.backend.delete(object_key(gone))
    fresh = Project("p", store=project.store.url).get_model_repository("m")
    with pytest.raises(NotFoundError, match=f"chunk 3 \\({gone}\\) of the model of m:1 is "
                                            f"missing"):
        fresh.get_model(1)
    assert not (tmp_path / "marker").exists()
    report = fsck(project.store)
    assert [(p.kind, p.digest, p.object) for p in report.problems] == \
        [(MISSING_OBJECT, gone, "model chunk 3")]


def test_a_forged_chunk_index_is_refused(project, tmp_path):
    """The index is an object named by the manifest: other bytes under its name do not hash to
    it (refused before any chunk is read), and fsck names it; gc then deletes nothing."""
    repo = project.get_model_repository("m")
    image = save_marked(repo, tmp_path / "marker")
    index = image.manifest["model"]["chunks"]["digest"]
    corrupt_object_uncached(project.store, index)
    fresh = Project("p", store=project.store.url).get_model_repository("m")
    with pytest.raises(IntegrityError) as e:
        fresh.get_model(1)
    assert e.value.digest == index
    assert not (tmp_path / "marker").exists()
    report = fsck(project.store)
    assert [(p.kind, p.digest, p.object, p.blocks_gc) for p in report.problems] == \
        [(CORRUPT_OBJECT, index, "model chunk index", True)]


def forged(**changes) -> bytes:
    body = {"chunker": ChunkParams().chunker(), "chunks": [["sha256:" + "a" * 64, 10],
                                                          ["sha256:" + "b" * 64, 20]],
            "size": 30, "type": "roro.chunk-index", "v": 1}
    return canonical_json({**body, **changes})


@pytest.mark.parametrize("data,why", [
    (forged(size=31), "add up to 30 bytes, not 31"),
    (forged(chunks=[["sha256:" + "a" * 64, 30 << 20]], size=30 << 20), "chunk 0 is malformed"),
    (forged(chunks=[["sha256:" + "a" * 64, 0]], size=0), "chunk 0 is malformed"),
    (forged(chunks=[["../../etc/passwd", 30]]), "chunk 0 has no valid digest"),
    (forged(chunks=[["sha256:" + "a" * 64, True]], size=1), "chunk 0 is malformed"),
    (forged(type="roro.image/2"), "not a chunk index"),
    (forged(v=2), "upgrade roro"),
    (b"[1, 2]", "not a chunk index"),
    (b"\xff", "not valid JSON"),
])
def test_a_malformed_chunk_index_is_refused(data, why):
    with pytest.raises(IntegrityError, match="not a valid chunk index") as e:
        parse_index(data, "sha256:" + "c" * 64)
    assert why in str(e.value)


def test_an_index_that_disagrees_with_the_manifest_is_refused():
    with pytest.raises(IntegrityError, match="describes 30 bytes, but the manifest says 31"):
        parse_index(forged(), "sha256:" + "c" * 64, 31)


def test_a_ten_percent_change_stores_about_ten_percent(project):
    repo = project.get_model_repository("m")
    w = weights()
    first = repo.new_image({"w": w})
    first.save()
    size = first.manifest["model"]["size"]
    tuned = w.copy()
    tuned[len(w) // 2:len(w) // 2 + len(w) // 10] += 1.0  # one contiguous 10 % of the weights
    second = repo.new_image({"w": tuned})
    second.save()
    assert 0.10 * size <= second.bytes_stored <= 0.15 * size
    assert second.bytes_sent <= 0.15 * size
    old, new = {d for d, _ in chunks_of(project, first)}, chunks_of(project, second)
    assert sum(n for d, n in new if d not in old) <= 0.15 * size
    assert (repo.get_model(2)["w"] == tuned).all() and (repo.get_model(1)["w"] == w).all()


def test_a_resave_sends_nothing_but_manifest_and_event(project):
    w = weights()
    project.get_model_repository("m").new_image({"w": w}).save()
    counting = CountingBackend(Store(project.store.url).backend)
    again = Project("p", store=Store(counting)).get_model_repository("m").new_image({"w": w})
    again.save()
    manifest_size = len(canonical_json(again.manifest))
    assert again.bytes_stored == again.bytes_sent == manifest_size
    writes = {op: n for op, n in counting.counts.items() if op.startswith("put")}
    assert writes == {"put_bytes_if_absent": 1, "put_if_absent": 1}, counting.counts


def test_gc_keeps_shared_chunks_and_collects_the_rest(project, no_gc_floor):
    repo = project.get_model_repository("m")
    w = weights()
    first = repo.new_image({"w": w})
    first.save()
    tuned = w.copy()
    tuned[:len(w) // 10] = 0.0
    second = repo.new_image({"w": tuned})
    second.save()
    old, new = set(chunks_of(project, first)), set(chunks_of(project, second))
    repo.delete_version(1)
    report = gc(project.store, grace_seconds=0)
    deleted = {o.digest for o in report.deleted}
    assert {d for d, _ in old - new} <= deleted
    assert not deleted & {d for d, _ in new}
    assert second.manifest["model"]["chunks"]["digest"] not in deleted
    assert (Project("p", store=project.store.url).get_model_repository("m")
            .get_model(2)["w"] == tuned).all()
    assert fsck(project.store, read_data=True).ok


def test_sync_copies_only_the_missing_chunks(real_store_url, tmp_path):
    src = Project("p", store=str(tmp_path / "src"))
    repo = src.get_model_repository("m")
    w = weights()
    repo.new_image({"w": w}).save()
    first = roro.sync(src.store.url, real_store_url)
    size = repo.get_model_image(1).manifest["model"]["size"]
    assert first.ok and first.bytes_transferred >= size
    tuned = w.copy()
    tuned[len(w) // 3:len(w) // 3 + len(w) // 10] *= 2
    repo.new_image({"w": tuned}).save()
    second = roro.sync(src.store.url, real_store_url)
    assert second.ok and second.bytes_transferred <= 0.15 * size + 4096
    dst = Project("p", store=real_store_url).get_model_repository("m")
    assert (dst.get_model(2)["w"] == tuned).all()
    assert fsck(Store(real_store_url), read_data=True).ok


def test_cli_save_reports_bytes_sent_and_stored(tmp_path):
    store = str(tmp_path / "store")
    path = tmp_path / "weights.bin"
    path.write_bytes(np.random.default_rng(1).bytes(MiB))
    runner = CliRunner()
    first = runner.invoke(main, ["--store", store, "models:save", "m", str(path), "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["bytes_stored"] >= MiB and doc["bytes_sent"] >= MiB
    again = runner.invoke(main, ["--store", store, "models:save", "m", str(path)])
    assert again.exit_code == 0
    assert "newly stored" in again.stderr and "sent" in again.stderr
    image = Project("default", store=store).get_model_repository("m").get_model_image(2)
    assert "chunks" in image.manifest["model"]


# -- resuming after kill -9 ---------------------------------------------------------------------------
ROOT = pathlib.Path(__file__).resolve().parent.parent
#: 64 MiB models in chunks of 256 KiB on average (~256 chunks)
RESUMABLE = "1048576,65536,262144,1048576"
KILL_SCRIPT = """
import os, signal, sys
import numpy as np
import roro
from roro.storage.wrappers import CountingBackend

action, url, op, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

class KillAt(CountingBackend):
    def _count(self, name):
        super()._count(name)
        if name == op and self.counts[name] > after:
            os.kill(os.getpid(), signal.SIGKILL)

repo = roro.Project("p", store=roro.Store(KillAt(roro.Store(url).backend))) \\
    .get_model_repository("big")
if action == "save":
    repo.new_image({"w": np.random.default_rng(7).random(8 << 20)}).save()
else:
    repo.get_model()
sys.exit(3)
"""


def killed(tmp_path, *args: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def test_a_save_killed_midway_resumes_sending_only_the_missing_chunks(real_store_url, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("RORO_CHUNKS", RESUMABLE)
    w = np.random.default_rng(7).random(8 << 20)  # 64 MiB, as the killed process saves it
    killed(tmp_path, "save", real_store_url, "put_bytes_if_absent", "100")
    store = Store(real_store_url)
    assert not Project("p", store=store).get_model_repository("big").exists()
    before = set(store.objects.list_digests())
    assert len(before) >= 90  # chunks the killed save stored (no version: no event was written)
    image = Project("p", store=store).get_model_repository("big").new_image({"w": w})
    image.save()
    size = image.manifest["model"]["size"]
    chunks = chunks_of(Project("p", store=store), image)
    stored_before = sum(n for d, n in chunks if d in before)
    assert stored_before >= 0.3 * size
    # the rerun sends exactly the chunks the killed save had not stored, its index and manifest
    index_and_manifest = image.manifest["model"]["chunks"]["size"] + 64 * 1024
    assert size - stored_before <= image.bytes_sent <= size - stored_before + index_and_manifest
    assert (Project("p", store=real_store_url).get_model_repository("big")
            .get_model()["w"] == w).all()


def test_a_load_killed_midway_resumes_fetching_only_the_missing_chunks(tmp_path, monkeypatch,
                                                                      seaweedfs_endpoint):
    from support.s3servers import create_bucket, use_endpoint
    use_endpoint(monkeypatch, seaweedfs_endpoint)
    monkeypatch.setenv("RORO_CHUNKS", RESUMABLE)
    url = f"s3://{create_bucket(seaweedfs_endpoint)}/big"
    w = np.random.default_rng(7).random(8 << 20)
    repo = Project("p", store=url).get_model_repository("big")
    size = repo.new_image({"w": w}).save().manifest["model"]["size"]
    monkeypatch.setenv("RORO_CACHE_DIR", str(tmp_path / "another-machine"))
    killed(tmp_path, "load", url, "get_into", "120")  # each chunk: one GET into the buffer
    counting = CountingBackend(Store(url).backend)
    model = Project("p", store=Store(counting)).get_model_repository("big").get_model()
    assert (model["w"] == w).all()
    # the chunks the killed load fetched and verified are in the cache: not fetched again
    assert counting.bytes_read <= size - 0.3 * size, counting.bytes_read


def test_a_big_attachment_is_chunked_too(project, tmp_path):
    data = np.random.default_rng(3).bytes(MiB)
    repo = project.get_model_repository("m")
    image = repo.new_image({"w": weights(n=100)})
    image.attach("data/train.bin", data)
    image.attach("small.txt", b"small")
    image.save()
    big, small = image.manifest["attachments"]
    assert "chunks" in big and "chunks" not in small
    assert "chunks" not in image.manifest["model"]
    fresh = Project("p", store=project.store.url).get_model_repository("m").get_model_image(1)
    assert fresh.get_attachment("data/train.bin").read() == data
    [path, _] = fresh.download_attachments(tmp_path / "out")
    assert pathlib.Path(path).read_bytes() == data
    chunks = read_index(project.store.objects, big["chunks"]["digest"], big["size"]).chunks
    corrupt_object_uncached(project.store, chunks[1][0])
    with pytest.raises(IntegrityError, match="chunk 1 .* of attachment 'data/train.bin' of m:1"):
        Project("p", store=project.store.url).get_model_repository("m").get_model_image(1) \
            .get_attachment("data/train.bin").read()
    report = fsck(project.store, read_data=True)
    assert [(p.kind, p.object) for p in report.problems] == \
        [(CORRUPT_OBJECT, "attachment data/train.bin chunk 1")]
