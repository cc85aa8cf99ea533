"""What changed between two saved model images: metadata, attachments, model, comment, lineage
and contract (library versions, input schema).

>>> d = repo.get_model_image(version=12).diff(repo.get_model_image(tag="production"))
>>> d.metadata_changed            # {"Accuracy": (0.87, 0.89)}
>>> d.model_identical, d.to_dict()

``a`` is the image ``diff`` is called on, ``b`` the other one (like ``git diff A B``). Values are
compared as JSON, type included: ``1`` and ``1.0``, or ``true`` and ``1``, are different values.
Attachments are matched by name and compared by digest; the model by digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RoroError
from .objects.canonical import canonical_json
from .objects.manifest import model_format
from .units import format_bytes

if TYPE_CHECKING:
    from .image import ModelImage


def _same(x: Any, y: Any) -> bool:
    return canonical_json(x) == canonical_json(y)


@dataclass(frozen=True)
class DictDiff:
    """Keys only in ``b`` (added), only in ``a`` (removed), and in both with different values."""

    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @classmethod
    def between(cls, a: dict[str, Any], b: dict[str, Any]) -> DictDiff:
        return cls(added={k: b[k] for k in sorted(b) if k not in a},
                   removed={k: a[k] for k in sorted(a) if k not in b},
                   changed={k: (a[k], b[k]) for k in sorted(a) if k in b and not _same(a[k], b[k])})

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {"added": dict(self.added), "removed": dict(self.removed),
                "changed": {k: {"a": a, "b": b} for k, (a, b) in self.changed.items()}}

    def lines(self, label: str) -> list[str]:
        """One line per change: ``+ LABEL key: value``, ``- …``, ``~ LABEL key: a → b``."""
        return [*(f"+ {label} {k}: {_text(v)}" for k, v in self.added.items()),
                *(f"- {label} {k}: {_text(v)}" for k, v in self.removed.items()),
                *(f"~ {label} {k}: {_text(x)} → {_text(y)}"
                  for k, (x, y) in self.changed.items())]

    def by_path(self) -> DictDiff:
        """The same difference with nested objects compared key by key: ``params.C`` changed
        rather than all of ``params`` (keys are joined with ``.``; lists are compared whole)."""
        added: dict[str, Any] = {}
        removed: dict[str, Any] = {}
        changed: dict[str, tuple[Any, Any]] = {}
        for k, v in self.added.items():
            added.update(_paths(k, v))
        for k, v in self.removed.items():
            removed.update(_paths(k, v))
        for k, (a, b) in self.changed.items():
            if isinstance(a, dict) and isinstance(b, dict) and a and b:
                inner = DictDiff.between(a, b).by_path()
                added.update({f"{k}.{p}": v for p, v in inner.added.items()})
                removed.update({f"{k}.{p}": v for p, v in inner.removed.items()})
                changed.update({f"{k}.{p}": v for p, v in inner.changed.items()})
            else:
                changed[k] = (a, b)
        return DictDiff(added, removed, changed)


def _paths(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_paths(f"{prefix}.{k}", v))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class ImageDiff:
    """The difference between image ``a`` and image ``b``; ``to_dict()`` gives plain JSON data."""

    a: dict[str, Any]  # repository, version, digest, timestamp, author
    b: dict[str, Any]
    metadata: DictDiff
    attachments_added: list[dict[str, Any]]  # {name, digest, size}
    attachments_removed: list[dict[str, Any]]
    attachments_changed: list[dict[str, Any]]  # {name, a: {digest, size}, b: {digest, size}}
    model_a: dict[str, Any]  # digest, size, type
    model_b: dict[str, Any]
    comment_a: str
    comment_b: str
    lineage: DictDiff
    #: The contract, flattened (``library numpy``, ``input dtype``, ``input column age``…).
    contract: DictDiff = field(default_factory=DictDiff)

    @property
    def metadata_added(self) -> dict[str, Any]:
        return self.metadata.added

    @property
    def metadata_removed(self) -> dict[str, Any]:
        return self.metadata.removed

    @property
    def metadata_changed(self) -> dict[str, tuple[Any, Any]]:
        return self.metadata.changed

    @property
    def model_identical(self) -> bool:
        """True when both images hold the very same model bytes (same digest)."""
        return self.model_a["digest"] == self.model_b["digest"]

    @property
    def comment_changed(self) -> bool:
        return self.comment_a != self.comment_b

    @property
    def attachments_differ(self) -> bool:
        return bool(self.attachments_added or self.attachments_removed or self.attachments_changed)

    @property
    def identical(self) -> bool:
        """Same model, metadata, attachments and comment (time, author and lineage aside)."""
        return (self.model_identical and not self.metadata and not self.attachments_differ
                and not self.comment_changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": dict(self.a),
            "b": dict(self.b),
            "identical": self.identical,
            "model": {"identical": self.model_identical, "a": dict(self.model_a),
                      "b": dict(self.model_b)},
            "metadata": self.metadata.to_dict(),
            "attachments": {"added": [dict(x) for x in self.attachments_added],
                            "removed": [dict(x) for x in self.attachments_removed],
                            "changed": [dict(x) for x in self.attachments_changed]},
            "comment": {"changed": self.comment_changed, "a": self.comment_a,
                        "b": self.comment_b},
            "lineage": self.lineage.to_dict(),
            "metadata_paths": self.metadata.by_path().to_dict(),
            "contract": self.contract.to_dict(),
        }

    def format(self) -> str:
        """A short text rendering, one change per line (``+`` added, ``-`` removed, ``~`` changed)."""
        def name(side: dict[str, Any]) -> str:
            return f"{side['repository']}:{side['version']}"

        lines = [f"diff {name(self.a)} {name(self.b)}"]
        if self.model_identical:
            lines.append(f"  model: identical ({self.model_a['digest'][:19]})")
        else:
            lines.append(f"~ model: {self.model_a['digest'][:19]} "
                         f"{format_bytes(self.model_a['size'])} → "
                         f"{self.model_b['digest'][:19]} {format_bytes(self.model_b['size'])}")
            if self.model_a["type"] != self.model_b["type"]:
                lines.append(f"~ model type: {self.model_a['type']} → {self.model_b['type']}")
            if self.model_a["format"] != self.model_b["format"]:
                lines.append(f"~ model format: {self.model_a['format']} → "
                             f"{self.model_b['format']}")
        lines.extend(self.metadata.by_path().lines("metadata"))
        for att in self.attachments_added:
            lines.append(f"+ attachment {att['name']} ({format_bytes(att['size'])})")
        for att in self.attachments_removed:
            lines.append(f"- attachment {att['name']} ({format_bytes(att['size'])})")
        for att in self.attachments_changed:
            lines.append(f"~ attachment {att['name']}: {att['a']['digest'][:19]} "
                         f"{format_bytes(att['a']['size'])} → {att['b']['digest'][:19]} "
                         f"{format_bytes(att['b']['size'])}")
        lines.extend(self.contract.lines("contract"))
        if self.comment_changed:
            lines.append(f"~ comment: {_text(self.comment_a)} → {_text(self.comment_b)}")
        if self.identical:
            lines.append("  (no differences)")
        return "\n".join(lines)


def _text(value: Any) -> str:
    """A value in full, as compact JSON (never cut: the change may be at its end)."""
    return canonical_json(value).decode("utf-8")


def diff_images(a: ModelImage, b: ModelImage) -> ImageDiff:
    """The :class:`ImageDiff` from saved image ``a`` to saved image ``b``."""
    ma, mb = a.manifest, b.manifest
    for image, m in ((a, ma), (b, mb)):
        if m is None:
            raise RoroError(f"{image!r} is not saved; save it before comparing it")
    assert ma is not None and mb is not None
    atts_a = {x["name"]: x for x in ma["attachments"]}
    atts_b = {x["name"]: x for x in mb["attachments"]}

    def entry(x: dict[str, Any]) -> dict[str, Any]:
        return {"name": x["name"], "digest": x["digest"], "size": x["size"]}

    def side(image: ModelImage, m: dict[str, Any]) -> dict[str, Any]:
        return {"repository": image.repository.name, "version": image.version,
                "digest": image.digest, "timestamp": m["timestamp"], "author": m["author"]}

    def model(m: dict[str, Any]) -> dict[str, Any]:
        return {"digest": m["model"]["digest"], "size": m["model"]["size"],
                "type": m["model"].get("type"), "format": model_format(m)}

    from .formats.contract import flatten as flatten_contract  # only when images are compared
    return ImageDiff(
        a=side(a, ma), b=side(b, mb),
        metadata=DictDiff.between(ma["metadata"], mb["metadata"]),
        attachments_added=[entry(atts_b[n]) for n in sorted(atts_b) if n not in atts_a],
        attachments_removed=[entry(atts_a[n]) for n in sorted(atts_a) if n not in atts_b],
        attachments_changed=[
            {"name": n, "a": {"digest": atts_a[n]["digest"], "size": atts_a[n]["size"]},
             "b": {"digest": atts_b[n]["digest"], "size": atts_b[n]["size"]}}
            for n in sorted(atts_a) if n in atts_b and atts_a[n]["digest"] != atts_b[n]["digest"]],
        model_a=model(ma), model_b=model(mb),
        comment_a=ma["comment"], comment_b=mb["comment"],
        lineage=DictDiff.between(a.lineage or {}, b.lineage or {}),
        contract=DictDiff.between(flatten_contract(ma.get("contract")),
                                  flatten_contract(mb.get("contract"))),
    )
