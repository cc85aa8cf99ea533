"""A hypothesis RuleBasedStateMachine drives a store through saves, loads, tags, tag moves and
removals, deletions, destroying and restoring whole repositories, gc, crashes at every named point followed by a reopen, and corruption followed
by fsck, and checks after every step that the registry agrees with a plain dict model of it.

It runs once per backend kind, through the ``store_factory`` fixture (S3 kinds join when they
are added there).
Crashes are simulated in-process: the crash handler raises a BaseException at the chosen point,
which leaves the store exactly as a killed process would (the subprocess kill -9 tests in
test_crash.py check that equivalence on real processes).
"""

from __future__ import annotations

import os

import pytest
from conftest import examples
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from support.trust_helpers import corrupt_object, restore_object

from roro import ConflictError, NotFoundError, Project, Store
from roro.check import CORRUPT_OBJECT, fsck, gc
from roro.faults import POINTS, SimulatedCrash, set_crash_handler

# gc with a grace period below the production floor (nobody else writes here)
pytestmark = pytest.mark.usefixtures("no_gc_floor")

REPOS = ["m", "n"]
TAGS = ["prod", "staging"]
PUBLISHED_AFTER = {"after-ref-event", "before-index-update", "during-index-update"}


class RepoModel:
    """What one repository must look like: the dict model."""

    def __init__(self):
        self.live: dict[int, dict] = {}   # version -> what get_model() returns
        self.deleted: set[int] = set()
        self.max_version = 0
        self.tags: dict[str, int] = {}
        self.history: list[tuple[str, int | None, int | None]] = []
        self.destroyed = False

    def saved(self, model: dict) -> int:
        self.max_version += 1
        self.live[self.max_version] = model
        return self.max_version

    def tagged(self, tag: str, version: int | None) -> None:
        previous = self.tags.get(tag)
        if previous == version:
            return
        self.history.append((tag, version, previous))
        if version is None:
            del self.tags[tag]
        else:
            self.tags[tag] = version


def make_machine(new_store_url) -> type[RuleBasedStateMachine]:
    class RegistryMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.url = new_store_url()
            self.models = {name: RepoModel() for name in REPOS}
            self.open()

        def open(self) -> None:
            self.store = Store(self.url)
            self.project = Project("p", store=self.store)

        def repo(self, name: str):
            return self.project.get_model_repository(name)

        # -- operations, shared by the plain rules and the crash rule --------------------------
        def do_save(self, name: str, payload: int, attach: bool) -> int:
            model = {"payload": payload}
            if self.models[name].destroyed:
                with pytest.raises(ConflictError, match="destroyed"):
                    self.repo(name).new_image(model).save()
                return self.models[name].max_version
            image = self.repo(name).new_image(model)
            image["payload"] = payload
            if attach:
                image.attach("files/a.txt", f"attachment {payload % 3}".encode())
            self.pending = lambda: self.models[name].saved(model)
            image.save(comment=f"payload {payload}")
            return image.version

        def do_tag(self, name: str, tag: str, version: int) -> None:
            m = self.models[name]
            if m.destroyed:
                with pytest.raises(ConflictError, match="destroyed"):
                    self.repo(name).add_tag(tag, version)
                return
            if version not in m.live:
                with pytest.raises(NotFoundError):
                    self.repo(name).add_tag(tag, version)
                return
            self.pending = lambda: m.tagged(tag, version)
            self.repo(name).add_tag(tag, version)

        def do_delete(self, name: str, version: int) -> None:
            m, repo = self.models[name], self.repo(name)
            if m.destroyed:
                with pytest.raises(ConflictError, match="destroyed"):
                    repo.delete_version(version)
            elif version in m.deleted:
                assert repo.delete_version(version) is False
            elif version not in m.live:
                with pytest.raises(NotFoundError):
                    repo.delete_version(version)
            elif version in m.tags.values():
                with pytest.raises(ConflictError) as e:
                    repo.delete_version(version)
                assert all(repr(t) in str(e.value) for t, v in m.tags.items() if v == version)
            else:
                self.pending = lambda: (m.live.pop(version), m.deleted.add(version))
                assert repo.delete_version(version) is True

        def apply_pending(self) -> None:
            pending, self.pending = self.pending, None
            if pending is not None:
                pending()

        # -- rules ------------------------------------------------------------------------------
        @initialize()
        def start(self):
            self.pending = None

        @rule(name=st.sampled_from(REPOS), payload=st.integers(0, 5), attach=st.booleans())
        def save(self, name, payload, attach):
            version = self.do_save(name, payload, attach)
            self.apply_pending()
            assert version == self.models[name].max_version

        @precondition(lambda self: any(m.live and not m.destroyed for m in self.models.values()))
        @rule(data=st.data())
        def load(self, data):
            name = data.draw(st.sampled_from([n for n in REPOS if self.models[n].live
                                              and not self.models[n].destroyed]))
            m = self.models[name]
            version = data.draw(st.sampled_from(sorted(m.live)))
            image = self.repo(name).get_model_image(version)
            assert image.get_model() == m.live[version]
            assert self.repo(name).get_model() == m.live[max(m.live)]
            if image.get_attachments():
                assert image.get_attachment("files/a.txt").read().startswith(b"attachment ")

        def some_version(self, data, name: str) -> int:
            """Mostly a version the repository has or had, sometimes one it never had."""
            m = self.models[name]
            return data.draw(st.sampled_from(sorted({*m.live, *m.deleted, m.max_version + 1})))

        @rule(data=st.data(), name=st.sampled_from(REPOS), tag=st.sampled_from(TAGS))
        def tag(self, data, name, tag):
            self.do_tag(name, tag, self.some_version(data, name))
            self.apply_pending()

        @precondition(lambda self: any(m.tags for m in self.models.values()))
        @rule(name=st.sampled_from(REPOS), tag=st.sampled_from(TAGS))
        def remove_tag(self, name, tag):
            m = self.models[name]
            if m.destroyed:
                with pytest.raises(ConflictError):
                    self.repo(name).remove_tag(tag)
                return
            if tag not in m.tags:
                with pytest.raises(NotFoundError):
                    self.repo(name).remove_tag(tag)
                return
            self.repo(name).remove_tag(tag)
            m.tagged(tag, None)

        @rule(data=st.data(), name=st.sampled_from(REPOS))
        def delete(self, data, name):
            self.do_delete(name, self.some_version(data, name))
            self.apply_pending()

        @rule(name=st.sampled_from(REPOS))
        def destroy(self, name):
            m, repo = self.models[name], self.repo(name)
            if m.max_version == 0:
                with pytest.raises(NotFoundError):
                    repo.destroy()
            elif m.destroyed:
                with pytest.raises(ConflictError):
                    repo.destroy()
            else:
                repo.destroy()
                m.destroyed = True

        @rule(name=st.sampled_from(REPOS))
        def restore(self, name):
            m, repo = self.models[name], self.repo(name)
            if not m.destroyed:
                with pytest.raises((ConflictError, NotFoundError)):
                    repo.restore()
                return
            try:
                repo.restore()
            except NotFoundError:  # gc collected some of its objects: it stays destroyed
                assert repo.status == "destroyed"
                return
            m.destroyed = False
            for version, model in m.live.items():
                assert repo.get_model(version) == model

        @rule()
        def collect(self):
            report = gc(self.store, grace_seconds=0)
            assert all(o.digest not in self.live_objects() for o in report.deleted)
            for name, m in self.models.items():
                if m.destroyed:
                    continue
                for version, model in m.live.items():
                    assert self.repo(name).get_model(version) == model

        @rule(data=st.data(), op=st.sampled_from(["save", "tag", "delete"]),
              name=st.sampled_from(REPOS), payload=st.integers(0, 5), drop_index=st.booleans())
        def crash_and_reopen(self, data, op, name, payload, drop_index):
            # a tag or delete writes no objects: only the points from its event on can fire
            point = data.draw(st.sampled_from(POINTS if op == "save" else sorted(PUBLISHED_AFTER)))
            version = self.some_version(data, name)
            self.repo(name).exists()  # the index is current, so only our own event can be crashed
            fired = []

            def crash(at):
                if at == point and not fired:
                    fired.append(at)
                    raise SimulatedCrash(at)

            previous = set_crash_handler(crash)
            try:
                if op == "save":
                    self.do_save(name, payload, attach=payload % 2 == 0)
                elif op == "tag":
                    self.do_tag(name, TAGS[payload % 2], version)
                else:
                    self.do_delete(name, version)
            except SimulatedCrash:
                pass
            finally:
                set_crash_handler(previous)
            published = not fired or fired[0] in PUBLISHED_AFTER
            if published:
                self.apply_pending()
            self.pending = None
            # reopen, as a new process would; maybe without the (derived) index at all
            self.store.close()
            if drop_index:
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(self.store.index_path() + suffix):
                        os.unlink(self.store.index_path() + suffix)
            self.open()
            if not published and op == "save":  # the same save then succeeds
                self.do_save(name, payload, attach=payload % 2 == 0)
                self.apply_pending()

        @precondition(lambda self: any(m.live and not m.destroyed for m in self.models.values()))
        @rule(data=st.data(), read_data=st.booleans())
        def corrupt_then_fsck(self, data, read_data):
            live = sorted(self.live_objects().items())
            digest, what = data.draw(st.sampled_from(live))
            original = corrupt_object(self.store, digest)
            try:
                report = fsck(self.store, read_data=read_data)
                if what == "manifest" or read_data:
                    assert [(p.kind, p.digest) for p in report.problems] == [(CORRUPT_OBJECT, digest)]
                else:
                    assert report.ok  # blobs are only re-hashed with read_data
            finally:
                restore_object(self.store, digest, original)
            assert fsck(self.store, read_data=True).ok

        # -- checks -----------------------------------------------------------------------------
        def live_objects(self) -> dict[str, str]:
            """Every object a live version needs: digest -> "manifest" or "blob"."""
            out: dict[str, str] = {}
            for name, m in self.models.items():
                if not m.live or m.destroyed:
                    continue
                for image in self.repo(name).list_model_images():
                    out[image.digest] = "manifest"
                    manifest = image.manifest
                    out.setdefault(manifest["model"]["digest"], "blob")
                    for a in manifest["attachments"]:
                        out.setdefault(a["digest"], "blob")
            return out

        @invariant()
        def agrees_with_the_model(self):
            for name, m in self.models.items():
                repo = self.repo(name)
                if m.max_version == 0:
                    assert not repo.exists()
                    continue
                if m.destroyed:
                    assert not repo.exists() and repo.status == "destroyed"
                    continue
                assert [i.version for i in repo.list_model_images()] == sorted(m.live, reverse=True)
                expected_tags = dict(m.tags)
                if m.live:
                    expected_tags["latest"] = max(m.live)
                assert repo.get_tags() == expected_tags
                assert [(h["tag"], h["version"], h["previous"])
                        for h in repo.get_tag_history()] == m.history

        @invariant()
        def fsck_is_clean(self):
            assert fsck(self.store).ok

        def teardown(self):
            try:
                if self.store.is_initialized():
                    incremental = self.store.index.dump()
                    fresh = Store(self.url)
                    assert fresh.rebuild_index().ok
                    assert fresh.index.dump() == incremental
                    assert fsck(fresh, read_data=True).ok
                    fresh.close()
            finally:
                self.store.close()

    return RegistryMachine


def test_registry_state_machine(store_factory):
    machine = make_machine(store_factory)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples(store_factory, 30, 4), stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
