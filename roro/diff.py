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

    def lines(self, label: str) -> list[str]:
        """One line per change: ``+ LABEL key: value``, ``- …``, ``~ LABEL key: a -> b``."""
        return [*(f"+ {label} {k}: {_short(v)}" for k, v in self.added.items()),
                *(f"- {label} {k}: {_short(v)}" for k, v in self.removed.items()),
                *(f"~ {label} {k}: {_short(x)} -> {_short(y)}"
                  for k, (x, y) in self.changed.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"added": dict(self.added), "removed": dict(self.removed),
                "changed": {k: {"a": a, "b": b} for k, (a, b) in self.changed.items()}}


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
            lines.append(f"~ model: {self.model_a['digest'][:19]} {self.model_a['size']} bytes -> "
                         f"{self.model_b['digest'][:19]} {self.model_b['size']} bytes")
            if self.model_a["type"] != self.model_b["type"]:
                lines.append(f"~ model type: {self.model_a['type']} -> {self.model_b['type']}")
            if self.model_a["format"] != self.model_b["format"]:
                lines.append(f"~ model format: {self.model_a['format']} -> "
                             f"{self.model_b['format']}")
        lines.extend(self.metadata.lines("metadata"))
        for att in self.attachments_added:
            lines.append(f"+ attachment {att['name']} ({att['size']} bytes)")
        for att in self.attachments_removed:
            lines.append(f"- attachment {att['name']} ({att['size']} bytes)")
        for att in self.attachments_changed:
            lines.append(f"~ attachment {att['name']}: {att['a']['digest'][:19]} -> "
                         f"{att['b']['digest'][:19]}")
        lines.extend(self.contract.lines("contract"))
        if self.comment_changed:
            lines.append(f"~ comment: {_short(self.comment_a)} -> {_short(self.comment_b)}")
        if self.identical:
            lines.append("  (no differences)")
        return "\n".join(lines)


def _short(value: Any, width: int = 60) -> str:
    text = canonical_json(value).decode("utf-8")
    return text if len(text) <= width else text[:width - 3] + "..."


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
