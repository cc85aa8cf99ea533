"""Browsing commands do not pay for modules they never use. The index is read with the standard
library's sqlite3: sqlite-utils, used before, imported click and, unless hidden from it, numpy and
pandas (~0.15 s of every `roro models:log`)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_reading_the_index_does_not_import_numpy(tmp_path):
    code = (
        "import sys, roro\n"
        f"store = roro.Store({str(tmp_path / 'store')!r})\n"
        "store.ensure_initialized()\n"
        "assert store.index.repository('p', 'm') is None\n"
        "assert roro.Project('p', store).log(5) == []\n"
        "heavy = [m for m in ('sqlite_utils', 'numpy', 'pandas', 'click', 'boto3')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import numpy\n"  # still importable afterwards
        "assert numpy.zeros(3).sum() == 0\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
