"""The run folder's contract: the fold writer commits atomically, every reader names the
damaged file in one RunError."""

import json

import numpy as np
import pytest

from mouse_pipeline.config import Config
from mouse_pipeline.errors import RunError
from mouse_pipeline.folds import Fold
from mouse_pipeline.runs import (
    FOLD_FILE,
    POSTPROCESS_FILE,
    PROBS_FILE,
    RUN_FILE,
    SCHEMA_VERSION,
    RunFolder,
    model_file,
)

BEHAVIORS = ("groom", "rear")
FOLD = Fold(index=0, train=("a", "b"), val=("c",), test=("d",))
POST = {b: {"threshold": 0.5, "max_gap": 2, "min_len": 3} for b in BEHAVIORS}


def config(run, heads="joint"):
    return Config().replace(**{"data.behaviors": list(BEHAVIORS), "train.models": ["lstm"],
                               "extract.backbones": ["resnet50v2"], "train.run": str(run),
                               "train.heads": heads})


def write_fold(run, index=0, fold=FOLD, models=(None,)):
    probs = {"val": {v: np.full((5, 2), 0.25, np.float32) for v in fold.val},
             "test": {v: np.full((7, 2), 0.75, np.float32) for v in fold.test}}
    with run.fold_writer("resnet50v2", "lstm", index) as w:
        w.write_probs(list(BEHAVIORS), probs)
        for m in models:
            w.model_path(m).write_bytes(b"model")
        w.write_normalization(np.zeros(3), np.ones(3))
        w.write_records(POST, {"heads": []}, {"fit_seconds": 1.0}, {**fold.to_dict(), "window": 8,
                                                                     "inference_stride": 2})
    return run.unit("resnet50v2", "lstm", index)


@pytest.fixture
def run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_config(config(folder.path))
    folder.write_folds([FOLD])
    return folder


def test_a_fold_reads_back_what_was_written(run):
    folder = write_fold(run)
    assert run.is_complete(folder) and not folder.with_name("fold_0.partial").exists()
    assert run.find_models() == {"resnet50v2/lstm": [0]}
    got = run.read_fold("resnet50v2/lstm", FOLD, BEHAVIORS)
    assert got.post == POST and got.meta["window"] == 8 and got.timings == {"fit_seconds": 1.0}
    np.testing.assert_array_equal(got.test["d"], np.full((7, 2), 0.75))
    np.testing.assert_array_equal(got.val["c"], np.full((5, 2), 0.25))
    assert run.read_folds() == [FOLD]
    assert run.read_config().data.behaviors == BEHAVIORS
    assert json.loads((run.path / RUN_FILE).read_text())["schema"] == SCHEMA_VERSION


def test_a_failed_fold_leaves_nothing_and_keeps_the_committed_one(run):
    folder = write_fold(run)
    before = (folder / PROBS_FILE).read_bytes()
    with pytest.raises(KeyboardInterrupt), run.fold_writer("resnet50v2", "lstm", 0) as w:
        w.write_probs(list(BEHAVIORS), {"test": {"d": np.zeros((7, 2), np.float32)}})
        raise KeyboardInterrupt  # Ctrl-C half-way through the fold
    assert (folder / PROBS_FILE).read_bytes() == before
    assert not folder.with_name("fold_0.partial").exists()
    assert not [p for p in run.path.rglob("*") if ".tmp-" in p.name]


def test_a_killed_fold_is_not_complete_and_is_rebuilt(run):
    partial = run.unit("resnet50v2", "lstm", 0).with_name("fold_0.partial")
    partial.mkdir(parents=True)
    (partial / PROBS_FILE).write_bytes(b"half")
    assert run.find_models() == {"resnet50v2/lstm": []}  # started, not finished
    folder = write_fold(run)
    assert run.is_complete(folder) and not partial.exists()


@pytest.mark.parametrize(("name", "content", "match"), [
    (POSTPROCESS_FILE, "{\"groom\": {\"threshold\": 0.5", "not valid JSON"),
    (POSTPROCESS_FILE, json.dumps({"groom": POST["groom"]}), "no numeric threshold.*'rear'"),
    (POSTPROCESS_FILE, json.dumps({**POST, "rear": {"threshold": "high", "max_gap": 1, "min_len": 1}}),
     "no numeric threshold.*'rear'"),
    (FOLD_FILE, "[1, 2", "not valid JSON"),
    (FOLD_FILE, json.dumps({"test": ["d"], "window": 0, "inference_stride": 2}), "window and inference_stride"),
    (FOLD_FILE, json.dumps({"test": ["x"], "window": 8, "inference_stride": 2}), "mixes two runs"),
    (PROBS_FILE, "not hdf5", "unreadable"),
])
def test_a_damaged_fold_file_is_one_run_error_naming_it(run, name, content, match):
    folder = write_fold(run)
    (folder / name).write_text(content, encoding="utf-8")
    with pytest.raises(RunError, match=match) as err:
        run.read_fold("resnet50v2/lstm", FOLD, BEHAVIORS)
    assert str(folder / name) in str(err.value) and "\n" not in str(err.value)


def test_a_truncated_probability_file_is_a_run_error(run):
    path = write_fold(run) / PROBS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match=f"{path}: unreadable"):
        run.read_fold("resnet50v2/lstm", FOLD, BEHAVIORS)


def test_config_and_schema_errors_name_the_file(run):
    run.config_file.write_text("data: [unclosed\n", encoding="utf-8")
    with pytest.raises(RunError, match=f"{run.config_file}: not valid YAML"):
        run.read_config()
    run.config_file.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(RunError, match="not a mapping"):
        run.read_config()
    run.config_file.write_text("train: {epochs: -3}\n", encoding="utf-8")
    with pytest.raises(RunError, match=f"{run.config_file}: not a valid run config"):
        run.read_config()
    (run.path / RUN_FILE).write_text(json.dumps({"schema": SCHEMA_VERSION + 1}), encoding="utf-8")
    with pytest.raises(RunError, match="schema"):
        run.read_config()
    with pytest.raises(RunError, match="not a run folder"):
        RunFolder(run.path / "nothing").read_config()


def test_final_model_records_and_missing_model_files(run):
    with pytest.raises(RunError, match="no final model for resnet50v2/lstm"):
        run.read_final(config(run.path), "resnet50v2", "lstm")
    final_fold = Fold(index=-1, train=("a", "b"), val=("c",), test=())
    write_fold(run, -1, final_fold)
    final = run.read_final(config(run.path), "resnet50v2", "lstm")
    assert final.name == "resnet50v2/lstm" and final.thresholds == (0.5, 0.5)
    assert final.window == 8 and final.inference_stride == 2
    assert final.heads == (((0, 1), final.folder / model_file(None)),)
    with pytest.raises(RunError, match=r"model_groom\.keras: model file missing"):
        run.read_final(config(run.path, heads="per_behavior"), "resnet50v2", "lstm")
    write_fold(run, -1, final_fold, models=BEHAVIORS)
    per = run.read_final(config(run.path, heads="per_behavior"), "resnet50v2", "lstm")
    assert [(o, p.name) for o, p in per.heads] == [((0,), "model_groom.keras"), ((1,), "model_rear.keras")]


def test_model_scores_from_metrics(run):
    assert run.model_scores() == {}
    rows = [{"model": "resnet50v2/lstm", "behavior": "groom", "stage": "raw", "pr_auc": 0.5},
            {"model": "resnet50v2/lstm", "behavior": "rear", "stage": "raw", "pr_auc": 0.7},
            {"model": "resnet50v2/lstm", "stage": "post", "pr_auc": 0.1},
            {"model": "resnet50v2/tcn", "stage": "raw", "pr_auc": None}]
    run.metrics_file.write_text(json.dumps({"pooled": rows}), encoding="utf-8")
    assert run.model_scores() == {"resnet50v2/lstm": pytest.approx(0.6)}
    run.metrics_file.write_text("{", encoding="utf-8")
    with pytest.raises(RunError, match=f"{run.metrics_file}: not valid JSON"):
        run.model_scores()
