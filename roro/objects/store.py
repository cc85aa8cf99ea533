"""Content-addressed objects over a storage backend: streaming writes, verified reads.

Every object is stored under the key of its sha256 digest; every read re-hashes the bytes and raises
:class:`~roro.errors.IntegrityError` naming the object before any byte is returned to the caller.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from ..digests import digest_bytes, digest_of_hasher, digest_stream, new_hasher, parse_digest
from ..errors import IntegrityError, NotFoundError
from ..localfs import quiet_unlink, write_failure, write_pieces
from ..storage import Backend, IrregularKeyError, KeyInfo, KeyNotFoundError, TooLargeError
from ..storage.layout import OBJECTS_PREFIX, digest_from_object_key, object_key
from .canonical import canonical_json, loads
from .chunks import (
    READ_THREADS_LOCAL,
    READ_THREADS_REMOTE,
    ChunkedReader,
    ChunkIndex,
    chunk_params,
    index_of,
    read_index,
)

CHUNK = 1 << 20
#: What HashingWriter.write takes: anything with the buffer protocol (bytes, memoryview, the
#: pickle.PickleBuffer of protocol 5), as typing.Buffer names it from Python 3.12 on.
Buffer = Any


class HashingWriter:
    """A binary file-like sink that hashes bytes while writing them to a temporary file.

    In a backend's own ``directory`` (a folder store, which links the file into place) the file
    is fsynced by :meth:`finish`; a spool in the system's temp directory (``directory`` None: S3,
    memory) is only a source to upload or copy, whose durability is the backend's business, so
    it is not (an fsync of a 128 MiB spool cost ~0.3 s of a 1.6 s S3 save).
    """

    def __init__(self, directory: str | None):
        self._durable = directory is not None
        self.size = 0
        with self._failing(directory or tempfile.gettempdir()):
            fd, self.path = tempfile.mkstemp(dir=directory, prefix="obj-", suffix=".tmp")
        self._file = os.fdopen(fd, "wb")
        self._hasher = new_hasher()

    @contextmanager
    def _failing(self, path: str, more: int = 0) -> Iterator[None]:
        """A full disk or a read-only spool directory as one line naming the path and, for a
        full disk, at least the bytes needed (what was written, and ``more``)."""
        try:
            yield
        except OSError as e:
            failure = write_failure(e, path, "the spool directory", self.size + more,
                                    at_least=True)
            if failure is None:
                raise
            raise failure from e

    def write(self, data: Buffer) -> int:
        """Write a bytes-like object: bytes, bytearray, a memoryview, or the
        :class:`pickle.PickleBuffer` that protocol 5 hands over for large buffers (a numpy
        array's memory, written without a copy); returns the number of bytes."""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
        self._hasher.update(view)
        with self._failing(self.path, view.nbytes):
            write_pieces(self._file, view)
        self.size += view.nbytes
        return view.nbytes

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._file.flush()

    def finish(self) -> str:
        """Flush (and fsync, in a backend's directory) the file; return the digest of
        everything written."""
        with self._failing(self.path):
            self._file.flush()
            # A blob that will be chunked is never linked into place: its chunks are written
            # (and fsynced) on their own, so its spool needs no fsync.
            if self._durable and self.size < chunk_params().threshold:
                os.fsync(self._file.fileno())
            self._file.close()
        return digest_of_hasher(self._hasher)

    def discard(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:  # flushing what was buffered onto a full disk: it goes anyway
                pass
        quiet_unlink(self.path)


class SpooledObject:
    """Bytes hashed into a local temporary file, ready to be put (possibly later)."""

    def __init__(self, path: str, digest: str, size: int):
        self.path, self.digest, self.size = path, digest, size

    def discard(self) -> None:
        quiet_unlink(self.path)


class ObjectStore:
    """Immutable, verified objects named by their digest."""

    def __init__(self, backend: Backend, cache: Any = None):
        self.backend = backend
        self.cache = cache  # an optional local cache of verified objects (remote stores)

    # -- writing ---------------------------------------------------------------------------------
    def spool_dir(self) -> str | None:
        return self.backend.tempdir()

    @contextmanager
    def spool(self) -> Iterator[HashingWriter]:
        """Write bytes into a hashing temp file; yields the writer. Use :meth:`finish_spool` after."""
        writer = HashingWriter(self.spool_dir())
        try:
            yield writer
        except BaseException:
            writer.discard()
            raise

    def spool_stream(self, stream: BinaryIO) -> SpooledObject:
        """Copy a readable binary stream into a hashing temp file."""
        with self.spool() as w:
            shutil.copyfileobj(stream, w, CHUNK)
        return SpooledObject(w.path, w.finish(), w.size)

    def spool_writer(self, fill: Callable[[HashingWriter], object]) -> SpooledObject:
        """Call ``fill(writer)`` to stream bytes (e.g. ``cloudpickle.dump``) into a hashing temp file."""
        with self.spool() as w:
            fill(w)
        return SpooledObject(w.path, w.finish(), w.size)

    def put_spooled(self, obj: SpooledObject) -> bool:
        """Store a spooled object unless present (dedup); True if its bytes were written now.
        A present object is left as it is (not re-sent, not refreshed: see docs/trust.md for
        how a save relies on it safely). The spool file is left for the caller to discard.
        On a folder store, anything at its key that cannot be the object (a truncated copy, a
        dangling symbolic link, a FIFO) is replaced, and a directory is refused with its path."""
        return self.backend.put_file_if_absent(object_key(obj.digest), obj.path)

    def create_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store small bytes (a manifest) unless present: ``(digest, written now)``."""
        digest = digest_bytes(data)
        return digest, self.backend.put_bytes_if_absent(object_key(digest), data)

    def put_bytes(self, data: bytes) -> str:
        """Store small bytes unless present; returns the digest."""
        return self.create_bytes(data)[0]

    def put_json(self, value: Any) -> str:
        return self.put_bytes(canonical_json(value))

    # -- reading ---------------------------------------------------------------------------------
    def has(self, digest: str, size: int | None = None) -> bool:
        """Is the object stored: a key that is a regular file (on a folder store), of ``size``
        bytes if given? Anything else at its key (a FIFO, a symbolic link, a truncated copy) is
        not the object."""
        try:
            info = self.backend.stat(object_key(digest))
        except (KeyNotFoundError, IrregularKeyError):
            return False
        return size is None or info.size == size

    def info(self, digest: str) -> KeyInfo | None:
        """Size and modification time of a stored object, or None if it is absent."""
        try:
            return self.backend.stat(object_key(digest))
        except KeyNotFoundError:
            return None

    def size(self, digest: str) -> int:
        try:
            return self.backend.stat(object_key(digest)).size
        except KeyNotFoundError:
            raise _missing(digest) from None

    def read(self, digest: str, max_size: int | None = None, keep: bool = True) -> bytes:
        """The verified bytes of a (small) object; :class:`~roro.storage.TooLargeError` (an
        IntegrityError) without reading it if it holds more than ``max_size`` bytes. Bytes
        fetched from a remote store go into the local cache, unless ``keep`` is False."""
        parse_digest(digest)
        if self.cache is not None:
            data = self.cache.read(digest, max_size)
            if data is not None:
                return data
        try:
            data = self.backend.get(object_key(digest), max_size)
        except KeyNotFoundError:
            raise _missing(digest) from None
        actual = digest_bytes(data)
        if actual != digest:
            raise _mismatch(digest, actual)
        if keep and self.cache is not None:
            self.cache.write(digest, data)
        return data

    def read_as(self, digest: str, max_size: int, what: str) -> bytes:
        """:meth:`read` of an object that must be a ``what`` (``image manifest``, ``chunk
        index``) of at most ``max_size`` bytes: a bigger one is an IntegrityError saying it is
        no valid ``what``, without reading it."""
        try:
            return self.read(digest, max_size)
        except TooLargeError as e:
            raise IntegrityError(f"object {digest} is not a valid {what}: it is {e.size} bytes, "
                                 f"more than the {max_size} bytes allowed",
                                 digest=digest) from None

    def read_json(self, digest: str) -> Any:
        data = self.read(digest)
        try:
            return loads(data)
        except ValueError as e:
            raise IntegrityError(f"object {digest} is not valid JSON: {e}", digest=digest) from None

    def open_verified(self, digest: str, keep: bool = True) -> BinaryIO:
        """A binary file of the object's bytes, fully re-hashed before it is handed out.

        A folder store hands out its own (read-only) file; a remote store downloads into the local
        cache (or an anonymous temporary file: with ``keep`` False, for an object larger than the
        cache may hold) first. Either way the caller only sees verified bytes.
        """
        parse_digest(digest)
        if self._local_path(digest) is not None:
            f = self._open_in_place(digest)
            try:
                _verify_file(f, digest)
                f.seek(0)
            except BaseException:
                f.close()
                raise
            return f
        if self.cache is not None and keep:
            return self.cache.open(digest, self._download_verified)
        fd, tmp = tempfile.mkstemp(prefix="roro-get-")
        os.close(fd)
        try:
            self._download_verified(digest, tmp)
            return open(tmp, "rb")
        finally:
            os.unlink(tmp)  # the open file lives on until closed

    def open_blob(self, entry: dict[str, Any], what: str, as_file: bool = False) -> BinaryIO:
        """A manifest's blob entry (``digest``, ``size``, maybe ``chunks``), opened verified: a
        single object as :meth:`open_verified`; a chunked blob streamed through a
        :class:`~roro.objects.chunks.ChunkedReader` (each chunk verified before any of its
        bytes is handed out; errors name the chunk and ``what``, e.g. the version). With
        ``as_file``, a chunked blob of a remote store that the cache may hold comes back as one
        local file instead (:meth:`_open_assembled`: for formats that memory-map it)."""
        found = index_of(entry)
        if found is None:
            return self.open_verified(entry["digest"], keep=self.cache is None
                                      or self.cache.fits(entry["size"]))
        index = read_index(self, found[0], entry["size"])
        threads = READ_THREADS_REMOTE if self.backend.remote else READ_THREADS_LOCAL
        keep = self.cache is not None and self.cache.fits(entry["size"])
        if not as_file and self.cache is not None:
            whole = self.cache.open_if_present(entry["digest"])  # reassembled by an as_file open
            if whole is not None:
                return whole
        if as_file and keep and self.cache is not None:
            def assemble(digest: str, path: str) -> None:
                self._assemble(index, what, threads, path, digest)
            return cast(BinaryIO, self.cache.open(entry["digest"], assemble))
        return cast(BinaryIO, io.BufferedReader(ChunkedReader(self, index, what, threads, keep),
                                                 buffer_size=CHUNK))

    def _assemble(self, index: ChunkIndex, what: str, threads: int, path: str,
                  digest: str) -> None:
        """Write the blob of ``index`` into the file ``path``: its chunks read straight into
        the file's pages (a shared memory map), each verified there; then the whole file is
        hashed against ``digest`` (the name it is cached under). The chunks themselves are not
        cached: the file is."""
        import mmap  # only a load of a memory-mapped format needs it
        import traceback  # likewise (clear_frames of an error that holds slices of the map)
        with open(path, "r+b") as f:
            f.truncate(index.size)
            if index.size:
                mapped = mmap.mmap(f.fileno(), index.size)
                view = memoryview(mapped)
                try:
                    with ChunkedReader(self, index, what, threads, keep=False) as reader:
                        got = reader.readinto(view)
                except BaseException as e:
                    # the error's frames hold slices of the map: let go of them, so that it
                    # can be closed (and the error, not a BufferError, is what the caller sees)
                    traceback.clear_frames(e.__traceback__)
                    raise
                finally:
                    view.release()
                    mapped.close()
                if got != index.size:
                    raise IntegrityError(f"{what} ended after {got} of its {index.size} bytes",
                                         digest=digest)
            f.seek(0)
            _verify_file(cast(BinaryIO, f), digest)

    def _download_verified(self, digest: str, path: str) -> None:
        try:
            self.backend.download(object_key(digest), path)
        except KeyNotFoundError:
            raise _missing(digest) from None
        with open(path, "rb") as f:
            _verify_file(f, digest)

    def _local_path(self, digest: str) -> str | None:
        return self.backend.local_path(object_key(digest))

    def _open_in_place(self, digest: str) -> BinaryIO:
        """The object's own file in a local store, opened by the backend (a regular file only,
        never through a symbolic link)."""
        try:
            return self.backend.open(object_key(digest))
        except KeyNotFoundError:
            raise _missing(digest) from None

    def verify(self, digest: str) -> None:
        """Re-hash an object in the store itself (never the cache); IntegrityError or NotFoundError."""
        if self._local_path(digest) is not None:
            with self._open_in_place(digest) as f:
                _verify_file(f, digest)
            return
        fd, tmp = tempfile.mkstemp(prefix="roro-verify-")
        os.close(fd)
        try:
            self._download_verified(digest, tmp)
        finally:
            os.unlink(tmp)

    def list_digests(self) -> Iterator[str]:
        for key in self.backend.list(OBJECTS_PREFIX):
            d = digest_from_object_key(key)
            if d is not None:
                yield d

    def delete(self, digest: str) -> None:
        self.backend.delete(object_key(digest))


def _verify_file(f: BinaryIO, digest: str) -> None:
    actual = digest_stream(f)[0]
    if actual != digest:
        raise _mismatch(digest, actual)


def _missing(digest: str) -> NotFoundError:
    return NotFoundError(f"object {digest} is missing from the store; run 'roro fsck' to check it",
                         digest=digest)


def _mismatch(digest: str, actual: str) -> IntegrityError:
    return IntegrityError(f"object {digest} is corrupted: its bytes hash to {actual}; "
                          f"run 'roro fsck --read-data' to check the store",
                          digest=digest, expected=digest, actual=actual)
