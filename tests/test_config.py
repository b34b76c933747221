"""Config: validation names the field and range; YAML round trip; run ids; profile files."""

import pytest

from tase import config as C
from tase.paths import PARAMS_DIR


@pytest.mark.parametrize(
    "sections, field",
    [
        ({"method": {"tau0": 0.0}}, "method.tau0"),
        ({"method": {"tau_tail": 0.3, "tau_head": 0.1}}, "method.tau_tail"),
        ({"method": {"n_clusters": 1}}, "method.n_clusters"),
        ({"method": {"reweight": "both"}}, "method.reweight"),
        ({"method": {"tau_direction": "up"}}, "method.tau_direction"),
        ({"method": {"warmup_epochs": 100}}, "method.warmup_epochs"),
        ({"optim": {"epochs": 0}}, "optim.epochs"),
        ({"optim": {"lr": -1.0}}, "optim.lr"),
        ({"data": {"name": "mnist-lt"}}, "data.name"),
        ({"data": {"split": "sdclr:9"}}, "data.split"),
        ({"data": {"ratio": 0.5}}, "data.ratio"),
        ({"run": {"device": "tpu"}}, "run.device"),
    ],
)
def test_bad_values_name_the_field(sections, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        C.from_dict(sections)


def test_unknown_keys_are_refused():
    with pytest.raises(ValueError, match="unknown key"):
        C.from_dict({"method": {"temperature": 0.2}})
    with pytest.raises(ValueError, match="unknown config section"):
        C.from_dict({"trainer": {}})


def test_yaml_round_trip_and_overrides(tmp_path):
    cfg = C.from_dict({"method": {"alpha": 2.0}, "optim": {"epochs": 20}})
    C.save(cfg, tmp_path / "c.yaml")
    assert C.load(tmp_path / "c.yaml") == cfg
    changed = C.load(tmp_path / "c.yaml", {"method.alpha": 0.5})
    assert changed.method.alpha == 0.5 and changed.optim.epochs == 20


def test_extends_merges_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("optim: {epochs: 10, lr: 0.1}\nmethod: {alpha: 2.0}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\noptim: {epochs: 20}\n")
    cfg = C.load(tmp_path / "child.yaml")
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.method.alpha) == (20, 0.1, 2.0)


def test_run_id_ignores_logging_but_not_science():
    cfg = C.TrainConfig()
    same = cfg.replace(run={"checkpoint_every": 3, "eval_every": 0, "label": "x", "device": "cpu"})
    assert C.run_id(cfg) == C.run_id(same)
    assert C.run_id(cfg) != C.run_id(cfg.replace(method={"alpha": 2.0}))
    assert C.run_id(cfg) != C.run_id(cfg.replace(run={"seed": 1}))


def test_defaults_follow_spec_fractions():
    cfg = C.from_dict({"optim": {"epochs": 2000}})
    assert cfg.warmup_epochs == 500  # 25% of E
    assert cfg.ramp_epochs == 150  # 10% of E - B


def test_arms_share_one_warmup():
    cfg = C.TrainConfig()
    arms = [
        cfg,
        cfg.replace(method={"alpha": 2.0}),
        cfg.replace(method={"use_temperature": False}),
        cfg.replace(method={"name": "simclr"}),
    ]
    assert len({C.run_id(C.warmup_config(a)) for a in arms}) == 1
    other = cfg.replace(method={"warmup_epochs": 10})
    assert C.run_id(C.warmup_config(other)) != C.run_id(C.warmup_config(cfg))


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_file_is_valid(profile):
    for path in sorted((PARAMS_DIR / profile).glob("[0-9][0-9]_*.yaml")):
        params = C.notebook_params(path.stem, profile)
        C.train_config(params)


def test_notebook_params_dataset_and_unknown_profile():
    params = C.notebook_params("01_warmup", "quick", dataset="cifar100-lt")
    assert params["data"]["name"] == "cifar100-lt"
    assert params["augment"]["size"] == 32
    with pytest.raises(ValueError, match="profile"):
        C.notebook_params("01_warmup", "huge")
    with pytest.raises(ValueError, match="dataset"):
        C.notebook_params("01_warmup", "quick", dataset="mnist")
