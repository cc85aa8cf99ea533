"""The load gate: the loader's trust settings, combined from its own sources, never the artifact's.

One ``trust:`` mapping (shared with signatures, which will add ``keys:``)::

    trust:
      pickle: allow | signed | deny     # may a pickle (cloudpickle format) be loaded?
      skops_types: [sklearn.x.Y, ...]   # types a skops model may use besides skops' defaults

It is read, in this order, from the user configuration (``$XDG_CONFIG_HOME/roro/config.yml``),
``RORO_TRUST``, the nearest ``roro.yml`` and ``get_model(trust=...)``; each later source may
tighten what the earlier ones allow, never loosen it (``deny`` > ``signed`` > ``allow``; type lists
intersect). Nothing stored with a model is ever read as a trust setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..errors import ConfigError, TrustError

ALLOW, SIGNED, DENY = "allow", "signed", "deny"
PICKLE_LEVELS = (ALLOW, SIGNED, DENY)
KEYS = ("pickle", "skops_types", "keys")


class Trust(NamedTuple):
    """Combined trust settings; each ``*_source`` says which source set the value in force.
    (A named tuple: a frozen dataclass would cost ~0.3 ms of every ``import roro``.)"""

    pickle: str = ALLOW
    pickle_source: str = "the default"
    skops_types: frozenset[str] | None = None  # None: no source listed any
    skops_source: str | None = None
    keys: tuple[str, ...] | None = None  # key fingerprints whose signatures pass `signed`

    def tighten(self, settings: Mapping[str, Any] | None, source: str) -> Trust:
        """These settings with ``settings`` (from ``source``) applied on top: a stricter pickle
        level replaces the current one, a type list intersects the current one."""
        if not settings:
            return self
        checked = check_trust(settings, source)
        out = self
        level = checked.get("pickle")
        if level is not None and PICKLE_LEVELS.index(level) > PICKLE_LEVELS.index(out.pickle):
            out = _replace(out, pickle=level, pickle_source=source)
        types = checked.get("skops_types")
        if types is not None:
            merged = frozenset(types) if out.skops_types is None else out.skops_types & set(types)
            out = _replace(out, skops_types=merged, skops_source=source)
        keys = checked.get("keys")
        if keys is not None:
            out = _replace(out, keys=tuple(sorted(set(keys) & set(out.keys)
                                                 if out.keys is not None else set(keys))))
        return out

    def with_keys(self, keys: tuple[str, ...]) -> Trust:
        """These settings with ``keys`` as the fingerprints whose signatures pass ``signed``
        (a store policy the reader pinned adds its keys: ``ModelImage._with_policy_keys``)."""
        return _replace(self, keys=keys)

    def to_dict(self) -> dict[str, Any]:
        return {"pickle": self.pickle, "pickle_source": self.pickle_source,
                "skops_types": sorted(self.skops_types) if self.skops_types is not None else None,
                "skops_source": self.skops_source}

    def gate_pickle(self, what: str, fmt: str, repository: str | None = None,
                    version: int | None = None,
                    signature: Callable[[], dict[str, Any] | None] | None = None) -> None:
        """Raise :class:`TrustError` unless a pickle of ``what`` may be loaded. ``signature()``
        checks the version's event and its signature (raising for a bad one) and returns who
        signed it (None: unsigned); it is called only for ``signed``."""
        if self.pickle == DENY:
            raise TrustError(f"refusing to load {what}: its format is {fmt}, and loading a pickle "
                             f"runs code; trust: pickle is 'deny' (set by {self.pickle_source})",
                             setting="pickle", source=self.pickle_source, repository=repository,
                             version=version, format=fmt)
        if self.pickle == SIGNED:
            sig = signature() if signature is not None else None
            why = None
            if sig is None:
                why = "the version is not signed"
            elif self.keys is not None and sig["key"] not in self.keys:
                why = (f"it is signed by {sig['signer']!r} ({sig['key']}), which is not among "
                       f"trust: keys")
            if why is not None:
                raise TrustError(f"refusing to load {what}: its format is {fmt}, trust: pickle is "
                                 f"'signed' (set by {self.pickle_source}), and {why}",
                                 setting="pickle", source=self.pickle_source,
                                 repository=repository, version=version, format=fmt)


def _replace(trust: Trust, **changes: Any) -> Trust:
    fields = {"pickle": trust.pickle, "pickle_source": trust.pickle_source,
              "skops_types": trust.skops_types, "skops_source": trust.skops_source,
              "keys": trust.keys}
    return Trust(**{**fields, **changes})


def check_trust(value: Any, source: str) -> dict[str, Any]:
    """``value`` if it is a valid ``trust:`` mapping, else :class:`ConfigError` naming ``source``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: trust must be a mapping with keys {', '.join(KEYS)}")
    unknown = sorted(str(k) for k in value if k not in KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown trust setting {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(KEYS)})")
    out: dict[str, Any] = {}
    level = value.get("pickle")
    if level is not None:
        if level not in PICKLE_LEVELS:
            raise ConfigError(f"{source}: trust pickle must be one of {', '.join(PICKLE_LEVELS)}, "
                              f"not {level!r}")
        out["pickle"] = level
    for key in ("skops_types", "keys"):
        items = value.get(key)
        if items is None:
            continue
        if isinstance(items, str) or not isinstance(items, (list, tuple, set, frozenset)) \
                or not all(isinstance(t, str) and t for t in items):
            raise ConfigError(f"{source}: trust {key} must be a list of names")
        out[key] = list(items)
    return out


def parse_env_trust(text: str, source: str = "RORO_TRUST") -> dict[str, Any]:
    """``RORO_TRUST``: JSON (``{"pickle": "deny"}``) or the short form
    ``pickle=deny;skops_types=sklearn.a.B,sklearn.c.D`` (a bare ``deny`` means ``pickle=deny``)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{source} is not valid JSON: {e}") from None
        return check_trust(value, source)
    if text in PICKLE_LEVELS:
        return {"pickle": text}
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"{source}: expected key=value, found {part!r} (e.g. "
                              f"'pickle=deny;skops_types=sklearn.tree.DecisionTreeClassifier')")
        out[key] = val.strip() if key == "pickle" else [v.strip() for v in val.split(",")
                                                          if v.strip()]
    return check_trust(out, source)
