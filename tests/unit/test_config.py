"""Config loading: defaults, overrides, and the promised error messages."""

import pytest

from mouse_pipeline.config import Config, config_from_dict, dump_config, load_config
from mouse_pipeline.errors import ConfigError


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_yaml_documents_exactly_the_defaults():
    assert load_config("configs/default.yaml") == Config()


def test_every_key_of_default_yaml_has_a_comment():
    lines = open("configs/default.yaml").read().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue  # comments and section headers
        assert lines[i - 1].strip().startswith("#"), f"key without comment: {line!r}"


@pytest.mark.parametrize("name", ["demo", "thesis"])
def test_shipped_configs_load(name):
    cfg = load_config(f"configs/{name}.yaml")
    assert cfg.data.behaviors == ("grooming", "mid_rearing", "wall_rearing")


def test_thesis_config_mirrors_the_thesis():
    cfg = load_config("configs/thesis.yaml")
    assert cfg.extract.backbones == ("resnet50v2", "inception_resnet_v2")
    assert cfg.data.crop.mode == "pose" and cfg.data.crop.size == 160
    assert cfg.data.crop.bodypart == "midbody" and cfg.data.fps == 10
    assert cfg.data.label_columns == {"rearing_mig": "mid_rearing", "rearing_paret": "wall_rearing"}


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    p = write(tmp_path, "extract:\n  batch_size: 8\n")
    cfg = load_config(p, ["extract.batch_size=64", "extract.backbones=[mobilenet_v3_small]",
                          "data.crop.box=[1, 2, 30, 40]", "extract.input_size=null"])
    assert cfg.extract.batch_size == 64
    assert cfg.extract.backbones == ("mobilenet_v3_small",)
    assert cfg.data.crop.box == (1, 2, 30, 40)
    assert cfg.extract.input_size is None
    assert cfg.source == str(p)


@pytest.mark.parametrize("override, pattern", [
    ("extract.batch_size=-3", r"c\.yaml: key 'extract\.batch_size': value out of range: expected an integer between 1 and 4096, got -3"),
    ("extract.bogus=1", r"c\.yaml: unknown key 'extract\.bogus'; known keys here: cache, backbones"),
    ("extract.batch_size=many", r"key 'extract\.batch_size': expected an integer, got str 'many'"),
    ("extract.jit_compile=1", r"key 'extract\.jit_compile': expected true or false, got int 1"),
    ("extract.dtype=float64", r"key 'extract\.dtype': expected one of 'float32', 'float16', got str 'float64'"),
    ("train.models=[lstm, gru]", r"key 'train\.models\[1\]': expected one of 'lstm', 'tcn', got str 'gru'"),
    ("data.crop.box=[1, 2]", r"key 'data\.crop\.box': expected a list of 4 values"),
    ("data.crop.mode=pose", r"key 'data\.crop\.pose': expected the folder of DeepLabCut files"),
    ("train.window.stride=500", r"key 'train\.window\.stride': expected at most train\.window\.length"),
    ("train.search.space={lstm.units: [0]}", r"key 'train\.search\.space\.lstm\.units': a candidate value is invalid"),
    ("train.workers=0", r"key 'train\.workers': value out of range: expected an integer between 1 and 256, got 0"),
    ("train.workers=2.5", r"key 'train\.workers': expected an integer, got float 2\.5"),
    ("data=3", r"key 'data': expected a mapping \(section\), got int 3"),
])
def test_bad_values_name_file_key_expected_and_got(tmp_path, override, pattern):
    p = write(tmp_path, "{}\n")
    with pytest.raises(ConfigError, match=pattern):
        load_config(p, [override])


def test_unknown_key_in_file(tmp_path):
    p = write(tmp_path, "train:\n  lstm:\n    unitz: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.lstm\.unitz'; known keys here: units"):
        load_config(p)


def test_malformed_yaml_names_line(tmp_path):
    p = write(tmp_path, "data:\n  videos: [a, b\n  labels: x\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: malformed YAML at line \d+"):
        load_config(p)


def test_top_level_must_be_a_mapping(tmp_path):
    p = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections at the top level, got a list"):
        load_config(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="config file is a folder"):
        load_config(tmp_path)


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["extract.batch_size"])


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.extract.batch_size = 3  # type: ignore[misc]


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config("configs/thesis.yaml", ["train.search.space={window.length: [200, 300]}"])
    dump_config(cfg, tmp_path / "r.yaml")
    again = load_config(tmp_path / "r.yaml")
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
