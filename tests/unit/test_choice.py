"""``train.auto.select: inner_videos`` (:mod:`mouse_pipeline.sequences.choice`) and the
converged ``linear`` head (``train.linear.solver: lbfgs``, :mod:`mouse_pipeline.sequences.converged`)."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline.annotations import Labels
from mouse_pipeline.config import Config, load_config
from mouse_pipeline.dataset import VideoData
from mouse_pipeline.errors import ConfigError
from mouse_pipeline.folds import make_folds
from tests.unit.test_validation import _perturb_video, _train
from tests.unit.test_workers import assert_same, make_data, outputs

# --------------------------------------------------------------------------- config


def test_the_new_keys_are_validated_with_one_line():
    assert Config().train.auto.select == "validation" and Config().train.linear.solver == "lbfgs"
    with pytest.raises(ConfigError, match=r"train\.auto\.select"):
        Config().replace(**{"train.auto.select": "test_videos"})
    with pytest.raises(ConfigError, match=r"train\.linear\.solver"):
        Config().replace(**{"train.linear.solver": "sgd"})


def test_inner_videos_needs_two_training_videos_in_every_fold():
    from mouse_pipeline.sequences.choice import check_choice

    cfg = Config().replace(**{"train.models": ["auto"], "train.auto.select": "inner_videos"})
    three = make_folds(["a", "b", "c"], "leave_one_video_out", n_val=0)
    check_choice(cfg, three)  # 2 training videos each: fine
    one = make_folds(["a", "b", "c"], "leave_one_video_out", n_val=1)  # 1 trains, 1 validates
    with pytest.raises(ConfigError, match="fold 0 has 1 training video"):
        check_choice(cfg, one)
    check_choice(cfg.replace(**{"train.auto.select": "validation"}), one)
    check_choice(cfg.replace(**{"train.models": ["lstm"]}), one)  # only auto chooses
    check_choice(cfg.replace(**{"train.auto.prefer": "simplest"}), three)
    with pytest.raises(ConfigError, match="train.auto.prefer: simplest weighs the held-out training videos' "
                                          "standard error, which only train.auto.select: inner_videos measures"):
        check_choice(cfg.replace(**{"train.auto.prefer": "simplest", "train.auto.select": "validation"}), three)
    with pytest.raises(ConfigError, match=r"train\.auto\.prefer"):
        cfg.replace(**{"train.auto.prefer": "smallest"})


def test_the_one_standard_error_rule_keeps_the_simplest_trial_within_the_best_s_error():
    from mouse_pipeline.sequences.choice import one_standard_error, standard_error

    assert standard_error([0.7, 0.9]) == pytest.approx(0.1)  # std 0.1414 (ddof 1) / sqrt(2)
    assert standard_error([0.8]) == 0.0 and standard_error([0.8, float("nan")]) == 0.0
    rec = lambda score, se, params: {"pr_auc": score, "standard_error": se, "parameters": params}  # noqa: E731
    trials = [(0, rec(0.80, 0.05, 9000)), (1, rec(0.76, 0.01, 50)), (2, rec(0.74, 0.02, 10))]
    kept, why = one_standard_error(trials)
    assert kept == 1 and why["best_trial"] == 0 and why["floor"] == pytest.approx(0.75)
    assert why["within"] == [0, 1] and why["kept_parameters"] == 50  # trial 2 is below the floor
    assert one_standard_error([(0, rec(0.80, 0.0, 9000)), (1, rec(0.79, 0.0, 50))])[0] == 0  # no error: the best
    # equal parameters: the higher score, then the earlier trial
    assert one_standard_error([(0, rec(0.78, 0.1, 50)), (1, rec(0.80, 0.1, 50))])[0] == 1
    assert one_standard_error([(3, rec(0.80, 0.1, 50)), (1, rec(0.80, 0.1, 50))])[0] == 1


def test_a_converged_linear_head_refuses_a_projection_it_would_not_train():
    from mouse_pipeline.sequences.models import check_window

    tcfg = Config().replace(**{"train.fusion.projection": 8}).train
    with pytest.raises(ConfigError, match="train.linear.solver: lbfgs"):
        check_window("linear", tcfg)
    check_window("linear", Config().replace(**{"train.fusion.projection": 8, "train.linear.solver": "adam"}).train)


# --------------------------------------------------------------------------- linear


def _toy(rng, n=300, dim=12, vid="v", shift=0.0):
    """A behaviour that one direction of the (unstandardised) features separates."""
    y = (rng.random((n, 1)) < 0.2).astype(np.int8)
    x = rng.normal(5.0, 3.0, (n, dim)).astype(np.float32)
    x[:, 0] = np.where(y[:, 0] == 1, 12.0, 4.0) + rng.normal(0, 1.0, n) + shift
    x[:, 1] = 0.5 * x[:, 0] + rng.normal(0, 0.5, n)  # correlated: Adam's few steps go slowly here
    y[:2] = -1
    return VideoData(vid, x, Labels(("a",), y), 10.0, Path(f"{vid}.h5"))


def test_the_linear_head_converges_to_the_optimum_of_its_loss(tmp_path):
    """The saved Keras model's weights are a stationary point of the class-weighted,
    L2-penalised mean cross-entropy on the standardised frames (the gradient, computed here
    in NumPy, vanishes); it ranks a separable test video perfectly; no input dropout."""
    from mouse_pipeline.sequences.fit import fit_head
    from mouse_pipeline.sequences.inference import predict_video
    from mouse_pipeline.sequences.models import load_model, positive_weights, save_model

    l2 = 1e-3
    tcfg = load_config(None, ["train.window.length=32", "train.window.stride=16", "train.input_dropout=0.8",
                              f"train.linear.l2={l2}"]).train
    rng = np.random.default_rng(0)
    train = [_toy(rng, vid=f"t{i}") for i in range(2)]
    val, test = _toy(rng, vid="val"), _toy(rng, vid="test")
    res = fit_head("linear", tcfg, train, [val], [0], seed=1, label="linear", progress=False)
    assert not [la for la in res.model.layers if "dropout" in la.name]
    assert res.best_epoch == 1 and res.history["lbfgs_iterations"][0] > 0 and res.val_score > 0.99
    x = np.concatenate([v.features for v in train]).astype(np.float64)
    y = np.concatenate([v.labels.matrix[:, 0] for v in train])
    keep = y >= 0
    z, y = ((x - res.mean) / np.maximum(res.std, 1e-3))[keep], y[keep].astype(float)
    kernel, bias = (np.asarray(w, np.float64) for w in res.model.get_layer("probabilities").get_weights())
    w_pos = positive_weights([v.labels.matrix for v in train])[0]
    p = 1 / (1 + np.exp(-(z @ kernel[:, 0] + bias[0])))
    d = np.where(y == 1, w_pos * (p - 1), p) / len(y)  # d loss / d logit, per frame
    grad_w, grad_b = z.T @ d + 2 * l2 * kernel[:, 0], d.sum()
    assert np.abs(grad_w).max() < 1e-4 and abs(grad_b) < 1e-4, (np.abs(grad_w).max(), grad_b)
    probs = predict_video(res.model, test.features, 32, 16)
    keep = test.labels.matrix[:, 0] >= 0
    assert average_precision_score(test.labels.matrix[keep, 0], probs[keep, 0]) > 0.99
    save_model(res.model, tmp_path / "linear.keras")
    np.testing.assert_array_equal(predict_video(load_model(tmp_path / "linear.keras"), test.features, 32, 16),
                                  probs)


# --------------------------------------------------------------------------- auto


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cfg = make_data(tmp_path_factory.mktemp("choice"))
    return cfg.replace(**{"train.search.space": {}, "train.validation": "blocks", "train.blocks.k": 4,
                          "train.models": ["linear", "mlp", "auto"], "train.auto.models": ["linear", "mlp"],
                          "train.auto.select": "inner_videos", "train.mlp.units": 4,
                          "train.folds.scheme": "fixed", "train.folds.train": ["m1", "m2", "m3"],
                          "train.folds.test": ["m0"]})


@pytest.mark.slow
def test_auto_chooses_on_held_out_training_videos_never_the_test_video(data, tmp_path):
    """Each of auto's trials is scored on the fold's training videos held out in turn; the
    kind kept is the best there (ties to the earlier kind); the fold is then that kind's own
    fold bit for bit; and a test video with other features and scrambled labels changes no
    score and no choice."""
    run = _train(data, tmp_path / "run")
    out = outputs(run)
    history = out["auto/fold_0/history"]
    assert history["selected_on"] == "inner_videos"
    trials = history["trials"]
    assert [t["kind"] for t in trials] == ["linear", "mlp"]
    for t in trials:
        assert t["inner_videos"]["held_out"] == ["m1", "m2", "m3"]
        assert t["inner_videos"]["epochs"] == t["validation"]["chosen_epochs"]  # the kind's own epochs
        assert t["val_pr_auc"] == out[f"{t['kind']}/fold_0/history"]["trials"][0]["val_pr_auc"]
    scores = [t["inner_videos"]["pr_auc"] for t in trials]
    best = trials[int(np.argmax(scores))]["kind"]  # argmax: the first of equal scores
    assert history["kind"] == best
    mine = {k.split("/", 2)[2]: v for k, v in out.items() if k.startswith("auto/fold_0/")}
    theirs = {k.split("/", 2)[2]: v for k, v in out.items() if k.startswith(f"{best}/fold_0/")}
    # auto's own search (its trials are those of both kinds) and selection aside
    mine["history"] = {k: v for k, v in mine["history"].items()
                       if k not in ("kind", "trials", "search", "selected_on")}
    theirs["history"] = {k: v for k, v in theirs["history"].items() if k not in ("trials", "search")}
    assert_same(mine, theirs)

    _perturb_video(data, "m0")  # the test video: other features, random labels
    try:
        again = outputs(_train(data.replace(**{"train.models": ["auto"]}), tmp_path / "again"))
    finally:
        make_data(Path(data.data.videos).parent)
    assert again["auto/fold_0/history"]["trials"] == trials
    assert again["auto/fold_0/history"]["kind"] == best
    assert not np.array_equal(again["auto/fold_0/test/m0"], out["auto/fold_0/test/m0"])


@pytest.mark.slow
def test_auto_prefers_the_simplest_kind_within_one_standard_error(data, tmp_path):
    """``train.auto.prefer: simplest``: each trial records its held-out videos' scores, their
    standard error and its trainable parameters; the fold keeps the trial the one-standard-error
    rule picks from those records, says so in its history, and is that kind's own fold."""
    out = outputs(_train(data.replace(**{"train.models": ["linear", "mlp", "auto"],
                                         "train.auto.prefer": "simplest"}), tmp_path / "run"))
    history = out["auto/fold_0/history"]
    records = [t["inner_videos"] for t in history["trials"]]
    for r in records:
        assert len(r["per_video"]) == 3 and r["parameters"] > 0
        assert r["standard_error"] == pytest.approx(np.std(r["per_video"], ddof=1) / np.sqrt(3))
    assert records[0]["parameters"] < records[1]["parameters"]  # linear is the simpler kind
    rule = history["search"]["prefer"]
    best = int(np.argmax([r["pr_auc"] for r in records]))
    floor = records[best]["pr_auc"] - records[best]["standard_error"]
    within = [k for k, r in enumerate(records) if r["pr_auc"] >= floor]
    kept = min(within, key=lambda k: records[k]["parameters"])
    assert (rule["best_trial"], rule["within"], rule["kept_trial"]) == (best, within, kept)
    assert rule["floor"] == pytest.approx(floor)
    kind = history["trials"][kept]["kind"]
    assert history["kind"] == kind
    np.testing.assert_array_equal(out["auto/fold_0/test/m0"], out[f"{kind}/fold_0/test/m0"])


def test_a_full_batch_fit_over_the_memory_budget_is_one_line():
    from mouse_pipeline.sequences.converged import check_memory

    tcfg = load_config(None, ["train.memory_gb=1"]).train
    check_memory(tcfg, 10_000, 2048, "[b/linear] fold 1/3")  # 0.33 GB: under the 2 GB floor
    with pytest.raises(ConfigError, match=r"fold 1/3: train.linear.solver lbfgs would hold 100,000 training "
                                          r"frames x 2048 features in memory \(about 3.3 GB\), over 2 GB "
                                          r"\(train.memory_gb, at least 2\); use train.linear.solver: adam"):
        check_memory(tcfg, 100_000, 2048, "[b/linear] fold 1/3")
    check_memory(load_config(None, ["train.memory_gb=4"]).train, 100_000, 2048, "x")  # 3.3 GB fits 4
