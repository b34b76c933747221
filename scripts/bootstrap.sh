# Sourced by run_all.sh and run_tests.sh: sets PY to a Python that has tase and its dependencies.
# 1. the active environment, if tase and its dependencies import there;
# 2. else ./.venv, created on first use with `pip install -e .[dev]`.
_tase_ok() { "$1" -c "import tase, torch, torchvision, sklearn, papermill, ipykernel, umap, seaborn, pandas, yaml, pytest, nbval" >/dev/null 2>&1; }

# Kernels started by papermill and nbval run in notebooks/: they find this checkout's tase here.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if _tase_ok python3; then
    PY=python3
elif [ -x .venv/bin/python ] && _tase_ok .venv/bin/python; then
    PY=.venv/bin/python
else
    echo "[bootstrap] creating .venv and installing tase with its dependencies (first run only)" >&2
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip >&2 || true
    .venv/bin/python -m pip install --quiet -e ".[dev]" >&2
    PY=.venv/bin/python
    if ! _tase_ok "$PY"; then
        echo "[bootstrap] .venv was created but tase or a dependency still does not import" >&2
        exit 1
    fi
fi
export PY
