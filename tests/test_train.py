"""Trainer: schedule and batching oracles, exact resume, named errors before training."""

import json

import numpy as np
import pytest
import torch

from tase import config as C
from tase import paths
from tase import train as T


def tiny(**sections) -> C.TrainConfig:
    base = C.notebook_params("02_cluster_balance", "smoke")
    cfg = C.train_config(base)
    cfg = cfg.replace(model={"width": 4}, run={"checkpoint_every": 1, "eval_every": 0})
    return cfg.replace(**sections) if sections else cfg


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("TASE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TASE_PROGRESS", "off")
    return tmp_path / "results"


def weights(run) -> dict:
    return T.load_checkpoint(run.dir)["module"]


def test_learning_rate_schedule():
    lr = [T.learning_rate(s, 100, 10, 0.5, 0.0) for s in range(100)]
    assert lr[0] == pytest.approx(0.05) and lr[9] == pytest.approx(0.5)
    assert lr[10] == pytest.approx(0.5)
    assert lr[55] == pytest.approx(0.25, abs=0.01)
    assert lr[-1] < 0.001 and all(a >= b for a, b in zip(lr[10:], lr[11:], strict=False))


@pytest.mark.parametrize(
    "n, batch, world", [(519, 128, 1), (519, 128, 2), (257, 128, 2), (10, 4, 4)]
)
def test_batches_cover_every_sample_once(n, batch, world):
    bounds = T.batch_bounds(n, batch, world)
    covered = np.concatenate([np.arange(s, e) for s, e in bounds])
    assert np.array_equal(covered, np.arange(n))
    for s, e in bounds:
        counts = T.rank_counts(e - s, world)
        assert sum(counts) == e - s and min(counts) >= 1 and max(counts) - min(counts) <= 1


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(results, monkeypatch, tmp_path):
    cfg = tiny()
    interrupted = T.train(cfg, until=3)  # warm-up (2 epochs) then 1 TASE epoch, then "killed"
    assert not interrupted.finished
    resumed = T.train(cfg)
    assert resumed.finished
    monkeypatch.setenv("TASE_RESULTS", str(tmp_path / "fresh"))
    fresh = T.train(cfg)
    a, b = weights(resumed), weights(fresh)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    h1, h2 = resumed.history, fresh.history
    assert list(h1["epoch"]) == list(h2["epoch"]) == [2, 3]
    assert np.allclose(h1["loss"], h2["loss"], rtol=0, atol=0)


def test_tase_continues_from_the_shared_warmup_and_records_clusterings(results):
    cfg = tiny()
    run = T.train(cfg)
    warm = C.run_id(C.warmup_config(cfg))
    assert (results / warm / "status.json").exists()
    assert list(run.history["epoch"]) == [2, 3]
    files = sorted((run.dir / "clusterings").glob("epoch_*.npz"))
    assert [f.name for f in files] == ["epoch_0002.npz", "epoch_0003.npz"]
    record = np.load(files[-1])
    assert record["labels"].shape == record["tau"].shape == (len(record["true_labels"]),)
    assert record["sizes"].sum() == len(record["labels"])
    h = run.history
    assert set(T.HISTORY_COLUMNS) <= set(h.columns)
    assert (h["tau_min"] <= 0.2 + 1e-6).all() and (h["tau_max"] >= 0.2 - 1e-6).all()
    assert 0 <= h["pl_acc"].iloc[-1] <= 1
    # A finished run is returned without training again.
    mtime = (run.dir / "checkpoint.pt").stat().st_mtime_ns
    assert T.train(cfg).finished and (run.dir / "checkpoint.pt").stat().st_mtime_ns == mtime


def test_a_foreign_checkpoint_is_refused(results):
    cfg = tiny(method={"name": "simclr", "warmup_epochs": 0})
    run = T.train(cfg, until=1)
    ckpt = torch.load(run.dir / "checkpoint.pt", weights_only=True)
    other = json.loads(ckpt["config"])
    other["method"]["alpha"] = 3.0
    ckpt["config"] = json.dumps(other)
    torch.save(ckpt, run.dir / "checkpoint.pt")
    with pytest.raises(T.ConfigMismatchError, match="different configuration"):
        T.train(cfg)


def test_missing_warmup_is_a_named_error_before_training(results, tmp_path):
    with pytest.raises(T.WarmupNotFoundError):
        T.train(tiny(), warmup_dir=tmp_path / "nowhere")
    assert not results.exists() or not any(results.iterdir())


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"method": {"n_clusters": 100_000}}, "n_clusters"),
        ({"optim": {"batch_size": 100_000}}, "batch_size"),
    ],
)
def test_data_dependent_errors_come_before_training(results, sections, message):
    with pytest.raises(ValueError, match=message):
        T.train(tiny(**sections))
    assert not results.exists() or not any(results.iterdir())


def test_non_finite_loss_stops_with_epoch_and_step(results, monkeypatch):
    cfg = tiny(method={"name": "simclr", "warmup_epochs": 0})
    T.train(cfg, until=1)
    real = T.per_anchor_loss
    monkeypatch.setattr(T, "per_anchor_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(T.NonFiniteLossError, match="epoch 1, step 0"):
        T.train(cfg)
    assert T.read_status(T.Run(cfg, results / C.run_id(cfg)).dir)["epoch"] == 1


def test_cli_trains_what_the_notebook_trains(results):
    path = paths.params_file("smoke", "01_warmup")
    assert T.main(["--config", str(path), "--set", "model.width=4"]) == 0
    cfg = C.load(path, {"model.width": 4})
    assert T.Run(C.warmup_config(cfg), results / C.run_id(C.warmup_config(cfg))).finished


def test_load_encoder_round_trip(results):
    run = T.train(tiny(method={"name": "simclr", "warmup_epochs": 0}), until=1)
    enc = run.encoder()
    x = torch.rand(4, 3, 16, 16)
    assert enc.features(x).shape == (4, enc.feature_dim)
    assert not enc.training
