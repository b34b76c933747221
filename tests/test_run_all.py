"""run_all.sh: stops at the first failing notebook, exits non-zero and names it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tase.paths import REPO_ROOT

pytestmark = pytest.mark.notebooks


def run_all(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # The interpreter running the tests has every dependency: let the bootstrap pick it.
    env["PATH"] = os.pathsep.join([str(tmp_path / "bin"), env["PATH"]])
    (tmp_path / "bin").mkdir(exist_ok=True)
    link = tmp_path / "bin" / "python3"
    if not link.exists():
        link.symlink_to(sys.executable)
    env.update(
        TASE_DATA=str(tmp_path / "data"), TASE_RESULTS=str(tmp_path / "results"),
        TASE_FIGURES=str(tmp_path / "figures"), TASE_OUTPUTS=str(tmp_path / "outputs"),
    )
    return subprocess.run(
        [str(REPO_ROOT / "run_all.sh"), *args], env=env, capture_output=True, text=True,
        timeout=600,
    )


def test_a_failing_notebook_stops_the_suite_and_is_named(tmp_path):
    # CIFAR is absent and the smoke profile never downloads: notebook 00 must fail, clearly.
    result = run_all(tmp_path, "--profile", "smoke", "--dataset", "cifar10-lt", "--only", "00,01")
    assert result.returncode != 0
    assert "FAILED: 00_datasets" in result.stderr
    assert "DatasetNotFoundError" in result.stderr
    partial = tmp_path / "outputs" / "smoke" / "notebooks" / "00_datasets.ipynb"
    assert str(partial) in result.stderr and partial.exists()
    assert "01_warmup" not in result.stdout  # stopped at the first failure


def test_unknown_profile_is_refused(tmp_path):
    result = run_all(tmp_path, "--profile", "huge")
    assert result.returncode == 2 and "unknown profile" in result.stderr
