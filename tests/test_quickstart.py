"""docs/quickstart.md runs as written, as a user would run it: its Python blocks and the
``uattr`` lines of its shell blocks, in order, in a fresh interpreter, in an empty folder."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.DOTALL)


def _script(text: str) -> str:
    """The page as one Python script: a shell line ``uattr ARGS`` becomes a call of the
    command line's ``main`` that must return 0."""
    parts = []
    for kind, code in BLOCK.findall(text):
        if kind == "python":
            parts.append(code)
            continue
        for line in filter(str.strip, code.splitlines()):
            words = shlex.split(line)
            assert words[0] == "uattr", f"the shell blocks run uattr only, got {line!r}"
            parts.append("from uattr.cli import main as _uattr\n"
                         f"assert _uattr({words[1:]!r}) == 0, {line!r}\n")
    return "\n".join(parts)


def test_the_quickstart_runs_as_written(tmp_path):
    text = PAGE.read_text()
    assert len(BLOCK.findall(text)) >= 6
    (tmp_path / "quickstart.py").write_text(_script(text))
    done = subprocess.run([sys.executable, "quickstart.py"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # what the page promises the folders hold
    assert (tmp_path / "my_maps.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "runs/quickstart").glob("explain-*-digit*.png"))) == 6
    assert (tmp_path / "runs/quickstart-occlusion/summary.json").is_file()
