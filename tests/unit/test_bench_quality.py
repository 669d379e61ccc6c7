"""The pure parts of `make bench-quality`: moved bout edges and a rare behaviour on demand."""

import numpy as np
import pytest

from mouse_pipeline.annotations import read_labels
from mouse_pipeline.bench_quality import jitter_edges
from mouse_pipeline.synthetic import generate_dataset


def _bouts(col):
    e = np.flatnonzero(np.diff(np.r_[0, col, 0]))
    return list(zip(e[::2], e[1::2], strict=True))


def test_jitter_moves_edges_by_at_most_the_fraction_and_keeps_every_bout():
    y = np.zeros((1000, 2), np.int8)
    for s, e in [(100, 200), (260, 300), (500, 800)]:
        y[s:e, 0] = 1
    y[900:950, 1] = 1
    y[990:, 1] = -1  # not annotated stays not annotated
    out = jitter_edges(y, 0.10, np.random.default_rng(0))
    before, after = _bouts(y[:, 0]), _bouts(out[:, 0])
    assert len(after) == len(before)
    for (s, e), (s2, e2) in zip(before, after, strict=True):
        d = round(0.1 * (e - s))
        assert abs(s2 - s) <= d and abs(e2 - e) <= d
    assert (out[990:, 1] == -1).all()
    assert (out != y).any(), "with 10 % of a bout as the limit, some edge must move"
    # about 10 % of positive frames change, not much more
    wrong = ((out == 1) != (y == 1)).sum() / (y == 1).sum()
    assert 0.01 < wrong < 0.2


def test_jitter_with_zero_fraction_is_the_identity():
    y = (np.random.default_rng(1).random((300, 3)) > 0.7).astype(np.int8)
    assert np.array_equal(jitter_edges(y, 0.0, np.random.default_rng(0)), y)


def test_a_rare_behaviour_on_demand_leaves_the_default_videos_alone(tmp_path):
    generate_dataset(tmp_path / "a", n_videos=1, n_frames=900, size=32, seed=5)
    generate_dataset(tmp_path / "b", n_videos=1, n_frames=900, size=32, seed=5, targets=None)
    generate_dataset(tmp_path / "c", n_videos=1, n_frames=900, size=32, seed=5, targets={"mid_rear": 0.01})
    names = ["grooming", "mid_rearing", "wall_rearing"]
    a, b, c = (read_labels(tmp_path / d / "labels" / "mouse_000.csv", "thesis", names).matrix for d in "abc")
    assert np.array_equal(a, b)
    assert c[:, 1].mean() < a[:, 1].mean()
    with pytest.raises(ValueError, match="targets"):
        generate_dataset(tmp_path / "d", n_videos=1, n_frames=10, size=32, targets={"fly": 0.5})


def _stream_result(grooming_rgb, grooming_motion, pose):
    from mouse_pipeline.bench_streams import SETS

    scores = {label: {"lstm": [0.5, 0.5, 0.5]} for label in SETS}
    scores["rgb"]["lstm"][0] = grooming_rgb
    scores["rgb+motion"]["lstm"][0] = grooming_motion
    scores["pose"]["lstm"] = list(pose)
    return {"regime": "no_cue", "validation": "blocks", "behaviors": ["grooming", "mid_rearing", "wall_rearing"],
            "prevalence": [0.15, 0.10, 0.13], "sets": {k: list(v) for k, v in SETS.items()},
            "scores": scores, "extract_seconds": 60.0, "seconds": 600.0}


def test_stream_checks_pass_and_fail_on_the_figures():
    from mouse_pipeline.bench_streams import format_streams, stream_checks

    good = stream_checks(_stream_result(0.40, 0.60, [0.46, 0.31, 0.40]))
    assert "(+0.200; at least +0.15)" in good[0]
    assert good[1].endswith("for every behaviour")
    bad = stream_checks(_stream_result(0.40, 0.50, [0.46, 0.30, 0.40]))  # 0.30 is not above 3 x 0.10
    assert "NOT at least +0.15" in bad[0]
    assert bad[1].endswith("all but mid_rearing")
    text = "\n".join(format_streams(_stream_result(0.40, 0.60, [0.46, 0.31, 0.40])))
    assert "| grooming | 0.150 | 0.400 | 0.600 | 0.460 | 0.500 |" in text
    assert "rgb+motion = resnet50v2 & resnet50v2+motion" in text


def test_the_mean_over_folds_does_not_mix_folds_on_one_scale():
    """Two folds each ranked perfectly, by models whose probabilities lie on different
    scales (two kinds chosen by auto): each fold's PR-AUC is 1, the pooled one is not."""
    from mouse_pipeline.bench_quality import _fold_mean_pr_auc, pooled_pr_auc

    y = np.array([[0], [0], [1], [1]])
    low, high = np.array([[0.1], [0.2], [0.3], [0.4]]), np.array([[0.5], [0.6], [0.9], [0.95]])
    assert _fold_mean_pr_auc([[y], [y]], [[low], [high]]) == [1.0]
    assert pooled_pr_auc([y, y], [low, high])[0] < 1.0


def test_the_report_checks_auto_on_pooled_scores_and_on_the_means_over_folds():
    from mouse_pipeline.bench_quality import format_quality

    run = {"seconds": 60.0, "scores": {"auto": [0.70], "linear": [0.80]},
           "fold_means": {"auto": [0.90], "linear": [0.85]}}
    res = {"regime": "few_videos", "what": "3 videos", "behaviors": ["grooming"], "prevalence": [0.15],
           "label_noise": 0.0, "runs": {"blocks": run}, "logistic": [0.75], "logistic_fold_means": [0.88]}
    text = format_quality({"date": "2026-12-02", "seed": 1, "videos": 3, "machine": "m", "seconds": 60.0,
                           "regimes": [res]})
    assert "grooming: auto 0.700 < logistic 0.750; best head linear 0.800 (NOT within 0.03)" in text
    assert "mean over folds of each fold's PR-AUC" in text
    assert "grooming: auto 0.900 >= logistic 0.880; best head linear 0.850 (within 0.03)" in text


def test_a_work_folder_made_for_one_seed_is_refused_for_another(tmp_path):
    from mouse_pipeline.bench_quality import SEED, prepare_dataset
    from mouse_pipeline.errors import InputError

    data = tmp_path / "base" / "data"
    data.mkdir(parents=True)
    (data / ".complete").write_text("made by mouse-pipeline bench-quality\n")  # before --seed: SEED's
    assert prepare_dataset("base", tmp_path) == data  # kept, not made again
    with pytest.raises(InputError, match=f"made for seed {SEED}, not 7; give this seed its own --work"):
        prepare_dataset("base", tmp_path, seed=7)
    (data / ".complete").write_text("made by mouse-pipeline bench-quality, seed 7\n")
    assert prepare_dataset("base", tmp_path, seed=7) == data
    with pytest.raises(InputError, match=f"made for seed 7, not {SEED}"):
        prepare_dataset("base", tmp_path)


def test_a_missing_features_tool_is_refused_before_any_regime_runs(tmp_path, monkeypatch):
    """--regime pretrained with PT_PYTHON but no ../shared/tools: one line, before the regimes
    asked ahead of it spend their time, and nothing written; features already made need no tool."""
    from mouse_pipeline import bench_quality as bq
    from mouse_pipeline.errors import InputError

    monkeypatch.setattr(bq, "TOOL", tmp_path / "shared" / "tools" / "pretrained_features.py")
    monkeypatch.setattr(bq, "run_regime", lambda *a, **k: pytest.fail("a regime ran"))
    with pytest.raises(InputError, match=r"pretrained_features.py: the pretrained-features tool is not there") as err:
        bq.run_quality(tmp_path / "work", ["few_videos", "pretrained"], ["linear"], ["blocks"], pt_python="python3")
    assert "\n" not in str(err.value) and not (tmp_path / "work").exists()
    bq.check_pretrained(["few_videos"], tmp_path / "work", "python3")  # not asked
    bq.check_pretrained(["pretrained"], tmp_path / "work", None)  # skipped, and says so
    made = tmp_path / "work" / "base" / "pretrained_npy"
    made.mkdir(parents=True)
    (made / ".complete").write_text("ok\n")
    bq.check_pretrained(["pretrained"], tmp_path / "work", "python3")


def _seed_result(seed, auto, linear, lr, prevalence=0.15, ensemble=None):
    scores = {"auto": [auto], "linear": [linear], **({"ensemble": [ensemble]} if ensemble is not None else {})}
    run = {"seconds": 60.0, "scores": scores, "fold_means": {k: [v[0] + 0.1] for k, v in scores.items()}}
    return {"date": "2026-12-07", "seed": seed, "videos": 3, "machine": "m", "seconds": 60.0,
            "regimes": [{"regime": "few_videos", "what": "3 videos", "behaviors": ["grooming"],
                         "prevalence": [prevalence], "label_noise": 0.0, "runs": {"blocks": run},
                         "logistic": [lr], "logistic_fold_means": [lr + 0.1]}]}


def test_figures_over_seeds_are_means_with_their_range_and_each_seed_s_verdict():
    from mouse_pipeline.bench_seeds import format_seeds, summarize

    # seed 1: auto below the logistic regression; seed 2: auto passes; seed 3: 0.05 below linear
    outs = [_seed_result(1, 0.60, 0.62, 0.70), _seed_result(2, 0.80, 0.80, 0.70), _seed_result(3, 0.70, 0.75, 0.60)]
    pooled, means = summarize(outs)
    assert (pooled["measure"], means["measure"]) == ("pooled out-of-fold PR-AUC", "mean over folds of each fold's PR-AUC")
    assert pooled["models"]["auto"]["mean"] == pytest.approx([0.70])
    assert means["models"]["auto"]["mean"] == pytest.approx([0.80])
    assert (pooled["models"]["auto"]["min"], pooled["models"]["auto"]["max"]) == ([0.60], [0.80])
    assert pooled["logistic"]["mean"] == pytest.approx([2.0 / 3])
    auto = pooled["chosen"]["auto"]
    assert auto["passed"] == {"1": False, "2": True, "3": False}
    diffs = np.array([-0.10, 0.10, 0.10])  # auto - logistic per seed
    assert auto["minus_logistic"]["mean"] == pytest.approx([diffs.mean()])
    assert auto["minus_logistic"]["se"] == pytest.approx([diffs.std(ddof=1) / np.sqrt(3)])
    assert auto["minus_best_head"]["mean"] == pytest.approx([np.mean([-0.02, 0.0, -0.05])])
    # on the means auto (0.700) is above the logistic regression (0.667) and within 0.03 of linear (0.723)
    assert auto["checks_on_means"] == ["grooming: auto 0.700 >= logistic 0.667; best head linear 0.723 (within 0.03)"]
    assert auto["passed_on_means"]
    text = format_seeds([pooled])
    assert "### few_videos, validation blocks, pooled out-of-fold PR-AUC: seeds 1, 2, 3" in text
    assert "| grooming | 0.150 | 0.667 (0.600-0.700) | 0.700 (0.600-0.800) | 0.723 (0.620-0.800) |" in text
    assert "auto passed every check of the regime on 1 of 3 seeds (2); on the means it passes" in text
    assert "grooming: auto - logistic +0.033 ± 0.067 (standard error over seeds)" in text


def test_the_ensemble_is_judged_beside_auto_and_is_not_a_head():
    from mouse_pipeline.bench_checks import checks
    from mouse_pipeline.bench_seeds import format_seeds, summarize

    # the ensemble above every head: the best head stays linear, not the ensemble
    outs = [_seed_result(1, 0.60, 0.70, 0.65, ensemble=0.90), _seed_result(2, 0.60, 0.70, 0.65, ensemble=0.68)]
    pooled, _ = summarize(outs)
    assert set(pooled["chosen"]) == {"auto", "ensemble"}
    ens = pooled["chosen"]["ensemble"]
    assert ens["passed"] == {"1": True, "2": True} and ens["minus_best_head"]["mean"] == pytest.approx([0.09])
    assert pooled["chosen"]["auto"]["passed"] == {"1": False, "2": False}
    text = format_seeds([pooled])
    assert "ensemble passed every check of the regime on 2 of 2 seeds (1, 2); on the means it passes" in text
    assert "auto passed every check of the regime on 0 of 2 seeds; on the means it fails" in text
    lines = checks(outs[0]["regimes"][0], "blocks")
    assert lines == ["grooming: auto 0.600 < logistic 0.650; best head linear 0.700 (NOT within 0.03)",
                     "grooming: ensemble 0.900 >= logistic 0.650; best head linear 0.700 (within 0.03)"]


def test_only_regimes_and_modes_every_seed_ran_are_summarised():
    from mouse_pipeline.bench_seeds import summarize

    a, b = _seed_result(1, 0.6, 0.6, 0.5), _seed_result(2, 0.7, 0.7, 0.5)
    b["regimes"][0]["runs"]["videos"] = b["regimes"][0]["runs"]["blocks"]  # seed 2 alone ran videos
    b["regimes"].append({**b["regimes"][0], "regime": "rare"})  # and alone ran rare
    assert {(e["regime"], e["mode"]) for e in summarize([a, b])} == {("few_videos", "blocks")}


def test_each_seed_runs_in_its_own_folder_and_the_summary_is_written(tmp_path, monkeypatch):
    from mouse_pipeline import bench_seeds

    calls = []

    def fake_run_quality(work, seed, **kwargs):
        calls.append((work, seed, kwargs))
        return _seed_result(seed, 0.7, 0.7, 0.6)

    monkeypatch.setattr(bench_seeds, "run_quality", fake_run_quality)
    bench_seeds.run_seeds(tmp_path, [5, 6], regimes=["few_videos"])
    assert [(w, s) for w, s, _ in calls] == [(tmp_path / "seed_5", 5), (tmp_path / "seed_6", 6)]
    assert all(k == {"regimes": ["few_videos"]} for _, _, k in calls)
    assert "seeds 5, 6" in (tmp_path / "bench_quality_seeds.md").read_text()
    import json

    saved = json.loads((tmp_path / "bench_quality_seeds.json").read_text())
    assert saved["seeds"] == [5, 6] and saved["summary"][0]["chosen"]["auto"]["passed"] == {"5": True, "6": True}
