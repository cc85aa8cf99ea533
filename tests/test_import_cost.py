"""Browsing commands do not pay for modules they never use: sqlite-utils would import numpy (and
pandas) at import time, ~0.15 s of every `roro models:log`, and scan every installed package for
its plugins, ~15 ms."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from roro.refs.index import _HideOptional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reading_the_index_does_not_import_numpy(tmp_path):
    code = (
        "import sys, roro\n"
        f"store = roro.Store({str(tmp_path / 'store')!r})\n"
        "store.ensure_initialized()\n"
        "assert store.index.repository('p', 'm') is None\n"
        "assert roro.Project('p', store).log(5) == []\n"
        "assert 'sqlite_utils' in sys.modules\n"
        "import sqlite_utils.plugins\n"  # plugins are never loaded for the index
        "assert not sqlite_utils.plugins._plugins_loaded, 'sqlite-utils plugins loaded'\n"
        "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules, 'numpy imported'\n"
        "import numpy\n"  # still importable afterwards
        "assert numpy.zeros(3).sum() == 0\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_only_the_importing_thread_is_refused_numpy():
    finder = _HideOptional()
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("numpy")
    assert finder.find_spec("json") is None
    seen = []
    other = threading.Thread(target=lambda: seen.append(finder.find_spec("numpy")))
    other.start()
    other.join()
    assert seen == [None]
