"""Seconds read from the environment (gc's grace floor and lock age, S3 deadlines): one parser,
one error naming the variable."""

import pytest

from roro.errors import StoreError
from roro.objects.keep import lock_stale, min_grace
from roro.storage.s3 import _seconds
from roro.units import env_seconds


@pytest.mark.parametrize("raw", ["x", "-1", "inf", "nan", "1h"])
def test_every_variable_refuses_what_is_not_seconds(monkeypatch, raw):
    for variable, read in [("RORO_GC_MIN_GRACE", min_grace), ("RORO_GC_LOCK_STALE", lock_stale),
                           ("RORO_S3_RETRY_DEADLINE", lambda: _seconds("retry_deadline", None, 1.0))]:
        monkeypatch.setenv(variable, raw)
        with pytest.raises(StoreError, match=f"^{variable}="):
            read()
        monkeypatch.delenv(variable)


def test_zero_only_where_it_means_something(monkeypatch):
    monkeypatch.setenv("RORO_GC_MIN_GRACE", "0")
    assert min_grace() == 0.0  # gc may then spare nothing: allowed on purpose
    monkeypatch.setenv("RORO_GC_LOCK_STALE", "0")
    with pytest.raises(StoreError, match="> 0"):
        lock_stale()


def test_unset_or_empty_is_the_default(monkeypatch):
    monkeypatch.delenv("RORO_T", raising=False)
    assert env_seconds("RORO_T", 5.0) == 5.0
    monkeypatch.setenv("RORO_T", "")
    assert env_seconds("RORO_T", 5.0) == 5.0
    monkeypatch.setenv("RORO_T", "2.5")
    assert env_seconds("RORO_T", 5.0) == 2.5
