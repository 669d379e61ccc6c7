"""The lab's loop through the CLI: suggest, predict --format nwb --overlay, overlay, and the
simulated active-learning loop on a very small setting (``make demo-loop`` runs the full one)."""

import numpy as np
import pytest

from mouse_pipeline.annotations import Labels, read_labels, write_labels_csv
from mouse_pipeline.suggest import COLUMNS
from mouse_pipeline.video import probe_video
from tests.integration.runs import BEHAVIORS, NEW_FRAMES, cli, cli_ok, error_line, read_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(run_dataset, tmp_path_factory):
    return run_dataset.train(tmp_path_factory.mktemp("loop") / "run", "train.models=[lstm]")


def test_suggest_writes_the_best_windows_within_the_minutes(run_dataset, run, tmp_path):
    out = tmp_path / "suggestions.csv"
    cli_ok("suggest", "--run", run, "--videos", run_dataset.new / "videos", "--minutes", 0.1,
           "--window-s", 2, "--out", out, "--quiet")  # 6 s of 2 s windows (10 frames at 5 fps)
    rows = read_csv(out)
    assert list(rows[0]) == COLUMNS and len(rows) == 3
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 3 for s in scores)
    for r in rows:
        start, end = int(r["start_frame"]), int(r["end_frame"])
        assert start % 10 == 0 and end == start + 9 < NEW_FRAMES
        assert (float(r["start_s"]), float(r["end_s"])) == (start / 5, (end + 1) / 5)
        term, behavior = r["why"].split(":")
        assert behavior in BEHAVIORS and float(r[term]) == max(float(r[t]) for t in COLUMNS[-3:])


def test_suggest_skips_annotated_windows(run_dataset, run, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    matrix = np.full((NEW_FRAMES, 3), -1, np.int8)
    matrix[:50] = 0  # the first 50 frames are annotated: windows 0-4 of 10 frames
    write_labels_csv(labels / "new_000.csv", Labels(BEHAVIORS, matrix))
    out = tmp_path / "s.csv"
    cli_ok("suggest", "--run", run, "--videos", run_dataset.new / "videos", "--minutes", 1,
           "--window-s", 2, "--labels", labels, "--out", out, "--quiet")
    assert sorted(int(r["start_frame"]) for r in read_csv(out)) == [50]  # the only free window


def test_suggest_with_fewer_minutes_than_one_window_exits_2(run_dataset, run, tmp_path):
    result = cli("suggest", "--run", run, "--videos", run_dataset.new / "videos", "--minutes", 0.01,
                 "--window-s", 2, "--out", tmp_path / "s.csv", "--quiet")
    assert "--minutes 0.01: shorter than every window" in error_line(result)
    assert not (tmp_path / "s.csv").exists()


def test_predict_nwb_and_overlay_hold_the_bouts_and_the_videos_frames(run_dataset, run, tmp_path):
    from pynwb import NWBHDF5IO

    out = tmp_path / "p"
    result = run_dataset.predict(run, out, "--format", "csv", "--format", "nwb", "--overlay")
    assert result.exit_code == 0, result.output
    bouts = read_csv(out / "new_000_bouts.csv")
    probs = np.array([[float(r[f"p_{b}"]) for b in BEHAVIORS] for r in read_csv(out / "new_000_predictions.csv")])
    with NWBHDF5IO(str(out / "new_000.nwb"), "r") as io:
        nwb = io.read()
        table = nwb.intervals["behavior_bouts"].to_dataframe()
        got = sorted((r.behavior, r.start_frame, r.end_frame, round(r.start_time, 4), round(r.stop_time, 4))
                     for r in table.itertuples())
        series = nwb.processing["behavior"]["behavior_probabilities"]
        np.testing.assert_allclose(series.data[:], probs, atol=1e-5)  # the CSV has 5 decimals
        assert series.rate == 5.0
    want = sorted((r["behavior"], int(r["start_frame"]), int(r["end_frame"]), float(r["start_s"]),
                   float(r["end_s"])) for r in bouts)
    assert got == want
    src, labelled = probe_video(run_dataset.new / "videos" / "new_000.mp4"), probe_video(out / "new_000_overlay.mp4")
    assert (labelled.n_frames, labelled.fps) == (src.n_frames, src.fps) == (NEW_FRAMES, 5.0)

    again = tmp_path / "again"
    cli_ok("overlay", "--predictions", out, "--videos", run_dataset.new / "videos", "--out", again)
    redo = probe_video(again / "new_000_overlay.mp4")
    assert (redo.n_frames, redo.fps, redo.width, redo.height) == (
        labelled.n_frames, labelled.fps, labelled.width, labelled.height)


def test_nwb_only_writes_no_per_video_csv(run_dataset, run, tmp_path):
    out = tmp_path / "p"
    assert run_dataset.predict(run, out, "--format", "nwb").exit_code == 0
    assert (out / "new_000.nwb").is_file() and not (out / "new_000_predictions.csv").exists()
    assert (out / "bouts.csv").is_file() and (out / "predictions.json").is_file()


def test_one_round_of_the_active_learning_loop(tmp_path):
    from mouse_pipeline.active_loop import ARMS, LoopSettings, run_loop

    s = LoopSettings(tmp_path, pool_videos=4, test_videos=1, frames=150, size=64, fps=5.0, window_s=10.0,
                     initial_windows=2, minutes_per_round=1 / 6, rounds=1, epochs=1, train_window=32,
                     seed=3, full_reference=False)
    rows = run_loop(s)
    assert [(r["round"], r["arm"]) for r in rows] == [(0, a) for a in ARMS] + [(1, a) for a in ARMS]
    assert {r["annotated_frames"] for r in rows if r["round"] == 0} == {4 * 100}
    assert {r["annotated_frames"] for r in rows if r["round"] == 1} == {4 * 100 + 50}  # same budget
    assert all(0 <= r["mean_pr_auc"] <= 1 for r in rows)
    assert (tmp_path / "curve.csv").is_file() and (tmp_path / "curve.png").stat().st_size > 1000
    # the uncertainty arm annotated what suggest chose; the rest stays "not annotated" (-1)
    chosen = read_csv(tmp_path / "round_1" / "uncertainty" / "suggestions.csv")
    assert len(chosen) == 1
    vid, start = chosen[0]["video"], int(chosen[0]["start_frame"])
    assert start >= 100
    lab = read_labels(tmp_path / "round_1" / "uncertainty" / "labels" / f"{vid}.csv", "thesis", BEHAVIORS).matrix
    truth = read_labels(tmp_path / "pool" / "labels" / f"{vid}.csv", "thesis", BEHAVIORS).matrix
    annotated = (lab != -1).all(axis=1)
    expect = np.zeros(150, bool)
    expect[:100] = expect[start:start + 50] = True
    assert (annotated == expect).all() and (lab[annotated] == truth[annotated]).all()
    assert (lab[~annotated] == -1).all()
