"""The bookkeeping of the simulated active-learning loop (the loop itself: tests/integration/test_loop.py)."""

import numpy as np

from mouse_pipeline.active_loop import FULL, Annotation, frames_to_reach, target_summary
from mouse_pipeline.annotations import read_labels

BEHAVIORS = ("a", "b")


def test_annotation_writes_the_truth_where_annotated_and_minus_one_elsewhere(tmp_path):
    truth = {"v": np.tile(np.array([[1, 0]], np.int8), (10, 1)), "w": np.zeros((6, 2), np.int8)}
    ann = Annotation(truth, BEHAVIORS)
    ann.add("v", 2, 5)
    other = ann.copy()
    other.add("v", 5, 10)
    assert (ann.frames, other.frames) == (3, 8)  # a copy does not share the mask
    ann.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.csv"]  # w has no annotated frame
    m = read_labels(tmp_path / "v.csv", "thesis", BEHAVIORS).matrix
    assert m[2:5].tolist() == [[1, 0]] * 3 and (m[:2] == -1).all() and (m[5:] == -1).all()
    assert ann.windows(3) == [("v", 6, 9), ("v", 9, 10), ("w", 0, 3), ("w", 3, 6)]


def rows(unc, rand, full=None):
    out = [{"round": i, "arm": arm, "annotated_frames": 100 * (i + 1), "mean_pr_auc": s}
           for arm, scores in (("uncertainty", unc), ("random", rand)) for i, s in enumerate(scores)]
    if full is not None:
        out.append({"round": -1, "arm": FULL, "annotated_frames": 1000, "mean_pr_auc": full})
    return out


def test_frames_to_reach_and_the_verdicts():
    r = rows([0.5, 0.7, 0.9], [0.5, 0.6, 0.7], full=0.9)
    assert frames_to_reach(r, "uncertainty", 0.7) == 200 and frames_to_reach(r, "random", 0.7) == 300
    assert frames_to_reach(r, "random", 0.8) is None
    text = target_summary(r).splitlines()
    assert "uncertainty at 300 annotated frames, random never" in text[0]
    assert text[1].endswith("uncertainty-chosen minutes reached it with fewer annotated frames")
    worse = target_summary(rows([0.5, 0.5, 0.6], [0.5, 0.7, 0.7]))
    assert worse.endswith("did NOT reach it with fewer frames than random ones")
