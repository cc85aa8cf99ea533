"""``roro keys:*`` (signing keys in the user's configuration directory) and ``roro verify``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..refspec import parse_refspec
from ..signing import KEY_TYPES
from . import render
from .errors import EXIT_INTEGRITY
from .render import json_option
from .state import complete_spec

if TYPE_CHECKING:
    from . import CliState


@click.command("keys:generate")
@click.option("--name", default="default", show_default=True, metavar="NAME",
              help="The key's name (RORO_SIGNING_KEY=NAME signs with it).")
@click.option("--type", "key_type", type=click.Choice(KEY_TYPES), default="ed25519",
              show_default=True,
              help="ed25519, or p256 (ECDSA P-256: what OpenSSF Model Signing bundles use).")
@json_option
def keys_generate(name: str, key_type: str, as_json: bool) -> None:
    """Make a signing key pair in $XDG_CONFIG_HOME/roro/keys/ (the private key mode 0600,
    never in a store). Prints its fingerprint (what others pin)."""
    from ..signing import generate_key, keys_dir  # cryptography (~30 ms): only for key commands
    public = generate_key(name, key_type)
    if as_json:
        render.emit_json({**public.to_dict(), "directory": keys_dir()})
        return
    render.console().print(render.text(
        "Made ", (f"{public.type}", "bold"), " key ", (name, "bold cyan"), " in ",
        render.safe_line(keys_dir()), ": ", (public.fingerprint, "bold"),
        f"\nSign with it: export RORO_SIGNING_KEY={name}"))


@click.command("keys:list")
@json_option
def keys_list(as_json: bool) -> None:
    """List your signing keys: name, type and fingerprint."""
    from ..signing import keys_dir, list_keys  # cryptography (~30 ms): only for key commands
    keys = list_keys()
    if as_json:
        render.emit_json({"directory": keys_dir(), "keys": [k.to_dict() for k in keys]})
        return
    out = render.console()
    if not keys:
        out.print(f"No keys in {keys_dir()}; make one with 'roro keys:generate --name NAME'.")
        return
    for k in keys:
        out.print(render.text((k.name, "bold cyan"), "  ", k.type, "  ", k.fingerprint))


@click.command("keys:export-public")
@click.argument("name")
@json_option
def keys_export_public(name: str, as_json: bool) -> None:
    """Print the public key NAME (PEM), for others to verify with (never the private key)."""
    from ..signing import public_key  # cryptography (~30 ms): only for key commands
    public = public_key(name)
    if as_json:
        render.emit_json({**public.to_dict(), "pem": public.pem()})
        return
    click.echo(public.pem(), nl=False)


@click.command("verify")
@click.argument("spec", metavar="NAME[:VERSION|TAG]", shell_complete=complete_spec)
@click.option("--require-signed", is_flag=True,
              help="Fail on an unsigned version or tag event too.")
@click.option("--key", "keys", multiple=True, metavar="NAME|FINGERPRINT",
              help="Accept only signatures by this key (repeatable): one of your keys by name, "
                   "or a fingerprint.")
@json_option
@click.pass_context
def verify(ctx: click.Context, spec: str, require_signed: bool, keys: tuple[str, ...],
           as_json: bool) -> None:
    """Check the signatures of NAME's ref log: every event, or with NAME:REF the events that
    serve that version (its version event and the moves of the tags pointing at it).

    Exits 0 when every signature verifies (and, with --require-signed, every version and tag
    event is signed; with --key, by one of those keys) and the store policy rejects none of the
    events (unsigned where it requires signatures, a protected tag moved by another key), 4
    otherwise, naming each bad event.
    """
    from ..check.verify import verify_repository  # the check package: only for its commands
    from ..signing import is_fingerprint, public_key  # cryptography: only to verify
    ref = parse_refspec(spec)
    assert ref.name is not None
    state: CliState = ctx.obj
    repo = state.project.resolve_repository(ref.name)
    accepted = {k if is_fingerprint(k) else public_key(k).fingerprint for k in keys} \
        if keys else None
    report = verify_repository(repo, ref if ":" in spec else None,
                               require_signed=require_signed, keys=accepted)
    if as_json:
        render.emit_json(report.to_dict())
    else:
        out = render.console()
        for e in report.failures():
            why = e.error or f"event {e.seq} ({e.type}) is not signed"
            out.print(render.text(("error", "bold red"), " ", render.safe_line(why)))
        c = report.counts()
        verdict = ("ok", "bold green") if report.ok else ("FAILED", "bold red")
        out.print(render.text(verdict, f": {repo.name}: {len(report.events)} events checked, "
                              f"{c['verified']} verified, {c['unsigned']} unsigned, "
                              f"{c['invalid']} invalid, {c['untrusted']} by other keys, "
                              f"{c['rejected']} rejected by the store policy "
                              f"in {report.seconds:.3f} s"))
    if not report.ok:
        ctx.exit(EXIT_INTEGRITY)


COMMANDS = [keys_generate, keys_list, keys_export_public, verify]
