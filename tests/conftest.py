"""Shared fixtures: an isolated data folder and the official split files when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from tase import paths

SHARED_SPLITS = Path(paths.REPO_ROOT).parent / "shared" / "data" / "sdclr-splits"


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """``paths.data_dir()`` redirected to an empty temporary folder; no local split copy."""
    folder = tmp_path / "data"
    monkeypatch.setenv("TASE_DATA", str(folder))
    monkeypatch.delenv("TASE_SDCLR_SPLITS", raising=False)
    return folder


@pytest.fixture
def sdclr_splits() -> Path:
    """The SDCLR split files of ``shared/data/sdclr-splits`` (never committed); skip without."""
    if not (SHARED_SPLITS / "SHA256SUMS").is_file():
        pytest.skip(f"official split files not present at {SHARED_SPLITS}")
    return SHARED_SPLITS
