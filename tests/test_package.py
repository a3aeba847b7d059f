"""`pip install -e .` works in a fresh virtual environment, and `import dkd` then works from any folder."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # 15 s; CI installs the package with setup.sh on every run
def test_editable_install_in_a_fresh_venv(tmp_path):
    """Offline and quick: the venv sees this interpreter's packages (the dependencies are installed already) and builds
    with its setuptools (no build isolation, which would fetch setuptools from the index)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-q", "-e",
                              str(ROOT)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([str(python), "-c", "import dkd, dkd.run, sys; print(dkd.__file__, sys.prefix)"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    module, prefix = out.stdout.split()
    assert module == str(ROOT / "dkd" / "__init__.py") and prefix == str(venv)
    listing = subprocess.run([str(python), "-m", "dkd.teachers", str(tmp_path / "none")], cwd=elsewhere,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "No fine-tuned teachers" in listing.stdout
