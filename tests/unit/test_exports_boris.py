"""BORIS events tables written by exports.boris read back through the project's BORIS reader."""

import csv

import numpy as np
import pytest

from mouse_pipeline.annotations import read_labels
from mouse_pipeline.exports.boris import COLUMNS, boris_events, write_boris_events

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")


def random_labels(rng, n, k=3):
    """Bouts of every length from 1 frame, touching both ends of the video sometimes."""
    y = np.zeros((n, k), np.int8)
    for j in range(k):
        for _ in range(rng.integers(0, 8)):
            s = int(rng.integers(0, n))
            y[s:s + int(rng.integers(1, 25)), j] = 1
    y[0, 0] = y[-1, -1] = 1
    return y


@pytest.mark.parametrize("fps", [10.0, 29.97, 30000 / 1001, 7.5, 25.0, 1000.0, 0.5])
def test_a_written_file_reads_back_to_the_same_frames(tmp_path, fps):
    rng = np.random.default_rng(int(fps * 100))
    for trial in range(5):
        n = int(rng.integers(5, 3000))
        y = random_labels(rng, n)
        path = tmp_path / f"v{trial}.tsv"
        assert write_boris_events(path, y, BEHAVIORS, fps, observation="v") == 0
        back = read_labels(path, "boris_events", BEHAVIORS, fps=fps, n_frames=n)
        assert (back.matrix == y).all(), (fps, trial)


def test_not_annotated_frames_read_back_as_absent_and_are_counted(tmp_path):
    y = np.zeros((50, 3), np.int8)
    y[:10] = -1
    y[5:20, 1] = 1  # a bout that starts in the not-annotated stretch of the others
    path = tmp_path / "v.tsv"
    assert write_boris_events(path, y, BEHAVIORS, 10.0, observation="v") == 10
    back = read_labels(path, "boris_events", BEHAVIORS, fps=10.0, n_frames=50).matrix
    assert (back == np.where(y == -1, 0, y)).all()


def test_the_table_is_boris_s_tabular_events_layout(tmp_path):
    y = np.zeros((20, 3), np.int8)
    y[2:5, 0] = 1
    y[5:9, 2] = 1
    path = tmp_path / "v.tsv"
    write_boris_events(path, y, BEHAVIORS, 10.0, observation="vid", media_file="vid.mp4")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert tuple(rows[0]) == COLUMNS
    got = [(r["Behavior"], r["Behavior type"], float(r["Time"]), int(r["Image index"])) for r in rows]
    assert got == [("grooming", "START", 0.2, 2), ("grooming", "STOP", 0.5, 5),
                   ("wall_rearing", "START", 0.5, 5), ("wall_rearing", "STOP", 0.9, 9)]
    assert {r["Observation id"] for r in rows} == {"vid"} and {r["FPS"] for r in rows} == {"10.0"}


def test_no_bout_is_a_header_only_table_and_bad_input_is_refused(tmp_path):
    path = tmp_path / "v.tsv"
    write_boris_events(path, np.zeros((10, 3), np.int8), BEHAVIORS, 10.0, observation="v")
    assert path.read_text().strip().split("\t") == list(COLUMNS)
    with pytest.raises(ValueError):
        boris_events(np.zeros((10, 2)), BEHAVIORS, 10.0)
    with pytest.raises(ValueError):
        boris_events(np.zeros((10, 3)), BEHAVIORS, 0.0)
