"""The report, on a fake run folder built without TensorFlow, through the run folder's writer."""

import csv
import json
import logging
import re
import shutil

import h5py
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline import report
from mouse_pipeline.annotations import Labels, write_labels_csv
from mouse_pipeline.config import Config
from mouse_pipeline.ensemble import select_weights
from mouse_pipeline.errors import RunError
from mouse_pipeline.features.store import cache_path
from mouse_pipeline.folds import make_folds
from mouse_pipeline.postprocess import choose_postprocess
from mouse_pipeline.report.data import add_ensemble, load_run
from mouse_pipeline.runs import PROBS_FILE, RunFolder

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")
EVIL = "m<script>1"  # a video id that must come out escaped
VIDEOS = ("vid_a", "vid_b", "vid_c", EVIL)
FRAMES = {"vid_a": 200, "vid_b": 180, "vid_c": 220, EVIL: 160}
MODELS = ("lstm", "tcn")
FPS = 10.0


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros((n, len(BEHAVIORS)), np.int8)
    for k in range(len(BEHAVIORS)):
        for start in rng.choice(np.arange(5, n - 20), size=3, replace=False):
            y[start:start + rng.integers(5, 15), k] = 1
    return y


def make_run(root, models=MODELS, seed=0):
    """A run folder as `mouse-pipeline train` writes it, with informative probabilities."""
    rng = np.random.default_rng(seed)
    labels_dir, run = root / "labels", root / "run"
    labels_dir.mkdir(parents=True)
    cfg = Config().replace(**{"data.labels": str(labels_dir), "data.fps": FPS,
                              "data.behaviors": list(BEHAVIORS), "extract.cache": str(root / "cache"),
                              "extract.backbones": ["resnet50v2"], "train.models": list(models),
                              "train.run": str(run)})
    folder = RunFolder(run)
    folder.write_config(cfg)
    truth = {}
    for vid in VIDEOS:
        y = _labels(FRAMES[vid], rng)
        if vid == "vid_b":
            y[:10] = -1  # frames not annotated
        truth[vid] = y
        write_labels_csv(labels_dir / f"{vid}.csv", Labels(BEHAVIORS, y))
    cache = cache_path(root / "cache", "resnet50v2", "vid_a")
    cache.parent.mkdir(parents=True)
    with h5py.File(cache, "w") as f:
        f.attrs.update({"fps": FPS, "extract_frames_per_s": 25.0, "weights": "random"})
    folds = make_folds(VIDEOS, "leave_one_video_out", n_val=1, seed=0)
    folder.write_folds(folds)
    for m, model in enumerate(models):
        for fold in folds:
            probs = {}
            for vid in (*fold.test, *fold.val):
                noise = rng.normal(0, 0.18, truth[vid].shape)
                probs[vid] = np.clip(0.25 + 0.5 * (truth[vid] == 1) + noise, 0, 1).astype(np.float32)
            with folder.fold_writer("resnet50v2", model, fold.index) as writer:
                write_fold(writer, fold, probs, truth, m)
    return run, folds, truth


def write_fold(writer, fold, probs, truth, m):
    writer.write_probs(list(BEHAVIORS), {split: {v: probs[v] for v in vids}
                                         for split, vids in (("test", fold.test), ("val", fold.val))})
    post = {}
    for j, b in enumerate(BEHAVIORS):
        p = choose_postprocess([truth[v][:, j] for v in fold.val], [probs[v][:, j] for v in fold.val])
        post[b] = {"threshold": p.threshold, "max_gap": p.max_gap, "min_len": p.min_len}
    writer.write_records(
        post,
        {"heads": [{"outputs": list(BEHAVIORS), "best_epoch": 3, "val_pr_auc": [0.4, 0.6, 0.7, 0.65],
                                        "loss": [0.9, 0.6, 0.5, 0.45]}], "trials": [], "params": {}},
        {"fit_seconds": 30.0 + m, "best_epochs": [3], "inference_frames_per_s": 900.0, "train_frames": 400},
        {**fold.to_dict(), "window": 32, "inference_stride": 8})


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    run, folds, truth = make_run(tmp_path_factory.mktemp("report"))
    html_path = report.write_report(run)
    return run, folds, truth, html_path


def test_files_are_written_with_one_row_per_model_behaviour_fold_and_stage(reported):
    run, folds, _, html_path = reported
    assert html_path == run / "report.html"
    for name in ("report.html", "report.md", "metrics.csv", "metrics.json", "figures/pr_curves.png"):
        assert (run / name).is_file(), name
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
    rows = read_csv(run / "metrics.csv")
    assert list(rows[0])[:5] == ["model", "behavior", "row", "fold", "stage"]
    models = ["resnet50v2/lstm", "resnet50v2/tcn", "ensemble"]
    assert {r["model"] for r in rows} == set(models)
    assert len(rows) == len(models) * len(BEHAVIORS) * 2 * (len(folds) + 4)
    assert {r["row"] for r in rows} == {"fold", "pooled", "mean", "std", "n"}
    assert {r["fold"] for r in rows if r["row"] == "fold"} == {"0", "1", "2", "3"}
    assert {r["fold"] for r in rows if r["row"] != "fold"} == {""}  # the fold column is numeric
    meta = json.loads((run / "metrics.json").read_text())
    assert meta["models"] == models and meta["behaviors"] == list(BEHAVIORS)
    assert {r["model"] for r in meta["pooled"]} == set(models)


def test_pooled_pr_auc_equals_sklearn_on_the_concatenated_test_frames(reported):
    run, folds, truth, _ = reported
    rows = read_csv(run / "metrics.csv")
    for model in ("lstm", "tcn"):
        y, p = [], []
        for fold in folds:
            with h5py.File(RunFolder(run).unit("resnet50v2", model, fold.index) / PROBS_FILE) as f:
                for vid in fold.test:
                    y.append(truth[vid])
                    p.append(f[f"test/{vid}"][()])
        y, p = np.concatenate(y), np.concatenate(p)
        for j, b in enumerate(BEHAVIORS):
            keep = y[:, j] != -1
            expected = average_precision_score(y[keep, j], p[keep, j])
            row = next(r for r in rows if r["model"] == f"resnet50v2/{model}" and r["behavior"] == b
                       and r["row"] == "pooled" and r["stage"] == "raw")
            assert float(row["pr_auc"]) == pytest.approx(expected, abs=1e-12)
            assert int(row["n_frames"]) == int(keep.sum())  # unlabelled frames left out
            assert int(row["n_positive"]) == int((y[keep, j] == 1).sum())


def test_post_stage_applies_the_fold_postprocessing_and_mean_is_over_folds(reported):
    run, *_ = reported
    rows = read_csv(run / "metrics.csv")
    pick = [r for r in rows if r["model"] == "resnet50v2/lstm" and r["behavior"] == "grooming"]
    per_fold = [r for r in pick if r["stage"] == "post" and r["row"] == "fold"]
    mean = next(r for r in pick if r["stage"] == "post" and r["row"] == "mean")
    assert float(mean["f1"]) == pytest.approx(np.mean([float(r["f1"]) for r in per_fold]))
    pooled = {r["stage"]: r for r in pick if r["row"] == "pooled"}
    assert pooled["raw"]["pr_auc"] == pooled["post"]["pr_auc"]  # ranking metric of the raw scores
    assert sum(int(r["tp"]) for r in per_fold) == int(pooled["post"]["tp"])


def test_numbers_in_the_html_and_markdown_match_metrics_csv(reported):
    run, *_ = reported
    page = (run / "report.html").read_text(encoding="utf-8")
    md = (run / "report.md").read_text(encoding="utf-8")
    rows = read_csv(run / "metrics.csv")
    for r in rows:
        if r["row"] == "pooled" and r["stage"] == "raw":
            shown = f"{float(r['pr_auc']):.3f}"
            assert shown in page and shown in md, (r["model"], r["behavior"])
    r = next(r for r in rows if r["model"] == "ensemble" and r["behavior"] == "wall_rearing"
             and r["row"] == "pooled" and r["stage"] == "post")
    assert f"{float(r['bout_f1']):.3f}" in page
    mean, std = (next(x for x in rows if x["model"] == "resnet50v2/tcn" and x["behavior"] == "grooming"
                      and x["stage"] == "raw" and x["row"] == s) for s in ("mean", "std"))
    assert f"{float(mean['recall']):.3f} ± {float(std['recall']):.3f}" in page


def test_ensemble_thresholds_are_chosen_on_validation_probabilities_only(tmp_path):
    run, folds, truth = make_run(tmp_path)
    report.write_report(run)
    first = json.loads((run / "metrics.json").read_text())
    assert first["ensemble"]["members"] == ["resnet50v2/lstm", "resnet50v2/tcn"]
    # independent: the mean of the two models' validation probabilities of fold 0
    fold = folds[0]
    val = {}
    for model in MODELS:
        with h5py.File(RunFolder(run).unit("resnet50v2", model, 0) / PROBS_FILE) as f:
            for vid in fold.val:
                val.setdefault(vid, []).append(f[f"val/{vid}"][()])
    chosen = {(p["fold"], p["behavior"]): p for p in first["ensemble"]["postprocess"]}
    pick = select_weights([truth[v] for v in fold.val], [[val[v][m] for v in fold.val] for m in range(len(MODELS))])
    for j, b in enumerate(BEHAVIORS):
        weights = chosen[(0, b)]["weights"]
        assert [weights[f"resnet50v2/{m}"] for m in MODELS] == pytest.approx(pick.weights[j])
        mean = {v: sum(w * val[v][m][:, j].astype(np.float64) for m, w in enumerate(pick.weights[j])) for v in fold.val}
        expected = choose_postprocess([truth[v][:, j] for v in fold.val], [mean[v] for v in fold.val])
        assert chosen[(0, b)]["threshold"] == pytest.approx(expected.threshold)
        # what the weights rest on: the positive annotated validation frames (vid_b's unannotated ones left out)
        positives = int(sum((truth[v][:, j] == 1).sum() for v in fold.val))
        assert chosen[(0, b)]["validation_positive_frames"] == positives
        assert f"| 0 | {b} | {positives:,} |" in (run / "report.md").read_text()
    assert "positive validation frames" in (run / "report.html").read_text()
    # scramble the test probabilities of fold 0: the chosen thresholds must not move
    for model in MODELS:
        with h5py.File(RunFolder(run).unit("resnet50v2", model, 0) / PROBS_FILE, "r+") as f:
            for vid in fold.test:
                f[f"test/{vid}"][...] = 1.0 - f[f"test/{vid}"][()]
    report.write_report(run)
    second = json.loads((run / "metrics.json").read_text())
    assert second["ensemble"]["postprocess"] == first["ensemble"]["postprocess"]

    def pooled_pr_auc(meta):
        return [r["pr_auc"] for r in meta["pooled"] if r["model"] == "ensemble" and r["stage"] == "raw"]

    assert pooled_pr_auc(second) != pooled_pr_auc(first)  # the test data did change


def test_the_ensemble_leaves_auto_out_as_it_is_one_of_the_kinds_beside_it(tmp_path):
    """auto's fold is the fold of the kind it chose: averaged as a member too, that kind
    would count twice."""
    run, folds, _ = make_run(tmp_path / "a", models=("lstm", "tcn", "auto"))
    report.write_report(run)
    meta = json.loads((run / "metrics.json").read_text())
    assert meta["ensemble"]["members"] == ["resnet50v2/lstm", "resnet50v2/tcn"]
    data = load_run(run)
    add_ensemble(data)
    vid = folds[0].test[0]
    weights = data.models["ensemble"][0].meta["weights"]
    assert all(set(weights[b]) == {"resnet50v2/lstm", "resnet50v2/tcn"} for b in BEHAVIORS)
    with h5py.File(RunFolder(run).unit("resnet50v2", "lstm", 0) / PROBS_FILE) as fl, \
            h5py.File(RunFolder(run).unit("resnet50v2", "tcn", 0) / PROBS_FILE) as ft:
        lstm, tcn = fl[f"test/{vid}"][()].astype(np.float64), ft[f"test/{vid}"][()].astype(np.float64)
    expected = np.column_stack([weights[b]["resnet50v2/lstm"] * lstm[:, j] + weights[b]["resnet50v2/tcn"] * tcn[:, j]
                                for j, b in enumerate(BEHAVIORS)])
    np.testing.assert_allclose(data.models["ensemble"][0].test[vid], expected, rtol=1e-6)
    run2, _, _ = make_run(tmp_path / "b", models=("lstm", "auto"))
    report.write_report(run2)
    assert "ensemble" not in {r["model"] for r in json.loads((run2 / "metrics.json").read_text())["pooled"]}
    assert "not built: it needs at least two complete models other than auto" in (run2 / "report.md").read_text()


def test_html_is_self_contained_and_escapes_names(reported):
    run, *_ = reported
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'src="http' not in page and "href=\"http" not in page and "<link" not in page
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) == page.count("<img") >= 4
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page.lower()
    assert "m&lt;script&gt;1" in page
    assert "<script" not in (run / "report.md").read_text(encoding="utf-8").lower()


def test_report_shows_prevalence_cost_and_folds(reported):
    run, folds, *_ = reported
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "25.0" in page  # extraction frames/s read from the cache
    assert "boundary jump ratio" in page.lower()
    meta = json.loads((run / "metrics.json").read_text())
    costs = {r["model"]: r for r in meta["cost"]["models"]}
    costs.update({r["backbone"]: r for r in meta["cost"]["backbones"]})
    assert costs["resnet50v2/lstm"]["train_minutes"] == pytest.approx(4 * 30.0 / 60)
    lstm = costs["resnet50v2/lstm"]
    assert np.isfinite(lstm["boundary_jump_ratio"])
    assert lstm["boundary_jump_chance_low"] <= lstm["boundary_jump_chance_high"]
    assert "edges moved off the grid" in page
    assert costs["resnet50v2"]["extract_frames_per_s"] == pytest.approx(25.0)
    section = page[page.index('id="folds"'):]
    for fold in folds:
        assert ", ".join(fold.train).replace("<", "&lt;").replace(">", "&gt;") in section


def test_thesis_models_map_to_names_this_project_gives_its_models():
    # a typo here silently shows "not in this run" beside the thesis's InceptionResNet figures
    from mouse_pipeline.backbones import REGISTRY

    assert set(report.THESIS_MODEL_NAMES) == set(report.THESIS_FIGURES)
    for name in report.THESIS_MODEL_NAMES.values():
        backbone, kind = name.split("/")
        assert backbone in REGISTRY and kind in ("lstm", "tcn"), name


def test_thesis_figures_beside_ours_or_said_missing(reported, tmp_path, monkeypatch):
    run, *_ = reported
    page = (run / "report.html").read_text(encoding="utf-8")
    section = page[page.index('id="thesis"'):page.index('id="pr"')]
    assert report.THESIS_LABEL in section
    for thesis_model, per in report.THESIS_FIGURES.items():
        assert thesis_model in section
        assert f"{per['grooming']['pr_auc']:.3f}" in section
    monkeypatch.setattr(report.sections, "THESIS_FIGURES", {})  # where the section reads it
    other, *_ = make_run(tmp_path, models=("lstm",))
    page = report.write_report(other).read_text(encoding="utf-8")
    section = page[page.index('id="thesis"'):page.index('id="pr"')]
    assert "not included in this version" in section
    assert "<table" not in section


def test_incomplete_model_is_reported_not_crashed(tmp_path, caplog):
    run, *_ = make_run(tmp_path)
    (run / "resnet50v2" / "tcn" / "fold_3").rename(run / "resnet50v2" / "tcn" / "fold_3.partial")
    with caplog.at_level(logging.WARNING, logger="mouse_pipeline.report"):
        page = report.write_report(run).read_text(encoding="utf-8")
    assert "resnet50v2/tcn: only 3 of 4 folds finished" in caplog.text
    assert "resnet50v2/tcn (3 of 4 folds)" in page
    meta = json.loads((run / "metrics.json").read_text())
    assert meta["models"] == ["resnet50v2/lstm"]  # no ensemble of one model
    assert meta["incomplete_models"] == {"resnet50v2/tcn": 3} and meta["ensemble"] is None


def test_missing_folds_or_probabilities_is_a_run_error(tmp_path):
    run, *_ = make_run(tmp_path, models=("lstm",))
    (RunFolder(run).unit("resnet50v2", "lstm", 1) / PROBS_FILE).unlink()
    with pytest.raises(RunError, match="mouse-pipeline train"):
        report.write_report(run)
    shutil.rmtree(run / "resnet50v2")
    with pytest.raises(RunError, match=r"no model .*`mouse-pipeline train` first"):
        report.write_report(run)
    RunFolder(run).folds_file.unlink()
    with pytest.raises(RunError, match=r"no folds\.json.*`mouse-pipeline train` first"):
        report.write_report(run)


def test_bouts_are_counted_per_video_never_across_two():
    a = np.array([0, 0, 0, 1, 1, 1], np.int8)  # a bout at the end of one video ...
    b = np.array([1, 1, 1, 0, 0, 0], np.int8)  # ... and one at the start of the next
    rank = {"pr_auc": 1.0, "roc_auc": 1.0}
    score = report.score_videos([a, b], [a, b], rank, [FPS, FPS])
    assert score["n_true_bouts"] == 2 and score["bout_f1"] == 1.0
    late = report.score_videos([a, b], [a, np.zeros(6, np.int8)], rank, [FPS, FPS])
    assert late["bout_recall"] == 0.5 and late["bout_duration_error_s"] == pytest.approx(-0.3)


def test_frame_rate_falls_back_to_the_cache_then_30(tmp_path, caplog):
    cfg = Config().replace(**{"extract.cache": str(tmp_path)})
    path = cache_path(tmp_path, "resnet50v2", "v1")
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.attrs["fps"] = 12.5
    assert report._video_fps(cfg, ["resnet50v2"], "v1") == 12.5
    with caplog.at_level(logging.WARNING, logger="mouse_pipeline.report"):
        assert report._video_fps(cfg, ["resnet50v2"], "v2") == 30.0
    assert "assuming 30" in caplog.text


def test_undefined_values_are_null_in_json_and_a_dash_in_html(tmp_path):
    run, folds, truth = make_run(tmp_path, models=("lstm",))
    y = truth[EVIL].copy()
    y[:, 1] = 0  # the test video of fold 0 shows no mid rearing: its recall is undefined
    write_labels_csv(tmp_path / "labels" / f"{EVIL}.csv", Labels(BEHAVIORS, y))
    page = report.write_report(run).read_text(encoding="utf-8")
    meta = json.loads((run / "metrics.json").read_text())
    row = next(r for r in meta["folds"] if r["fold"] == 0 and r["behavior"] == "mid_rearing" and r["stage"] == "raw")
    assert row["recall"] is None and row["pr_auc"] is None and row["n_positive"] == 0
    mean = next(r for r in meta["mean_std"] if r["row"] == "mean" and r["behavior"] == "mid_rearing"
                and r["stage"] == "raw")
    others = [r["recall"] for r in meta["folds"] if r["behavior"] == "mid_rearing" and r["stage"] == "raw"
              and r["fold"] != 0]
    assert mean["recall"] == pytest.approx(np.mean(others))  # undefined folds are skipped
    n = next(r for r in meta["mean_std"] if r["row"] == "n" and r["behavior"] == "mid_rearing"
             and r["stage"] == "raw")
    assert (n["recall"], n["pr_auc"], n["accuracy"]) == (len(folds) - 1, len(folds) - 1, len(folds))
    # and the report says so beside the mean, instead of a mean over fewer folds without a word
    std = next(r for r in meta["mean_std"] if r["row"] == "std" and r["behavior"] == "mid_rearing"
               and r["stage"] == "raw")
    assert f"{mean['recall']:.3f} ± {std['recall']:.3f}, {len(folds) - 1} of {len(folds)} folds" in page
    assert "“–”: undefined" in page
    assert "NaN" not in (run / "metrics.json").read_text()


def test_predict_s_ensemble_leaves_auto_out_too(tmp_path):
    from mouse_pipeline.predictor import choose

    run, _, _ = make_run(tmp_path, models=("lstm", "auto"))
    folder = RunFolder(run)
    with pytest.raises(RunError, match="--model ensemble: .* fewer than two models other than auto"):
        choose(folder, folder.read_config(), "ensemble")


def test_the_report_names_the_folds_whose_threshold_no_positive_validation_frame_chose(tmp_path):
    run, folds, truth = make_run(tmp_path, models=("lstm",))
    page = report.write_report(run).read_text(encoding="utf-8")
    assert "No positive validation frame" not in page
    (val,) = folds[0].val
    y = truth[val].copy()
    y[y[:, 1] == 1, 1] = 0  # the validation video of fold 0 shows no mid rearing
    write_labels_csv(tmp_path / "labels" / f"{val}.csv", Labels(BEHAVIORS, y))
    blind = [f.index for f in folds if val in f.val]
    page = report.write_report(run).read_text(encoding="utf-8")
    assert "No positive validation frame" in page
    md = (run / "report.md").read_text(encoding="utf-8")
    for i in blind:
        assert f"fold {i}: mid_rearing" in page and f"fold {i}: mid_rearing" in md
    assert not any(f"fold {f.index}: mid_rearing" in page for f in folds if f.index not in blind)
