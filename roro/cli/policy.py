"""``roro policy:*`` (the store policy: who may write what) and ``roro trust:pin`` (the owner
keys a reader trusts). Every refusal by the policy or by pins is exit 6 (TrustError)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..config import add_pin, check_fingerprint, resolve_store
from ..errors import ConfigError, NotFoundError
from . import render
from .render import json_option

if TYPE_CHECKING:
    from ..policy import Entry
    from ..store import Store
    from . import CliState

AS_OPTION = click.option("--as", "as_key", metavar="NAME",
                         help="The owner key to sign the change with (default: your key whose "
                              "fingerprint is the policy owner's).")


def _store(ctx: click.Context, *, write: bool = False) -> tuple[Store, str]:
    state: CliState = ctx.obj
    project = state.writable_project if write else state.project
    return project.store, project.name


def _split(spec: str) -> tuple[str | None, str]:
    """``[REPO:]TAG`` -> (REPO or None, TAG)."""
    repo, colon, tag = spec.rpartition(":")
    return (repo if colon else None), tag


def _done(entry: Entry, store: Store, as_json: bool) -> None:
    if as_json:
        render.emit_json({"store": store.url, "entry": entry.to_dict()})
        return
    render.console().print(render.text(
        ("policy", "bold"), f" entry {entry.seq}: ", render.safe_line(entry.describe()),
        f" (signed by {entry.sig['name']}, {entry.signer_key})"))


@click.command("policy:init")
@click.option("--owner", required=True, metavar="NAME",
              help="Your key that owns the policy: it signs every change.")
@json_option
@click.pass_context
def policy_init(ctx: click.Context, owner: str, as_json: bool) -> None:
    """Start the store's policy, owned by your key OWNER (pinned for this store in your user
    configuration). Other readers then pin the owner's fingerprint: roro trust:pin FINGERPRINT."""
    from .. import policy  # the policy module: only for its commands
    store, _ = _store(ctx, write=True)
    entry = policy.init(store, owner)
    add_pin(store.url, entry.signer_key)  # the owner trusts its own key
    _done(entry, store, as_json)
    if not as_json:
        render.console().print(f"Readers pin it with: roro trust:pin {entry.signer_key}")


@click.command("policy:allow")
@click.argument("key", metavar="NAME|FINGERPRINT")
@AS_OPTION
@json_option
@click.pass_context
def policy_allow(ctx: click.Context, key: str, as_key: str | None, as_json: bool) -> None:
    """Allow KEY: its signatures count where a repository requires signed events."""
    from .. import policy  # the policy module: only for its commands
    store, _ = _store(ctx)
    _done(policy.allow(store, key, as_key), store, as_json)


@click.command("policy:revoke")
@click.argument("key", metavar="NAME|FINGERPRINT")
@click.option("--compromised", is_flag=True,
              help="Reject every event KEY ever signed (else only those written from now on).")
@AS_OPTION
@json_option
@click.pass_context
def policy_revoke(ctx: click.Context, key: str, compromised: bool, as_key: str | None,
                  as_json: bool) -> None:
    """Revoke KEY: it no longer counts (what it signed while allowed stays valid, unless
    --compromised)."""
    from .. import policy  # the policy module: only for its commands
    store, _ = _store(ctx)
    _done(policy.revoke(store, key, compromised, as_key), store, as_json)


@click.command("policy:protect")
@click.argument("spec", metavar="[REPO:]TAG")
@click.option("--key", "keys", multiple=True, required=True, metavar="NAME|FINGERPRINT",
              help="A key that may move the tag (repeatable).")
@AS_OPTION
@json_option
@click.pass_context
def policy_protect(ctx: click.Context, spec: str, keys: tuple[str, ...], as_key: str | None,
                   as_json: bool) -> None:
    """Only the given keys may move TAG (in REPO, or in every repository of the project)."""
    from .. import policy  # the policy module: only for its commands
    store, project = _store(ctx)
    repo, tag = _split(spec)
    _done(policy.protect(store, project, repo, tag, list(keys), as_key), store, as_json)


@click.command("policy:unprotect")
@click.argument("spec", metavar="[REPO:]TAG")
@AS_OPTION
@json_option
@click.pass_context
def policy_unprotect(ctx: click.Context, spec: str, as_key: str | None, as_json: bool) -> None:
    """Lift a protection policy:protect set (the same [REPO:]TAG)."""
    from .. import policy  # the policy module: only for its commands
    store, project = _store(ctx)
    repo, tag = _split(spec)
    _done(policy.unprotect(store, project, repo, tag, as_key), store, as_json)


@click.command("policy:require-signed")
@click.argument("repository", metavar="REPO")
@AS_OPTION
@json_option
@click.pass_context
def policy_require_signed(ctx: click.Context, repository: str, as_key: str | None,
                          as_json: bool) -> None:
    """From now on every event of REPO must be signed by an allowed key."""
    from .. import policy  # the policy module: only for its commands
    store, project = _store(ctx)
    _done(policy.require_signed(store, project, repository, as_key), store, as_json)


@click.command("policy:show")
@json_option
@click.pass_context
def policy_show(ctx: click.Context, as_json: bool) -> None:
    """Show the store's policy: owner, allowed and revoked keys, protected tags, repositories
    that require signatures, and the entries of its log. Exit 3 when the store has none."""
    from .. import policy  # the policy module: only for its commands
    store, _ = _store(ctx)
    store.policy()  # the reader's checks: pins, a log that got shorter (exit 6)
    found = policy.read_policy(store.backend)
    if not found.entries:
        raise NotFoundError(f"store {store.url} has no policy (start one with 'roro "
                            f"policy:init --owner KEY')")
    doc: dict[str, Any] = {"store": store.url, "pinned": sorted(policy.pinned_keys(store.url)),
                           **found.to_dict()}
    if as_json:
        render.emit_json(doc)
        return
    out = render.console()
    rules = doc["rules"]
    pinned = "pinned" if found.owner in doc["pinned"] else "NOT pinned: roro trust:pin " + \
        str(found.owner)
    out.print(render.text(("owner", "bold"), f" {found.owner} ({pinned})"))
    for k in rules["allowed"]:
        out.print(render.text(("allowed", "green"), f" {k['name']} {k['key']}"))
    for k in rules["revoked"]:
        out.print(render.text(("revoked", "red"), f" {k}"))
    for p in rules["protected"]:
        where = f"{p['repository']}:" if p["repository"] else "(every repository) "
        out.print(render.text(("protected", "bold"), f" {where}{p['tag']} by "
                              f"{', '.join(p['keys'])}"))
    for r in rules["require_signed"]:
        out.print(render.text(("require-signed", "bold"), f" {r['project']}/{r['repository']}"))
    for e in found.entries:
        out.print(f"  {e.seq:>3}  {e.time}  {render.safe_line(e.describe())}")
    for e, why in found.rejected:
        out.print(render.text(("  rejected", "bold red"), f" entry {e.seq}: ",
                              render.safe_line(why)))


@click.command("trust:pin")
@click.argument("fingerprint")
@click.option("--remote", metavar="NAME", help="Pin it for this remote's store (roro.yml "
                                                "remotes:) instead of the current store.")
@json_option
@click.pass_context
def trust_pin(ctx: click.Context, fingerprint: str, remote: str | None, as_json: bool) -> None:
    """Trust FINGERPRINT as an owner of the store's policy (in your user configuration, per
    store URL). A pinned reader refuses a policy another key owns, and one that went missing
    or got shorter since it last read it."""
    state: CliState = ctx.obj
    check_fingerprint(fingerprint)  # bad input first, before the store is looked for
    if remote is not None:
        if remote not in state.settings.remotes:
            raise ConfigError(f"no remote named {remote!r} in roro.yml (remotes: "
                              f"{', '.join(sorted(state.settings.remotes)) or 'none'})")
        url = resolve_store(remote).url
    else:
        url = state.writable_project.store.url
    path = add_pin(url, fingerprint)
    if as_json:
        render.emit_json({"store": url, "pinned": fingerprint, "config": path})
        return
    render.console().print(render.text("Pinned ", (fingerprint, "bold"), " for ",
                                       render.safe_line(url), f" (in {path})"))


COMMANDS = [policy_init, policy_allow, policy_revoke, policy_protect, policy_unprotect,
            policy_require_signed, policy_show, trust_pin]
