"""Download-safe manifests (issue 13, item 12): a manifest read from a store is checked, before
anything is written, against the rules that keep a download safe — no path escapes, no name that
is both a file and a folder (``a`` and ``a/b``), no two names that are one file on a
case-insensitive or normalizing filesystem — by the API and the CLI alike. Rules only new writes
need stay warnings (fsck) so that old stores stay readable."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from conftest import save_image

from roro import DownloadError, IntegrityError, InvalidNameError, Project
from roro.check import fsck
from roro.cli import main
from roro.writer import publish

COLLIDING = [("a", "a/b"), ("caf\u00e9.txt", "cafe\u0301.txt"), ("Log.txt", "log.txt"),
             ("dir", "DIR/y"), ("same", "same")]
ESCAPING = ["../x", "/etc/passwd", "a/../../b", "C:x", "a\\b", "a\x00b", "", "a//b"]


def forge(repo, names: list[str]):
    """Save an image, then publish a forged copy of its manifest naming ``names`` (all pointing at
    its one attachment blob), as a writer that skipped roro's checks would."""
    image = save_image(repo, {"m": 1}, attachments={"f": b"payload"})
    manifest = image.manifest
    entry = manifest["attachments"][0]
    forged = {**manifest, "attachments": [{**entry, "name": n} for n in names]}
    try:
        return publish(repo.store, repo.project.name, repo.name, forged).version
    except IntegrityError:  # published, but the index refuses to read it back
        return image.version + 1


@pytest.fixture
def project(store_url):
    return Project("p", store=store_url)


@pytest.mark.parametrize("names", COLLIDING)
def test_a_colliding_manifest_is_readable_but_never_downloaded(project, tmp_path, names):
    repo = project.get_model_repository("m")
    version = forge(repo, list(names))
    image = repo.get_model_image(version)
    assert image.get_model() == {"m": 1}  # the version itself is intact
    out = tmp_path / "out"
    with pytest.raises((DownloadError, InvalidNameError)):
        image.download_attachments(out)
    with pytest.raises((DownloadError, InvalidNameError)):
        image.download(tmp_path / "model.pkl", attachments=out)
    assert not (tmp_path / "model.pkl").exists()
    assert not out.exists() or os.listdir(out) == []

    os.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--store", project.store.url, "--project", "p",
                                       "models:download", f"m:{version}", "--attachments", "cli"])
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "cli").exists() or os.listdir(tmp_path / "cli") == []
    assert not (tmp_path / f"m-v{version}.pkl").exists()  # nothing at all was written

    report = fsck(project.store)
    assert report.ok
    assert any(w.kind == "name-warning" and w.version == version for w in report.warnings)


@pytest.mark.parametrize("name", ESCAPING)
def test_a_manifest_with_an_escaping_name_is_refused_on_read(project, tmp_path, name):
    repo = project.get_model_repository("m")
    version = forge(repo, [name])
    with pytest.raises(IntegrityError, match="not a valid image manifest"):
        repo.get_model_image(version)
    result = CliRunner().invoke(main, ["--store", project.store.url, "--project", "p",
                                       "models:download", f"m:{version}", "--attachments",
                                       str(tmp_path / "out")])
    assert result.exit_code == 4, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert not fsck(project.store).ok  # an invalid manifest is a problem, not a warning
