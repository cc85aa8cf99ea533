"""OpenSSF Model Signing (v1.0) bundles of saved versions (issue 16, item 6; README "Signatures").

A save signed with a ``p256`` key also stores, as an ordinary object, a Sigstore bundle (media type
``application/vnd.dev.sigstore.bundle.v0.3+json``) holding a DSSE envelope over an in-toto
statement of predicate type ``https://model_signing/signature/v1.0``: the sha256 of every file
``roro models:download NAME:REF --attachments DIR --signature`` writes into ``DIR``, signed by the
saver's key with ECDSA P-256/SHA-256. The ``model_signing`` package (PyPI) verifies it offline with
the key ``roro keys:export-public`` prints::

    model_signing verify key DIR --signature DIR/model.sig --public_key alice.pub

The version event names the bundle (its ``bundle`` field, event version 2, store feature
``model-bundles``), so gc keeps it while its version lives, fsck checks it and sync copies it.

The files, by their names in ``DIR``: the model as ``model`` plus its format's extension
(``model.pkl``, ``model.safetensors``…: a fixed name, since the version number is assigned after
the bundle is made), then each attachment by its name. A version whose attachments use a name the
bundle needs (the model's, ``model.sig``, or a git path the verifier always ignores: ``.git``,
``.gitattributes``, ``.github``, ``.gitignore``) gets no bundle; its event is signed as usual.

Only ``cryptography`` is used, through :mod:`roro.signing` (the ``roro[sign]`` extra);
``model_signing`` is a test dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from . import signing
from .digests import hex_of, parse_digest
from .objects.canonical import canonical_json
from .objects.manifest import model_format
from .signing import PublicKey, SigningKey

BUNDLE_FEATURE = "model-bundles"
#: The bundle's file name beside the downloaded files (model_signing's default signature name).
BUNDLE_FILE = "model.sig"
MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: Paths model_signing's verifier never hashes (its git paths): no attachment may start with one.
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
#: The most bytes a stored bundle may hold (a manifest may name 10,000 attachments: ~150 bytes
#: each in the statement, base64 adds a third).
MAX_BUNDLE_SIZE = 4 << 20
MODEL_STEM = "model"
#: The file name extension a download of each format gets (``NAME-vN.pkl``, ``model.pkl``).
EXTENSIONS = {"cloudpickle": ".pkl", "safetensors": ".safetensors", "onnx": ".onnx",
              "skops": ".skops", "file": ".bin"}


def model_file_name(format_name: str) -> str:
    """The model's file name in a bundle and in a ``--signature`` download: ``model.pkl``…"""
    return MODEL_STEM + EXTENSIONS.get(format_name, ".bin")


def bundle_files(manifest: dict[str, Any]) -> list[tuple[str, str]] | str:
    """``(file name, digest)`` of what a ``--signature`` download writes (model first), or why
    this version can have no bundle (an attachment takes a name the bundle needs)."""
    model = model_file_name(model_format(manifest))
    reserved = {model, BUNDLE_FILE, *GIT_PATHS}
    files = [(model, manifest["model"]["digest"])]
    for a in manifest["attachments"]:
        if a["name"].split("/")[0] in reserved:
            return f"its attachment {a['name']!r} takes a name the bundle needs ({model}, " \
                   f"{BUNDLE_FILE} or a git path)"
        files.append((a["name"], a["digest"]))
    return files


def source_bundles(manifest: dict[str, Any]) -> list[str]:
    """The bundles of the versions a copy was made from: ``bundle`` of each source event its
    ``lineage.copied_from`` (and their ``previous``) records. A copy brings them along, so the
    sources' signatures stay verifiable where the copy is; gc keeps them with the copy."""
    out: list[str] = []
    lineage = manifest.get("lineage")
    origin = lineage.get("copied_from") if isinstance(lineage, dict) else None
    while isinstance(origin, dict) and len(out) < 100:
        event = origin.get("event")
        digest = event.get("bundle") if isinstance(event, dict) else None
        if isinstance(digest, str):
            try:
                out.append(parse_digest(digest))
            except ValueError:
                pass  # a hand-edited lineage: nothing to keep
        origin = origin.get("previous")
    return out


def _pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of an in-toto payload."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


def _key_hint(public: PublicKey) -> str:
    """What model_signing records to name the key: the sha256 (hex) of its PEM."""
    return hashlib.sha256(public.pem().encode("ascii")).hexdigest()


def _resources(files: list[tuple[str, str]]) -> list[dict[str, str]]:
    # model_signing orders resources by path components; its root digest follows the listed order
    ordered = sorted(files, key=lambda f: f[0].split("/"))
    return [{"name": name, "algorithm": "sha256", "digest": hex_of(d)} for name, d in ordered]


def _root_digest(resources: list[dict[str, str]]) -> str:
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r["digest"]))
    return h.hexdigest()


def make_bundle(files: list[tuple[str, str]], key: SigningKey, name: str) -> bytes:
    """The bundle (canonical JSON bytes) over ``files`` (:func:`bundle_files`), signed by the
    p256 ``key``; ``name`` is the statement's subject name (informative: the repository's)."""
    resources = _resources(files)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": _root_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"serialization": {"method": "files", "hash_type": "sha256",
                                        "allow_symlinks": False, "ignore_paths": [BUNDLE_FILE]},
                      "resources": resources},
    }
    payload = canonical_json(statement)
    sig = key.sign_bytes(_pae(payload))
    return canonical_json({
        "mediaType": MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": _key_hint(key.public)},
                                 "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(),
                         "payloadType": PAYLOAD_TYPE,
                         "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]},
    })


def bundle_problem(data: bytes, files: list[tuple[str, str]], pub_der: bytes) -> str | None:
    """Why the stored bundle ``data`` is not a valid bundle over ``files`` signed by the key
    ``pub_der`` (the version event's signer), or None. What fsck checks."""
    try:
        bundle = json.loads(data)
        envelope = bundle["dsseEnvelope"]
        if bundle["mediaType"] != MEDIA_TYPE or envelope["payloadType"] != PAYLOAD_TYPE:
            return "it is not a Sigstore bundle of an in-toto statement"
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = envelope["signatures"]
        if not isinstance(signatures, list) or len(signatures) != 1:
            return "it must hold exactly one signature"
        sig = base64.b64decode(signatures[0]["sig"], validate=True)
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        statement = json.loads(payload)
        subject = statement["subject"]
        resources = statement["predicate"]["resources"]
        kind = statement["_type"], statement["predicateType"]
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error, UnicodeDecodeError) as e:
        return f"it cannot be read as a model signing bundle ({type(e).__name__}: {e})"
    if kind != (STATEMENT_TYPE, PREDICATE_TYPE):
        return f"its statement is not a model signing v1.0 statement ({kind[1]!r})"
    def entries(rs: Any) -> list[tuple[Any, ...]] | None:
        if not isinstance(rs, list) or not all(isinstance(r, dict) for r in rs):
            return None
        return sorted((str(r.get("name")), str(r.get("algorithm")), str(r.get("digest")))
                      for r in rs)

    if entries(resources) is None or entries(resources) != entries(_resources(files)):
        return "its file digests are not those of the version's manifest"
    try:
        root = subject[0]["digest"]["sha256"]
        consistent = len(subject) == 1 and root == _root_digest(resources)
    except (KeyError, TypeError, IndexError, ValueError):
        consistent = False
    if not consistent:
        return "its subject digest does not match its file digests"
    public = signing.public_key_from_der(pub_der)
    if public.type != "p256" or hint != _key_hint(public):
        return "it names another key than the one that signed the version's event"
    if not public.verifies(sig, _pae(payload)):
        return "its signature does not verify with the key that signed the version's event"
    return None
