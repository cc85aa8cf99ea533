"""``cloudpickle``: any Python object; loading runs code, so the load gate applies."""

from __future__ import annotations

from typing import Any, BinaryIO

from .base import FormatError, ModelFormat, Writer, type_name


class CloudpickleFormat(ModelFormat):
    name = "cloudpickle"
    holds = "any Python object"
    pickled = True
    summary_from_file = False  # summarize() is None: a save keeps no spool file
    libraries: tuple[str, ...] = ()  # the model's own packages: see roro.formats.contract

    def detect(self, obj: Any) -> bool:
        return True

    def model_type(self, obj: Any) -> str:
        return type_name(obj)

    def dump(self, obj: Any, writer: Writer) -> None:
        import cloudpickle  # only by a save or a load: `import roro` stays cheap
        cloudpickle.dump(obj, writer)

    def load(self, f: BinaryIO, **options: Any) -> Any:
        import cloudpickle  # only by a save or a load: `import roro` stays cheap
        return cloudpickle.load(f)

    def check_file(self, path: str) -> None:
        from .scan import scan_pickle  # pickletools (~5 ms): only when a pickle is scanned
        with open(path, "rb") as f:
            scan = scan_pickle(f)
        bad = [p for p in scan.problems if p.startswith("not a valid pickle")]
        if bad:
            raise FormatError(f"{path} is not a pickle: {bad[0]}")

    def summarize(self, path: str) -> dict[str, Any] | None:
        return None  # what a pickle imports is read from its bytes when asked (never trusted)


FORMAT = CloudpickleFormat()
