"""uattr installs with pip alone, without the Makefile: the built package holds its
modules, the shipped weights and py.typed, and works from where pip put it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pip_install_gives_a_working_library_outside_the_checkout(tmp_path):
    target = tmp_path / "site"
    # build isolation: pip fetches the setuptools pyproject.toml asks for, as a user's would
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    installed = target / "uattr"
    assert (installed / "py.typed").is_file()
    assert (installed / "weights" / "manifest.json").is_file()
    script = (
        "import torch, uattr, pathlib\n"
        "import sys\n"
        "assert pathlib.Path(uattr.__file__).is_relative_to(pathlib.Path(sys.path[1]))\n"
        "from uattr.zoo.weights import SHIPPED, manifest\n"
        "missing = [f'{n}/{f}' for n, e in manifest().items() for f in e['files']\n"
        "           if not (SHIPPED / n / f).is_file()]\n"
        "assert not missing, missing\n"
        "torch.manual_seed(0)\n"
        "members = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))\n"
        "           for _ in range(3)]\n"
        "maps = uattr.Grad(uattr.as_posterior(members)).attribute(torch.rand(2, 1, 8, 8))\n"
        "print(tuple(maps.shape), bool(maps.abs().sum() > 0))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(2, 8, 8) True"
