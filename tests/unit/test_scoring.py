"""Scoring external predictions (``mouse-pipeline score``): frame rates, label formats,
and the readers' refusals (no TensorFlow needed)."""

import csv

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline.errors import InputError
from mouse_pipeline.scoring import format_table, parse_mapping, score_files


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def external(tmp_path):
    """A thesis-style label file and another tool's output in the fork's layout."""
    rng = np.random.default_rng(0)
    n = 500
    y = np.zeros((n, 3), int)
    y[50:120, 0] = 1
    y[200:210, 1] = 1
    for s in range(300, 480, 40):
        y[s:s + 12, 2] = 1
    p = np.clip(0.6 * y + rng.normal(0.2, 0.2, y.shape), 0, 1)
    labels = write_csv(tmp_path / "labels.csv", ["grooming", "rearing_mig", "rearing_paret"], y.tolist())
    preds = write_csv(tmp_path / "preds.csv",
                      ["", "grooming", "rearing_mig", "rearing_paret", "g_prediction", "mr_prediction", "wr_prediction"],
                      [[i, *y[i], *p[i]] for i in range(n)])
    return labels, preds, y, p


def test_score_reproduces_sklearn_average_precision(external, tmp_path):
    labels, preds, y, p = external
    rows = score_files(labels, preds,
                       columns="grooming=g_prediction,mid_rearing=mr_prediction,wall_rearing=wr_prediction",
                       label_columns="rearing_mig=mid_rearing,rearing_paret=wall_rearing",
                       csv_out=tmp_path / "out.csv", fps=10)
    assert [r["behavior"] for r in rows] == ["grooming", "mid_rearing", "wall_rearing"]
    for j, r in enumerate(rows):
        assert r["pr_auc"] == pytest.approx(average_precision_score(y[:, j], p[:, j]), abs=1e-9)
        pred = p[:, j] >= 0.5
        assert r["tp"] == int((pred & (y[:, j] == 1)).sum())
    with open(tmp_path / "out.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    table = format_table(rows)
    assert "pr_auc" in table.splitlines()[0] and "wall_rearing" in table


def test_score_errors_name_file_and_column(external, tmp_path):
    labels, preds, *_ = external
    with pytest.raises(InputError, match=r"preds\.csv: no column 'nope'; columns found: grooming"):
        score_files(labels, preds, columns="grooming=nope",
                    label_columns="rearing_mig=mid_rearing,rearing_paret=wall_rearing", fps=10)
    short = write_csv(tmp_path / "short.csv", ["g"], [[0.1]] * 10)
    with pytest.raises(InputError, match="10 frames of predictions but .*labels.csv has 500"):
        score_files(labels, short, columns="grooming=g", fps=10)
    bad = write_csv(tmp_path / "bad.csv", ["g"], [[0.1]] * 3 + [["x"]])
    with pytest.raises(InputError, match=r"bad\.csv: line 5, column 'g': expected a probability or 0/1, got 'x'"):
        score_files(labels, bad, columns="grooming=g", fps=10)
    with pytest.raises(InputError, match="expected name=column pairs"):
        parse_mapping("grooming", "--columns")




# -- frame rate: durations in seconds, never frames -------------------------------------


def times(n, fps):
    return [f"{i / fps:.4f}" for i in range(n)]


def test_bout_durations_are_seconds_at_the_given_fps(external):
    labels, preds, y, p = external
    args = dict(columns="grooming=g_prediction,mid_rearing=mr_prediction,wall_rearing=wr_prediction",
                label_columns="rearing_mig=mid_rearing,rearing_paret=wall_rearing")
    at10, at25 = score_files(labels, preds, fps=10, **args), score_files(labels, preds, fps=25, **args)
    for j in range(3):
        frames = int((p[:, j] >= 0.5).sum() - y[:, j].sum())  # predicted minus true bout frames
        assert frames != 0
        assert at10[j]["bout_duration_error_s"] == pytest.approx(frames / 10)
        assert at25[j]["bout_duration_error_s"] == pytest.approx(frames / 25)
        assert at10[j]["fps"] == 10 and at25[j]["fps"] == 25
        assert at10[j]["pr_auc"] == at25[j]["pr_auc"]


@pytest.fixture
def timed(tmp_path):
    """Labels and predictions with a ``time_s`` column at 25 fps, as predict writes them."""
    n = 90
    y = np.zeros((n, 1), int)
    y[10:30] = 1
    p = np.zeros(n)
    p[12:40] = 0.9  # 8 frames too many
    labels = write_csv(tmp_path / "labels.csv", ["grooming"], y.tolist())
    preds = write_csv(tmp_path / "preds.csv", ["frame", "time_s", "p_grooming"],
                      [[i, t, p[i]] for i, t in enumerate(times(n, 25))])
    return labels, preds


def test_frame_rate_from_the_time_s_column(timed):
    labels, preds = timed
    (row,) = score_files(labels, preds)
    assert row["fps"] == pytest.approx(25, rel=1e-4)
    assert row["bout_duration_error_s"] == pytest.approx(8 / 25, rel=1e-4)
    (same,) = score_files(labels, preds, fps=25)  # agreeing --fps: taken as given
    assert same["fps"] == 25 and same["bout_duration_error_s"] == pytest.approx(8 / 25)


def test_fps_that_disagrees_with_time_s_is_refused(timed):
    labels, preds = timed
    with pytest.raises(InputError, match=r"preds\.csv: line \d+, time_s [\d.]+ s where [\d.]+ s was "
                                         r"expected at --fps 30 \(the column says about 25 fps\)"):
        score_files(labels, preds, fps=30)


def test_unevenly_spaced_time_s_is_refused(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", ["grooming"], [[0]] * 10)
    stamps = [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # a frame dropped after 0.3 s
    preds = write_csv(tmp_path / "preds.csv", ["time_s", "grooming"], [[t, 0] for t in stamps])
    with pytest.raises(InputError, match=r"preds\.csv: line 6, time_s 0.5 s where 0.444444 s was expected at an even 9 fps; "
                                         r"the rows are not evenly spaced frames"):
        score_files(labels, preds)
    flat = write_csv(tmp_path / "flat.csv", ["time_s", "grooming"], [[1.0, 0]] * 10)
    with pytest.raises(InputError, match=r"flat\.csv: time_s does not increase"):
        score_files(labels, flat)
    one = write_csv(tmp_path / "one.csv", ["time_s", "grooming"], [[0.0, 0]])
    with pytest.raises(InputError, match=r"one\.csv: one row of time_s gives no frame rate; pass --fps"):
        score_files(labels, one)


def test_without_fps_or_time_s_score_refuses(external):
    labels, preds, *_ = external
    with pytest.raises(InputError, match=r"preds\.csv: no time_s column, so the frame rate is unknown; "
                                         r"pass --fps"):
        score_files(labels, preds, columns="grooming=g_prediction")


# -- every label format training reads ---------------------------------------------------


BORIS_EVENTS = """Observation id,obs1
Time,Media file path,Subject,Behavior,Status
0.3,v.mp4,,grooming,START
0.6,v.mp4,,grooming,STOP
1.7,v.mp4,,grooming,START
2.0,v.mp4,,grooming,STOP
"""
BORIS_AGGREGATED = """Observation id,Subject,Behavior,Behavior type,Start (s),Stop (s),Duration (s)
obs1,,grooming,STATE,0.3,0.6,0.3
obs1,,grooming,STATE,1.7,2.0,0.3
"""


@pytest.mark.parametrize("fmt,text", [("boris_events", BORIS_EVENTS), ("boris_aggregated", BORIS_AGGREGATED)])
def test_score_reads_boris_at_the_frame_rate(tmp_path, fmt, text):
    labels = tmp_path / "boris.csv"
    labels.write_text(text)
    truth = np.zeros(20, int)
    truth[[3, 4, 5, 17, 18, 19]] = 1  # [0.3, 0.6) and [1.7, 2.0) s at 10 fps
    guess = truth.copy()
    guess[6] = 1
    preds = write_csv(tmp_path / "preds.csv", ["grooming"], [[v] for v in guess])
    (row,) = score_files(labels, preds, label_format=fmt, fps=10)
    assert (row["behavior"], row["n_positive"], row["tp"], row["fp"], row["fn"]) == ("grooming", 6, 6, 1, 0)
    assert row["bout_duration_error_s"] == pytest.approx(0.1)
    renamed = score_files(labels, preds, label_format=fmt, fps=10, label_columns="grooming=face_groom",
                          columns="face_groom=grooming")
    assert renamed[0]["behavior"] == "face_groom" and renamed[0]["tp"] == 6
    with pytest.raises(InputError, match="no time_s column"):
        score_files(labels, preds, label_format=fmt)


def test_score_reads_deepethogram_with_a_named_index_column(tmp_path):
    y = np.zeros((30, 2), int)
    y[5:12, 0] = 1
    y[20:25, 1] = 1
    background = (y.sum(axis=1) == 0).astype(int)
    labels = write_csv(tmp_path / "deg.csv", ["frame", "background", "grooming", "rear"],
                       [[i, background[i], *y[i]] for i in range(30)])
    preds = write_csv(tmp_path / "preds.csv", ["time_s", "p_grooming", "p_rear"],
                      [[t, *y[i]] for i, t in enumerate(times(30, 10))])
    rows = score_files(labels, preds, label_format="deepethogram")
    assert [r["behavior"] for r in rows] == ["grooming", "rear"]  # not 'frame', not 'background'
    assert [r["column"] for r in rows] == ["p_grooming", "p_rear"]
    assert [r["f1"] for r in rows] == [1.0, 1.0] and [r["tp"] for r in rows] == [7, 5]


def test_a_prediction_column_that_copies_the_labels_is_warned_about(external, caplog):
    labels, preds, *_ = external
    with caplog.at_level("WARNING", logger="mouse_pipeline.scoring"):
        rows = score_files(labels, preds, fps=10)  # no --columns: the file's copy of the labels
    assert [r["f1"] for r in rows] == [1.0, 1.0, 1.0]
    assert "column 'grooming' equals the labels on every annotated frame" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mouse_pipeline.scoring"):
        score_files(labels, preds, fps=10, columns="grooming=g_prediction")
    assert "equals the labels" not in caplog.text


def test_predicted_bouts_on_frames_not_annotated_are_ignored(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", ["grooming"], [[0]] * 5 + [[1]] * 5 + [[-1]] * 10)
    preds = write_csv(tmp_path / "preds.csv", ["grooming"], [[0]] * 5 + [[1]] * 5 + [[0]] * 2 + [[1]] * 4 + [[0]] * 4)
    (row,) = score_files(labels, preds, fps=10)
    assert (row["n_frames"], row["bout_n_true"], row["bout_n_pred"], row["bout_f1"]) == (10, 1, 1, 1.0)
    assert row["bout_duration_error_s"] == 0.0


# -- the readers refuse what they cannot read for sure -------------------------------------


def test_a_column_twice_in_the_predictions_header_is_refused(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", ["grooming"], [[0], [1]])
    preds = write_csv(tmp_path / "preds.csv", ["grooming", "x", "grooming"], [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(InputError, match=r"preds\.csv: column 'grooming' appears 2 times in the header "
                                         r"\(columns 1, 3\); rename or remove the copies"):
        score_files(labels, preds, fps=10)
    timed = write_csv(tmp_path / "timed.csv", ["time_s", "grooming", "time_s"], [[0, 0, 0], [0.1, 1, 0.1]])
    with pytest.raises(InputError, match=r"timed\.csv: column 'time_s' appears 2 times"):
        score_files(labels, timed)


def test_a_column_twice_in_the_label_header_is_refused(tmp_path):
    labels = write_csv(tmp_path / "labels.csv", ["grooming", "grooming"], [[0, 1], [1, 0]])
    preds = write_csv(tmp_path / "preds.csv", ["grooming"], [[0], [1]])
    with pytest.raises(InputError, match=r"labels\.csv: column 'grooming' appears twice; remove or rename"):
        score_files(labels, preds, fps=10)
    renamed = write_csv(tmp_path / "renamed.csv", ["a", "b"], [[0, 1], [1, 0]])
    with pytest.raises(InputError, match=r"renamed\.csv: columns 'a' and 'b' both give behaviour 'grooming'"):
        score_files(renamed, preds, fps=10, label_columns="a=grooming,b=grooming")


@pytest.mark.parametrize("which", ["predictions", "labels"])
def test_a_file_that_is_not_utf8_is_refused_with_the_byte_offset_and_line(tmp_path, which):
    good = {"labels": b"grooming,note\n0,a\n1,b\n", "predictions": b"grooming,note\n0.1,a\n0.9,b\n"}
    bad = good[which].replace(b"b\n", b"caf\xe9\n")  # Latin-1 e-acute on line 3
    offset = bad.index(b"\xe9")
    files = {k: tmp_path / f"{k}.csv" for k in good}
    for k, path in files.items():
        path.write_bytes(bad if k == which else good[k])
    what = "label file" if which == "labels" else "predictions file"
    with pytest.raises(InputError, match=rf"{which}\.csv: this {what} is not UTF-8 text: byte 0xe9 at byte "
                                         rf"offset {offset} \(line 3\) cannot be decoded; save it as UTF-8"):
        score_files(files["labels"], files["predictions"], fps=10, columns="grooming=grooming")
    files[which].write_bytes(b"\xef\xbb\xbf" + bad)  # with a BOM the offset still counts from byte 0
    with pytest.raises(InputError, match=rf"byte offset {offset + 3} \(line 3\)"):
        score_files(files["labels"], files["predictions"], fps=10, columns="grooming=grooming")


@pytest.mark.parametrize("which", ["predictions", "labels"])
def test_a_header_only_file_is_refused(tmp_path, which):
    files = {k: write_csv(tmp_path / f"{k}.csv", ["grooming"], [] if k == which else [[0], [1]])
             for k in ("labels", "predictions")}
    with pytest.raises(InputError, match=rf"{which}\.csv: the (label|predictions) file has a header but no data rows"):
        score_files(files["labels"], files["predictions"], fps=10)


def run_score(*args):
    from click.testing import CliRunner

    from stages.cli import main

    return CliRunner().invoke(main, ["score", *map(str, args)], catch_exceptions=False)


def test_cli_prints_durations_in_seconds_and_refuses_in_one_line(tmp_path, timed):
    labels, preds = timed
    result = run_score("--labels", labels, "--predictions", preds, "--fps", 25, "--quiet")
    assert result.exit_code == 0, result.output
    assert "bout_duration_error_s" in result.stdout.splitlines()[0]
    assert "0.320" in result.stdout and "in seconds at 25 fps (from --fps, matching the time_s column)" in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"grooming\n\xff\n")
    cases = [(("--labels", labels, "--predictions", preds, "--fps", 30), "preds.csv"),
             (("--labels", labels, "--predictions", bad, "--fps", 10), "bad.csv"),
             (("--labels", bad, "--predictions", preds), "bad.csv")]
    for args, name in cases:
        result = run_score(*args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], result.stderr
    result = run_score("--labels", labels, "--predictions", preds, "--label-format", "boris_events")
    assert result.exit_code == 2 and "no header row with columns" in result.stderr


def test_predict_s_files_score_the_probabilities_and_say_how_to_score_its_labels(tmp_path, caplog):
    y = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.6, 0.7, 0.9, 0.2, 0.55, 0.3, 0.1])
    labels = write_csv(tmp_path / "labels.csv", ["grooming"], [[v] for v in y])
    label = (p >= 0.65).astype(int)  # predict's 0/1 column, at its own threshold
    preds = write_csv(tmp_path / "p.csv", ["video", "frame", "time_s", "p_grooming", "grooming"],
                      [["v", i, i / 10, p[i], label[i]] for i in range(len(y))])
    with caplog.at_level("INFO", logger="mouse_pipeline.scoring"):
        (row,) = score_files(labels, preds)
    assert row["column"] == "p_grooming" and row["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert (row["tp"], row["fp"]) == (3, 1)  # at 0.5: 0.6, 0.7, 0.9, 0.55
    assert "scoring the probabilities p_grooming at threshold 0.5" in caplog.text
    assert "--columns grooming=grooming" in caplog.text
    (row,) = score_files(labels, preds, columns="grooming=grooming")
    assert (row["tp"], row["fp"]) == (2, 0)  # predict's labels: 0.7 and 0.9
