"""The scoring of ``suggest`` on given probabilities: a planted uncertain stretch ranks first."""

import csv

import numpy as np
import pytest

from mouse_pipeline.suggest import (
    COLUMNS,
    TERMS,
    choose_windows,
    frame_terms,
    rarity_weights,
    score_windows,
    write_suggestions,
)

BEHAVIORS = ("a", "b")


def confident(n_members=3, n=600, k=2, seed=0):
    """Members that agree and are sure: probabilities near 0 and 1, far from 0.5."""
    rng = np.random.default_rng(seed)
    base = (rng.random((n, k)) < 0.2).astype(float)
    probs = np.clip(np.abs(base - 0.02) + rng.normal(0, 0.005, (n_members, n, k)), 0, 1)
    return probs, np.full((n_members, k), 0.5)


def test_each_term_is_one_where_it_should_be_and_zero_where_it_should_not():
    p = np.array([[[0.3, 1.0]], [[0.3, 0.0]]])  # 2 members, 1 frame, 2 behaviours
    thr = np.array([[0.3, 0.5], [0.3, 0.5]])
    t = frame_terms(p, thr, np.array([1.0, 0.5]))
    assert t["near_threshold"][0].tolist() == pytest.approx([1.0, 0.0])
    assert t["disagreement"][0].tolist() == pytest.approx([0.0, 1.0])
    assert t["rare"][0].tolist() == pytest.approx([0.3, 0.25])


def test_a_planted_stretch_near_the_threshold_ranks_first():
    probs, thr = confident()
    probs[:, 300:360, 0] = 0.5  # every member unsure of behaviour a in frames 300-359
    windows = score_windows("v", 10.0, frame_terms(probs, thr, np.array([0.2, 1.0])), BEHAVIORS, 60)
    best = choose_windows(windows, minutes=1 / 6)
    assert [(w.start, w.stop) for w in best] == [(300, 360)]
    assert best[0].why == "near_threshold:a"


def test_a_planted_disagreement_ranks_first_and_says_so():
    probs, thr = confident()
    probs[0, 120:180, 1], probs[1, 120:180, 1], probs[2, 120:180, 1] = 0.0, 1.0, 0.0  # members split
    windows = score_windows("v", 10.0, frame_terms(probs, thr, np.array([1.0, 1.0])), BEHAVIORS, 60)
    ranked = sorted(windows, key=lambda w: -w.score)
    assert (ranked[0].start, ranked[0].stop) == (120, 180)
    assert ranked[0].why == "disagreement:b"


def test_a_rare_behaviour_expected_outweighs_a_common_one():
    probs, thr = confident()
    probs[:, :, :] = 0.0
    probs[:, 0:60, 0] = 1.0  # the common behaviour sure in the first window
    probs[:, 240:300, 1] = 1.0  # the rare one sure in the fifth
    rarity = rarity_weights(np.array([0.4, 0.04]))
    assert rarity.tolist() == pytest.approx([0.1, 1.0])
    windows = score_windows("v", 10.0, frame_terms(probs, thr, rarity), BEHAVIORS, 60)
    ranked = sorted(windows, key=lambda w: -w.score)
    assert (ranked[0].start, ranked[0].why) == (240, "rare:b")


def test_a_behaviour_never_seen_counts_as_the_rarest():
    assert rarity_weights(np.array([0.3, 0.0])).tolist() == [0.0, 1.0]


def test_annotated_windows_are_no_candidates_and_the_last_window_may_be_short():
    probs, thr = confident(n=250)
    annotated = np.zeros(250, bool)
    annotated[70] = True
    windows = score_windows("v", 10.0, frame_terms(probs, thr, np.ones(2)), BEHAVIORS, 60, annotated)
    assert [(w.start, w.stop) for w in windows] == [(0, 60), (120, 180), (180, 240), (240, 250)]


def test_the_total_stays_within_the_minutes():
    probs, thr = confident(n=1200)
    windows = score_windows("v", 10.0, frame_terms(probs, thr, np.ones(2)), BEHAVIORS, 100)
    chosen = choose_windows(windows, minutes=0.5)  # 30 s: three 10 s windows
    assert len(chosen) == 3
    assert [w.score for w in chosen] == sorted((w.score for w in chosen), reverse=True)
    assert choose_windows(windows, minutes=0.1) == []  # 6 s: not one window


def test_suggestions_csv_has_its_columns_frames_and_seconds(tmp_path):
    probs, thr = confident()
    probs[:, 300:360, 0] = 0.5
    windows = score_windows("vid", 10.0, frame_terms(probs, thr, np.ones(2)), BEHAVIORS, 60)
    path = tmp_path / "suggestions.csv"
    write_suggestions(path, choose_windows(windows, minutes=0.2))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
        assert list(rows[0]) == COLUMNS
    assert len(rows) == 2
    first = rows[0]
    assert (first["rank"], first["video"], first["start_frame"], first["end_frame"]) == ("1", "vid", "300", "359")
    assert (float(first["start_s"]), float(first["end_s"])) == (30.0, 36.0)
    assert float(first["score"]) == pytest.approx(sum(float(first[t]) for t in TERMS), abs=1e-5)
    assert sorted(tmp_path.iterdir()) == [path]  # no temporary file left


def test_a_label_file_named_after_the_videos_real_stem_keeps_its_frames_out(tmp_path, monkeypatch):
    """``mouse 1.mp4`` (id ``mouse_1``) is annotated in ``mouse 1.csv``, as training finds it:
    suggest must not offer those frames (it looked for ``mouse_1.csv`` only)."""
    from types import SimpleNamespace

    from mouse_pipeline import predict
    from mouse_pipeline import suggest as suggest_module
    from mouse_pipeline.annotations import Labels, write_labels_csv
    from mouse_pipeline.config import Config
    from mouse_pipeline.dataset import VideoFile
    from mouse_pipeline.predict import NewVideo
    from mouse_pipeline.runs import RunFolder

    n, fps = 120, 10.0
    RunFolder(tmp_path / "run").write_config(Config().replace(**{"data.behaviors": list(BEHAVIORS)}))
    member = SimpleNamespace(behaviors=BEHAVIORS, thresholds=(0.5, 0.5), max_gap=(0, 0), min_len=(1, 1),
                             backbone="resnet50v2")
    video = VideoFile(tmp_path / "videos" / "mouse 1.mp4", "mouse_1")
    probs = np.full((n, 2), 0.05)
    probs[:60, 0] = 0.5  # the most uncertain frames are the annotated ones
    monkeypatch.setattr(suggest_module, "run_members", lambda run, cfg: [member])
    monkeypatch.setattr(suggest_module, "prevalence", lambda run, cfg: np.array([0.2, 0.2]))
    monkeypatch.setattr(suggest_module, "open_input",
                        lambda cache, name, vid: SimpleNamespace(check_finite=lambda: None, close=lambda: None))
    monkeypatch.setattr(predict, "prepare_videos", lambda *a, **k: [NewVideo(video, fps, None)])
    monkeypatch.setattr(predict, "load_heads", lambda group: [[]])
    monkeypatch.setattr(predict, "member_probabilities", lambda member, heads, features: probs)
    labels = tmp_path / "labels"
    labels.mkdir()
    matrix = np.full((n, 2), -1, np.int8)
    matrix[:60] = 0  # frames 0-59 annotated
    write_labels_csv(labels / "mouse 1.csv", Labels(BEHAVIORS, matrix))
    chosen = suggest_module.suggest(tmp_path / "run", [video.path], tmp_path / "s.csv", minutes=1 / 6,
                                    window_s=3.0, labels_dir=labels, progress=False)
    assert chosen and all(w.start >= 60 for w in chosen), [(w.video, w.start, w.stop) for w in chosen]
