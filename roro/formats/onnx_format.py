"""``onnx``: an ``onnx.ModelProto`` (or a ``.onnx`` file), graph and weights in one protobuf.

Loading parses the protobuf and runs no code. ONNX has no header to read: the summary (inputs,
outputs, initializers, opset) is taken from the parsed model at save time and stored as its own
small object, so showing a model never fetches it.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from .base import FormatError, ModelFormat, Writer, require

EXTRA = "onnx"
#: Initializers listed by name in a summary at most (their count and parameters are always there).
MAX_LISTED = 1000


class OnnxFormat(ModelFormat):
    name = "onnx"
    holds = "an onnx.ModelProto or the path of a .onnx file"
    pickled = False
    libraries: tuple[str, ...] = ("onnx",)

    def detect(self, obj: Any) -> bool:
        t = type(obj)
        if t.__name__ == "ModelProto" and t.__module__.split(".")[0] == "onnx":
            return True
        return isinstance(obj, (str, os.PathLike)) and os.fspath(obj).endswith(".onnx")

    def model_type(self, obj: Any) -> str:
        return "onnx.ModelProto"

    def dump(self, obj: Any, writer: Writer) -> None:
        if not self.detect(obj):
            raise FormatError(f"the onnx format stores {self.holds}, not a "
                              f"{type(obj).__name__}")
        if isinstance(obj, (str, os.PathLike)):  # the file's bytes, checked by summarize()
            try:
                with open(obj, "rb") as f:
                    while chunk := f.read(1 << 20):
                        writer.write(chunk)
            except OSError as e:
                raise FormatError(f"cannot read {os.fspath(obj)!r}: {e.strerror}") from None
            return
        writer.write(obj.SerializeToString())

    def load(self, f: BinaryIO, **options: Any) -> Any:
        onnx = require("onnx", EXTRA)
        try:
            return onnx.load_model_from_string(f.read())
        except Exception as e:  # protobuf's DecodeError and friends: not an ONNX model
            raise FormatError(f"the stored model is not a valid ONNX model: {e}") from None

    def check_file(self, path: str) -> None:
        self._parse(path)

    def summarize(self, path: str) -> dict[str, Any] | None:
        return summary_of(self._parse(path))

    @staticmethod
    def _parse(path: str) -> Any:
        onnx = require("onnx", EXTRA)
        try:
            with open(path, "rb") as f:
                model = onnx.load_model_from_string(f.read())
        except Exception as e:  # protobuf's DecodeError and friends: not an ONNX model
            raise FormatError(f"{path} is not an ONNX model: {e}") from None
        if not model.graph.node and not model.graph.input and not model.opset_import:
            raise FormatError(f"{path} is not an ONNX model: it has no graph")
        return model


def _value_info(v: Any, onnx: Any) -> dict[str, Any]:
    t = v.type.tensor_type
    dims: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    dtype = onnx.TensorProto.DataType.Name(t.elem_type) if t.elem_type else None
    return {"name": v.name, "dtype": dtype, "shape": dims if t.HasField("shape") else None}


def summary_of(model: Any) -> dict[str, Any]:
    """Inputs and outputs (name, element type, shape), initializers (count, parameters, the first
    :data:`MAX_LISTED` by name with dtype and shape), opsets, IR version, producer, node count."""
    onnx = require("onnx", EXTRA)
    graph = model.graph
    inits = []
    parameters = 0
    for t in graph.initializer:
        count = 1
        for d in t.dims:
            count *= int(d)
        parameters += count
        inits.append({"name": t.name, "dtype": onnx.TensorProto.DataType.Name(t.data_type),
                      "shape": [int(d) for d in t.dims]})
    init_names = {t.name for t in graph.initializer}
    inits.sort(key=lambda i: i["name"])
    return {
        "ir_version": int(model.ir_version),
        "opset": [{"domain": o.domain or "ai.onnx", "version": int(o.version)}
                  for o in model.opset_import],
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value_info(v, onnx) for v in graph.input if v.name not in init_names],
        "outputs": [_value_info(v, onnx) for v in graph.output],
        "initializers": len(inits),
        "initializer_list": inits[:MAX_LISTED],
        "parameters": parameters,
        "nodes": len(graph.node),
    }


FORMAT = OnnxFormat()
