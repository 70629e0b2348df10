import pytest

from gmdrit_cli.config.schema import (
    Config,
    build_config,
    dump_config,
    list_presets,
    load_config,
    load_config_file,
    resolve_preset_path,
)
from gmdrit_cli.errors import ConfigError
from gmdrit_cli.families import MODEL_FAMILIES


def test_every_preset_loads_and_round_trips(tmp_path):
    assert {"quickstart", "mdmm_baseline"} <= set(list_presets())
    for name, description in list_presets().items():
        assert description, f"preset {name} has no description"
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.model.family in MODEL_FAMILIES
        path = tmp_path / f"{name}.yaml"
        path.write_text(dump_config(cfg))
        assert load_config_file(path) == cfg


def test_mdmm_baseline_is_report_section_5_5():
    cfg = load_config("mdmm_baseline")
    assert (cfg.model.family, cfg.data.crop, cfg.data.resize, cfg.train.max_iters) == ("mdmm", 216, 256, 6000)
    assert cfg.optim.lr_dis == cfg.optim.lr_eg == 1e-4
    assert cfg.data.domains == ["apple", "orange"] and cfg.train.batch_size == 2 and cfg.model.nz == 8


def test_overrides_are_typed():
    cfg = load_config(
        "quickstart",
        ["optim.lr_eg=1e-4", "train.max_iters=7", "data.flip=false", "data.domains=[cat, dog]", "data.root=/x"],
    )
    assert cfg.optim.lr_eg == pytest.approx(1e-4) and isinstance(cfg.optim.lr_eg, float)
    assert cfg.train.max_iters == 7 and cfg.data.flip is False
    assert cfg.data.domains == ["cat", "dog"] and cfg.data.root == "/x"


def test_unknown_key_gets_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'train.max_iter' \(did you mean 'train.max_iters'\?\)"):
        load_config("quickstart", ["train.max_iter=5"])
    with pytest.raises(ConfigError, match=r"did you mean 'train.max_iters'"):
        load_config("quickstart", ["optim.max_iters=5"])  # right key, wrong section


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config(
            "quickstart",
            ["train.batch_size=3", "optim.lr_eg=-1", "data.crop=abc", "model.dis_norm=batch", "nope.key=1"],
        )
    message = str(info.value)
    for part in ("train.batch_size", "optim.lr_eg", "data.crop", "model.dis_norm", "nope.key"):
        assert part in message
    assert "\n" not in message


def test_unknown_preset_suggests_and_lists():
    with pytest.raises(ConfigError, match=r"unknown preset 'quikstart' \(did you mean 'quickstart'\?\)"):
        resolve_preset_path("quikstart")


def test_preset_from_path_and_bad_yaml(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("model: {nz: 4}\n")
    cfg = load_config(str(good))
    assert cfg.name == "mine" and cfg.model.nz == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_defaults_match_official_mdmm():
    cfg = build_config({})
    assert cfg == Config()
    assert (cfg.loss.lambda_rec, cfg.loss.lambda_cls, cfg.loss.lambda_cls_fake, cfg.loss.lambda_latent) == (
        10,
        1,
        5,
        10,
    )
    assert (cfg.loss.kl_content, cfg.loss.kl_attribute) == (0.01, 0.01)
    assert (cfg.optim.beta1, cfg.optim.beta2, cfg.optim.weight_decay) == (0.5, 0.999, 1e-4)
    assert cfg.optim.lr_content_dis == pytest.approx(1e-4 / 2.5)
    assert (cfg.optim.n_epochs, cfg.optim.n_epochs_decay) == (1200, 600)
