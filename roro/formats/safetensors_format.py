"""``safetensors``: a dict of numpy arrays, stored in the safetensors layout; loading runs no code.

The file is an 8-byte little-endian header length, a JSON header (each tensor's dtype, shape and
byte range, plus an optional ``__metadata__`` mapping of strings) and the tensors' bytes. roro
writes it streaming, each array's memory straight into the hashing writer (no second copy of the
model), and reads it back with the safetensors library. :func:`read_header` reads only the header,
which is what the summary of a model (tensor names, dtypes, shapes, parameter count) comes from.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO

from ..storage.base import readinto_all
from .base import FormatError, ModelFormat, Writer, is_ndarray, require

EXTRA = "safetensors"
#: A header larger than this is refused (the safetensors library's own limit is 100 MB).
MAX_HEADER = 100_000_000
#: numpy dtype name -> safetensors dtype, and each dtype's size in bytes.
DTYPES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
          "float16": "F16", "int32": "I32", "uint32": "U32", "float32": "F32", "float64": "F64",
          "int64": "I64", "uint64": "U64"}
#: safetensors dtype -> numpy dtype name: what the safetensors library's numpy loader maps
#: (``safetensors.numpy._TYPES``); the others (BF16, F8…) have no numpy dtype.
NUMPY_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64",
                "U64": "uint64", "I32": "int32", "U32": "uint32", "I16": "int16",
                "U16": "uint16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                "C64": "complex64"}
SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4,
         "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
         "C64": 8, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1, "F8_E8M0": 1}


class SafetensorsFormat(ModelFormat):
    name = "safetensors"
    holds = "a non-empty dict of numpy arrays with string keys"
    pickled = False
    libraries: tuple[str, ...] = ("numpy", "safetensors")

    def detect(self, obj: Any) -> bool:
        return (isinstance(obj, dict) and bool(obj)
                and all(isinstance(k, str) and is_ndarray(v) for k, v in obj.items()))

    def model_type(self, obj: Any) -> str:
        return "dict[str, numpy.ndarray]"

    def dump(self, obj: Any, writer: Writer) -> None:
        if not self.detect(obj):
            raise FormatError("the safetensors format stores a non-empty dict of numpy arrays "
                              "with string keys")
        np = require("numpy", EXTRA)
        entries, offset = [], 0
        # Largest element first, then by name: every tensor starts aligned to its element size.
        for name in sorted(obj, key=lambda k: (-obj[k].dtype.itemsize, k)):
            array = obj[name]
            if name == "__metadata__":
                raise FormatError("'__metadata__' is reserved in safetensors; rename the tensor")
            dtype = DTYPES.get(array.dtype.name)
            if dtype is None:
                raise FormatError(f"tensor {name!r} has dtype {array.dtype}, which safetensors "
                                  f"cannot store (it stores {', '.join(sorted(DTYPES))})")
            entries.append((name, dtype, list(array.shape), offset, offset + array.nbytes))
            offset += array.nbytes
        header = {name: {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
                  for name, dtype, shape, start, end in entries}
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
        text += b" " * (-len(text) % 8)
        writer.write(struct.pack("<Q", len(text)))
        writer.write(text)
        for name, *_ in entries:
            array = obj[name]
            if array.dtype.byteorder == ">":
                array = array.astype(array.dtype.newbyteorder("<"))
            array = np.ascontiguousarray(array)  # a copy only of a non-contiguous array
            if array.nbytes:
                writer.write(memoryview(array.reshape(-1).view(np.uint8)))

    def load(self, f: BinaryIO, **options: Any) -> Any:
        wanted = options.get("tensors")
        safetensors = require("safetensors", EXTRA)
        require("numpy", EXTRA)
        subset = wanted is not None and not _has_proc_fd(f) and f.seekable()
        if subset:  # no read-ahead buffer: each read fetches only the chunks it covers
            f = getattr(f, "raw", f)
        header = read_header(f)
        if wanted is not None:
            missing = sorted(set(wanted) - set(tensor_names(header)))
            if missing:
                raise FormatError(f"the model has no tensor {', '.join(map(repr, missing))}; "
                                  f"it has {len(tensor_names(header))}: see models:show")
        path = f"/proc/self/fd/{f.fileno()}" if _has_proc_fd(f) else None
        if path is not None:
            # The verified file itself, opened again by the library (no copy into memory).
            out = {}
            with safetensors.safe_open(path, framework="numpy") as st:
                for name in (wanted if wanted is not None else st.keys()):
                    out[name] = st.get_tensor(name)
            return out
        # A stream that is no plain file (a chunked blob's verified reader): each tensor's
        # bytes are read straight into its own array; a subset seeks to each wanted tensor,
        # so only the chunks covering the header and those tensors are fetched (issue 17).
        return self._read_tensors(f, header, list(dict.fromkeys(wanted)) if wanted is not None
                                  else sorted(tensor_names(header)))

    def _read_tensors(self, f: BinaryIO, header: dict[str, Any], names: list[str]) -> Any:
        """The tensors ``names`` of the safetensors stream ``f`` (positioned just past its
        header), in that order (the library's ``safe_open`` lists a file's in name order), as
        the library's numpy loader makes them, each read (in file order) by ``readinto`` into
        an array made for it: a load holds the model once, plus the reader's buffer (reading
        the stream whole and handing the bytes to the library held it twice)."""
        np = require("numpy", EXTRA)
        base = f.tell()
        check_layout(header, f.seek(0, os.SEEK_END) - base, "the model")
        out = {}
        for name in sorted(names, key=lambda n: header[n]["data_offsets"][0]):
            entry = header[name]
            dtype = NUMPY_DTYPES.get(entry["dtype"])
            if dtype is None:
                raise FormatError(f"tensor {name[:100]!r} has dtype {entry['dtype']}, which "
                                  f"numpy cannot hold")
            start, stop = entry["data_offsets"]
            array = np.empty(entry["shape"], dtype=np.dtype(dtype).newbyteorder("<"))
            f.seek(base + start)
            if readinto_all(f, memoryview(array.reshape(-1).view(np.uint8))) != stop - start:
                raise FormatError(f"the model is not a valid safetensors file: tensor "
                                  f"{name[:100]!r} is cut short")
            out[name] = array
        return {name: out[name] for name in names}

    def check_file(self, path: str) -> None:
        with open(path, "rb") as f:
            header = read_header(f)
        size = os.path.getsize(path)
        check_layout(header, size - 8 - _header_length(path), path)

    def summarize(self, path: str) -> dict[str, Any] | None:
        with open(path, "rb") as f:
            header = read_header(f)
        return summary_of(header)


def _has_proc_fd(f: BinaryIO) -> bool:
    try:
        return os.path.exists(f"/proc/self/fd/{f.fileno()}")
    except (AttributeError, OSError, ValueError):
        return False


def _header_length(path: str) -> int:
    with open(path, "rb") as f:
        return int(struct.unpack("<Q", f.read(8))[0])


def read_header(f: BinaryIO) -> dict[str, Any]:
    """The JSON header of the safetensors file ``f`` (read from its start; nothing else is read)."""
    f.seek(0)
    raw = f.read(8)
    if len(raw) != 8:
        raise FormatError("not a safetensors file: shorter than 8 bytes")
    (length,) = struct.unpack("<Q", raw)
    if length > MAX_HEADER:
        raise FormatError(f"not a safetensors file: a header of {length} bytes")
    text = f.read(length)
    if len(text) != length:
        raise FormatError("not a safetensors file: the header is cut short")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise FormatError(f"not a safetensors file: the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise FormatError("not a safetensors file: the header is not a JSON object")
    for name, entry in header.items():
        if name == "__metadata__":
            if not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise FormatError("not a safetensors file: __metadata__ must map strings to "
                                  "strings")
            continue
        if not (isinstance(entry, dict) and entry.get("dtype") in SIZES
                and isinstance(entry.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
                and isinstance(entry.get("data_offsets"), list)
                and len(entry["data_offsets"]) == 2
                and all(isinstance(o, int) and o >= 0 for o in entry["data_offsets"])):
            raise FormatError(f"not a safetensors file: tensor {name[:100]!r} is malformed")
    return header


def check_layout(header: dict[str, Any], data_size: int, what: str) -> None:
    """The tensors' byte ranges must match their dtypes and shapes, follow each other without
    gap or overlap, and cover the data exactly (the rules the safetensors library checks)."""
    end = 0
    entries = sorted((e["data_offsets"], n, e) for n, e in header.items() if n != "__metadata__")
    for (start, stop), name, entry in entries:
        count = 1
        for d in entry["shape"]:
            count *= d
        if start != end or stop - start != count * SIZES[entry["dtype"]]:
            raise FormatError(f"{what} is not a valid safetensors file: tensor {name[:100]!r} "
                              f"has byte range [{start}, {stop}), which does not fit its dtype "
                              f"and shape or does not follow the previous tensor")
        end = stop
    if end != data_size:
        raise FormatError(f"{what} is not a valid safetensors file: its tensors cover {end} "
                          f"bytes of {data_size}")


def tensor_names(header: dict[str, Any]) -> list[str]:
    return [n for n in header if n != "__metadata__"]


def summary_of(header: dict[str, Any]) -> dict[str, Any]:
    """Tensor names, dtypes and shapes (in name order), the parameter count and the metadata."""
    tensors, parameters = [], 0
    for name in sorted(tensor_names(header)):
        entry = header[name]
        count = 1
        for d in entry["shape"]:
            count *= d
        parameters += count
        tensors.append({"name": name, "dtype": entry["dtype"], "shape": entry["shape"]})
    return {"tensors": tensors, "parameters": parameters,
            "metadata": dict(header.get("__metadata__") or {})}


FORMAT = SafetensorsFormat()
