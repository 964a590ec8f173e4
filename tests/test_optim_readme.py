"""optim/README.md: the registration example runs as printed, outside optim/, and every equation
section the docstrings point at exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "optim" / "README.md"


def _example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- example: register-estimator -->\s*```python\n(.*?)```", text, re.S)
    assert match, "optim/README.md lost its runnable example"
    return match.group(1)


def test_register_estimator_example_runs_from_outside_optim(tmp_path) -> None:
    script = tmp_path / "example.py"  # outside the package, as a user's own file
    script.write_text(_example())
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lion step ok; reference source: none" in out.stdout


def test_no_reference_outside_the_repository() -> None:
    for path in [*REPO.glob("optim/*.py"), REPO / "train.py", REPO / "model.py", README]:
        text = path.read_text()
        for bad in ("ALGORITHMS.md", "DESIGN.md", "../shared", "seed 000", "seed 001"):
            assert bad not in text, f"{path.relative_to(REPO)} mentions {bad!r}"
