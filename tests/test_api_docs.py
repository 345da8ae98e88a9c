"""The API reference builds from the docstrings (what `make docs` runs), without a
warning, and documents the public classes."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _api_modules() -> list[str]:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    return re.search(r"^API_MODULES := (.+)$", makefile, re.M).group(1).split()


def test_the_api_reference_builds_without_warnings(tmp_path):
    modules = _api_modules()
    assert "uattr.attribution" in modules and "uattr.posteriors" in modules
    done = subprocess.run([sys.executable, "-W", "error", "-m", "pdoc", "--docformat",
                           "restructuredtext", "-o", str(tmp_path), *modules],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    page = (tmp_path / "uattr" / "attribution.html").read_text()
    for name in ("KernelSHAP", "FixedMaskKernelSHAP", "OptimizationUA", "UABackprop"):
        assert f'id="{name}"' in page, name
    # the docstrings reach the page
    assert "the Shapley values of the uncertainty over pixels or segments" in page
    assert (tmp_path / "uattr" / "posteriors" / "laplace.html").exists()
