"""Pose CSV files (DeepLabCut, LightningPose): layouts, interpolation, one-line errors; finding a
video's pose file; the check that the track lies inside the frame."""

import logging

import numpy as np
import pytest

from mouse_pipeline.errors import InputError
from mouse_pipeline.pose import check_inside, find_pose_file, read_dlc, read_pose, write_dlc_csv

HEADER = ("scorer,S,S,S,S,S,S\n"
          "bodyparts,snout,snout,snout,midbody,midbody,midbody\n"
          "coords,x,y,likelihood,x,y,likelihood\n")


def dlc_csv(path, rows, header=HEADER):
    path.write_text(header + "".join(f"{i},{r}\n" for i, r in enumerate(rows)))
    return path


def test_low_likelihood_points_are_interpolated_and_edges_held(tmp_path):
    path = dlc_csv(tmp_path / "p.csv", [
        "0,0,0.1,50,500,0.2",   # below threshold at the start: takes the first valid value
        "0,0,0.9,10,100,0.9",
        "0,0,0.9,99,999,0.1",   # replaced: linear between its neighbours
        "0,0,0.9,99,999,",      # missing likelihood: replaced too
        "0,0,0.9,40,400,0.95",
        "0,0,0.9,77,777,nan",   # at the end: holds the last valid value
    ])
    xy = read_dlc(path, "midbody", min_likelihood=0.6)
    assert xy.dtype == np.float64 and xy.shape == (6, 2)
    np.testing.assert_allclose(xy, [[10, 100], [10, 100], [20, 200], [30, 300], [40, 400], [40, 400]])


def test_threshold_is_inclusive_and_configurable(tmp_path):
    path = dlc_csv(tmp_path / "p.csv", ["0,0,1,0,0,0.6", "0,0,1,7,7,0.3", "0,0,1,10,10,0.6"])
    np.testing.assert_allclose(read_dlc(path, "midbody")[:, 0], [0, 5, 10])
    np.testing.assert_allclose(read_dlc(path, "midbody", min_likelihood=0.2)[:, 0], [0, 7, 10])


def test_write_then_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    pts = {"snout": np.column_stack([rng.uniform(0, 100, (20, 2)), np.full(20, 0.9)]),
           "tailbase": np.column_stack([rng.uniform(0, 100, (20, 2)), np.full(20, 0.99)])}
    write_dlc_csv(tmp_path / "p.csv", pts, scorer="me")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "scorer," + ",".join(["me"] * 6)
    assert lines[2] == "coords,x,y,likelihood,x,y,likelihood"
    assert len(lines) == 23
    np.testing.assert_allclose(read_dlc(tmp_path / "p.csv", "tailbase"), pts["tailbase"][:, :2], atol=1e-4)
    with pytest.raises(ValueError, match=r"points\['b'\] must have shape \(20, 3\)"):
        write_dlc_csv(tmp_path / "q.csv", {"a": pts["snout"], "b": pts["snout"][:5]})


def test_labelled_data_layout_without_likelihood(tmp_path):
    path = tmp_path / "CollectedData_me.csv"
    path.write_text("scorer,me,me,me,me\n"
                    "bodyparts,snout,snout,tailbase,tailbase\n"
                    "coords,x,y,x,y\n"
                    "labeled-data/v/img000.png,1,2,10,20\n"
                    "labeled-data/v/img001.png,3,4,,\n"
                    "labeled-data/v/img002.png,5,6,30,40\n")
    np.testing.assert_allclose(read_dlc(path, "tailbase"), [[10, 20], [20, 30], [30, 40]])


def test_labelled_data_layout_with_three_index_columns(tmp_path):
    path = tmp_path / "CollectedData_me.csv"
    path.write_text("scorer,,,me,me\nbodyparts,,,snout,snout\ncoords,,,x,y\n"
                    "labeled-data,v,img000.png,1.5,2.5\nlabeled-data,v,img001.png,3.5,4.5\n")
    np.testing.assert_allclose(read_dlc(path, "snout"), [[1.5, 2.5], [3.5, 4.5]])


def test_missing_bodypart_lists_those_present(tmp_path):
    path = dlc_csv(tmp_path / "p.csv", ["1,1,1,2,2,1"])
    with pytest.raises(InputError, match=r"p\.csv: body part 'tailbase' not found; the file has: snout, midbody"):
        read_dlc(path, "tailbase")


def test_every_point_below_threshold(tmp_path):
    path = dlc_csv(tmp_path / "p.csv", ["1,1,1,2,2,0.1", "1,1,1,2,2,0.3"])
    with pytest.raises(InputError, match=r"no point of 'midbody' reaches likelihood 0\.6 \(the highest likelihood is 0\.3\)"):
        read_dlc(path, "midbody")


def test_malformed_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("grooming,mid_rearing,wall_rearing\n0,0,1\n0,1,0\n1,0,0\n")
    with pytest.raises(InputError, match=r"labels\.csv: not a DeepLabCut CSV: expected the first cells .*'scorer', 'bodyparts', 'coords'"):
        read_dlc(path, "midbody")
    bad_coords = tmp_path / "coords.csv"
    bad_coords.write_text("scorer,S,S\nbodyparts,a,a\ncoords,x,z\n0,1,2\n")
    with pytest.raises(InputError, match="the 'coords' row must hold x, y"):
        read_dlc(bad_coords, "a")


def test_non_numeric_cell_names_the_row(tmp_path):
    path = dlc_csv(tmp_path / "p.csv", ["1,1,1,2,2,1", "1,1,1,oops,2,1"])
    with pytest.raises(InputError, match=r"p\.csv: row 5: 'oops' in column midbody/x is not a number"):
        read_dlc(path, "midbody")


def test_short_row_and_bad_frame_index(tmp_path):
    short = dlc_csv(tmp_path / "short.csv", ["1,1,1,2,2,1", "1,1,1,2"])
    with pytest.raises(InputError, match=r"row 5 has 5 cells"):
        read_dlc(short, "midbody")
    gap = tmp_path / "gap.csv"
    gap.write_text(HEADER + "0,1,1,1,2,2,1\n2,1,1,1,2,2,1\n")
    with pytest.raises(InputError, match=r"frame index is not 0, 1, 2, ...: row 5 has 2, expected 1"):
        read_dlc(gap, "midbody")


def test_no_data_rows_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="no data rows"):
        read_dlc(dlc_csv(tmp_path / "p.csv", []), "midbody")
    with pytest.raises(InputError, match=r"nope\.csv: pose file does not exist"):
        read_dlc(tmp_path / "nope.csv", "midbody")


def test_find_pose_file(tmp_path):
    (tmp_path / "m1.csv").write_text("x")
    (tmp_path / "m2DLC_resnet50_shuffle1_1000.csv").write_text("x")
    assert find_pose_file(tmp_path, "m1") == tmp_path / "m1.csv"
    assert find_pose_file(tmp_path, "m2").name.startswith("m2DLC")
    with pytest.raises(InputError, match="no pose file for video 'm3'"):
        find_pose_file(tmp_path, "m3")
    (tmp_path / "m2DLC_other.csv").write_text("x")
    with pytest.raises(InputError, match="several pose files for video 'm2'"):
        find_pose_file(tmp_path, "m2")
    (tmp_path / "m2DLC_other.csv").unlink()
    (tmp_path / "m1DLC_resnet50.h5").write_text("x")  # the CSV export wins over its .h5
    assert find_pose_file(tmp_path, "m1") == tmp_path / "m1.csv"


def test_find_pose_file_sleap_names_and_odd_ids(tmp_path):
    for name in ("a.analysis.h5", "b.mp4.predictions.analysis.h5", "c.predictions.slp",
                 "d.avi.predictions.slp", "e.slp", "f[1]DLC_x.h5", "g.2.analysis.h5"):
        (tmp_path / name).write_text("x")
    for vid, name in (("a", "a.analysis.h5"), ("b", "b.mp4.predictions.analysis.h5"),
                      ("c", "c.predictions.slp"), ("d", "d.avi.predictions.slp"), ("e", "e.slp"),
                      ("f[1]", "f[1]DLC_x.h5"), ("g.2", "g.2.analysis.h5")):
        assert find_pose_file(tmp_path, vid).name == name
    with pytest.raises(InputError, match="no pose file for video 'g'"):  # g.2's file is not g's
        find_pose_file(tmp_path, "g")


def test_lightning_pose_csv_is_read(tmp_path):
    path = tmp_path / "m1.csv"
    path.write_text("scorer,heatmap_tracker,heatmap_tracker,heatmap_tracker\n"
                    "bodyparts,nose,nose,nose\ncoords,x,y,likelihood\n"
                    "0,1.5,2.5,0.95\n1,9,9,0.1\n2,3.5,4.5,0.9\n")
    np.testing.assert_allclose(read_pose(path, "nose"), [[1.5, 2.5], [2.5, 3.5], [3.5, 4.5]])


@pytest.mark.parametrize("software", ["DeepLabCut", "LightningPose"])
def test_csv_reader_agrees_with_movement(tmp_path, software):
    load_dataset = pytest.importorskip("movement.io").load_dataset
    rng = np.random.default_rng(3)
    pts = {p: np.column_stack([rng.uniform(0, 500, (30, 2)), rng.uniform(0.8, 1, 30)])
           for p in ("snout", "midbody")}
    path = tmp_path / "p.csv"
    write_dlc_csv(path, pts)
    ds = load_dataset(path, source_software=software)
    for part in pts:
        theirs = ds["position"].sel(keypoints=part).squeeze("individuals").transpose("time", "space")
        np.testing.assert_allclose(read_pose(path, part), theirs.values, atol=1e-9)


def test_check_inside(tmp_path, caplog):
    pose = tmp_path / "m1.csv"
    inside = np.array([[0, 0], [639.5, 479.5], [320, 240]])
    assert check_inside(inside, 640, 480, pose) == 0
    few = np.array([[10, 10]] * 8 + [[650, 10], [10, -3]])
    with caplog.at_level(logging.WARNING, logger="mouse_pipeline.pose"):
        assert check_inside(few, 640, 480, pose, video="m1.mp4") == 2
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{pose}: 2 of 10 frames have the pose point outside the 640x480 frame of m1.mp4 (first: frame 8; ")
    assert "may belong to another video, or to another resolution" in message
    doubled = np.column_stack([np.linspace(100, 1200, 10), np.linspace(50, 900, 10)])  # a 1280x960 track
    with pytest.raises(InputError, match=r"m1\.csv: 5 of 10 frames have the pose point outside the 640x480 frame \(first: frame 5; the track spans x 100 to 1200, y 50 to 900\); the pose file may belong to another video, or to another resolution of this video: give the pose file made from this video"):
        check_inside(doubled, 640, 480, pose, max_outside=0.4)
    assert check_inside(doubled, 640, 480, pose) == 5  # half: warned, not refused
    with pytest.raises(InputError, match="6 of 10 frames"):
        check_inside(doubled + [[100, 0]], 640, 480, pose)
