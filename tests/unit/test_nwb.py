"""``predict --format nwb``'s file read back with pynwb: bouts, probabilities, pose."""

import numpy as np
import pynwb
import pytest

from mouse_pipeline.exports.nwb import write_nwb
from mouse_pipeline.pose import find_pose_file
from mouse_pipeline.pose_formats import read_tracks
from mouse_pipeline.predict import bouts_table
from mouse_pipeline.synthetic import generate_dataset

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")
FPS = 7.5


def predictions(n=90, seed=1):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 3)).astype(np.float32)
    binary = np.zeros((n, 3), np.int8)
    binary[0:10, 0] = binary[30:31, 0] = binary[40:89, 1] = binary[89:, 2] = 1  # bouts at both ends
    return probs, binary


def read(path):
    io = pynwb.NWBHDF5IO(str(path), "r")
    return io, io.read()


def test_the_nwb_file_holds_the_bouts_of_the_csv_and_the_probabilities(tmp_path):
    probs, binary = predictions()
    path = write_nwb(tmp_path / "v.nwb", "v", probs, binary, BEHAVIORS, FPS, tmp_path / "v.mp4", "resnet50v2/lstm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.nwb"]
    assert list(pynwb.validate(path=str(path))) == []  # the NWB schema's validator finds no error
    io, nwb = read(path)
    try:
        table = nwb.intervals["behavior_bouts"].to_dataframe()
        got = [(r.behavior, r.start_frame, r.end_frame, r.start_time, r.stop_time) for r in table.itertuples()]
        want = [(r["behavior"], r["start_frame"], r["end_frame"], r["start_s"], r["end_s"])
                for r in bouts_table(binary, BEHAVIORS, FPS, "v")]
        assert len(got) == len(want) == 4
        for g, w in zip(got, want, strict=True):
            assert g[:3] == w[:3]
            assert g[3:] == pytest.approx(w[3:], abs=1e-4)  # the CSV rounds seconds to 4 places
        series = nwb.processing["behavior"]["behavior_probabilities"]
        np.testing.assert_array_equal(series.data[:], probs)
        assert series.rate == FPS and series.starting_time == 0.0
        assert series.comments == "behaviors: " + ", ".join(BEHAVIORS)
        np.testing.assert_array_equal(nwb.processing["behavior"]["behavior_labels"].data[:], binary)
        assert "pose" not in nwb.processing["behavior"].data_interfaces
    finally:
        io.close()


def test_the_pose_used_for_cropping_is_stored_with_ndx_pose(tmp_path):
    generate_dataset(tmp_path / "d", n_videos=1, n_frames=30, size=32, fps=FPS, seed=2)
    pose = find_pose_file(tmp_path / "d" / "pose", "mouse_000")
    probs, binary = predictions(30)
    path = write_nwb(tmp_path / "v.nwb", "v", probs, binary, BEHAVIORS, FPS, tmp_path / "v.mp4", "m",
                     pose=(pose, "midbody"))
    track = next(iter(read_tracks(pose, "midbody").values()))
    assert list(pynwb.validate(path=str(path))) == []  # with the ndx-pose namespace cached in the file
    io, nwb = read(path)
    try:
        series = nwb.processing["behavior"]["pose"].pose_estimation_series["midbody"]
        np.testing.assert_array_equal(series.data[:], track.xy)
        np.testing.assert_array_equal(series.confidence[:], track.likelihood)
        assert series.rate == FPS
    finally:
        io.close()
