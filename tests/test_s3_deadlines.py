"""Dead endpoints never hang a command (issue 13, item 8). An endpoint that accepts TCP and never
answers fails the first request within ~10 s (``first_contact_timeout``) while it has never
answered this process; once it has answered, a request's retries stop at a total deadline
(``retry_deadline``), configurable as a store option, in roro.yml or in the environment. Tested
with real sockets: a server that accepts and never answers, and a proxy to moto or SeaweedFS
that goes silent mid-test."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from conftest import save_image
from support.blackhole import BlackHole, SilencingProxy
from support.deadline import within
from support.s3servers import create_bucket, use_endpoint

from roro import Project, Store, StoreError
from roro.cli import main


@pytest.fixture
def black_hole(monkeypatch):
    hole = BlackHole()
    use_endpoint(monkeypatch, hole.endpoint)  # and dummy credentials, nothing of the user's
    yield hole.endpoint
    hole.close()


def timed(fn):
    def run():
        started = time.monotonic()
        try:
            fn()
        except StoreError as e:
            return time.monotonic() - started, str(e)
        return time.monotonic() - started, "no error"
    return run


def test_a_black_hole_fails_the_first_request_within_seconds(black_hole):
    project = Project("p", store="s3://bucket/x", endpoint_url=black_hole)
    seconds, message = within(60, timed(project.list_model_repositories), "a first request")
    assert "did not answer" in message and black_hole in message, message
    assert seconds < 20, seconds  # it took 361 s (6 attempts of a 60 s read timeout)


def test_the_cli_says_so_in_one_line(black_hole):
    def run():
        result = CliRunner().invoke(main, ["--store", "s3://bucket/x", "models"],
                                    env={"RORO_S3_FIRST_CONTACT_TIMEOUT": "2"})
        return result.exit_code, result.output
    code, output = within(60, run, "roro models")
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert "did not answer within 2 s" in output


def test_after_the_endpoint_answered_retries_stop_at_the_deadline(s3_endpoint):
    proxy = SilencingProxy(s3_endpoint)
    try:
        url = f"s3://{create_bucket(s3_endpoint)}/x"
        store = Store(url, endpoint_url=proxy.endpoint, retry_deadline=6, read_timeout=2)
        repo = Project("p", store=store).get_model_repository("m")
        save_image(repo, {"v": 1})  # the endpoint has answered
        proxy.silence()
        seconds, message = within(60, timed(lambda: store.backend.get("roro.json")), "a read")
        assert "6" in message and "deadline" in message, message
        assert seconds < 6 + 2 + 5, seconds
    finally:
        proxy.close()


def test_the_deadline_is_configurable_everywhere(tmp_path, monkeypatch, s3_endpoint):
    url = f"s3://{create_bucket(s3_endpoint)}/x"
    assert Store(url).backend.retry_deadline == 120  # the default
    monkeypatch.setenv("RORO_S3_RETRY_DEADLINE", "30")
    monkeypatch.setenv("RORO_S3_FIRST_CONTACT_TIMEOUT", "4")
    backend = Store(url).backend
    assert (backend.retry_deadline, backend.first_contact_timeout) == (30, 4)
    assert Store(url, retry_deadline=7).backend.retry_deadline == 7
    (tmp_path / "roro.yml").write_text(f"project: p\nstore: {url}\nretry_deadline: 9\n"
                                       f"first_contact_timeout: 3\n")
    monkeypatch.chdir(tmp_path)
    from roro import get_current_project
    backend = get_current_project().store.backend
    assert (backend.retry_deadline, backend.first_contact_timeout) == (9, 3)
    monkeypatch.setenv("RORO_S3_RETRY_DEADLINE", "soon")
    with pytest.raises(StoreError, match="RORO_S3_RETRY_DEADLINE"):
        Store(url).backend  # noqa: B018
