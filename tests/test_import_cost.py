"""Browsing commands do not pay for modules they never use. The index is read with the standard
library's sqlite3: sqlite-utils, used before, imported click and, unless hidden from it, numpy and
pandas (~0.15 s of every `roro models:log`)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_fresh(code: str) -> None:
    """Run ``code`` in a fresh interpreter importing this checkout's roro; its asserts must hold."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


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
    run_fresh(code)


def test_formats_import_their_libraries_only_when_used(tmp_path):
    """``import roro`` does not import the formats package; a cloudpickle or file save and load
    import none of the formats' libraries (numpy, safetensors, onnx, skops, scikit-learn), and
    a contract never imports torch to find out its version."""
    code = (
        "import sys, roro\n"
        "assert 'roro.formats' not in sys.modules, 'import roro imported the formats'\n"
        f"repo = roro.Project('p', {str(tmp_path / 'store')!r}).get_model_repository('m')\n"
        "repo.new_image({'w': [1, 2]}).save()\n"
        "repo.new_image(b'GGUF', format='file').save()\n"
        "repo.new_image({'w': 3}, format='auto').save()\n"
        "assert repo.get_model(1) == {'w': [1, 2]} and repo.get_model(2).read() == b'GGUF'\n"
        "assert repo.get_model_image(1).pickle_imports == []\n"
        "heavy = [m for m in ('numpy', 'safetensors', 'onnx', 'skops', 'sklearn', 'pandas',\n"
        "                     'torch', 'google.protobuf') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    run_fresh(code)


def test_a_numpy_model_is_saved_and_loaded_without_importlib_metadata(tmp_path):
    """The contract's version of an imported watched library (numpy here) is its module's
    ``__version__``: importing ``importlib.metadata`` and scanning the installed distributions
    cost a fresh process's first save and first load 10-15 ms each (15 % of a 128 MiB load)."""
    code = (
        "import sys, numpy as np, roro\n"
        f"repo = roro.Project('p', {str(tmp_path / 'store')!r}).get_model_repository('m')\n"
        "image = repo.new_image({'w': np.arange(10)}).save()\n"
        "assert image.manifest['contract']['libraries'] == {'numpy': np.__version__}\n"
        "assert (repo.get_model()['w'] == np.arange(10)).all()\n"
        "assert 'importlib.metadata' not in sys.modules\n"
    )
    run_fresh(code)
