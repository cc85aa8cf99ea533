"""Units people type and read: durations (gc's grace period) and byte sizes."""

from __future__ import annotations

import os
import re

from .errors import ConfigError, InvalidDurationError, StoreError

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration such as ``24h``, ``30m``, ``7d``, ``2w``, ``1h30m``, ``90s`` or a
    plain number of seconds; ``0`` is allowed (gc then spares nothing, not even saves in flight)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise InvalidDurationError(f"invalid duration {text!r}: it must not be negative")
        return float(text)
    s = str(text).strip().lower()
    try:
        value = float(s)
    except ValueError:
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s) or not s:
            raise InvalidDurationError(
                f"invalid duration {text!r}: use a number with a unit s, m, h, d or w, such as "
                f"'24h', '30m' or '7d'") from None
        return total
    if value < 0 or value != value or value == float("inf"):
        raise InvalidDurationError(f"invalid duration {text!r}: it must be a finite number >= 0")
    return value


def env_seconds(variable: str, default: float, *, zero: bool = False) -> float:
    """Seconds in environment variable ``variable`` (a plain number), ``default`` when it is unset
    or empty; a :class:`~roro.errors.StoreError` naming the variable for anything but a finite
    number above 0 (at or above 0 when ``zero``)."""
    raw = os.environ.get(variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise StoreError(f"{variable}={raw!r} is not a number of seconds {'>=' if zero else '>'} 0")
    return value


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, what: str = "size") -> int:
    """Bytes in a size such as ``10G``, ``500M``, ``64K``, ``1.5GiB`` or a plain number of bytes
    (binary units: ``1K`` is 1024 bytes); :class:`~roro.errors.ConfigError` naming ``what``."""
    m = _SIZE_RE.fullmatch(str(text).strip().lower())
    if not m:
        raise ConfigError(f"invalid {what} {text!r}: use bytes with an optional K, M, G or T "
                          f"(binary units), such as '10G' or '500M'")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def format_bytes(n: int | None) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``; ``-`` for None."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
