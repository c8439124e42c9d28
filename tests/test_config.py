import pytest

from volseg.config import (
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    save_config,
)


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: attunet\nsampling:\n  patch_size_3d: [32, 32, 32]\n", encoding="utf-8")
    cfg = load_config(path, ["model.dims=2", "preprocess.spacing=[1, 1, 2.5]", "data.labels={1: pancreas}"])
    assert cfg.model.name == "attunet" and cfg.model.dims == 2
    assert cfg.sampling.patch_size_3d == [32, 32, 32]
    assert cfg.preprocess.spacing == [1.0, 1.0, 2.5]
    assert cfg.data.labels == {1: "pancreas"}
    assert cfg.sampling.batch_size_3d == Config().sampling.batch_size_3d


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["preprocess.spacing=null", "model.features=[8, 16]"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.nmae=unet", r"unknown config key 'model.nmae'; valid keys: \['name', 'dims'"),
        ("trian.epochs=3", r"unknown config key 'trian'; valid keys: \['data'"),
        ("sampling.batch_size_3d=two", r"sampling.batch_size_3d: expected int, got 'two'"),
        ("preprocess.spacing=fine", r"preprocess.spacing: expected a list"),
        ("novalue", r"expected key=value"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
