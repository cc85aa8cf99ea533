"""A store that lost its ``roro.json`` (issue 13, item 11): a folder or prefix holding roro's
``objects/`` or ``refs/`` without the format marker is damage, not an empty registry. Every read,
write and check says so in one line (a StoreError), and nothing is written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import save_image

from roro import Project, Store, StoreError
from roro.check import fsck, gc
from roro.cli import main
from roro.storage.layout import FORMAT_KEY


@pytest.fixture
def unmarked(store_url):
    repo = Project("p", store=store_url).get_model_repository("m")
    save_image(repo, {"m": 1})
    Store(store_url).backend.delete(FORMAT_KEY)
    return store_url


def test_reads_writes_and_checks_say_the_marker_is_missing(unmarked):
    project = Project("p", store=unmarked)
    for call in (project.list_model_repositories, lambda: project.get_model_repository("m").get_model(),
                 lambda: project.log(), lambda: project.search("version > 0"),
                 lambda: save_image(project.get_model_repository("n"), 2),
                 lambda: fsck(project.store), lambda: gc(project.store),
                 lambda: project.store.rebuild_index()):
        with pytest.raises(StoreError, match="roro.json"):
            call()
    assert not Store(unmarked).backend.exists(FORMAT_KEY)  # no new marker was written


@pytest.mark.parametrize("argv", [["models"], ["models:log", "m"], ["models:show", "m"], ["fsck"],
                                  ["gc"], ["index", "--rebuild"]])
def test_the_cli_says_it_in_one_line(unmarked, argv):
    result = CliRunner().invoke(main, ["--store", unmarked, "--project", "p", *argv])
    assert result.exit_code != 0, result.output
    assert "roro.json" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_an_empty_or_missing_store_still_reads_as_empty(store_url):
    assert Project("p", store=store_url).list_model_repositories() == []
    assert not Store(store_url).is_initialized()


def test_a_first_writer_racing_a_reader_is_not_damage(tmp_path):
    """A reader that missed the marker (a first writer wrote it just after) and then sees that
    writer's objects reads the marker again instead of calling the store damaged (8 processes
    saving to a new S3 store met this once the conditional-write probe stopped slowing them)."""
    from roro.storage import KeyNotFoundError, open_backend, parse_store_url
    from roro.storage.wrappers import WrappingBackend

    url = str(tmp_path / "store")
    writer = Store(url)
    writer.ensure_initialized()
    writer.objects.put_bytes(b"the first writer's object")

    class MissesTheMarkerOnce(WrappingBackend):
        missed = False

        def get(self, key, max_size=None):
            if key == "roro.json" and not self.missed:
                self.missed = True
                raise KeyNotFoundError(key)
            return super().get(key, max_size)

    reader = Store(MissesTheMarkerOnce(open_backend(parse_store_url(url))))
    assert reader.is_initialized() and reader.store_id() == writer.store_id()
