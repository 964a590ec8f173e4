#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv.
#
#  * If the Python you run this with already has torch (say a CUDA build), the venv sees it
#    (--system-site-packages) and pip keeps it: the set-up never replaces a torch you have.
#  * Otherwise torch is installed first, explicitly, as $TORCH_SPEC (default torch==2.13.0, the
#    CPU build the CI machine has on disk). An unpinned `pip install torch` on Linux may pull a
#    multi-GB CUDA build; set TORCH_SPEC / TORCH_INDEX_URL to choose (README, "Set-up").
#  * A second run with an unchanged pyproject.toml does nothing (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"

if [ -f "$stamp" ]; then
    echo "[setup] $VENV is up to date ($(basename "$stamp"))"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    if "$PYTHON" -c "import torch" 2>/dev/null; then
        echo "[setup] $PYTHON already has torch $("$PYTHON" -c 'import torch; print(torch.__version__)'): reusing it"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC"
    "$PY" -m pip install -q "$TORCH_SPEC" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
echo "[setup] installing the project (editable) with its dev extra"
"$PY" -m pip install -q -e ".[dev]"
"$PY" -c "import torch, numpy, tiktoken, hydra, matplotlib; print('[setup] ok: torch', torch.__version__)"
rm -f "$VENV"/.installed-*
touch "$stamp"
