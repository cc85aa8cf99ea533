"""Keys and signatures of ref events (DESIGN §11; README "Signatures").

Keys live in the user's configuration directory, ``$XDG_CONFIG_HOME/roro/keys/`` (default
``~/.config/roro/keys/``), never in a store: ``<name>.key`` holds the private key (PKCS #8 PEM,
file mode 0600), ``<name>.pub`` its public key (SubjectPublicKeyInfo PEM). Two key types:
``ed25519`` (the default: 64-byte signatures, ~0.1 ms to verify) and ``p256`` (ECDSA over NIST
P-256 with SHA-256: what OpenSSF Model Signing bundles verify).

A key's *fingerprint* is ``SHA256:`` and the unpadded base64 of the sha256 of its public key's
DER bytes (SubjectPublicKeyInfo, which names the algorithm), like OpenSSH prints them.

A signed event (event version 2, :mod:`roro.refs.events`) carries::

    "sig": {"alg": "ed25519", "key": "SHA256:…", "name": "alice", "pub": "<base64 DER>",
            "value": "<base64 signature>"}

``value`` signs the canonical bytes of the event with ``sig`` holding everything but ``value``
(:func:`signed_bytes`): the payload (so, through the manifest digest, every byte of the version),
the hash chain, and who signed with which key. Verifying needs no network: the public key is in
the event, and its fingerprint must match ``key``. Whether that key is *trusted* is the reader's
decision (its own keys, pins, the store's policy), never the event's.

``cryptography`` is imported only to make or check a signature (the ``roro[sign]`` extra);
without it, :class:`SigningUnavailableError` names the extra.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
import threading
from dataclasses import dataclass
from typing import Any

from .environment import config_dir
from .errors import ConfigError, NotFoundError, RoroError, SignatureError
from .objects.canonical import canonical_json

KEY_TYPES = ("ed25519", "p256")
#: The ``alg`` an event's signature names, per key type.
ALGORITHMS = {"ed25519": "ed25519", "p256": "ecdsa-p256-sha256"}
_KEY_TYPE_OF = {alg: kt for kt, alg in ALGORITHMS.items()}
#: The fields of an event's ``sig`` (all strings).
SIG_FIELDS = ("alg", "key", "name", "pub", "value")
#: Bounds on what a stored ``sig`` may hold (a forged one costs nothing to refuse).
MAX_PUB_B64 = 200
MAX_VALUE_B64 = 200
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
EXTRA_HINT = "pip install 'roro[sign]'"


class SigningUnavailableError(RoroError):
    """Signing or verifying needs the ``cryptography`` package (the ``roro[sign]`` extra)."""


def _crypto() -> Any:
    try:
        # cryptography (~30 ms): only where a key is made or used, or a signature checked
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: F401
    except ImportError:
        raise SigningUnavailableError(
            f"signatures need the 'cryptography' package: {EXTRA_HINT}") from None
    import cryptography.hazmat.primitives as primitives  # loaded just above
    return primitives


def keys_dir() -> str:
    """``$XDG_CONFIG_HOME/roro/keys`` (default ``~/.config/roro/keys``)."""
    return os.path.join(config_dir(), "keys")


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
        raise ConfigError(f"invalid key name {name!r}: use 1 to 64 letters, digits, '.', '_' or "
                          f"'-', starting with a letter or digit")
    return name


def fingerprint_of(pub_der: bytes) -> str:
    """``SHA256:<unpadded base64>`` of a public key's DER bytes."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(pub_der).digest()).decode().rstrip("=")


def is_fingerprint(text: str) -> bool:
    return bool(_FINGERPRINT.fullmatch(text))


@dataclass(frozen=True)
class PublicKey:
    """A public key: its type (``ed25519``/``p256``), DER bytes and fingerprint; ``name`` is the
    name it has in this user's keys directory (or the signer's name in an event)."""

    name: str
    type: str
    der: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.der)

    @property
    def alg(self) -> str:
        return ALGORITHMS[self.type]

    def pem(self) -> str:
        body = base64.encodebytes(self.der).decode().replace("\n", "")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "fingerprint": self.fingerprint}

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``data`` (ECDSA with SHA-256 for a
        p256 key): what an OpenSSF bundle's DSSE signature is checked with."""
        return _verifies(self.type, _crypto().serialization.load_der_public_key(self.der),
                         signature, data)


class SigningKey:
    """A private key loaded from the keys directory: :meth:`sign` an event body."""

    def __init__(self, name: str, key_type: str, private: Any, public: PublicKey):
        self.name, self.type, self._private, self.public = name, key_type, private, public

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def sign_bytes(self, data: bytes) -> bytes:
        if self.type == "ed25519":
            return bytes(self._private.sign(data))
        prims = _crypto()
        return bytes(self._private.sign(data, prims.asymmetric.ec.ECDSA(prims.hashes.SHA256())))

    def signature_for(self, body: dict[str, Any]) -> dict[str, str]:
        """The ``sig`` field for an event ``body`` (its fields without ``sig``)."""
        sig = {"alg": self.public.alg, "key": self.fingerprint, "name": self.name,
               "pub": base64.b64encode(self.public.der).decode()}
        value = self.sign_bytes(signed_bytes(body, sig))
        return {**sig, "value": base64.b64encode(value).decode()}


def signed_bytes(body: dict[str, Any], sig: dict[str, str]) -> bytes:
    """What a signature signs: the event's canonical bytes with ``sig`` minus its ``value``."""
    return canonical_json({**body, "sig": {k: v for k, v in sig.items() if k != "value"}})


# -- the keys directory --------------------------------------------------------------------------
def _paths(name: str) -> tuple[str, str]:
    validate_key_name(name)
    d = keys_dir()
    return os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.pub")


def generate_key(name: str, key_type: str = "ed25519") -> PublicKey:
    """Make a key pair ``name`` in the keys directory (private key 0600); ConfigError if one of
    that name exists."""
    if key_type not in KEY_TYPES:
        raise ConfigError(f"unknown key type {key_type!r}: use {' or '.join(KEY_TYPES)}")
    prims = _crypto()
    ser = prims.serialization
    private_path, public_path = _paths(name)
    if os.path.exists(private_path) or os.path.exists(public_path):
        raise ConfigError(f"a key named {name!r} exists already ({private_path}); pick another "
                          f"--name")
    if key_type == "ed25519":
        private = prims.asymmetric.ed25519.Ed25519PrivateKey.generate()
    else:
        private = prims.asymmetric.ec.generate_private_key(prims.asymmetric.ec.SECP256R1())
    pem = private.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    der = private.public_key().public_bytes(ser.Encoding.DER,
                                            ser.PublicFormat.SubjectPublicKeyInfo)
    public = PublicKey(name, key_type, der)
    os.makedirs(keys_dir(), mode=0o700, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(public_path, "x", encoding="ascii") as f:
        f.write(public.pem())
    return public


def public_key_from_der(der: bytes, name: str = "signer") -> PublicKey:
    """The :class:`PublicKey` of DER bytes (SubjectPublicKeyInfo); SignatureError if they are
    not a key of a type roro signs with."""
    return _public_from_der(name, der)


def _public_from_der(name: str, der: bytes) -> PublicKey:
    prims = _crypto()
    try:
        key = prims.serialization.load_der_public_key(der)
    except (ValueError, TypeError) as e:
        raise SignatureError(f"not a public key ({e})") from None
    if isinstance(key, prims.asymmetric.ed25519.Ed25519PublicKey):
        return PublicKey(name, "ed25519", der)
    if isinstance(key, prims.asymmetric.ec.EllipticCurvePublicKey) and \
            isinstance(key.curve, prims.asymmetric.ec.SECP256R1):
        return PublicKey(name, "p256", der)
    raise SignatureError("a public key of a type roro does not sign with")


def list_keys() -> list[PublicKey]:
    """The key pairs in the keys directory, by name."""
    d = keys_dir()
    if not os.path.isdir(d):
        return []
    out = []
    for entry in sorted(os.listdir(d)):
        if entry.endswith(".pub") and _KEY_NAME.fullmatch(entry[:-4]):
            out.append(public_key(entry[:-4]))
    return out


def public_key(name: str) -> PublicKey:
    """The public key ``name`` from the keys directory; NotFoundError naming the known ones."""
    _, public_path = _paths(name)
    try:
        with open(public_path, "rb") as f:
            pem = f.read(64 * 1024)
    except FileNotFoundError:
        known = [os.path.basename(p)[:-4] for p in sorted(os.listdir(keys_dir()))
                 if p.endswith(".pub")] if os.path.isdir(keys_dir()) else []
        raise NotFoundError(f"no key named {name!r} in {keys_dir()} (keys: "
                            f"{', '.join(known) or 'none'}; make one with 'roro "
                            f"keys:generate --name {name}')") from None
    prims = _crypto()
    try:
        key = prims.serialization.load_pem_public_key(pem)
    except ValueError as e:
        raise ConfigError(f"{public_path} is not a public key: {e}") from None
    der = key.public_bytes(prims.serialization.Encoding.DER,
                           prims.serialization.PublicFormat.SubjectPublicKeyInfo)
    return _public_from_der(name, der)


_loaded: dict[tuple[str, float, int], SigningKey] = {}
_loaded_lock = threading.Lock()


def load_signing_key(name: str) -> SigningKey:
    """The private key ``name`` (loaded once per process while its file is unchanged). Refuses a
    private key file that others may read (like ssh does)."""
    private_path, _ = _paths(name)
    try:
        st = os.stat(private_path)
    except FileNotFoundError:
        public_key(name)  # NotFoundError naming the keys there is
        raise NotFoundError(f"key {name!r} has no private key ({private_path} is missing): "
                            f"it can verify, not sign") from None
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"{private_path} may be read by others (mode "
                          f"{stat.S_IMODE(st.st_mode):o}); make it private: chmod 600 "
                          f"{private_path}")
    cache_key = (private_path, st.st_mtime, st.st_size)
    with _loaded_lock:
        found = _loaded.get(cache_key)
    if found is not None:
        return found
    prims = _crypto()
    ser = prims.serialization
    with open(private_path, "rb") as f:
        pem = f.read(64 * 1024)
    try:
        private = ser.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{private_path} is not a private key roro can use: {e}") from None
    der = private.public_key().public_bytes(ser.Encoding.DER,
                                            ser.PublicFormat.SubjectPublicKeyInfo)
    public = _public_from_der(name, der)
    key = SigningKey(name, public.type, private, public)
    with _loaded_lock:
        _loaded[cache_key] = key
    return key


# -- checking a stored signature ---------------------------------------------------------------
def sig_shape_problem(sig: Any) -> str | None:
    """Why a stored ``sig`` field is malformed, or None (no cryptography: cheap, on every read)."""
    if not isinstance(sig, dict) or set(sig) != set(SIG_FIELDS):
        return f"'sig' must be an object with exactly {', '.join(SIG_FIELDS)}"
    if not all(isinstance(sig[k], str) for k in SIG_FIELDS):
        return "'sig' fields must be strings"
    if sig["alg"] not in _KEY_TYPE_OF:
        return f"'sig' names an unknown algorithm {sig['alg']!r}"
    if not _FINGERPRINT.fullmatch(sig["key"]):
        return "'sig' has a malformed key fingerprint"
    if not _KEY_NAME.fullmatch(sig["name"]):
        return "'sig' has a malformed signer name"
    if len(sig["pub"]) > MAX_PUB_B64 or len(sig["value"]) > MAX_VALUE_B64:
        return "'sig' is too long"
    return None


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SignatureError("its signature is not valid base64") from None


_verifiers: dict[bytes, tuple[str, Any]] = {}


def _verifier(name: str, der: bytes) -> tuple[PublicKey, Any]:
    """The public key (named ``name``) and its loaded ``cryptography`` object, parsed once per
    process per key (a log signed by few keys verifies without re-parsing each one)."""
    found = _verifiers.get(der)
    if found is None:
        public = _public_from_der(name, der)
        found = (public.type, _crypto().serialization.load_der_public_key(der))
        if len(_verifiers) >= 256:
            _verifiers.clear()
        _verifiers[der] = found
    return PublicKey(name, found[0], der), found[1]


def verify_signature(body: dict[str, Any], sig: dict[str, str]) -> PublicKey:
    """Check ``sig`` over the event ``body`` (without ``sig``); the signer's public key, or
    :class:`~roro.errors.SignatureError` saying what is wrong (the caller names the event)."""
    problem = sig_shape_problem(sig)
    if problem is not None:
        raise SignatureError(problem)
    der = _b64(sig["pub"])
    if fingerprint_of(der) != sig["key"]:
        raise SignatureError(f"its public key does not have the fingerprint {sig['key']} it "
                             f"claims")
    public, key = _verifier(sig["name"], der)
    if public.alg != sig["alg"]:
        raise SignatureError(f"its key is a {public.type} key, not one for {sig['alg']}")
    if not _verifies(public.type, key, _b64(sig["value"]), signed_bytes(body, sig)):
        raise SignatureError(f"its signature by {sig['name']} ({sig['key']}) does not verify: "
                             f"the event was changed after it was signed, or forged")
    return public


def _verifies(key_type: str, key: Any, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is the loaded public ``key``'s (of ``key_type``) signature of
    ``data``: Ed25519, or ECDSA with SHA-256 for a p256 key."""
    prims = _crypto()
    from cryptography.exceptions import InvalidSignature  # loaded by _crypto() above
    try:
        if key_type == "ed25519":
            key.verify(signature, data)
        else:
            key.verify(signature, data, prims.asymmetric.ec.ECDSA(prims.hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
