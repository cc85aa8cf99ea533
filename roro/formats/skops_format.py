"""``skops``: scikit-learn estimators in skops' format, loaded with an explicit trusted-types list.

skops refuses, at load, any type that is neither in its own safe defaults nor in the ``trusted``
list given by the caller. That list comes from the loader's trust settings
(``trust: skops_types: [...]``), never from the model file: MLflow once read it from the file
itself, which makes the check worthless. The summary lists the types a load will have to trust.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from ..errors import TrustError
from .base import FormatError, ModelFormat, Writer, require, type_name

EXTRA = "skops"


class SkopsFormat(ModelFormat):
    name = "skops"
    holds = "a scikit-learn estimator"
    pickled = False
    libraries: tuple[str, ...] = ("skops", "scikit-learn")

    def detect(self, obj: Any) -> bool:
        return type(obj).__module__.split(".")[0] == "sklearn"

    def model_type(self, obj: Any) -> str:
        return type_name(obj)

    def dump(self, obj: Any, writer: Writer) -> None:
        sio = require("skops.io", EXTRA)
        try:
            data = sio.dumps(obj)
        except Exception as e:  # skops raises TypeError & co for objects it cannot persist
            raise FormatError(f"skops cannot store a {type(obj).__name__}: {e}") from None
        writer.write(data)

    def load(self, f: BinaryIO, **options: Any) -> Any:
        sio = require("skops.io", EXTRA)
        trusted = sorted(options.get("trusted") or ())
        data = f.read()
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
        if untrusted:
            raise TrustError(f"the skops model needs types that are not trusted: "
                             f"{', '.join(untrusted)}; add them to trust: skops_types if you "
                             f"trust them", setting="skops_types")
        return sio.loads(data, trusted=trusted)

    def check_file(self, path: str) -> None:
        self.summarize(path)

    def summarize(self, path: str) -> dict[str, Any] | None:
        sio = require("skops.io", EXTRA)
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as e:  # a zip or schema error: not a skops file
            raise FormatError(f"{path} is not a skops file: {e}") from None
        return {"untrusted_types": sorted(untrusted)}


FORMAT = SkopsFormat()
