"""Model formats, in one table: the write path and the loader ask it, nothing else knows names.

======================  ===================================  =============  ==================
format                  holds                                runs code?     extra
======================  ===================================  =============  ==================
``cloudpickle``         any Python object (the default)      yes: gated     (none)
``safetensors``         a dict of numpy arrays               no             ``roro[safetensors]``
``onnx``                an ``onnx.ModelProto``               no             ``roro[onnx]``
``skops``               a scikit-learn estimator             no: typed      ``roro[skops]``
``file``                opaque bytes (GGUF, checkpoints)     no             (none)
======================  ===================================  =============  ==================

``format="auto"`` picks the safe format an object allows (a dict of arrays: safetensors; an ONNX
proto: onnx) and falls back to cloudpickle. See :mod:`roro.formats.base` for what a format does.
"""

from __future__ import annotations

import re
from typing import Any

from .base import FormatError, MissingDependencyError, ModelFormat
from .file_format import FORMAT as _FILE
from .onnx_format import FORMAT as _ONNX
from .pickle_format import FORMAT as _CLOUDPICKLE
from .safetensors_format import FORMAT as _SAFETENSORS
from .skops_format import FORMAT as _SKOPS

__all__ = ["AUTO", "DEFAULT", "FORMATS", "FormatError", "MissingDependencyError", "ModelFormat",
           "choose", "get_format"]

FORMATS: dict[str, ModelFormat] = {f.name: f for f in (_CLOUDPICKLE, _SAFETENSORS, _ONNX,
                                                       _SKOPS, _FILE)}
DEFAULT = "cloudpickle"
AUTO = "auto"
#: What ``auto`` tries, in order, before falling back to cloudpickle.
_AUTO_ORDER = ("safetensors", "onnx")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def get_format(name: str) -> ModelFormat:
    """The format called ``name``; :class:`FormatError` for a name this roro does not know."""
    fmt = FORMATS.get(name) if isinstance(name, str) else None
    if fmt is None:
        shown = name if isinstance(name, str) and _NAME.fullmatch(name) else repr(name)
        raise FormatError(f"unknown model format {shown}; this roro knows "
                          f"{', '.join(FORMATS)} (a newer roro may know more: upgrade roro)")
    return fmt


def choose(obj: Any, name: str) -> ModelFormat:
    """The format to save ``obj`` in when ``name`` was asked for (``auto`` decides)."""
    if name == AUTO:
        for candidate in _AUTO_ORDER:
            if FORMATS[candidate].detect(obj):
                return FORMATS[candidate]
        return FORMATS[DEFAULT]
    fmt = get_format(name)
    if not fmt.detect(obj):
        raise FormatError(f"a {type(obj).__name__} cannot be saved in the {fmt.name} format, "
                          f"which stores {fmt.holds}; use format='cloudpickle' or 'auto'")
    return fmt
