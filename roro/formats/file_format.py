"""``file``: opaque bytes (a GGUF file, a framework checkpoint), stored and returned as they are."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from .base import FormatError, ModelFormat, Writer


class FileFormat(ModelFormat):
    name = "file"
    holds = "bytes, a path or a binary file object"
    pickled = False
    summary_from_file = False  # summarize() is None: a save keeps no spool file
    libraries: tuple[str, ...] = ()

    def detect(self, obj: Any) -> bool:
        return isinstance(obj, (bytes, bytearray, memoryview, str, os.PathLike)) or hasattr(
            obj, "read")

    def model_type(self, obj: Any) -> str:
        return "file"

    def dump(self, obj: Any, writer: Writer) -> None:
        if isinstance(obj, (bytes, bytearray, memoryview)):
            writer.write(obj)
            return
        if isinstance(obj, (str, os.PathLike)):
            try:
                with open(obj, "rb") as f:
                    self._copy(f, writer)
            except OSError as e:
                raise FormatError(f"cannot read {os.fspath(obj)!r}: {e.strerror}") from None
            return
        if hasattr(obj, "read"):
            self._copy(obj, writer)
            return
        raise FormatError(f"the file format stores bytes, a path or a binary file object, not "
                          f"a {type(obj).__name__}")

    @staticmethod
    def _copy(src: Any, writer: Writer) -> None:
        while chunk := src.read(1 << 20):
            if isinstance(chunk, str):
                raise FormatError("the file format stores bytes: open the file in binary mode")
            writer.write(chunk)

    def load(self, f: BinaryIO, **options: Any) -> Any:
        return f  # a verified binary file; the caller closes it

    def check_file(self, path: str) -> None:
        if not os.path.isfile(path):
            raise FormatError(f"{path} is not a regular file")

    def summarize(self, path: str) -> dict[str, Any] | None:
        return None


FORMAT = FileFormat()
