"""Content addressing: streaming puts, verified reads, canonical JSON manifests."""

from .canonical import canonical_json
from .store import ObjectStore, SpooledObject

__all__ = ["ObjectStore", "SpooledObject", "canonical_json"]
