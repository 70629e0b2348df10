"""A temperature per target domain (`model.sample_temperature_by_domain`, `gmdrit export --temperature
DOMAIN=T,...`): parsed and refused as a config key, and every test-time sampler (translate, eval, the app, ONNX)
draws each domain's attributes at its own default, as if that temperature had been given."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from conftest import assert_one_line_error, tiny_overrides
from gmdrit_cli.config.schema import (
    TEMPERATURE_RANGE,
    build_config,
    by_domain,
    dump_config,
    load_config,
    temperature_of,
)
from gmdrit_cli.errors import ConfigError
from gmdrit_cli.inference.model_files import export_model, load_for_inference

DOMAINS = ["apple", "orange"]


def test_values_by_domain_are_read_and_every_mistake_is_named():
    assert by_domain(" orange=1.8, apple=1.5 ", DOMAINS, TEMPERATURE_RANGE) == {"orange": 1.8, "apple": 1.5}
    assert by_domain("", DOMAINS, TEMPERATURE_RANGE) == {}
    for text, fragment in (
        ("orange", "'orange' is not DOMAIN=VALUE"),
        ("oranges=1.2", "'oranges' is not a domain of this model (apple, orange)"),
        ("orange=1,orange=2", "given twice"),
        ("orange=hot", "orange=hot: give a number"),
        ("orange=0", "above 0 and at most 100"),
        ("orange=nan", "above 0 and at most 100"),
    ):
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            by_domain(text, DOMAINS, TEMPERATURE_RANGE)


def test_the_config_key_round_trips_and_is_refused_with_its_name():
    cfg = load_config("reduced_res", tiny_overrides("data", 2) + ["model.sample_temperature_by_domain=orange=1.8"])
    assert [temperature_of(cfg, d) for d in (0, 1)] == [1.0, 1.8]
    assert build_config(yaml.safe_load(dump_config(cfg))) == cfg
    with pytest.raises(ConfigError, match="model.sample_temperature_by_domain: 'pear' is not a domain"):
        load_config("reduced_res", tiny_overrides("data", 2) + ["model.sample_temperature_by_domain=pear=2"])


@pytest.fixture(scope="module")
def by_domain_export(tiny_gmdrit_run, tmp_path_factory):
    """An export of the tiny GM-DRIT run (apple, orange) whose oranges are drawn at 1.7 and apples at its 1.2."""
    base, _ = tiny_gmdrit_run
    out = tmp_path_factory.mktemp("by_domain")
    export_model(base / "run", out / "model", temperature=1.2)
    export_model(out / "model", out / "by_domain", temperature="orange=1.7")
    return out / "by_domain"


def test_translate_and_eval_draw_each_domain_at_its_own_default(by_domain_export):
    from gmdrit_cli.evaluation.metrics.evaluator import task_temperature
    from gmdrit_cli.inference.translate import _attributes, sampling_options

    cfg, model = load_for_inference(by_domain_export)
    assert (cfg.model.sample_temperature, cfg.model.sample_temperature_by_domain) == (1.2, "orange=1.7")
    for domain, expected in ((1, 1.7), (0, 1.2)):
        default = _attributes(model, domain, sampling_options(model, samples=6, seed=3), 32)
        given = _attributes(model, domain, sampling_options(model, samples=6, temperature=expected, seed=3), 32)
        assert torch.equal(default.z, given.z)
        other = _attributes(model, domain, sampling_options(model, samples=6, temperature=1.0, seed=3), 32)
        assert not torch.equal(default.z, other.z)  # the temperature is what made them equal
    own = SimpleNamespace(temperature=1.2, temperature_by_domain={"orange": 1.7})
    assert [task_temperature(own, name) for name in DOMAINS] == [1.2, 1.7]
    given = SimpleNamespace(temperature=0.9, temperature_by_domain=None)  # --temperature: every domain
    assert [task_temperature(given, name) for name in DOMAINS] == [0.9, 0.9]


def test_eval_records_the_defaults_it_used(by_domain_export, tiny_gmdrit_run, tmp_path):
    from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate

    _, root = tiny_gmdrit_run
    options = EvalOptions(by_domain_export, data=str(root), metrics="domain_accuracy", samples_per_input=2)
    settings = evaluate(EvalOptions(**{**vars(options), "out": tmp_path / "e"})).report["settings"]
    assert settings["temperature"] == 1.2 and settings["temperature_by_domain"] == {"orange": 1.7}
    given = evaluate(EvalOptions(**{**vars(options), "out": tmp_path / "g", "temperature": 1.0})).report["settings"]
    assert given["temperature"] == 1.0 and "temperature_by_domain" not in given


def test_the_app_starts_each_domain_at_its_default(by_domain_export):
    from gmdrit_cli.inference.webapp import Request, _check_options, load_app_model

    app = load_app_model(by_domain_export)
    assert app.sample_temperatures == {"apple": 1.2, "orange": 1.7}
    image = str(by_domain_export.parent / "in.png")
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 40, 30)).save(image)
    for domain, expected in (("orange", 1.7), ("apple", 1.2)):
        assert _check_options(app, Request(image, domain, randomize=False))[2] == expected
    assert _check_options(app, Request(image, "orange", temperature=0.5, randomize=False))[2] == 0.5


def test_the_onnx_export_keeps_the_defaults(cli, by_domain_export, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'gmdrit[onnx]'")
    from gmdrit_cli.inference.onnx_translate import OnnxModel, _random_attributes, _sampling

    proc = cli("export", by_domain_export, "--format", "onnx", "--out", tmp_path / "onnx")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert meta["sample_temperature_by_domain"] == "orange=1.7"
    model = OnnxModel(tmp_path / "onnx")
    for domain, expected in ((1, 1.7), (0, 1.2)):
        default, _ = _random_attributes(model, domain, _sampling(model, 4, None, None, None), seed=1)
        given, _ = _random_attributes(model, domain, _sampling(model, 4, None, expected, None), seed=1)
        assert np.array_equal(default, given)


def test_export_records_the_choice_and_refuses_bad_values_in_one_line(cli, by_domain_export, tiny_gmdrit_run, tmp_path):
    from test_refit_prior import _fingerprint, _sweep_file

    chosen = json.loads(
        safe_open(str(by_domain_export / "model.safetensors"), "pt").metadata()["sample_temperature_chosen"]
    )
    assert chosen["by_domain"] == {"orange": 1.7} and chosen["sample_temperature"] == 1.2
    base, _ = tiny_gmdrit_run
    export_model(base / "run", tmp_path / "plain")
    sweep = _sweep_file(tmp_path / "sweep.json", "val", _fingerprint(tmp_path / "plain"))  # rows 1.0 and 1.3
    export_model(base / "run", tmp_path / "swept", temperature="orange=1.3,apple=1", sweep=sweep)
    chosen = json.loads(
        safe_open(str(tmp_path / "swept" / "model.safetensors"), "pt").metadata()["sample_temperature_chosen"]
    )
    assert chosen["by_domain"] == {"orange": 1.3, "apple": 1.0} and chosen["split"] == "val"
    cfg, _ = load_for_inference(tmp_path / "swept")
    assert [temperature_of(cfg, d) for d in (0, 1)] == [1.0, 1.3]
    export_model(tmp_path / "swept", tmp_path / "one", temperature=0.8)  # one value replaces the per-domain ones
    assert load_for_inference(tmp_path / "one")[0].model.sample_temperature_by_domain == ""
    for given, fragment in (
        (["--temperature", "orange=1.1,apple=1", "--sweep", str(sweep)], "--temperature 1.1 is not a row of --sweep"),
        (["--temperature", "pear=1.3"], "'pear' is not a domain of this model"),
        (["--temperature", "orange=200"], "at most 100"),
        (["--temperature", "warm"], "--temperature 'warm': give a number, or one per domain"),
    ):
        assert_one_line_error(cli("export", base / "run", "--out", tmp_path / "refused", *given), fragment)
    assert not (tmp_path / "refused").exists()


def test_the_eval_table_title_names_each_domains_temperature():
    from gmdrit_cli.cli.eval import _temperature

    tasks = [{"target": "orange"}, {"target": "apple"}]
    own = {"settings": {"temperature": 1.2, "temperature_by_domain": {"orange": 1.7}}, "tasks": tasks}
    assert _temperature(own) == " at temperature into orange 1.7, else 1.2"
    both = {"settings": {"temperature": 1.2, "temperature_by_domain": {"orange": 1.7, "apple": 1.5}}, "tasks": tasks}
    assert _temperature(both) == " at temperature into orange 1.7, into apple 1.5"
    assert _temperature({"settings": {"temperature": 1.0}, "tasks": tasks}) == ""
