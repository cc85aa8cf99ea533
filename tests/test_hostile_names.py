"""Hostile names: attachment names that try to escape the download directory are refused, and no
download ever creates a file outside its target; every accepted repository and tag name
round-trips through the store's keys, a folder and the index."""

from __future__ import annotations

import os

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roro import ConflictError, IntegrityError, InvalidNameError, Project, Store
from roro.names import (
    attachment_name_warning,
    check_attachment_path,
    validate_attachment_name,
    validate_name,
    validate_new_name,
)
from roro.objects.manifest import check_manifest
from roro.refspec import validate_new_tag
from roro.storage.layout import log_key, log_prefix

HOSTILE_ATTACHMENT_NAMES = [
    "../../etc/passwd", "/etc/passwd", "a/../../b", "..", ".", "", "C:\\x", "C:x", "c:/x",
    "..\\x", "a\\b", "a\x00b", "\x00", "x" * 256, "a/" + "b" * 101, "a//b", "a/./b", "a/",
    "/", "./a", "a/..", " a", "a ", "a.", "a/b./c", "\udcff", "ok\ud800.txt", "a\nb", "a\rb",
    "\u202eexe.txt", "a\u200bb", "CON", "nul.txt", "aux", "COM1.log", "lpt9", "a?b", "a#?b",
    "a*b", "a|b", 'a"b', "a<b", "a>b", "dir/../../../x", "\\\\server\\share", "~/../../x/..",
]


@pytest.fixture
def project(store_url):
    return Project("p", store=store_url)


def files_below(root) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


@pytest.mark.parametrize("name", HOSTILE_ATTACHMENT_NAMES)
def test_hostile_attachment_name_is_refused(project, name, tmp_path):
    image = project.get_model_repository("m").new_image(1)
    with pytest.raises(InvalidNameError) as e:
        image.attach(name, b"payload")
    assert e.value.name == name
    assert image.get_attachments() == []


def test_invalid_utf8_bytes_name_is_refused(project):
    image = project.get_model_repository("m").new_image(1)
    with pytest.raises(InvalidNameError):
        image.attach(b"\xff\xfe".decode("utf-8", "surrogateescape"), b"x")
    with pytest.raises(InvalidNameError):
        image.attach(b"log.txt", b"x")  # bytes are not a name


@pytest.mark.parametrize("first, second", [
    ("Log.txt", "log.txt"), ("caf\u00e9.txt", "cafe\u0301.txt"), ("a", "a/b"), ("a/b", "A"),
    ("plots/ROC.png", "PLOTS/roc.png"),
])
def test_names_that_collide_on_some_filesystem_are_refused(project, first, second):
    image = project.get_model_repository("m").new_image(1)
    image.attach(first, b"1")
    with pytest.raises(InvalidNameError):
        image.attach(second, b"2")
    image.attach(first, b"replaced")  # the same name again replaces it
    assert [a.name for a in image.get_attachments()] == [first]


def test_hostile_names_in_a_forged_manifest_are_refused_on_read(project):
    """A manifest written by something other than roro cannot smuggle a path escape past the
    checks; names that only new writes refuse (a Windows device name, a trailing dot: rules an
    older roro did not have) are read, and fsck warns about them (DESIGN.md §14)."""
    repo = project.get_model_repository("m")
    image = repo.new_image(1)
    image.attach("ok.txt", b"fine")
    image.save()
    manifest = image.manifest
    for name in HOSTILE_ATTACHMENT_NAMES:
        forged = {**manifest, "attachments": [{**manifest["attachments"][0], "name": name}]}
        try:
            check_attachment_path(name)
        except InvalidNameError:
            with pytest.raises(IntegrityError, match="not a valid image manifest"):
                check_manifest(forged, "sha256:" + "0" * 64)
        else:
            assert check_manifest(forged, "sha256:" + "0" * 64) is forged
            assert attachment_name_warning(name) is not None
    escapes = [n for n in HOSTILE_ATTACHMENT_NAMES if ".." in n.split("/") or n.startswith("/")
               or "\\" in n or ":" in n or "\x00" in n]
    for name in escapes:
        with pytest.raises(InvalidNameError):
            check_attachment_path(name)


def test_download_writes_only_below_the_target(project, tmp_path):
    repo = project.get_model_repository("m")
    image = repo.new_image(1)
    names = ["a.txt", "plots/roc.png", "deep/er/still/x.bin", "caf\u00e9 \u00e0 la carte.txt",
             "..dots..in..name", "-dash", "#hash", "spaces in/name"]
    for n in names:
        image.attach(n, n.encode())
    image.save()
    target = tmp_path / "target"
    # the target, and a remote store's local object cache (RORO_CACHE_DIR), may gain files
    allowed = ("target", "cache")
    outside_before = {p for p in files_below(tmp_path) if not p.startswith(allowed)}
    paths = repo.get_model_image().download_attachments(target)
    assert sorted(os.path.relpath(p, target) for p in paths) == sorted(
        n.replace("/", os.sep) for n in names)
    for n in names:
        assert (target / n).read_bytes() == n.encode()
    outside_after = {p for p in files_below(tmp_path) if not p.startswith(allowed)}
    assert outside_after == outside_before


def test_download_does_not_follow_a_symlink_out_of_the_target(project, tmp_path):
    repo = project.get_model_repository("m")
    image = repo.new_image(1)
    image.attach("plots/roc.png", b"png")
    image.attach("report.txt", b"new report")
    image.save()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.txt").write_bytes(b"precious")
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "plots")
    os.symlink(outside / "report.txt", target / "report.txt")
    attachments = {a.name: a for a in repo.get_model_image().get_attachments()}
    with pytest.raises(ConflictError, match="symbolic link"):
        attachments["plots/roc.png"].download(target)
    assert os.listdir(outside) == ["report.txt"]
    # a symlink at the file itself is replaced, never written through
    attachments["report.txt"].download(target)
    assert (outside / "report.txt").read_bytes() == b"precious"
    assert not os.path.islink(target / "report.txt")
    assert (target / "report.txt").read_bytes() == b"new report"


attachment_chars = st.sampled_from(list("ab./\\:~ \x00.\u00e9\u0301\n-_#?*") + ["..", "C:"])
attachment_names = st.one_of(
    st.lists(attachment_chars, min_size=0, max_size=12).map("".join),
    st.text(max_size=40),
)


def test_any_attachment_name_is_refused_or_stays_below_the_target(store_factory, tmp_path):
    @settings(max_examples=examples(store_factory, 150, 10), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=attachment_names)
    def run(name):
        _test_any_attachment_name_is_refused_or_stays_below_the_target(store_factory, tmp_path, name)

    run()


def _test_any_attachment_name_is_refused_or_stays_below_the_target(store_factory, tmp_path, name):
    work = tmp_path / f"ex-{abs(hash(name))}-{len(os.listdir(tmp_path))}"
    work.mkdir()
    project = Project("p", store=store_factory())
    image = project.get_model_repository("m").new_image(1)
    try:
        image.attach(name, b"payload")
    except InvalidNameError:
        return
    image.save()
    target = work / "target"
    (path,) = project.get_model_repository("m").get_model_image().download_attachments(target)
    real = os.path.realpath(path)
    assert real.startswith(os.path.realpath(target) + os.sep)
    assert os.path.relpath(real, os.path.realpath(target)) == os.path.normpath(name)
    def inside(p, top):
        return p == top or p.startswith(top + os.sep)

    assert {p for p in files_below(work) if not inside(p, "target")} == set()
    assert all(e.startswith(("ex-", "store-")) or e in ("home", "cache")
               for e in os.listdir(tmp_path))


# -- repository and tag names ---------------------------------------------------------------------

name_text = st.one_of(
    st.text(alphabet="abcxyz0189._-", min_size=1, max_size=110),
    st.text(max_size=20),
    st.sampled_from(["..", ".", "a..b", "-a", ".a", "A", "latest", "123", "a/b", "a\\b", "",
                     "a\x00", "x" * 100, "x" * 101, "ok-name.v2_final"]),
)


def test_accepted_names_round_trip_through_keys_folders_and_index(store_factory):
    @settings(max_examples=examples(store_factory, 60, 8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=name_text, tag=name_text)
    def run(name, tag):
        _test_accepted_names_round_trip_through_keys_folders_and_index(store_factory, name, tag)

    run()


def _test_accepted_names_round_trip_through_keys_folders_and_index(store_factory, name, tag):
    url = store_factory()
    project = Project("p", store=url)
    try:
        validate_name(name)
    except InvalidNameError:
        with pytest.raises(InvalidNameError):
            project.get_model_repository(name)
        assert not Store(url).is_initialized()  # nothing was written
        return
    repo = project.get_model_repository(name)
    try:
        validate_new_name(name)
    except InvalidNameError:  # readable, but not a name for a new repository (Windows)
        with pytest.raises(InvalidNameError):
            repo.new_image(1).save()
        assert not repo.exists()
        return
    repo.new_image(1).save()
    tag_ok = True
    try:  # a new tag: not like a version, not a Windows device name
        validate_new_tag(tag)
        validate_new_name(tag, "tag")
    except InvalidNameError:
        tag_ok = False
        with pytest.raises(InvalidNameError):
            repo.add_tag(tag, 1)
    if tag_ok:
        repo.add_tag(tag, 1)

    # the key (shared by folder and S3 stores) holds the name unchanged, as one path part
    key = log_key("p", name, 1)
    assert key == f"refs/p/{name}/log/0000000001.json" and log_prefix("p", name).count("/") == 4
    assert Store(url).backend.exists(key)
    if "://" not in url:  # a folder store: the name is a directory, unchanged
        assert os.path.isfile(os.path.join(url, "refs", "p", name, "log", "0000000001.json"))
    # a fresh process lists it and a rebuilt index answers the same
    store = Store(url)
    assert store.rebuild_index().repositories == 1
    again = Project("p", store=store)
    assert [r.name for r in again.list_model_repositories()] == [name]
    tags = again.get_model_repository(name).get_tags()
    assert tags == ({tag: 1, "latest": 1} if tag_ok else {"latest": 1})


def test_attachment_name_rules_in_one_place():
    for name in HOSTILE_ATTACHMENT_NAMES:
        with pytest.raises(InvalidNameError):
            validate_attachment_name(name)
    for name in ["a", "a.txt", "dir/sub/file.tar.gz", "x" * 100, "/".join(["y" * 100] * 2)[:255]]:
        assert validate_attachment_name(name) == name
