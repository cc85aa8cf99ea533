"""A spool is fsynced only where the backend links it into place (a folder store); a spool that is
only a source to upload (S3, memory: spooled in the system temp directory) is not."""

from __future__ import annotations

import hashlib
import os

import roro
from roro.objects import store as objects_store
from roro.objects.store import HashingWriter


class FsyncSpy:
    def __init__(self, monkeypatch):
        self.fds: list[int] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            self.fds.append(fd)
            real(fd)

        monkeypatch.setattr(objects_store.os, "fsync", fsync)


def test_spool_in_a_backend_directory_is_fsynced(tmp_path, monkeypatch):
    spy = FsyncSpy(monkeypatch)
    w = HashingWriter(str(tmp_path))
    w.write(b"model bytes")
    assert w.finish() == "sha256:" + hashlib.sha256(b"model bytes").hexdigest()
    assert len(spy.fds) == 1
    w.discard()


def test_spool_in_the_system_temp_directory_is_not_fsynced(monkeypatch):
    spy = FsyncSpy(monkeypatch)
    w = HashingWriter(None)
    w.write(b"model bytes")
    assert w.finish() == "sha256:" + hashlib.sha256(b"model bytes").hexdigest()
    assert spy.fds == []
    w.discard()


def test_saves_fsync_their_spool_on_a_folder_store_only(tmp_path, monkeypatch):
    spy = FsyncSpy(monkeypatch)
    folder = roro.Project("p", str(tmp_path / "store")).get_model_repository("m")
    folder.new_model_image({"w": b"x" * 1000}).save()
    assert spy.fds, "a folder store's spooled model was not fsynced"
    spy.fds.clear()
    memory = roro.Project("p", f"memory://spool-{os.getpid()}").get_model_repository("m")
    memory.new_model_image({"w": b"x" * 1000}).save()
    assert spy.fds == []
    assert memory.get_model() == {"w": b"x" * 1000}
