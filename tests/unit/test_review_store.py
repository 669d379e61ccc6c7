"""The review's label store with two servers on one labels folder: what one saved, the other
shows, saves on and exports (it kept its own copy from start-up and refused every save)."""

import json

import numpy as np
import pytest

from mouse_pipeline.annotations import Labels, read_labels
from mouse_pipeline.review.sources import ReviewVideo
from mouse_pipeline.review.store import LabelStore, StaleEdit

BEHAVIORS = ("a", "b")
N = 20


def video(tmp_path):
    return ReviewVideo("v", tmp_path / "v.mp4", 10.0, N, Labels(BEHAVIORS, np.full((N, 2), -1, np.int8)), None)


def test_a_save_by_another_server_is_shown_saved_on_and_exported(tmp_path):
    out = tmp_path / "out"
    first, second = LabelStore(out, [video(tmp_path)], "ann"), LabelStore(out, [video(tmp_path)], "bob")
    saved = first.save("v", "original", [{"op": "set", "behavior": "a", "start": 2, "end": 4, "value": 1},
                                         {"op": "reviewed", "start": 0, "end": 9}])
    with pytest.raises(StaleEdit):  # the second server's page was loaded before: refused
        second.save("v", "original", [{"op": "set", "behavior": "b", "start": 0, "end": 0, "value": 1}])
    page = second.state("v")  # the page reloads, as the refusal says
    assert page["version"] == saved["version"] and page["labels"] == saved["labels"]
    assert page["reviewed"] == [[0, 9]]
    after = second.save("v", page["version"], [{"op": "set", "behavior": "b", "start": 15, "end": 16, "value": 1}])
    expected = np.full((N, 2), -1, np.int8)
    expected[:10] = 0
    expected[2:5, 0] = 1
    expected[15:17, 1] = 1
    assert (read_labels(out / "v.csv", "thesis", BEHAVIORS).matrix == expected).all()
    record = json.loads((out / "v.review.json").read_text())
    assert [e["user"] for e in record["history"]] == ["ann", "bob"] and record["reviewed"] == [[0, 9]]
    assert record["labels_sha256"] == after["version"]
    # and the first server, in turn, exports what the second saved
    boris = first.export_boris("v")
    back = read_labels(boris, "boris_events", BEHAVIORS, fps=10.0, n_frames=N).matrix
    assert (back == (expected == 1)).all()
