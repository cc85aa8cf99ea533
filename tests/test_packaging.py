"""The package as a user installs it: build the sdist and the wheel, install the wheel into a brand
new virtual environment without the test extra, and run the CLI and the quick start there.

Packaging mistakes (a module left out of the wheel, a dependency only the test extra pulls in, a
``docs/`` page the code points to but the sdist lacks) fail here, not on a user's machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(args, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([os.fspath(a) for a in args], capture_output=True, text=True,
                            timeout=600, **kw)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel built from this checkout (the wheel is built from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT])
    return out


def test_the_wheel_holds_every_module_and_the_sdist_every_doc_the_code_names(dist):
    wheel = next(dist.glob("roro-*.whl"))
    sdist = next(dist.glob("roro-*.tar.gz"))
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "roro").rglob("*.py")}
    assert modules, "no modules found in the checkout"
    assert modules <= in_wheel, f"missing from the wheel: {sorted(modules - in_wheel)}"
    assert "roro/py.typed" in in_wheel  # type checkers read the package's annotations (PEP 561)

    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    named = set()
    for path in (ROOT / "roro").rglob("*.py"):
        named.update(re.findall(r"\b(docs/[\w.-]+\.md)\b", path.read_text()))
    assert named, "the code names no docs/ page: the check below would prove nothing"
    for page in sorted(named):
        assert (ROOT / page).exists(), f"the code points to {page}, which does not exist"
        assert page in in_sdist, f"the code points to {page}, which the sdist leaves out"
    assert "README.md" in in_sdist and "examples/quickstart.py" in in_sdist


def test_the_wheel_alone_runs_the_cli_and_the_quick_start(dist, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    wheel = next(dist.glob("roro-*.whl"))
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         wheel])
    # Only roro's own dependencies: nothing from the test extra came along.
    frozen = run([bin_dir / "python", "-m", "pip", "freeze"]).stdout.lower()
    for test_only in ("pytest", "hypothesis", "moto", "flask", "numpy"):
        assert not re.search(rf"^{test_only}==", frozen, re.M), f"{test_only} was installed"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RORO_", "PYTHON"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(env_dir),
               RORO_HOME=str(tmp_path / "home"), RORO_CACHE_DIR=str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    version = run([bin_dir / "roro", "--version"], env=env, cwd=work).stdout
    assert version.startswith("roro ")
    assert "models:log" in run([bin_dir / "roro", "--help"], env=env, cwd=work).stdout
    assert run([bin_dir / "python", "-m", "roro", "--version"], env=env, cwd=work).stdout == version
    # The quick start imports the installed roro, not this checkout's (it runs from a copy).
    (work / "quickstart.py").write_text((ROOT / "examples" / "quickstart.py").read_text())
    out = run([bin_dir / "python", "quickstart.py"], env=env, cwd=work).stdout
    assert "saved credit-risk:2" in out and "model.predict(2.0)" in out
    where = run([bin_dir / "python", "-c", "import roro; print(roro.__file__)"], env=env,
                cwd=work).stdout
    assert str(env_dir) in where, where
    log = run([bin_dir / "roro", "models:log", "credit-risk"], env=env, cwd=work).stdout
    assert "credit-risk:2" in log
