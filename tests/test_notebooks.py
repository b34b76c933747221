"""The notebooks end to end under papermill with the smoke profile, in order, sharing results.

Each notebook also runs alone (it asks for what it needs by configuration); running them in order
here lets later notebooks reuse the runs of earlier ones, as ``run_all.sh`` does.
"""

import json
import os
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from tase.paths import NOTEBOOKS_DIR, REPO_ROOT

pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # run_tests.sh names the folder so that nbval, run after pytest, reuses these runs.
    named = os.environ.get("TASE_NOTEBOOK_WORKSPACE")
    root = Path(named) if named else tmp_path_factory.mktemp("suite")
    root.mkdir(parents=True, exist_ok=True)
    saved = {
        k: os.environ.get(k)
        for k in (
            "TASE_RESULTS",
            "TASE_FIGURES",
            "TASE_OUTPUTS",
            "TASE_PROGRESS",
            "PYTHONPATH",
            "MPLBACKEND",
        )
    }
    os.environ.update(
        TASE_RESULTS=str(root / "results"),
        TASE_FIGURES=str(root / "figures"),
        TASE_OUTPUTS=str(root / "outputs"),
        TASE_PROGRESS="log",
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), saved["PYTHONPATH"]])),
    )
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def execute(name: str, root: Path) -> None:
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / f"{name}.ipynb"),
        str(root / f"{name}.ipynb"),
        parameters={"profile": "smoke"},
        kernel_name="python3",
        cwd=str(NOTEBOOKS_DIR),
        progress_bar=False,
    )


def runs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "results").iterdir() if (p / "status.json").exists())


def test_notebooks_are_committed_without_outputs():
    for name in NOTEBOOKS:
        nb = json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{name}: exactly one parameters cell"
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, name


def test_00_datasets(workspace):
    execute("00_datasets", workspace)
    summary = json.loads((workspace / "results/datasets/digits-lt_exp_s0.json").read_text())
    assert summary["n_train"] == sum(summary["class_counts"])
    assert (workspace / "figures/smoke/00_datasets_digits-lt.png").exists()


def test_01_warmup(workspace):
    execute("01_warmup", workspace)
    (warm,) = runs(workspace)
    history = pd.read_csv(warm / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert history["knn10"].dropna().iloc[-1] > 20  # chance is 10%


def test_02_cluster_balance(workspace):
    execute("02_cluster_balance", workspace)
    names = {p.name.split("_")[1] for p in runs(workspace)}
    assert names == {"simclr", "tase"}
    tase_run = next(p for p in runs(workspace) if "_tase_" in p.name)
    assert sorted(f.name for f in (tase_run / "clusterings").iterdir())[0] == "epoch_0002.npz"
    assert (workspace / "figures/smoke/02_cluster_balance_digits-lt.png").exists()


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n >= "03"])
def test_later_notebooks(workspace, name):
    execute(name, workspace)
