"""Tests of tase.tables on a fake results tree with hand-chosen numbers."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from tase import tables

# arm -> seed -> (knn10, knn10_few, lt_lp)
VALUES = {
    "simclr": {0: (70.0, 50.0, 60.0), 1: (71.0, 52.0, 61.0), 2: (72.0, 54.0, 65.0)},
    "tase": {0: (72.0, 55.0, 61.0), 1: (74.0, 56.0, 60.0), 2: (76.0, 58.0, 68.0)},
}


def write_run(root, run_id, config, metrics):
    folder = root / run_id
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def metrics_of(knn10, few, lt):
    return {
        "knn10": knn10, "knn10_few": few, "lt_lp": lt, "lt_lp_few": None,
        "header": {"dataset": "digits-lt", "probe": "svc", "protocols": ["knn10", "lt_lp"]},
        "timings": {"knn10": 0.1},
    }


@pytest.fixture
def results(tmp_path):
    for arm, seeds in VALUES.items():
        for seed, values in seeds.items():
            config = {"method": {"name": arm, "alpha": 1.0},  # TrainConfig.to_dict() layout
                      "data": {"name": "digits-lt", "split": "exp", "seed": 0},
                      "run": {"seed": seed, "label": None}}
            write_run(tmp_path, f"{arm}-{seed}", config, metrics_of(*values))
    # Another dataset, a run without metrics (unfinished) and a folder that is not a run.
    write_run(tmp_path, "simclr-c10", {"method": {"name": "simclr"},
                                       "data": {"name": "cifar10-lt", "split": "sdclr:1"},
                                       "run": {"seed": 0}}, metrics_of(61.0, 40.0, 63.0))
    write_run(tmp_path, "unfinished", {"method": {"name": "tase"}}, None)
    (tmp_path / "tables").mkdir()
    return tmp_path


def test_run_info_reads_config_and_tolerates_missing_keys():
    config = {"method": {"name": "tase"}, "run": {"seed": 4, "label": "TASE (K=10)"},
              "data": {"name": "cifar100-lt", "split": "sdclr:2", "seed": 3}}
    assert tables.run_info(config) == {"arm": "TASE (K=10)", "method": "tase",
                                       "dataset": "cifar100-lt", "split": "sdclr:2",
                                       "data_seed": 3, "seed": 4}
    assert tables.run_info({}) == {"arm": "unknown", "method": None, "dataset": None,
                                   "split": None, "data_seed": None, "seed": None}
    legacy = tables.run_info({"method": "ts", "label": "TS", "seed": 1, "dataset": "x"})
    assert (legacy["arm"], legacy["method"], legacy["seed"], legacy["dataset"]) == (
        "TS", "ts", 1, "x")
    assert tables.run_info({"method": {"name": "sdclr", "label": "SDCLR 90%"}})["arm"] == (
        "SDCLR 90%")


def test_metric_parts():
    assert tables.metric_parts("knn10") == ("knn10", "all")
    assert tables.metric_parts("one_pct_lp_group_std") == ("one_pct_lp", "group_std")
    assert tables.metric_parts("wknn200_medium") == ("wknn200", "medium")


def test_collect_builds_the_tidy_frame(results):
    tidy = tables.collect(results)
    assert list(tidy.columns) == list(tables.TIDY_COLUMNS)
    assert len(tidy) == 7 * 4  # 7 finished runs × 4 metrics; header and timings are no metrics
    assert set(tidy["run_id"]) == {*(f"{a}-{s}" for a in VALUES for s in range(3)), "simclr-c10"}
    row = tidy[(tidy.run_id == "tase-1") & (tidy.metric == "knn10_few")].iloc[0]
    assert (row.arm, row.method, row.dataset, row.split, row.data_seed, row.seed) == (
        "tase", "tase", "digits-lt", "exp", 0, 1)
    assert (row.protocol, row.group, row.value) == ("knn10", "few", 56.0)
    assert tidy[tidy.metric == "lt_lp_few"]["value"].isna().all()  # null -> NaN


def test_collect_filters_and_labels(results):
    assert set(tables.collect(results, filter={"dataset": "cifar10-lt"})["run_id"]) == {
        "simclr-c10"}
    kept = tables.collect(results, filter={"arm": ["tase"], "seed": [0, 2]})
    assert set(kept["run_id"]) == {"tase-0", "tase-2"}
    kept = tables.collect(results, filter=lambda info: info["config"]["run"]["seed"] == 1)
    assert set(kept["run_id"]) == {"simclr-1", "tase-1"}

    (results / "labels.json").write_text(json.dumps({"tase-0": "TASE", "tase-1": "TASE"}))
    tidy = tables.collect(results, labels={"tase-1": "TASE (override)"})
    arms = tidy.drop_duplicates("run_id").set_index("run_id")["arm"]
    assert (arms["tase-0"], arms["tase-1"], arms["tase-2"]) == ("TASE", "TASE (override)", "tase")
    assert tables.collect(results / "missing").empty


def test_paper_table_and_summary(results):
    tidy = tables.collect(results, filter={"dataset": "digits-lt"})
    table = tables.paper_table(tidy, metrics=["knn10", "lt_lp"])
    assert list(table.columns) == [("digits-lt", "knn10"), ("digits-lt", "lt_lp")]
    assert table.loc["simclr", ("digits-lt", "knn10")] == "71.00 ± 1.00 (3)"
    assert table.loc["tase", ("digits-lt", "knn10")] == "74.00 ± 2.00 (3)"
    assert table.loc["simclr", ("digits-lt", "lt_lp")] == f"62.00 ± {math.sqrt(7):.2f} (3)"

    summary = tables.summarise(tables.collect(results), metrics=["knn10"])
    assert summary.n.loc["simclr", ("cifar10-lt", "knn10")] == 1
    assert summary.n.loc["tase", ("cifar10-lt", "knn10")] == 0
    full = tables.paper_table(tables.collect(results), metrics=["knn10"])
    assert full.loc["simclr", ("cifar10-lt", "knn10")] == "61.00 (1)"
    assert full.loc["tase", ("cifar10-lt", "knn10")] == "–"
    with pytest.raises(ValueError, match="not in the tidy frame"):
        tables.paper_table(tidy, metrics=["full_lp"])


def test_write_tables(results, tmp_path):
    tidy = tables.collect(results)
    files = tables.write_tables(tidy, "main", out_dir=tmp_path / "out", metrics=["knn10"])
    numbers = pd.read_csv(files["csv"])
    assert list(numbers.columns) == ["arm", "dataset", "metric", "mean", "std", "n"]
    row = numbers[(numbers.arm == "tase") & (numbers.dataset == "digits-lt")].iloc[0]
    assert (row["mean"], row["std"], row["n"]) == (74.0, 2.0, 3)
    assert len(numbers) == 3  # no row for (tase, cifar10-lt): no runs
    assert len(pd.read_csv(files["runs"])) == 7
    markdown = files["md"].read_text().splitlines()
    assert markdown[0] == "| arm | cifar10-lt / knn10 | digits-lt / knn10 |"
    assert markdown[2] == "| simclr | 61.00 (1) | 71.00 ± 1.00 (3) |"
    assert markdown[3] == "| tase | – | 74.00 ± 2.00 (3) |"


def test_paired_gain(results):
    tidy = tables.collect(results, filter={"dataset": "digits-lt"})
    gain = tables.paired_gain(tidy, "simclr", "tase", "knn10")  # diffs 2, 3, 4
    assert (gain.mean, gain.std, gain.n, gain.beyond_noise) == (3.0, 1.0, 3, True)
    assert list(gain.pairs["diff"]) == [2.0, 3.0, 4.0]
    assert "+3.00 ± 1.00 (n=3), beyond noise" in gain.verdict
    assert gain.p_value == pytest.approx(0.0351, abs=1e-4)  # t = 3·√3 = 5.196, 2 dof

    gain = tables.paired_gain(tidy, "simclr", "tase", "lt_lp")  # diffs 1, -1, 3: mean 1, std 2
    assert (gain.mean, gain.std, gain.beyond_noise) == (1.0, 2.0, False)
    assert "within noise" in gain.verdict

    one = tables.paired_gain(tidy[tidy.seed == 0], "simclr", "tase", "knn10")
    assert one.n == 1 and not one.beyond_noise and "one pair" in one.verdict


def test_paired_gain_pairs_only_matching_runs_and_rejects_ambiguity(results):
    other_data = {"method": {"name": "tase"}, "run": {"seed": 0},
                  "data": {"name": "digits-lt", "split": "exp", "seed": 1}}
    write_run(results, "tase-data1", other_data, metrics_of(90.0, 90.0, 90.0))
    tidy = tables.collect(results)
    gain = tables.paired_gain(tidy, "simclr", "tase", "knn10")
    assert gain.n == 3  # neither simclr-c10 nor tase-data1 (another data seed) has a partner
    assert gain.mean == 3.0
    with pytest.raises(ValueError, match="no runs"):
        tables.paired_gain(tidy, "simclr", "sdclr", "knn10")
    with pytest.raises(ValueError, match="metric"):
        tables.paired_gain(tidy, "simclr", "tase", "full_lp")
    duplicate = tidy[tidy.run_id == "tase-0"].assign(run_id="tase-0-again")
    with pytest.raises(ValueError, match="tase-0-again"):
        tables.paired_gain(pd.concat([tidy, duplicate]), "simclr", "tase", "knn10")


def test_reference_values():
    c100 = tables.reference_values("CIFAR-100-LT")
    assert len(c100) == 7
    ts = c100[c100.source == "TS"].set_index("metric")["value"]
    assert ts.to_dict() == {"knn1": 29.12, "knn10": 28.11, "ms_lp": 27.02, "lt_lp": 32.29}
    bcl = c100[c100.source == "BCL README"].set_index("variant")["value"]
    assert bcl.to_dict() == {"": 50.7, "100": 46.3, "50": 42.4}
    c10 = tables.reference_values("cifar10_lt").set_index("metric")["value"]
    assert c10.to_dict() == {"knn1": 61.21, "knn10": 61.20, "ms_lp": 71.49, "lt_lp": 62.92}
    assert tables.reference_values("imagenet100-lt")["value"].tolist() == [38.38, 38.98, 45.18,
                                                                            47.26]
    assert tables.reference_values("digits-lt").empty
