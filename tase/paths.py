"""Every path of the suite, anchored at the repository root.

Each root can be moved with an environment variable, read at call time so tests and notebooks can
redirect output without touching code:

=============  ==================  ===========================================
function       variable            default
=============  ==================  ===========================================
data_dir       ``TASE_DATA``       ``<repo>/data``
results_dir    ``TASE_RESULTS``    ``<repo>/results``
figures_dir    ``TASE_FIGURES``    ``<repo>/figures``
outputs_dir    ``TASE_OUTPUTS``    ``<repo>/outputs``
=============  ==================  ===========================================
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def _root(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    path = Path(value).expanduser() if value else REPO_ROOT / default
    return path.resolve()


def data_dir() -> Path:
    """Datasets and downloaded split files (never committed)."""
    return _root("TASE_DATA", "data")


def results_dir() -> Path:
    """One folder per run, ``<run-id>/``, plus ``tables/`` and dataset summaries."""
    return _root("TASE_RESULTS", "results")


def figures_dir() -> Path:
    """Generated figures (PNG and PDF)."""
    return _root("TASE_FIGURES", "figures")


def outputs_dir() -> Path:
    """Executed notebooks and logs of ``run_all.sh``."""
    return _root("TASE_OUTPUTS", "outputs")


def params_file(profile: str, notebook: str) -> Path:
    """``params/<profile>/<notebook>.yaml``, e.g. ``params_file("quick", "01_warmup")``."""
    return PARAMS_DIR / profile / f"{notebook}.yaml"
