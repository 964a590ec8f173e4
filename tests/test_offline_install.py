"""scripts/offline_wheels.py: the gpu-node requirements from pyproject.toml, the download on a connected
machine, and the install with no network on a simulated GPU node, which must then import train.py and
scripts/gpu_check.py and collect the gpu tests.

The simulated node is a fresh virtual environment holding only what a CUDA PyTorch node has (torch, numpy,
tiktoken, matplotlib and everything they require, linked from this environment: the test cannot download a
CUDA torch) plus pip; it has neither this environment's packages nor its site-packages. Before the install
its check must fail naming hydra (the node as it is); then the downloaded wheels go in with `--no-index`, no
pip configuration and every proxy and index pointing at a closed port, and the check must pass.
"""

from __future__ import annotations

import glob
import importlib.metadata as md
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import offline_wheels as ow

SCRIPT = [str(ow.REPO / "scripts" / "offline_wheels.py")]
NODE_HAS = ("torch", "numpy", "tiktoken", "matplotlib", "pip")  # the node's environment, and pip to install


def _closure(names) -> set[str]:
    """``names`` and every distribution they require here, transitively (markers evaluated, no extras)."""
    todo, seen = [canonicalize_name(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in md.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def _simulated_node(root: Path) -> Path:
    """A fresh venv with only NODE_HAS and their requirements (linked from this environment); its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    purelib = Path(purelib.strip())
    for name in sorted(_closure(NODE_HAS)):
        dist = md.distribution(name)
        assert dist.files is not None, f"{name} has no RECORD: cannot link it into the simulated node"
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files if f.parts[0] != ".."}:
            if (site / top).exists() and not (purelib / top).exists():
                (purelib / top).symlink_to(site / top)
    return python


def _no_network_env(tmp: Path) -> dict:
    """No pip configuration, no find-links but the folder given on the command line, and every index and
    proxy a closed local port: any attempt to reach a network fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "HTTP_", "HTTPS_"))
           and k.upper() not in ("ALL_PROXY", "NO_PROXY", "PYTHONPATH")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=dead, PIP_NO_INPUT="1", HTTP_PROXY=dead,
               HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead, HOME=str(tmp))
    return env


def _index_reachable() -> str | None:
    """None if pip's index answers (checked in a child: conftest cuts this process off), else why not."""
    url = (os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/") + "/pip/"
    code = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=10).read(1)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return None if proc.returncode == 0 else f"{url}: {proc.stderr.strip().splitlines()[-1:]}"


def test_node_requirements_take_their_ranges_from_pyproject(tmp_path):
    p = tmp_path / "pyproject.toml"
    p.write_text('[project]\nname = "x"\ndependencies = ["a-b>=1,<2", "c"]\n'
                 '[project.optional-dependencies]\ndev = ["D_e>=2"]\n'
                 'gpu-node = ["a_b", "d.e", "f==3", "g"]\n')
    assert ow.node_requirements(p) == ["a-b>=1,<2", "D_e>=2", "f==3", "g"]
    p.write_text('[project]\nname = "x"\ndependencies = []\n')
    with pytest.raises(ow.OfflineError, match=r"toml: no \[project.optional-dependencies\] gpu-node group"):
        ow.node_requirements(p)
    real = ow.node_requirements()  # the repository's: every name has its range from another list
    assert [ow._name(r) for r in real] == ["hydra-core", "tqdm", "pytest"]
    assert all(Requirement(r).specifier for r in real), real


def test_cli_refuses_bad_arguments_before_any_work(tmp_path, capsys):
    assert ow.main(["install", "--wheels", str(tmp_path)]) == 2
    assert f"{tmp_path}/requirements.txt is missing: make the folder with `python " \
           f"scripts/offline_wheels.py download --python X.Y --out {tmp_path}`" in capsys.readouterr().err
    assert ow.main(["download", "--python", "311", "--out", str(tmp_path / "w")]) == 2
    assert "--python must look like 3.11" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_download_then_offline_install_on_a_simulated_node(tmp_path):
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("the simulated node installs manylinux x86_64 wheels: needs Linux x86_64")
    why = _index_reachable()
    if why is not None:
        pytest.skip(f"the package index is unreachable from here ({why}); the download needs it")
    wheels = tmp_path / "wheels"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    down = subprocess.run([sys.executable, *SCRIPT, "download", "--python", py, "--out", str(wheels)],
                          capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    names = {canonicalize_name(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "pyyaml", "pytest", "tqdm"} <= names, names
    assert not names & {"torch", "numpy", "tiktoken", "matplotlib"}, names  # nothing of what the node has
    size = ow.folder_size_mib(wheels)
    print(f"wheel folder: {len(names)} wheels, {size:.2f} MiB")
    assert size < 20, f"{size:.1f} MiB"
    assert re.search(rf"{len(names)} wheels, {size:.1f} MiB for Python {py}", down.stdout), down.stdout

    node = _simulated_node(tmp_path / "node")
    env = _no_network_env(tmp_path)
    before = subprocess.run([str(node), *SCRIPT, "check"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert before.returncode == 1, before.stdout + before.stderr
    assert "missing module 'hydra' (importing train)" in before.stderr

    after = subprocess.run([str(node), *SCRIPT, "install", "--wheels", str(wheels)], capture_output=True,
                           text=True, env=env, timeout=600)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "--no-index --find-links" in after.stdout
    assert "OK: train.py, scripts/gpu_check.py and the gpu tests import here" in after.stdout


def _other_python() -> tuple[str, str] | None:
    """An interpreter of another supported Python (3.10 first: pytest needs two more wheels there), and its
    version; from PATH, else from pyenv's versions folder."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for version in ("3.10", "3.12", "3.13"):
        found = [shutil.which(f"python{version}")]
        found += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
        for exe in filter(None, found):
            if version != here and subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
                return exe, version
    return None


@pytest.mark.slow
def test_download_for_another_python_installs_into_a_bare_venv(tmp_path):
    """The folder for a Python other than the one that downloads it: pip evaluates dependency markers for its
    own Python, so this is where a marker-only dependency (pytest's tomli below 3.11) would go missing."""
    other = _other_python()
    if other is None:
        pytest.skip("no second Python (3.10, 3.12 or 3.13) on this machine")
    exe, version = other
    why = _index_reachable()
    if why is not None:
        pytest.skip(f"the package index is unreachable from here ({why}); the download needs it")
    wheels = tmp_path / "wheels"
    down = subprocess.run([sys.executable, *SCRIPT, "download", "--python", version, "--out", str(wheels)],
                          capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    names = {canonicalize_name(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
    if version == "3.10":
        assert {"tomli", "exceptiongroup"} <= names, names
    bare = tmp_path / "bare"
    subprocess.run([exe, "-m", "venv", str(bare)], check=True, timeout=300)
    env = _no_network_env(tmp_path)
    py = str(bare / "bin" / "python")
    inst = subprocess.run([py, *SCRIPT, "install", "--wheels", str(wheels), "--no-check"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    modules = ["hydra", "omegaconf", "antlr4", "yaml", "pytest", "tqdm"]
    modules += ["tomli", "exceptiongroup"] if version == "3.10" else []
    code = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; print(sys.version)"
    imp = subprocess.run([py, "-c", code, *modules], capture_output=True, text=True, env=env, timeout=120)
    assert imp.returncode == 0, imp.stderr
    assert imp.stdout.startswith(version + ".")
