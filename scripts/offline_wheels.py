"""Install on a GPU node that has no internet: download the wheels on a connected machine, install them there.

    python scripts/offline_wheels.py download --python 3.11 --out wheels/    # connected machine
    python scripts/offline_wheels.py install --wheels wheels/                # the node: no network used
    python scripts/offline_wheels.py check                                   # the node: imports only

The node is assumed to have a CUDA PyTorch, numpy, tiktoken and matplotlib already (a cluster's or a cloud
image's PyTorch environment); what it lacks is pyproject.toml's `gpu-node` group: its names only, each taking
its version range from `[project] dependencies` or another group when one lists it (one fact, one place).
wandb is not among them: `wandb.mode` defaults to `disabled`, and nothing imports wandb unless a run turns it
on (harness/metrics.py), which an offline node has no use for (`wandb.mode=offline` needs it installed).

`download` resolves for the named Python version and platform (`pip download --only-binary=:all:`); a
dependency published only as a pure-Python sdist (antlr4-python3-runtime, under omegaconf) is first built into
a `py3-none-any` wheel here (`pip wheel --no-deps`). pip evaluates dependency markers for its own Python, not
for --python-version, so the wheels' requirements are then re-read for the node and what is missing is
downloaded (pytest's tomli on 3.10). The folder also gets `requirements.txt`, the requirement lines it was
downloaded for, so the node needs nothing but the folder and pip:

    pip install --no-index --find-links wheels/ -r wheels/requirements.txt

which is what `install` runs (with `sys.executable`), followed by `check`: it imports train.py and
scripts/gpu_check.py (and pytest, which gpu_check runs), then has pytest collect the `gpu` tests the way
gpu_check.py does (every test module must import), and prints OK or the module that is missing; exit 1 then.
Exit 2: a bad argument, or pip failed (its own message is above). docs/offline.md has the whole route.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUP = "gpu-node"
REQUIREMENTS = "requirements.txt"
DEFAULT_PLATFORM = "manylinux2014_x86_64"
# what importing train.py and scripts/gpu_check.py means on a node; pytest: gpu_check runs `pytest -m gpu`
CHECK_MODULES = ("train", "scripts.gpu_check", "pytest")
COLLECT = ("-m", "pytest", "-m", "gpu", "--collect-only", "-q", "-p", "no:cacheprovider")


class OfflineError(RuntimeError):
    """A step could not be done; the message names the file, the command or the value, and the fix."""


def _name(requirement: str) -> str:
    """The normalised project name of a PEP 508 requirement line (PEP 503: lower case, runs of -_. as -)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if m is None:
        raise OfflineError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def node_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The `gpu-node` group of ``pyproject``, each bare name given the range another list there gives it."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    groups = project.get("optional-dependencies", {})
    if GROUP not in groups:
        raise OfflineError(f"{pyproject}: no [project.optional-dependencies] {GROUP} group")
    known: dict[str, str] = {}
    others = [r for g, rs in groups.items() if g != GROUP for r in rs]
    for line in [*project.get("dependencies", []), *others]:
        known.setdefault(_name(line), line)
    out = []
    for line in groups[GROUP]:
        bare = re.fullmatch(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*", line) is not None
        out.append(known.get(_name(line), line.strip()) if bare else line.strip())
    return out


def _pip(args: list[str], python: str = sys.executable) -> None:
    cmd = [python, "-m", "pip", *args]
    print("+ " + shlex.join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise OfflineError(f"`{' '.join(cmd)}` failed; pip's own message is above")


def _target_markers(python_version: str, platform: str) -> dict:
    """PEP 508 marker values of the node (pip evaluates a dependency's markers for the Python running it,
    not for --python-version: pytest's `tomli; python_version < "3.11"` would be missed for a 3.10 node)."""
    machine = re.sub(r"^(manylinux\d*|manylinux_\d+_\d+|musllinux_\d+_\d+|linux)_", "", platform)
    return dict(python_version=python_version, python_full_version=python_version + ".0",
                implementation_name="cpython", platform_python_implementation="CPython", os_name="posix",
                sys_platform="linux", platform_system="Linux", platform_machine=machine, extra="")


def _unmet(folder: Path, markers: dict) -> list[str]:
    """Requirements of the wheels in ``folder`` that apply on the node and that no wheel there provides."""
    from email.parser import Parser

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wheels = sorted(folder.glob("*.whl"))
    have = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    unmet = {}
    for whl in wheels:
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = Parser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []
        for req in map(Requirement, lines):
            name = canonicalize_name(req.name)
            if name not in have and (req.marker is None or req.marker.evaluate(markers)):
                req.marker = None
                unmet.setdefault(name, str(req))
    return sorted(unmet.values())


def download(out: Path, python_version: str, platform: str, requirements: list[str]) -> Path:
    """Every wheel ``requirements`` need for CPython ``python_version`` on ``platform``, into ``out``."""
    if not re.fullmatch(r"3\.\d+", python_version):
        raise OfflineError(f"--python must look like 3.11 (the node's "
                           f"`python -c 'import sys; print(sys.version)'`), got {python_version!r}")
    out.mkdir(parents=True, exist_ok=True)
    reqs = out / REQUIREMENTS
    reqs.write_text("".join(r + "\n" for r in requirements))
    with tempfile.TemporaryDirectory() as tmp:
        # 1. resolve here (sdists allowed) and build a wheel of every pure-Python sdist among the results
        _pip(["download", "-q", "-d", tmp, "-r", str(reqs)])
        for sdist in sorted(p for p in Path(tmp).iterdir() if not p.name.endswith(".whl")):
            built = Path(tmp) / "built"
            _pip(["wheel", "-q", "--no-deps", "-w", str(built), str(sdist)])
            for whl in built.glob("*-none-any.whl"):  # a platform-specific build is of no use on the node
                shutil.copy2(whl, out / whl.name)
    # 2. resolve for the node: binary wheels only, the wheels built above found in `out` itself; then the
    #    dependencies that only the node's Python or platform needs, until none is missing
    target = ["--only-binary=:all:", "--python-version", python_version, "--platform", platform,
              "--find-links", str(out), "-d", str(out)]
    _pip(["download", "-q", *target, "-r", str(reqs)])
    markers = _target_markers(python_version, platform)
    for _ in range(10):
        unmet = _unmet(out, markers)
        if not unmet:
            return out
        _pip(["download", "-q", *target, *unmet])
    raise OfflineError(f"{out}: still missing {unmet} after 10 rounds of pip download")


def folder_size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 2**20


def install(wheels: Path, python: str = sys.executable) -> None:
    """``pip install --no-index`` of ``wheels``' requirements from ``wheels`` alone: no network is used."""
    reqs = wheels / REQUIREMENTS
    if not reqs.is_file():
        raise OfflineError(f"{reqs} is missing: make the folder with `python scripts/offline_wheels.py "
                           f"download --python X.Y --out {wheels}` on a connected machine and copy it whole")
    _pip(["install", "--no-index", "--find-links", str(wheels), "-r", str(reqs)], python)


def check() -> list[str]:
    """The problems that stop train.py or scripts/gpu_check.py on this machine (empty: none)."""
    import importlib

    sys.path.insert(0, str(REPO))
    for module in CHECK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            return [f"missing module {e.name!r} (importing {module}): install the wheels "
                    f"(`python scripts/offline_wheels.py install --wheels DIR`; docs/offline.md)"]
    proc = subprocess.run([sys.executable, *COLLECT], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        return [f"`pytest -m gpu` (gpu_check.py's test step) cannot collect the tests "
                f"(exit {proc.returncode}):\n{tail}"]
    return []


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="offline_wheels.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="on a connected machine: the wheels for the node into --out")
    d.add_argument("--python", required=True, help="the node's Python version, e.g. 3.11")
    d.add_argument("--platform", default=DEFAULT_PLATFORM,
                   help=f"pip's platform tag (default {DEFAULT_PLATFORM})")
    d.add_argument("--out", type=Path, default=Path("wheels"))
    i = sub.add_parser("install", help="on the node: install --wheels with no network, then check")
    i.add_argument("--wheels", type=Path, default=Path("wheels"))
    i.add_argument("--no-check", action="store_true", help="install only (an environment without torch yet)")
    sub.add_parser("check", help="import what train.py and scripts/gpu_check.py need; OK or exit 1")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "download":
            download(a.out, a.python, a.platform, node_requirements())
            print(f"{a.out}: {len(list(a.out.glob('*.whl')))} wheels, {folder_size_mib(a.out):.1f} MiB for "
                  f"Python {a.python} on {a.platform}; on the node: python scripts/offline_wheels.py install "
                  f"--wheels {a.out}")
            return 0
        if a.cmd == "install":
            install(a.wheels)
            if a.no_check:
                return 0
    except OfflineError as e:
        print(f"offline_wheels.py {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    problems = check()
    for p in problems:
        print(f"offline_wheels.py check: {p}", file=sys.stderr)
    if not problems:
        print("OK: train.py, scripts/gpu_check.py and the gpu tests import here")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
