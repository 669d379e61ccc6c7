"""``train.validation`` (videos, inner_folds, blocks) and ``train.models: auto``.

The fast tests check the plans (inner groups, blocks, folds.json, auto's trials, seeds)
without TensorFlow; the slow ones train tiny runs of planted videos (those of
``test_workers``) and check the invariants every mode keeps: workers and memory mode give
the same numbers bit for bit, a killed fold resumes, and the test video influences no
choice.
"""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.annotations import Labels, write_labels_csv
from mouse_pipeline.config import Config
from mouse_pipeline.dataset import VideoData
from mouse_pipeline.errors import ConfigError, RunError
from mouse_pipeline.features.store import DATASET, cache_path
from mouse_pipeline.folds import (
    Fold,
    block_training_ranges,
    load_folds,
    make_folds,
    plan_validation,
    save_folds,
)
from mouse_pipeline.sequences.search import head_seed, unit_trials, validation_seed
from tests.unit.test_workers import DIM, FRAMES, assert_same, make_data, outputs

IDS = [f"v{i}" for i in range(7)]
KINDS = ("lstm", "tcn")


# --------------------------------------------------------------------------- plans


def test_inner_folds_partition_each_folds_training_videos_and_never_hold_a_test_video():
    folds = plan_validation(make_folds(IDS, "leave_one_video_out", n_val=0), "inner_folds", {},
                            inner_k=3, seed=4)
    for fold in folds:
        groups = [v for g in fold.inner for v in g]
        assert sorted(groups) == sorted(fold.train) and len(groups) == len(set(groups))
        assert len(fold.inner) == 3 and max(map(len, fold.inner)) - min(map(len, fold.inner)) <= 1
        assert not set(groups) & set(fold.test) and fold.val == ()
        assert [v for v, _, _ in fold.val_segments] == list(fold.train)  # every one predicted once
    assert folds == plan_validation(make_folds(IDS, "leave_one_video_out", n_val=0), "inner_folds", {},
                                    inner_k=3, seed=4)
    two = plan_validation(make_folds(IDS[:3], "leave_one_video_out", n_val=0), "inner_folds", {}, inner_k=3)
    assert all(len(f.inner) == 2 for f in two)  # k capped at the training videos
    with pytest.raises(ConfigError, match="needs at least 2"):
        plan_validation(make_folds(IDS[:2], "leave_one_video_out", n_val=0), "inner_folds", {})
    with pytest.raises(ConfigError, match="takes no validation videos"):
        plan_validation(make_folds(IDS, "leave_one_video_out", n_val=1), "blocks", {})


def test_blocks_are_one_contiguous_block_per_training_video_with_a_gap_kept_from_training():
    n = {v: 100 + 10 * i for i, v in enumerate(IDS)}
    folds = plan_validation(make_folds(IDS, "leave_one_video_out", n_val=0), "blocks", n, blocks_k=4, seed=1)
    for fold in folds:
        assert [v for v, _, _ in fold.blocks] == list(fold.train)
        for v, a, b in fold.blocks:
            assert 0 <= a < b <= n[v] and b - a in (n[v] // 4, n[v] // 4 + 1)
        gap = 16
        for v, a, b in block_training_ranges(fold, n, gap):
            start, stop = next((s, e) for w, s, e in fold.blocks if w == v)
            assert b <= start - gap or a >= stop + gap  # no training frame within a window of it
    starts = {a for fold in folds for _, a, _ in fold.blocks}
    assert len(starts) > 1  # not always the same block
    with pytest.raises(ConfigError, match="fewer than train.blocks.k"):
        plan_validation(make_folds(IDS, "leave_one_video_out", n_val=0), "blocks", {v: 3 for v in IDS},
                        blocks_k=4)


def test_folds_json_records_what_validated_what_and_old_files_still_load(tmp_path):
    n = {v: 50 for v in IDS}
    for mode in ("inner_folds", "blocks"):
        folds = plan_validation(make_folds(IDS, "group_kfold", k=3, n_val=0), mode, n, seed=2)
        save_folds(tmp_path / "folds.json", folds)
        payload = json.loads((tmp_path / "folds.json").read_text())
        assert payload["version"] == 2 and payload["folds"][0]["validation"] == mode
        assert load_folds(tmp_path / "folds.json") == folds
    old = make_folds(IDS, "group_kfold", k=3, n_val=1)
    (tmp_path / "old.json").write_text(json.dumps({"version": 1, "folds": [f.to_dict() for f in old]}))
    assert load_folds(tmp_path / "old.json") == old
    assert all(f.validation == "videos" and f.val_videos == f.val for f in old)
    (tmp_path / "future.json").write_text(json.dumps({"version": 3, "folds": []}))
    with pytest.raises(RunError, match="folds version 3"):
        load_folds(tmp_path / "future.json")
    bad = {**old[0].to_dict(), "validation": "blocks"}  # says blocks, records none
    with pytest.raises(RunError, match="does not match"):
        Fold.from_dict(bad)


def test_auto_searches_every_kind_without_the_other_kinds_keys():
    cfg = Config().replace(**{"train.models": ["auto"], "train.search.space": {
        "lstm.units": [8, 16], "tcn.filters": [4, 8, 16], "learning_rate": [0.01, 0.001]}})
    trials = unit_trials(cfg, "auto", KINDS)
    assert [t.kind for t in trials] == ["lstm"] * 4 + ["tcn"] * 6
    assert [t.index for t in trials] == list(range(10))
    assert all(set(t.params) == {"lstm.units", "learning_rate"} for t in trials[:4])
    assert all(set(t.params) == {"tcn.filters", "learning_rate"} for t in trials[4:])
    assert [t.seed_index for t in trials] == [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]  # each kind's own numbers
    only = unit_trials(cfg.replace(**{"train.auto.models": ["tcn"]}), "auto", KINDS)
    assert [t.kind for t in only] == ["tcn"] * 6
    plain = unit_trials(cfg, "lstm", KINDS)  # a plain model's trials are as before
    assert len(plain) == 2 * 2 * 3 and all(t.kind == "lstm" for t in plain)
    with pytest.raises(ConfigError, match="train.auto.models"):
        Config().replace(**{"train.auto.models": []})
    assert Config().replace(**{"train.models": ["auto", "lstm"]}).train.models == ("auto", "lstm")


def test_validation_seeds_are_deterministic_and_apart_from_the_folds_own():
    cfg = Config()
    seeds = {validation_seed(cfg, f, t, h, i) for f in (-1, 0, 1) for t in range(3) for h in range(2)
             for i in range(3)}
    assert len(seeds) == 3 * 3 * 2 * 3
    assert validation_seed(cfg, 0, 1, 0, 2) == validation_seed(Config(), 0, 1, 0, 2)
    assert not seeds & {head_seed(cfg, f, t, h) for f in (-1, 0, 1) for t in range(3) for h in range(2)}


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cfg = make_data(tmp_path_factory.mktemp("validation"))
    return cfg.replace(**{"train.models": ["lstm"], "train.search.space": {}, "train.blocks.k": 4})


def _train(cfg, run, **kw):
    from mouse_pipeline.sequences.training import train

    return train(cfg, run_dir=run, progress=False, **kw)


def _perturb_video(cfg, vid):
    """Other features and other labels for video ``vid`` (its cache file and label file)."""
    rng = np.random.default_rng(99)
    with h5py.File(cache_path(cfg.extract.cache, "resnet50v2", vid), "r+") as f:
        f[DATASET][...] = rng.normal(3, 2, (FRAMES, DIM)).astype(np.float32)
    write_labels_csv(f"{cfg.data.labels}/{vid}.csv", Labels(("a", "b"), (rng.random((FRAMES, 2)) < 0.5)
                                                             .astype(np.int8)))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inner_folds", "blocks"])
def test_a_mode_keeps_every_invariant(data, mode, tmp_path):
    """One run per mode; then its folds killed (one half-written) and trained again by two
    workers reading windows from the cache, after one test video of fold 0 was changed
    (features and labels): fold 0 makes every choice it made before (trial scores, epochs,
    thresholds, post-processing, statistics, validation probabilities) bit for bit, its
    other test video gets the same probabilities, and only the changed one differs."""
    cfg = data.replace(**{"train.validation": mode})
    ref = _train(cfg, tmp_path / "ref")
    out = outputs(ref)
    history = out["lstm/fold_0/history"]
    record = history["validation"]
    assert record["validation"] == mode and record["refit"] is True
    assert history["trials"][0]["validation"] == record
    folds = json.loads((ref / "folds.json").read_text())["folds"]
    if mode == "inner_folds":  # 2 training videos: 2 inner fits, each predicting the other
        assert sorted(v for r in record["inner"] for v in r["validated"]) == folds[0]["train"]
        assert all(len(r["validated"]) == 1 for r in record["inner"])
        assert record["chosen_epochs"] == [max(1, int(np.floor(np.median(
            [r["best_epochs"][0] or 2 for r in record["inner"]]) + 0.5)))]
        assert {k for k in out if k.startswith("lstm/fold_0/val/")} == {
            f"lstm/fold_0/val/{v}" for v in folds[0]["train"]}
    else:
        assert {b["video"] for b in folds[0]["blocks"]} == set(folds[0]["train"])
        assert record["gap"] == cfg.train.window.length
        for b in folds[0]["blocks"]:  # validation probabilities of the block alone
            assert out[f"lstm/fold_0/val/{b['video']}"].shape == (b["stop"] - b["start"], 2)
        for v, a, b in record["training_ranges"]:
            block = next(x for x in folds[0]["blocks"] if x["video"] == v)
            assert b <= block["start"] - record["gap"] or a >= block["stop"] + record["gap"]
    assert history["heads"][0]["best_epoch"] == record["chosen_epochs"][0]  # the refit ran those epochs
    assert len(history["heads"][0]["loss"]) == record["chosen_epochs"][0]
    # the report's validation panel: the refit has no curve of its own, so the validating fits' curves
    from mouse_pipeline.report.figures import _validation_curves

    drawn = _validation_curves(history, history["heads"][0], 0)
    fits = record["inner"] if mode == "inner_folds" else [record]
    assert [list(c) for c in drawn] == [f["val_curves"][0] for f in fits] and all(len(c) > 1 for c in drawn)
    from mouse_pipeline.report import write_report

    report = (write_report(ref).parent / "report.md").read_text()  # a block's probabilities are its frames only
    assert {"inner_folds": "inner folds (groups held out in turn)",
            "blocks": "validation blocks [start, stop) frames"}[mode] in report

    other = tmp_path / "other"
    shutil.copytree(ref, other)
    for gone in ("fold_0", "fold_1"):
        shutil.rmtree(other / "resnet50v2" / "lstm" / gone)
    (other / "resnet50v2" / "lstm" / "fold_0.partial").mkdir()  # killed half-written
    changed, same = folds[0]["test"]
    _perturb_video(cfg, changed)
    try:
        _train(cfg.replace(**{"train.workers": 2, "train.memory_gb": 0}), other)
    finally:
        make_data(Path(cfg.data.videos).parent)  # the module's other tests see the videos as made
    again = outputs(other)
    assert not list(other.rglob("*.partial"))
    assert not np.array_equal(out[f"lstm/fold_0/test/{changed}"], again[f"lstm/fold_0/test/{changed}"])
    keys = [k for k in out if k.startswith("lstm/fold_0/") and k != f"lstm/fold_0/test/{changed}"]
    assert f"lstm/fold_0/test/{same}" in keys
    for k in keys:
        assert_same({k: out[k]}, {k: again[k]})


@pytest.mark.slow
def test_auto_keeps_the_kind_chosen_on_validation(data, tmp_path):
    """``auto`` next to lstm and tcn: in each fold it keeps the kind whose trial scored
    best on validation, and its fold is then that kind's own fold bit for bit (the same
    seeds); the report says which kind it chose; its final model loads and predicts
    whatever kind won."""
    from mouse_pipeline.predictor import choose
    from mouse_pipeline.report import write_report
    from mouse_pipeline.runs import RunFolder
    from mouse_pipeline.sequences.models import load_model

    cfg = data.replace(**{"train.models": ["lstm", "tcn", "auto"], "train.auto.models": ["lstm", "tcn"],
                          "train.folds.scheme": "fixed",
                          "train.folds.train": ["m1", "m2", "m3"], "train.folds.test": ["m0"]})
    run = _train(cfg, tmp_path / "run", final=True)
    out = outputs(run)
    chosen = {}
    for folder in ("fold_0", "final"):
        history = out[f"auto/{folder}/history"]
        scores = {t["kind"]: t["val_pr_auc"] for t in history["trials"]}
        assert list(scores) == ["lstm", "tcn"]
        best = "lstm" if scores["lstm"] >= scores["tcn"] else "tcn"  # ties to the earlier kind
        assert history["kind"] == best and history["selected_on"] == "validation"
        chosen[folder] = best
        assert scores[best] == out[f"{best}/{folder}/history"]["trials"][0]["val_pr_auc"]
        mine = {k.split("/", 2)[2]: v for k, v in out.items() if k.startswith(f"auto/{folder}/")}
        theirs = {k.split("/", 2)[2]: v for k, v in out.items() if k.startswith(f"{best}/{folder}/")}
        # the unit's own search (auto's trials are those of both kinds) and auto's selection aside
        mine["history"] = {k: v for k, v in mine["history"].items()
                           if k not in ("kind", "trials", "search", "selected_on")}
        theirs["history"] = {k: v for k, v in theirs["history"].items() if k not in ("trials", "search")}
        assert_same(mine, theirs)
    report = (write_report(run).parent / "report.md").read_text()
    assert "resnet50v2/auto chose" in report and chosen["fold_0"] in report
    folder = RunFolder(run)
    predictor = choose(folder, folder.read_config(), "resnet50v2/auto")
    assert [m.name for m in predictor.members] == ["resnet50v2/auto"]
    assert load_model(predictor.members[0].heads[0][1]).name == chosen["final"]


@pytest.mark.parametrize("mode", ["videos", "inner_folds", "blocks"])
def test_the_final_fold_is_validated_like_the_others(mode):
    """``train --final``: every labelled video trains; with inner_folds or blocks all of
    them are also what validates (inner groups over all, a block of each)."""
    from mouse_pipeline.sequences.training import _final_fold

    cfg = Config().replace(**{"train.validation": mode, "train.inner_folds.k": 3})
    final = _final_fold(IDS, cfg, {v: 90 for v in IDS})
    assert final.index == -1 and final.test == () and final.validation == mode
    if mode == "videos":
        assert len(final.val) == 1 and sorted(final.train + final.val) == IDS
    else:
        assert final.val == () and list(final.train) == IDS and sorted(final.val_videos) == IDS
        assert len(final.inner) == (3 if mode == "inner_folds" else 0)


def _cue_video(rng, vid, b_from=0, n=200):
    """Two behaviours each marked by one feature; ``b`` only from frame ``b_from`` on."""
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = np.zeros((n, 2), np.int8)
    y[:, 0] = x[:, 0] > 0.5
    y[b_from:, 1] = x[b_from:, 1] > 0.8
    y[:2] = -1
    return VideoData(vid, x, Labels(("a", "b"), y), 10.0, Path(f"{vid}.h5"))


@pytest.mark.parametrize("mode", ["videos", "blocks"])
def test_a_head_without_validation_positives_leaves_the_trial_scored_by_the_others(mode):
    """``train.heads: per_behavior`` with a behaviour that has no positive frame in the
    validation frames: the trial's score is the mean over the heads that could be scored
    (as a joint head's PR-AUC averages the behaviours with a positive), so trials still
    compare; -inf for that head made every trial -inf and kept the first whatever the rest."""
    from sklearn.metrics import average_precision_score

    from mouse_pipeline.sequences.fit import fit_trial, trial_score
    from mouse_pipeline.sequences.inference import predict_video
    from mouse_pipeline.sequences.progress import UnitProgress

    rng = np.random.default_rng(0)
    b_from = {"videos": 0, "blocks": 120}[mode]  # blocks: b's positives lie past each block
    by_id = {v: _cue_video(rng, v, b_from) for v in ("t0", "t1", "test")}
    by_id["val"] = _cue_video(rng, "val", b_from=200)  # no positive frame of b
    if mode == "videos":
        fold = Fold(0, ("t0", "t1"), ("val",), ("test",))
    else:
        fold = Fold(0, ("t0", "t1"), (), ("test",), "blocks", blocks=(("t0", 0, 50), ("t1", 0, 50)))
    cfg = Config().replace(**{"data.behaviors": ["a", "b"], "train.heads": "per_behavior",
                              "train.validation": mode, "train.blocks.refit": False,
                              "train.window.length": 16, "train.window.stride": 8, "train.epochs": 2,
                              "train.models": ["mlp"], "train.search.space": {"mlp.units": [2, 32]}})
    state = UnitProgress()
    for trial in unit_trials(cfg, "mlp", KINDS):
        result = fit_trial(cfg, trial, 2, by_id, fold, "t", progress=False)
        a, b = result.heads
        assert b.val_score == -np.inf  # nothing to rank for b
        parts = [(by_id[v].features, by_id[v].labels.matrix) for v in fold.val] if mode == "videos" else \
            [(by_id[v].features[s:e], by_id[v].labels.matrix[s:e]) for v, s, e in fold.blocks]
        y = np.concatenate([m[:, 0] for _, m in parts])
        p = np.concatenate([predict_video(a.model, x, 16, 4)[:, 0] for x, _ in parts])
        expected = average_precision_score(y[y >= 0], p[y >= 0])  # independent of the project's metrics
        assert result.score == pytest.approx(expected, abs=1e-9) and result.score == pytest.approx(a.val_score)
        state.add(trial.index, result)
    _, best = state.take()
    assert best.score == max(state.scores.values()) > -np.inf
    assert trial_score([0.5, float("nan"), -np.inf, 0.7]) == pytest.approx(0.6)
    assert trial_score([float("nan"), -np.inf]) == -np.inf


@pytest.mark.parametrize("mode", ["inner_folds", "blocks"])
def test_the_report_draws_a_converged_linear_head_refitted_after_validation(data, mode, tmp_path):
    """A refitted L-BFGS head records one validation score, not a curve per epoch: the
    report drew its training figure from it and stopped with a TypeError (the default
    validation is blocks, so `make report` after training linear failed)."""
    from mouse_pipeline.report import write_report

    cfg = data.replace(**{"train.validation": mode, "train.models": ["linear"], "train.linear.solver": "lbfgs"})
    ref = _train(cfg, tmp_path / "run")
    history = json.loads((ref / "resnet50v2" / "linear" / "fold_0" / "history.json").read_text())
    head = history["heads"][0]
    assert history["validation"]["refit"] is True and np.ndim(head["val_pr_auc"]) == 0
    from mouse_pipeline.report.figures import _validation_curves

    fits = history["validation"]["inner"] if mode == "inner_folds" else [history["validation"]]
    assert [list(c) for c in _validation_curves(history, head, 0)] == [f["val_curves"][0] for f in fits]
    page = write_report(ref)
    figure = page.parent / "figures" / "training_resnet50v2_linear.png"
    assert figure.is_file() and figure.stat().st_size > 0
