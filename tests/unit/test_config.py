"""Config loading: defaults, overrides, and the promised error messages."""

import time
from pathlib import Path

import pytest
import yaml

from mouse_pipeline.config import Config, config_from_dict, dump_config, load_config
from mouse_pipeline.errors import ConfigError
from mouse_pipeline.paths import default_config_text

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_yaml_documents_exactly_the_defaults():
    """The packaged default.yaml holds exactly the dataclass defaults (which apply without
    --config), and the repository's configs/default.yaml is the same file."""
    assert yaml.safe_load(default_config_text()) == Config().to_dict()
    assert (REPO / "configs" / "default.yaml").read_text(encoding="utf-8") == default_config_text(), (
        "configs/default.yaml differs from the packaged mouse_pipeline/configs/default.yaml: "
        "edit the packaged one and copy it over")


def test_no_config_takes_the_dataclass_defaults_with_paths_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    paths = {"videos": "data/videos", "labels": "data/labels"}
    assert {k: getattr(cfg.data, k) for k in paths} == {k: str(tmp_path / v) for k, v in paths.items()}
    assert (cfg.extract.cache, cfg.train.run) == (str(tmp_path / "cache"), str(tmp_path / "runs/default"))
    plain, defaults = cfg.to_dict(), Config().to_dict()
    for section, key in (("data", "videos"), ("data", "labels"), ("extract", "cache"), ("train", "run")):
        plain[section][key] = defaults[section][key]
    assert plain == defaults


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


def test_shipped_configs_point_at_the_repository_root(tmp_path, monkeypatch):
    """configs/ holds the files, but `make demo` writes demo_out/ at the root, from any folder."""
    monkeypatch.chdir(tmp_path)
    demo = load_config(REPO / "configs" / "demo.yaml")
    assert demo.data.videos == str(REPO / "demo_out" / "data" / "videos")
    assert demo.data.crop.pose == str(REPO / "demo_out" / "data" / "pose")
    assert (demo.extract.cache, demo.train.run) == (str(REPO / "demo_out" / "cache"), str(REPO / "demo_out" / "run"))
    thesis = load_config(REPO / "configs" / "thesis.yaml")
    assert thesis.data.labels == str(REPO / "data" / "thesis" / "labels")
    assert (thesis.extract.cache, thesis.train.run) == (str(REPO / "cache"), str(REPO / "runs" / "thesis"))


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
    ("train.models=[lstm, gru]", r"key 'train\.models\[1\]': expected one of 'lstm', 'tcn', 'linear', 'mlp', 'transformer', 'auto', got str 'gru'"),
    ("train.transformer.layers=5", r"c\.yaml: key 'train\.transformer\.layers': value out of range: expected an integer between 1 and 4, got 5$"),
    ("train.transformer.width=30", r"c\.yaml: key 'train\.transformer\.width': expected a multiple of train\.transformer\.heads \(4\), so every head gets width / heads dimensions, got 30$"),
    ("train.transformer.positions=absolute", r"key 'train\.transformer\.positions': expected one of 'sinusoidal', 'relative', got str 'absolute'$"),
    ("train.transformer.dropout=1.5", r"key 'train\.transformer\.dropout': value out of range"),
    ("train.mlp.units=0", r"key 'train\.mlp\.units': value out of range: expected an integer between 1 and 4096, got 0$"),
    ("train.linear.l2=-1", r"key 'train\.linear\.l2': value out of range"),
    ("train.linear.delta=1", r"key 'train\.linear\.delta': expected true or false, got int 1$"),
    ("train.search.space={transformer.heads: [3, 4]}", r"key 'train\.search\.space\.transformer\.heads': a candidate value is invalid: 3 \(key 'train\.transformer\.width': expected a multiple"),
    ("data.crop.box=[1, 2]", r"key 'data\.crop\.box': expected a list of 4 values"),
    ("data.crop.mode=pose", r"key 'data\.crop\.pose': expected the folder of DeepLabCut files"),
    ("train.window.stride=500", r"key 'train\.window\.stride': expected at most train\.window\.length"),
    ("train.search.space={lstm.units: [0]}", r"key 'train\.search\.space\.lstm\.units': a candidate value is invalid"),
    ("train.workers=0", r"key 'train\.workers': value out of range: expected an integer between 1 and 256, got 0"),
    ("train.workers=2.5", r"key 'train\.workers': expected an integer, got float 2\.5"),
    ("data=3", r"key 'data': expected a mapping \(section\), got int 3"),
    # values with no sensible range (issue 12)
    ("train.seed=-1", r"c\.yaml: key 'train\.seed': value out of range: expected an integer between 0 and 2147483647, got -1"),
    ("data.crop.size=100000", r"key 'data\.crop\.size': value out of range: expected an integer between 8 and 4096, got 100000"),
    ("train.window.length=100000000", r"key 'train\.window\.length': value out of range: expected an integer between 2 and 100000, got 100000000"),
    ("train.window.length=1e8", r"key 'train\.window\.length': expected an integer, got str '1e8' \(YAML reads 1e8 as text; write 100000000\)$"),
    ("train.learning_rate=1e-3", r"key 'train\.learning_rate': expected a number, got str '1e-3' \(YAML reads 1e-3 as text; write 0\.001\)$"),
    ("train.window.length=1.0e+8", r"key 'train\.window\.length': expected an integer, got float 100000000\.0$"),
    ("data.fps=.inf", r"key 'data\.fps': expected a finite number between 0\.001 and 10000, got inf"),
    ("data.fps=.nan", r"key 'data\.fps': expected a finite number between 0\.001 and 10000, got nan"),
    ("data.fps=-.inf", r"key 'data\.fps': expected a finite number"),
    ("train.memory_gb=.inf", r"key 'train\.memory_gb': expected a finite number between 0 and 1000000, got inf"),
    ("train.learning_rate=.nan", r"key 'train\.learning_rate': expected a finite number"),
    ("data.crop.min_likelihood=.nan", r"key 'data\.crop\.min_likelihood': expected a finite number"),
    ("train.lstm.dropout=.inf", r"key 'train\.lstm\.dropout': expected a finite number"),
    ("train.memory_gb=1" + "0" * 400, r"key 'train\.memory_gb': expected a finite number .*, got 1000000000"),
    ("train.epochs=1000000000", r"key 'train\.epochs': value out of range: expected an integer between 1 and 100000"),
    ("train.tcn.dilations=[1, 0, 4]", r"key 'train\.tcn\.dilations\[1\]': value out of range: expected an integer between 1 and 100000, got 0"),
    ("postprocess.min_len=[0, -2]", r"key 'postprocess\.min_len\[1\]': value out of range: expected an integer between 0 and 100000, got -2"),
    ("data.crop.box=[0, 0, 100000, 10]", r"key 'data\.crop\.box\[2\]': value out of range: expected an integer between 0 and 16384"),
    ("train.lstm.units=1000000", r"key 'train\.lstm\.units': value out of range: expected an integer between 1 and 4096"),
    ("train.search.n_trials=100000", r"key 'train\.search\.n_trials': value out of range: expected an integer between 1 and 1000"),
])
def test_bad_values_name_file_key_expected_and_got(tmp_path, override, pattern):
    p = write(tmp_path, "{}\n")
    with pytest.raises(ConfigError, match=pattern):
        load_config(p, [override])


@pytest.mark.parametrize("text, pattern", [
    ("train:\n  lstm:\n    unitz: 3\n", r"c\.yaml: unknown key 'train\.lstm\.unitz'; known keys here: units"),
    ("data:\n  videos: [a, b\n  labels: x\n", r"c\.yaml: malformed YAML at line \d+"),
    # a key given twice, at any depth (issue 12)
    ("train:\n  seed: 1\ndata:\n  fps: 5\ntrain:\n  seed: 2\n",
     r"c\.yaml: line 5: duplicate key 'train' \(first at line 1\); YAML would silently keep only the last one"),
    ("train:\n  window:\n    length: 32\n    stride: 8\n    length: 64\n",
     r"c\.yaml: line 5: duplicate key 'train\.window\.length' \(first at line 3\)"),
    ("train:\n  search:\n    space: {lstm.units: [8], lstm.units: [16]}\n",
     r"c\.yaml: line 3: duplicate key 'train\.search\.space\.lstm\.units'"),
    ("data:\n  <<: {fps: 5, fps: 6}\n", r"c\.yaml: line 2: duplicate key 'data\.fps' \(first at line 2\)"),
    ("data:\n  behaviors: &b [grooming]\ntrain: {folds: {train: *b}}\n", r"c\.yaml: line 3: YAML alias '\*b'"),
    # a wrong window length is one problem, not also a spurious stride > length one
    ("train:\n  window:\n    length: x\n    stride: 500\n",
     r"c\.yaml: key 'train\.window\.length': expected an integer, got str 'x'$"),
    ("train:\n  search:\n    space: {lstm.units: [8, 0], window.length: [1, 64]}\n",
     r"2 problems: \(1\) key 'train\.search\.space\.lstm\.units': a candidate value is invalid: 0 .*; "
     r"\(2\) key 'train\.search\.space\.window\.length': a candidate value is invalid: 1 "),
])
def test_bad_files_name_the_file_and_the_line_or_key(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(write(tmp_path, text))
    assert "\n" not in str(err.value)


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


# --------------------------------------------------------------------------- YAML safety


def test_the_same_key_in_different_sections_or_merged_on_purpose_is_no_duplicate(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lstm:\n    dropout: 0.3\n  tcn:\n    dropout: 0.4\n"
                                      "data:\n  <<: {fps: 5}\n  fps: 6\n"))
    assert (cfg.train.lstm.dropout, cfg.train.tcn.dropout, cfg.data.fps) == (0.3, 0.4, 6)


def alias_bomb(levels=9, fanout=10):
    """Nested anchors and aliases under train.search.space: 10**9 values once expanded."""
    lines = ["train:", "  search:", "    space:", "      a0: &a0 [" + ", ".join(["1"] * fanout) + "]"]
    lines += [f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_once(tmp_path):
    p = write(tmp_path, alias_bomb())
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"c\.yaml: line 5: YAML alias '\*a0': aliases are not accepted"):
        load_config(p)
    assert time.perf_counter() - start < 1.0


def test_aliases_in_overrides_are_refused():
    with pytest.raises(ConfigError, match=r"--set .*: YAML alias '\*x'"):
        load_config(None, ["train.search.space={lstm.units: &x [8], tcn.filters: *x}"])


def test_deep_nesting_and_huge_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: line 1: nested more than 20 levels deep"):
        load_config(write(tmp_path, "[" * 5000 + "]" * 5000))
    big = write(tmp_path, "# " + "x" * 1_200_000 + "\n", name="big.yaml")
    with pytest.raises(ConfigError, match=r"big\.yaml: 1\.2 MB, more than a config file can be"):
        load_config(big)


# --------------------------------------------------------------------------- every problem at once


def test_every_problem_of_a_file_is_reported_at_once_on_one_line(tmp_path):
    p = write(tmp_path, "extract:\n  colour: red\n  batch_size: many\ntrain:\n  seed: -1\n"
                        "  window:\n    length: 16\n    stride: 32\ndata:\n  fps: .nan\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{p}: 5 problems: (1) ")
    for part in ("key 'data.fps': expected a finite number", "unknown key 'extract.colour'",
                 "key 'extract.batch_size': expected an integer, got str 'many'",
                 "key 'train.seed': value out of range", "key 'train.window.stride': expected at most "
                 "train.window.length (16)"):
        assert part in message


def test_long_lists_of_problems_are_cut_short(tmp_path):
    p = write(tmp_path, "data:\n" + "".join(f"  bogus_{i}: 1\n" for i in range(30)))
    with pytest.raises(ConfigError, match=r"30 problems: .*\(20\) unknown key 'data\.bogus_19'.*; and 10 more$"):
        load_config(p)


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("overrides, pattern", [
    (["train.window.length=50000"], r"key 'train\.window\.length': 50000 frames: one batch of windows would take "
                                    r"26\.2 GB \(length x 64 windows .* x 2048-d embeddings x 4 bytes\), more than the 16 GB"),
    (["train.window.length=20000", "train.batch_size=1024"], r"key 'train\.window\.length': .* 167\.8 GB .*1024 windows"),
    (["extract.batch_size=4096", "extract.queue_batches=64", "extract.input_size=1024"],
     r"key 'extract\.batch_size': 4096: the decoded frames waiting for the backbone would take 889\.1 GB \(266240 frames"),
    (["data.crop.mode=box", "data.crop.box=[0, 0, 16000, 16000]", "extract.frame_threads=16"],
     r"key 'data\.crop\.box': 33 crops of 16000 x 16000 px are made at once .* 25\.3 GB"),
    (["train.tcn.filters=4096", "train.tcn.kernel_size=64"], r"key 'train\.tcn\.filters': the TCN would have [\d,]+ weights, "
                                                            r"which with gradients and Adam's moments take [\d,.]+ GB"),
    (["train.search.space={window.length: [64, 60000]}"],
     r"key 'train\.search\.space\.window\.length': a candidate value is invalid: 60000 \(key 'train\.window\.length': 60000 frames"),
    (["train.models=[transformer]", "train.window.length=8192"],
     r"key 'train\.window\.length': 8192 frames: the transformer's attention weights of one batch would take 68\.7 GB "
     r"\(64 windows x 4 heads x length\^2 x 4 bytes\)"),
])
def test_settings_needing_absurd_memory_are_refused_with_the_figure(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, overrides)


def test_a_tcn_section_is_not_judged_when_no_tcn_is_trained():
    cfg = load_config(None, ["train.models=[lstm]", "train.tcn.filters=4096", "train.tcn.kernel_size=64"])
    assert cfg.train.tcn.filters == 4096


@pytest.mark.parametrize("override", ["train.transformer.layers=5", "train.transformer.width=30",
                                      "train.transformer.heads=0", "train.mlp.dropout=0.95"])
def test_bad_head_settings_are_one_line_config_errors(override):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value) and str(err.value).startswith("<defaults>: key 'train."), err.value


def test_a_transformer_section_is_not_judged_for_memory_when_no_transformer_is_trained():
    assert load_config(None, ["train.models=[lstm]", "train.window.length=8192"]).train.window.length == 8192


def test_search_grids_are_bounded():
    twenty = ", ".join(str(i) for i in range(1, 21))
    with pytest.raises(ConfigError, match=r"key 'train\.search\.space': 20 x 20 x 20 = 8,000 combinations"):
        load_config(None, [f"train.search.space={{lstm.units: [{twenty}], tcn.filters: [{twenty}], epochs: [{twenty}]}}"])
    many = ", ".join(str(i) for i in range(1, 151))
    with pytest.raises(ConfigError, match=r"key 'train\.search\.space\.epochs': expected at most 100 candidate values, got 150"):
        load_config(None, [f"train.search.space={{epochs: [{many}]}}"])


def test_the_limits_assumed_match_the_code():
    from mouse_pipeline import config
    from mouse_pipeline.backbones import REGISTRY
    from mouse_pipeline.sequences.inference import BATCH_WINDOWS

    assert config.MAX_EMBEDDING_DIM == max(spec.dim for spec in REGISTRY.values())
    assert config.LARGEST_INPUT == max(spec.default_size for spec in REGISTRY.values())
    assert config.INFERENCE_WINDOWS == BATCH_WINDOWS
