"""A run folder as ``report`` and ``predict`` read it, through the CLI only.

One tiny run (LSTM and TCN, two folds, ``--final``) serves every test; a test that edits
or damages a run works on its own copy. Choosing the final model: ``--model``, unknown
names, several models before ``report``, and the best by cross-validated PR-AUC after.
A damaged run folder: exit code 2, one ``error:`` line naming the damaged file, and no
partial outputs.
"""

import csv
import io
import json
import shutil

import numpy as np
import pytest

from tests.integration.runs import BACKBONE, BEHAVIORS, cli, cli_ok, copy_run, error_line, read_csv

pytestmark = pytest.mark.slow

KINDS = ("lstm", "tcn")
PREDICTIONS = "new_000_predictions.csv"


@pytest.fixture(scope="module")
def run(run_dataset, tmp_path_factory):
    """A trained run without a report (``report`` has not been run on it)."""
    return run_dataset.train(tmp_path_factory.mktemp("joint") / "run", f"train.models=[{', '.join(KINDS)}]")


@pytest.fixture(scope="module")
def by_model(run_dataset, run, tmp_path_factory):
    """The predictions CSV text of each model, chosen with ``--model``."""
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(f"pred_{kind}")
        result = run_dataset.predict(run, folder, "--model", f"{BACKBONE}/{kind}")
        assert result.exit_code == 0, result.output
        out[kind] = (folder / PREDICTIONS).read_text()
    assert out["lstm"] != out["tcn"]  # so that the output tells which model was used
    return out


@pytest.fixture(scope="module")
def reported(run, tmp_path_factory):
    """A copy of the run with its report written."""
    copy = copy_run(run, tmp_path_factory.mktemp("reported") / "run")
    cli_ok("report", "--run", copy, "--quiet")
    return copy


def files(folder):
    """Every file (with size and modification time) and folder below ``folder``, but the
    run's logs (each command adds its log)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file()
            else "folder" for p in folder.rglob("*") if "logs" not in p.relative_to(folder).parts}


# -- choosing the final model -----------------------------------------------------------


def test_model_option_uses_that_model_and_no_other(run_dataset, run, by_model, tmp_path):
    copy = copy_run(run, tmp_path / "run")
    for path in (copy / BACKBONE / "lstm").rglob("*.keras"):
        path.unlink()  # the other model cannot be read, so it cannot be used
    result = run_dataset.predict(copy, tmp_path / "out", "--model", f"{BACKBONE}/tcn")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / PREDICTIONS).read_text() == by_model["tcn"]


def test_unknown_model_exits_2_naming_the_choices(run_dataset, run, tmp_path):
    result = run_dataset.predict(run, tmp_path / "out", "--model", f"{BACKBONE}/gru")
    line = error_line(result)
    assert f"{BACKBONE}/gru" in line
    assert all(f"{BACKBONE}/{kind}" in line for kind in KINDS), line
    assert not files(tmp_path / "out")


def test_several_models_and_no_report_exits_2(run_dataset, run, tmp_path):
    result = run_dataset.predict(run, tmp_path / "out")
    line = error_line(result)
    assert "mouse-pipeline report" in line and "--model" in line, line
    assert not files(tmp_path / "out")


@pytest.mark.parametrize("best", KINDS)
def test_without_model_the_best_cross_validated_pr_auc_is_used(run_dataset, reported, by_model,
                                                               tmp_path, best):
    copy = copy_run(reported, tmp_path / "run")
    metrics = json.loads((copy / "metrics.json").read_text())
    edited = 0
    for rows in metrics.values():
        for row in rows if isinstance(rows, list) else ():
            if isinstance(row, dict) and "pr_auc" in row:  # every row of every model
                row["pr_auc"] = 0.9 if row.get("model") == f"{BACKBONE}/{best}" else 0.1
                edited += 1
    assert edited
    (copy / "metrics.json").write_text(json.dumps(metrics))
    result = run_dataset.predict(copy, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / PREDICTIONS).read_text() == by_model[best]


def test_format_boris_writes_events_that_read_back_to_the_predicted_labels(run_dataset, run, tmp_path):
    from mouse_pipeline.annotations import read_labels

    out = tmp_path / "out"
    result = run_dataset.predict(run, out, "--model", f"{BACKBONE}/lstm", "--format", "csv", "--format", "boris")
    assert result.exit_code == 0, result.output
    rows = read_csv(out / PREDICTIONS)
    binary = np.array([[int(r[b]) for b in BEHAVIORS] for r in rows], dtype=np.int8)
    assert binary.any(), "no predicted bout: the round trip would show nothing"
    fps = 1 / float(rows[1]["time_s"])
    boris = out / PREDICTIONS.replace("_predictions.csv", "_boris.tsv")
    back = read_labels(boris, "boris_events", BEHAVIORS, fps=fps, n_frames=len(rows))
    assert (back.matrix == binary).all()
    record = json.loads((out / "predictions.json").read_text())
    assert boris.name in record["videos"][0]["files"]


# -- a damaged run folder -----------------------------------------------------------------

def remove(path):
    path.unlink()


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def bad_yaml(path):
    path.write_text("data: [unclosed\ntrain: {\n")


def without_a_behaviour(path):
    post = json.loads(path.read_text())
    del post[BEHAVIORS[1]]
    path.write_text(json.dumps(post, indent=2))


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


FINAL = f"{BACKBONE}/lstm/final"
FOLD = f"{BACKBONE}/lstm/fold_0"

PREDICT_CASES = [
    pytest.param("config.yaml", remove, id="config.yaml-missing"),
    pytest.param("config.yaml", bad_yaml, id="config.yaml-malformed"),
    pytest.param(f"{FINAL}/postprocess.json", truncate, id="postprocess.json-truncated"),
    pytest.param(f"{FINAL}/postprocess.json", without_a_behaviour,
                 id="postprocess.json-lacks-a-behaviour"),
    pytest.param(f"{FINAL}/fold.json", remove, id="fold.json-missing"),
    pytest.param(f"{FINAL}/fold.json", truncate, id="fold.json-truncated"),
    pytest.param(f"{FINAL}/model.keras", remove, id="model.keras-missing"),
    pytest.param(f"{FINAL}/model.keras", random_bytes, id="model.keras-random-bytes"),
]

REPORT_CASES = [
    pytest.param("config.yaml", remove, id="config.yaml-missing"),
    pytest.param("config.yaml", bad_yaml, id="config.yaml-malformed"),
    pytest.param("folds.json", truncate, id="folds.json-truncated"),
    pytest.param(f"{FOLD}/postprocess.json", truncate, id="postprocess.json-truncated"),
    pytest.param(f"{FOLD}/postprocess.json", without_a_behaviour,
                 id="postprocess.json-lacks-a-behaviour"),
    pytest.param(f"{FOLD}/fold.json", remove, id="fold.json-missing"),
    pytest.param(f"{FOLD}/fold.json", truncate, id="fold.json-truncated"),
    pytest.param(f"{FOLD}/probs.h5", truncate, id="probs.h5-truncated"),
    pytest.param(f"{FOLD}/probs.h5", remove, id="probs.h5-missing"),
    pytest.param(f"{FOLD}/history.json", truncate, id="history.json-truncated"),
    pytest.param(f"{FOLD}/timings.json", truncate, id="timings.json-truncated"),
]


def damaged_copy(run, tmp_path, where, damage):
    copy = copy_run(run, tmp_path / "run")
    damage(copy / where)
    return copy, copy / where


def names(line, path):
    """Whether an error line names ``path``: in full, or its folder and its name."""
    return str(path) in line or (str(path.parent) in line and path.name in line)


@pytest.mark.parametrize("where, damage", PREDICT_CASES)
def test_predict_on_a_damaged_run_exits_2_naming_the_file(run_dataset, run, tmp_path, where, damage):
    copy, path = damaged_copy(run, tmp_path, where, damage)
    before = files(copy)
    result = run_dataset.predict(copy, tmp_path / "out", "--model", f"{BACKBONE}/lstm")
    line = error_line(result)
    assert names(line, path), line
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files(copy) == before


@pytest.mark.parametrize("where, damage", REPORT_CASES)
def test_report_on_a_damaged_run_exits_2_naming_the_file(run, tmp_path, where, damage):
    copy, path = damaged_copy(run, tmp_path, where, damage)
    before = files(copy)
    line = error_line(cli("report", "--run", copy, "--quiet"))
    assert names(line, path), line
    assert files(copy) == before  # no report.html, metrics.csv, figures/ or temporary file


# -- the ensemble, the best model per behaviour, frame rates, several videos -----------


def predictions(folder):
    return read_csv(folder / PREDICTIONS)


def test_ensemble_is_the_weighted_mean_of_the_final_models(run_dataset, run, by_model, tmp_path):
    result = run_dataset.predict(run, tmp_path / "out", "--model", "ensemble")
    assert result.exit_code == 0, result.output
    rows = predictions(tmp_path / "out")
    single = {k: list(csv.DictReader(io.StringIO(text))) for k, text in by_model.items()}
    record = json.loads((tmp_path / "out" / "predictions.json").read_text())["behaviors"]
    for b in BEHAVIORS:
        weights = record[b]["weights"]  # chosen on the final models' validation probabilities
        assert set(weights) == {f"{BACKBONE}/{k}" for k in KINDS} and sum(weights.values()) == pytest.approx(1)
        mean = sum(weights[f"{BACKBONE}/{k}"] * np.array([float(r[f"p_{b}"]) for r in single[k]]) for k in KINDS)
        np.testing.assert_allclose([float(r[f"p_{b}"]) for r in rows], mean, atol=2e-5)
    # thresholds chosen on the final models' validation videos: 0/1 columns are exactly
    # the mean's post-processed labels at the recorded thresholds
    assert {r[BEHAVIORS[0]] for r in rows} <= {"0", "1"}


def test_per_behavior_needs_the_report_then_takes_each_behaviours_best(run_dataset, run, reported,
                                                                       by_model, tmp_path):
    line = error_line(run_dataset.predict(run, tmp_path / "none", "--model", "per-behavior"))
    assert "mouse-pipeline report" in line and not files(tmp_path / "none")
    copy = copy_run(reported, tmp_path / "run")
    metrics = json.loads((copy / "metrics.json").read_text())
    best = {BEHAVIORS[0]: "lstm", BEHAVIORS[1]: "tcn", BEHAVIORS[2]: "tcn"}
    for row in metrics["pooled"]:
        row["pr_auc"] = 0.9 if row.get("model") == f"{BACKBONE}/{best.get(row.get('behavior'))}" else 0.1
    (copy / "metrics.json").write_text(json.dumps(metrics))
    result = run_dataset.predict(copy, tmp_path / "out", "--model", "per-behavior")
    assert result.exit_code == 0, result.output
    rows = predictions(tmp_path / "out")
    single = {k: list(csv.DictReader(io.StringIO(text))) for k, text in by_model.items()}
    for b, kind in best.items():
        assert [r[f"p_{b}"] for r in rows] == [r[f"p_{b}"] for r in single[kind]]
        assert [r[b] for r in rows] == [r[b] for r in single[kind]]


@pytest.fixture(scope="module")
def fast_videos(tmp_path_factory):
    """A new video at 10 frames/s (the run was trained at 5)."""
    from mouse_pipeline.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("fast")
    generate_dataset(root, n_videos=1, n_frames=90, size=32, fps=10, seed=13, prefix="fast")
    return root / "videos"


def test_a_video_at_another_frame_rate_is_refused_resampled_or_allowed(run_dataset, run, fast_videos, tmp_path):
    base = ("predict", "--run", run, "--videos", fast_videos, "--model", f"{BACKBONE}/lstm", "--quiet")
    line = error_line(cli(*base, "--out", tmp_path / "refused"))
    assert "fast_000.mp4: 10 frames/s, but the run was trained at 5 frames/s" in line and "--resample" in line
    assert not files(tmp_path / "refused")
    cli_ok(*base, "--out", tmp_path / "resampled", "--resample")
    rows = read_csv(tmp_path / "resampled" / "fast_000_predictions.csv")
    assert len(rows) == 90 and rows[-1]["time_s"] == "8.9000"  # the video's own frames and rate
    held = [r[f"p_{BEHAVIORS[0]}"] for r in rows]
    assert all(held[i] == held[i + 1] for i in range(0, 88, 2))  # each training-rate frame covers two
    cli_ok(*base, "--out", tmp_path / "allowed", "--allow-fps-mismatch")
    rows = read_csv(tmp_path / "allowed" / "fast_000_predictions.csv")
    assert len(rows) == 90 and rows[-1]["time_s"] == "8.9000"


def test_fps_states_the_rate_of_videos_whose_containers_record_a_wrong_one(run_dataset, run, fast_videos,
                                                                             tmp_path):
    """The container says 10 frames/s; --fps 5 (the training rate) is believed: no refusal,
    no resampling, times at 5 frames/s and the rate in predictions.json."""
    base = ("predict", "--run", run, "--videos", fast_videos, "--model", f"{BACKBONE}/lstm", "--quiet")
    cli_ok(*base, "--out", tmp_path / "stated", "--fps", "5")
    rows = read_csv(tmp_path / "stated" / "fast_000_predictions.csv")
    assert len(rows) == 90 and rows[-1]["time_s"] == "17.8000"
    (video,) = json.loads((tmp_path / "stated" / "predictions.json").read_text())["videos"]
    assert video["fps"] == 5.0 and video["resampled_to_fps"] is None
    line = error_line(cli(*base, "--out", tmp_path / "other", "--fps", "8"))
    assert "fast_000.mp4: 8 frames/s, but the run was trained at 5 frames/s" in line
    assert not files(tmp_path / "other")


def test_one_bad_video_among_several_writes_nothing(run_dataset, run, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(next((run_dataset.new / "videos").glob("*.mp4")), videos / "good.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    result = cli("predict", "--run", run, "--videos", videos, "--out", tmp_path / "out",
                 "--model", f"{BACKBONE}/lstm", "--quiet")
    line = error_line(result)
    assert "empty.mp4" in line
    assert not files(tmp_path / "out")


@pytest.mark.parametrize("existed", [False, True])
def test_predict_failing_before_its_first_file_leaves_no_empty_folder(run_dataset, run, tmp_path, monkeypatch,
                                                                      existed):
    """The output folder is made for the first video's files; a failure before any is
    written removes it again, unless it was there before (it is the user's)."""
    from mouse_pipeline import predict as predict_mod
    from mouse_pipeline.errors import InputError

    def fail(*args, **kwargs):
        raise InputError("disk refused the first file")

    monkeypatch.setattr(predict_mod, "write_video_files", fail)
    out = tmp_path / "out"
    if existed:
        out.mkdir()
    result = run_dataset.predict(run, out, "--model", f"{BACKBONE}/lstm")
    assert "disk refused the first file" in error_line(result)
    assert out.is_dir() == existed
    assert not existed or not any(out.iterdir())
