"""Finding the current project: ``roro.yml``, environment variables, defaults.

Resolution, first match wins, separately for the project name and the store:

1. ``RORO_PROJECT`` / ``RORO_STORE`` environment variables;
2. ``project:`` / ``store:`` in the nearest ``roro.yml`` in the current directory or a parent (a
   relative ``store`` is relative to the file; ``endpoint_url`` is passed to its S3 store, and
   only to that one: a store from ``RORO_STORE`` uses ``AWS_ENDPOINT_URL``);
3. the project ``default`` in the user store ``$RORO_HOME`` (default ``~/.roro``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .environment import config_dir, roro_home
from .errors import ConfigError, InvalidArgumentError
from .names import validate_name
from .policy import use_pins
from .signing import is_fingerprint
from .store import Store
from .suggest import close_matches

if TYPE_CHECKING:
    from .formats.trust import Trust

CONFIG_FILE = "roro.yml"
USER_CONFIG_FILE = "config.yml"
DEFAULT_PROJECT = "default"
#: roro.yml keys passed to its store as options (how long to wait for an S3 endpoint).
TIMING_OPTIONS = ("connect_timeout", "read_timeout", "first_contact_timeout", "retry_deadline",
                  "max_retries")
#: The keys this roro reads in roro.yml. A key close to one of them (``projet``) is an error; any
#: other key is a warning, so that settings a newer roro writes never break an older one.
KNOWN_KEYS = ("project", "store", "endpoint_url", "remotes", "trust", "signing_key",
              *TIMING_OPTIONS)

#: Where the store came from: the ``--store`` option (or the ``store`` argument of
#: :func:`current_settings`), ``RORO_STORE``, ``roro.yml``, or the default user store.
ORIGIN_ARGUMENT, ORIGIN_ENV, ORIGIN_CONFIG, ORIGIN_DEFAULT = "argument", "env", "roro.yml", "default"


class ConfigWarning(UserWarning):
    """A roro.yml key this roro does not know (written by a newer roro, or by hand)."""


@dataclass
class Settings:
    project: str
    store: str
    options: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None
    remotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    store_origin: str = ORIGIN_DEFAULT

    @property
    def store_named_explicitly(self) -> bool:
        """True when the store was named (option, environment, roro.yml), not the default."""
        return self.store_origin != ORIGIN_DEFAULT

    def store_source(self) -> str:
        """Where the store was named, for messages: ``--store``, ``RORO_STORE``, a roro.yml."""
        return {ORIGIN_ARGUMENT: "--store", ORIGIN_ENV: "RORO_STORE",
                ORIGIN_CONFIG: f"'store' in {self.config_path}"}.get(self.store_origin,
                                                                     "$RORO_HOME")


def find_config(start: str | None = None) -> str | None:
    """The nearest ``roro.yml`` in ``start`` (default: the current directory) or a parent."""
    d = os.path.abspath(start or os.getcwd())
    while True:
        path = os.path.join(d, CONFIG_FILE)
        if os.path.isfile(path):
            return path
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def _read_yaml(path: str) -> tuple[Any, Any]:
    """``(node, data)`` of the YAML file at ``path``: the composed node (for line numbers) and
    the value. A YAML error is a :class:`ConfigError` that keeps PyYAML's line and column."""
    import yaml  # PyYAML: only when a configuration file is read
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"cannot read {path}{where}: {what}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    return node, data


def user_config_path() -> str:
    """``$XDG_CONFIG_HOME/roro/config.yml`` (``~/.config/roro/config.yml``)."""
    return os.path.join(config_dir(), USER_CONFIG_FILE)


def load_user_config() -> dict[str, Any]:
    """The user configuration (``{}`` when there is none); ConfigError if it is not a mapping."""
    path = user_config_path()
    if not os.path.isfile(path):
        return {}
    _, data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping (e.g. 'trust: {{pickle: deny}}')")
    return data


def trust_settings(explicit: dict[str, Any] | None = None) -> Trust:
    """The load gate's settings: the user configuration, then ``RORO_TRUST``, then the nearest
    ``roro.yml``, then ``explicit`` (``get_model(trust=...)``), each only tightening the ones
    before it (see :mod:`roro.formats.trust`)."""
    from .formats.trust import Trust, parse_env_trust  # only when a model is loaded
    trust = Trust()
    user = load_user_config()
    if "trust" in user:
        trust = trust.tighten(user["trust"], user_config_path())
    env = os.environ.get("RORO_TRUST")
    if env:
        trust = trust.tighten(parse_env_trust(env), "RORO_TRUST")
    path = find_config()
    if path is not None:
        data = load_config(path)
        if "trust" in data:
            trust = trust.tighten(data["trust"], path)
    if explicit is not None:
        trust = trust.tighten(explicit, "get_model(trust=...)")
    return trust


def load_config(path: str) -> dict[str, Any]:
    """The mapping in ``roro.yml`` at ``path``. A YAML error keeps PyYAML's line and column; an
    unknown key within two edits of a known one (``projet``) is a :class:`ConfigError` naming it
    and its line; any other unknown key is a :class:`ConfigWarning`."""
    import yaml  # PyYAML: its node types, only when a roro.yml is read
    node, data = _read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping with keys 'project' and 'store'")
    lines = {k.value: k.start_mark.line + 1 for k, _ in getattr(node, "value", [])
             if isinstance(k, yaml.ScalarNode)}
    for key in data:
        if key in KNOWN_KEYS:
            continue
        line = f", line {lines[key]}" if key in lines else ""
        near = close_matches(str(key), KNOWN_KEYS, n=1)
        if near:
            raise ConfigError(f"{path}{line}: unknown key {key!r}; did you mean {near[0]!r}?")
        warnings.warn(f"{path}{line}: unknown key {key!r} ignored (written by a newer roro? "
                      f"this one reads {', '.join(KNOWN_KEYS)})", ConfigWarning, stacklevel=3)
    for key in ("project", "store", "endpoint_url"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: '{key}' must be a string")
    for key in TIMING_OPTIONS:
        value = data.get(key)
        if key in data and (isinstance(value, bool) or not isinstance(value, (int, float))
                            or value <= 0 or (key == "max_retries" and not isinstance(value, int))):
            raise ConfigError(f"{path}: '{key}' must be a positive number"
                              f"{'' if key == 'max_retries' else ' of seconds'}")
    if "remotes" in data and not isinstance(data["remotes"], dict):
        raise ConfigError(f"{path}: 'remotes' must be a mapping of name to {{store: …}}")
    return data


def resolve_store_path(store: str, base_dir: str) -> str:
    if "://" in store:
        return store
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(store)))


def current_settings(project: str | None = None, store: str | None = None) -> Settings:
    """Resolve project and store from arguments, environment, ``roro.yml`` and defaults."""
    path = find_config()
    data = load_config(path) if path else {}
    base = os.path.dirname(path) if path else os.getcwd()
    options: dict[str, Any] = {}
    name = project or os.environ.get("RORO_PROJECT") or data.get("project") or DEFAULT_PROJECT
    origin = ORIGIN_DEFAULT
    if store or os.environ.get("RORO_STORE"):
        origin = ORIGIN_ARGUMENT if store else ORIGIN_ENV
        url = store or os.environ["RORO_STORE"]
        url = resolve_store_path(url, os.getcwd())
    elif data.get("store"):
        origin = ORIGIN_CONFIG
        url = resolve_store_path(data["store"], base)
        # endpoint_url says where roro.yml's bucket lives, so it goes with roro.yml's store
        # (and beats AWS_ENDPOINT_URL, which is global); a store given by --store or RORO_STORE
        # uses AWS_ENDPOINT_URL.
        if data.get("endpoint_url"):
            options["endpoint_url"] = data["endpoint_url"]
        options.update({k: data[k] for k in TIMING_OPTIONS if k in data})
    else:
        url = roro_home()
    remotes = {}
    for rname, spec in (data.get("remotes") or {}).items():
        if isinstance(spec, str):
            spec = {"store": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("store"), str):
            raise ConfigError(f"{path}: remote {rname!r} needs a 'store'")
        remotes[str(rname)] = {**spec, "store": resolve_store_path(spec["store"], base)}
    return Settings(validate_name(name, "project"), url, options, path, remotes, origin)


def resolve_store(name_or_url: Store | str | os.PathLike[str]) -> Store:
    """A :class:`~roro.store.Store` for a remote name declared in ``roro.yml``, a store URL or path.

    ``roro.yml`` may declare named remotes::

        remotes:
          prod: {store: s3://models-prod/roro, endpoint_url: https://s3.example.com}
          laptop: ../backup            # shorthand for {store: ../backup}

    A string that is the name of a declared remote resolves to that remote (its other keys, such
    as ``endpoint_url``, are passed to the store); anything else is a store URL or a folder path
    (write ``./prod`` to mean a folder that has the name of a remote). A ``Store`` is returned as is.
    """
    if isinstance(name_or_url, Store):
        return name_or_url
    if not isinstance(name_or_url, (str, os.PathLike)):
        raise TypeError(f"expected a store URL, a path or a remote name, not "
                        f"{type(name_or_url).__name__}")
    text = os.fspath(name_or_url)
    if not text:
        raise ConfigError("empty store: give a path, a store URL or the name of a remote")
    path = find_config()
    if path is not None and "/" not in text and "://" not in text:
        settings = current_settings()
        spec = settings.remotes.get(text)
        if spec is not None:
            options = {k: v for k, v in spec.items() if k != "store"}
            return Store(spec["store"], **options)
    return Store(text)


def pinned_keys(url: str) -> set[str]:
    """The owner keys this user pinned for the store at ``url``: ``pins:`` in the user
    configuration (``roro trust:pin``), plus ``trust: keys`` of the user configuration and of
    the nearest roro.yml (pins for every store)."""
    user = load_user_config()
    out: set[str] = set()
    pins = user.get("pins") or {}
    if isinstance(pins, dict):
        for found in (pins.get(url) or []):
            if isinstance(found, str):
                out.add(found)
    sources = [user]
    path = find_config()
    if path is not None:
        sources.append(load_config(path))
    for data in sources:
        trust = data.get("trust")
        if isinstance(trust, dict) and isinstance(trust.get("keys"), list):
            out.update(k for k in trust["keys"] if isinstance(k, str))
    return out


def check_fingerprint(fingerprint: str) -> None:
    """InvalidArgumentError unless ``fingerprint`` is a key fingerprint."""
    if not is_fingerprint(fingerprint):
        raise InvalidArgumentError(f"{fingerprint!r} is not a key fingerprint (SHA256:… as "
                                   f"'roro keys:list' and 'roro policy:show' print it)")


def add_pin(url: str, fingerprint: str) -> str:
    """Pin ``fingerprint`` for the store at ``url`` in the user configuration; its path."""
    import yaml  # PyYAML: only when a pin is written
    check_fingerprint(fingerprint)
    data = load_user_config()
    pins = data.setdefault("pins", {})
    if not isinstance(pins, dict):
        raise ConfigError(f"{user_config_path()}: 'pins' must be a mapping of store URLs")
    keys = pins.setdefault(url, [])
    if fingerprint not in keys:
        keys.append(fingerprint)
    path = user_config_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)
    return path


use_pins(pinned_keys)  # the store layer asks which owner keys the reader pinned (roro/policy.py)
