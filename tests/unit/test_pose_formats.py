"""Pose files beyond the single-animal CSV: DeepLabCut .h5, multi-animal files, SLEAP, safety."""

import os
import pickle
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pandas as pd
import pytest

from mouse_pipeline.errors import InputError
from mouse_pipeline.pose import read_pose, write_dlc_csv

PARTS = ("snout", "midbody")


def points(seed, n=12):
    """{body part: (n, 3) x, y, likelihood}, some points unreliable or missing."""
    rng = np.random.default_rng(seed)
    out = {}
    for part in PARTS:
        p = np.column_stack([rng.uniform(0, 600, (n, 2)), rng.uniform(0.7, 1.0, n)])
        p[2, 2] = 0.1          # below the threshold: interpolated
        p[5, :] = np.nan       # missing: interpolated
        out[part] = p
    return out


def dlc_frame(tracks, scorer="DLC_resnet50"):
    """A DataFrame laid out as DeepLabCut writes it: {individual or None: {part: (T, 3)}}."""
    multi = None not in tracks
    columns, blocks = [], []
    for ind, parts in tracks.items():
        for part, arr in parts.items():
            for k, coord in enumerate(("x", "y", "likelihood")):
                columns.append((scorer, ind, part, coord) if multi else (scorer, part, coord))
                blocks.append(arr[:, k])
    names = ["scorer", "individuals", "bodyparts", "coords"] if multi else ["scorer", "bodyparts", "coords"]
    return pd.DataFrame(np.column_stack(blocks), columns=pd.MultiIndex.from_tuples(columns, names=names))


def multi_csv(path, tracks, scorer="S"):
    """A multi-animal DeepLabCut analysis CSV (four header rows)."""
    cols = [(ind, part, c) for ind, parts in tracks.items() for part in parts for c in ("x", "y", "likelihood")]
    table = np.column_stack([tracks[i][p][:, ("x", "y", "likelihood").index(c)] for i, p, c in cols])
    lines = [",".join(["scorer"] + [scorer] * len(cols)),
             ",".join(["individuals"] + [c[0] for c in cols]),
             ",".join(["bodyparts"] + [c[1] for c in cols]),
             ",".join(["coords"] + [c[2] for c in cols])]
    lines += [",".join([str(t)] + ["" if np.isnan(v) else repr(float(v)) for v in row]) for t, row in enumerate(table)]
    path.write_text("\n".join(lines) + "\n")
    return path


def sleap_analysis(path, tracks, names, nodes=PARTS, scores=True):
    """A SLEAP analysis .h5 as SLEAP exports it: tracks (n_tracks, 2, n_nodes, T) and names."""
    with h5py.File(path, "w") as fh:
        fh["tracks"] = tracks
        fh["node_names"] = np.array([n.encode() for n in nodes])
        fh["track_names"] = np.array([n.encode() for n in names], dtype="S")
        if scores is not None and scores is not False:
            fh["point_scores"] = scores if not isinstance(scores, bool) else np.full(
                (tracks.shape[0], tracks.shape[2], tracks.shape[3]), 0.9)
    return path


def junk_dlc(path):
    """An HDF5 file with DeepLabCut's key but no pandas table under it."""
    with h5py.File(path, "w") as fh:
        fh.create_dataset("df_with_missing/table", data=np.zeros(3))
    return path


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_dlc_h5_is_read_like_its_csv(tmp_path, layout):
    pts = points(0)
    h5 = tmp_path / "m1DLC_resnet50.h5"
    if layout == "fixed":  # pandas' default layout
        dlc_frame({None: pts}).to_hdf(h5, key="df_with_missing")
    else:                  # the call DeepLabCut makes
        dlc_frame({None: pts}).to_hdf(h5, key="df_with_missing", format="table", mode="w")
    write_dlc_csv(tmp_path / "m1.csv", pts)
    for part in PARTS:
        from_h5 = read_pose(h5, part)
        assert from_h5.dtype == np.float64 and from_h5.shape == (12, 2) and np.isfinite(from_h5).all()
        np.testing.assert_allclose(from_h5, read_pose(tmp_path / "m1.csv", part), atol=1e-4)
    # the unreliable point (frame 2) and the missing one (frame 5) are interpolated
    xy = pts["midbody"][:, :2]
    np.testing.assert_allclose(read_pose(h5, "midbody")[2], (xy[1] + xy[3]) / 2)
    np.testing.assert_allclose(read_pose(h5, "midbody")[5], (xy[4] + xy[6]) / 2)


def test_dlc_h5_messages_name_the_file(tmp_path):
    h5 = tmp_path / "m1DLC.h5"
    dlc_frame({None: points(1)}).to_hdf(h5, key="df_with_missing")
    with pytest.raises(InputError, match=r"m1DLC\.h5: body part 'tail' not found; the file has: snout, midbody; set data.crop.bodypart"):
        read_pose(h5, "tail")
    with pytest.raises(InputError, match=r"m1DLC\.h5: no point of 'midbody' reaches likelihood 1\.0 \(the highest likelihood is 0\.9"):
        read_pose(h5, "midbody", min_likelihood=1.0)


def test_multi_animal_files_need_an_individual(tmp_path):
    tracks = {"mouse1": points(2), "mouse2": points(3)}
    csv = multi_csv(tmp_path / "ma.csv", tracks)
    h5 = tmp_path / "ma.h5"
    dlc_frame(tracks).to_hdf(h5, key="df_with_missing", format="table", mode="w")
    for path in (csv, h5):
        with pytest.raises(InputError, match=rf"{path.name}: has 2 individuals with 'snout' \(mouse1, mouse2\); choose one with data.crop.individual"):
            read_pose(path, "snout")
        with pytest.raises(InputError, match=r"no individual 'mouse3' with 'snout'; the file has: mouse1, mouse2"):
            read_pose(path, "snout", individual="mouse3")
        for ind in tracks:
            got = read_pose(path, "snout", individual=ind)
            np.testing.assert_allclose(got[[0, 1, 3]], tracks[ind]["snout"][[0, 1, 3], :2])
        np.testing.assert_allclose(read_pose(path, "snout", individual="mouse2"),
                                   read_pose(csv, "snout", individual="mouse2"))


def test_single_individual_files_take_it_and_refuse_a_setting_for_another(tmp_path):
    one = multi_csv(tmp_path / "one.csv", {"mouse1": points(4)})
    np.testing.assert_allclose(read_pose(one, "midbody"), read_pose(one, "midbody", individual="mouse1"))
    single = tmp_path / "single.csv"
    write_dlc_csv(single, points(4))
    with pytest.raises(InputError, match=r"single\.csv: is a single-animal file \(no individuals\), but data.crop.individual is 'mouse1'; remove"):
        read_pose(single, "midbody", individual="mouse1")


def test_multi_animal_csv_messages_name_the_individual(tmp_path):
    tracks = {"mouse1": points(5), "mouse2": points(6)}
    tracks["mouse2"]["midbody"][:, 2] = 0.2
    path = multi_csv(tmp_path / "ma.csv", tracks)
    with pytest.raises(InputError, match=r"no point of 'midbody' \(individual 'mouse2'\) reaches likelihood 0\.6"):
        read_pose(path, "midbody", individual="mouse2")
    lines = path.read_text().splitlines()
    lines[6] = lines[6].replace(lines[6].split(",")[7], "oops", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"ma\.csv: row 7: 'oops' in column mouse2/snout/x is not a number"):
        read_pose(path, "snout", individual="mouse2")


def test_unique_bodyparts_are_read_from_csv_and_refused_from_h5(tmp_path):
    tracks = {"mouse1": points(12), "mouse2": points(13), "single": {"box": points(14)["snout"]}}
    csv = multi_csv(tmp_path / "ma.csv", tracks)
    np.testing.assert_allclose(read_pose(csv, "box")[[0, 1]], tracks["single"]["box"][[0, 1], :2])
    np.testing.assert_allclose(read_pose(csv, "snout", individual="mouse2")[[0, 1]], tracks["mouse2"]["snout"][[0, 1], :2])
    h5 = tmp_path / "ma.h5"
    dlc_frame(tracks).to_hdf(h5, key="df_with_missing", format="table", mode="w")
    # movement would reshape these 15 columns as 3 individuals x 3 body parts: half the rows, scrambled
    with pytest.raises(InputError, match=r"ma\.h5: the columns are not one scorer's x, y \(and likelihood\) for every body part of every individual .*give the CSV export"):
        read_pose(h5, "snout", individual="mouse1")
    plain = tmp_path / "plain.h5"
    pd.DataFrame({"a": [1.0, 2.0]}).to_hdf(plain, key="df_with_missing")
    with pytest.raises(InputError, match=r"plain\.h5: 'df_with_missing' is not a DeepLabCut table \(column levels \[None\]"):
        read_pose(plain, "a")


def test_files_read_in_threads_equal_files_read_one_by_one(tmp_path):
    paths = []
    for i in range(6):  # extract validates videos in threads; PyTables is not thread-safe
        path = tmp_path / f"m{i}DLC.h5"
        dlc_frame({None: points(20 + i, n=500)}).to_hdf(path, key="df_with_missing", format="table", mode="w")
        paths.append(path)
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda p: read_pose(p, "midbody"), paths * 3))
    for path, xy in zip(paths * 3, together, strict=True):
        np.testing.assert_array_equal(xy, read_pose(path, "midbody"))


def test_sleap_analysis_h5(tmp_path):
    T = 10
    rng = np.random.default_rng(7)
    tracks = rng.uniform(0, 400, (2, 2, len(PARTS), T))   # (tracks, xy, nodes, frames)
    tracks[1, :, 1, 4] = np.nan                           # node missing in frame 4
    scores = np.full((2, len(PARTS), T), 0.9)
    scores[1, 1, 6] = 0.2                                 # unreliable in frame 6
    path = sleap_analysis(tmp_path / "m1.analysis.h5", tracks, ["m1", "m2"], scores=scores)
    with pytest.raises(InputError, match=r"has 2 individuals with 'midbody' \(m1, m2\)"):
        read_pose(path, "midbody")
    got = read_pose(path, "midbody", individual="m2")
    want = tracks[1, :, 1, :].T
    for t in (4, 6):
        want[t] = (want[t - 1] + want[t + 1]) / 2
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(read_pose(path, "snout", individual="m1"), tracks[0, :, 0, :].T, rtol=1e-6)


def test_sleap_analysis_without_tracks_or_scores(tmp_path):
    tracks = np.random.default_rng(8).uniform(0, 400, (1, 2, len(PARTS), 6))
    path = sleap_analysis(tmp_path / "m1.analysis.h5", tracks, [], scores=False)
    np.testing.assert_allclose(read_pose(path, "snout"), tracks[0, :, 0, :].T, rtol=1e-6)
    with pytest.raises(InputError, match="is a single-animal file"):
        read_pose(path, "snout", individual="m1")


def test_sleap_slp_labels(tmp_path):
    sio = pytest.importorskip("sleap_io")
    skeleton = sio.Skeleton(list(PARTS))
    video = sio.Video(filename=str(tmp_path / "m1.mp4"), open_backend=False)
    mice = [sio.Track("m1"), sio.Track("m2")]
    frames = []
    for t in range(5):
        instances = [sio.PredictedInstance.from_numpy(
            np.array([[t, 1.0], [10.0 * t + 100 * j, 20.0]]), point_scores=np.array([0.9, 0.8]),
            score=1.0, skeleton=skeleton, track=mice[j]) for j in range(2)]
        frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=instances))
    path = tmp_path / "m1.predictions.slp"
    sio.save_slp(sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton], tracks=mice), str(path))
    np.testing.assert_allclose(read_pose(path, "midbody", individual="m2"),
                               [[100 + 10.0 * t, 20.0] for t in range(5)])
    with pytest.raises(InputError, match=r"choose one with data.crop.individual"):
        read_pose(path, "midbody")


def test_damaged_and_foreign_hdf5_files(tmp_path):
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match=r"text\.h5: is not an HDF5 file, or it is damaged"):
        read_pose(text, "midbody")
    good = tmp_path / "good.h5"
    dlc_frame({None: points(9, n=2000)}).to_hdf(good, key="df_with_missing", format="table", mode="w")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.h5: "):
        read_pose(cut, "midbody")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as fh:
        fh.create_dataset("embeddings", data=np.zeros(3))
    with pytest.raises(InputError, match=r"is neither a DeepLabCut \.h5 \(no 'df_with_missing' table\) nor a SLEAP analysis \.h5 \(no 'tracks' dataset\); it holds embeddings"):
        read_pose(other, "midbody")
    junk = junk_dlc(tmp_path / "junkDLC.h5")
    with pytest.raises(InputError, match=r"junkDLC\.h5: cannot read this DeepLabCut pose file \(.+\); give a complete"):
        read_pose(junk, "midbody")
    slp = tmp_path / "m1.slp"
    with h5py.File(slp, "w") as fh:
        fh.create_dataset("tracks", data=np.zeros(3))
    with pytest.raises(InputError, match=r"m1\.slp: is not a SLEAP \.slp file"):
        read_pose(slp, "midbody")


def test_no_output_but_the_error_and_the_warning_hook_is_kept(tmp_path, capfd):
    junk = junk_dlc(tmp_path / "junkDLC.h5")
    hook = warnings.showwarning
    with pytest.raises(InputError):
        read_pose(junk, "midbody")
    assert warnings.showwarning is hook
    assert capfd.readouterr().err == ""  # movement logs every error to stderr unless silenced


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_before_pandas_loads_it(tmp_path):
    marker = str(tmp_path / "ran")
    evil = tmp_path / "evil.h5"
    dlc_frame({None: points(10)}).to_hdf(evil, key="df_with_missing", format="table", mode="w")
    with h5py.File(evil, "a") as fh:
        fh["df_with_missing"].attrs["info"] = np.bytes_(pickle.dumps(_Payload(marker), protocol=0))
    with pytest.raises(InputError, match=r"evil\.h5: attribute 'info' of df_with_missing is a pickle that would load posix\.mkdir; pose files may hold only plain data"):
        read_pose(evil, "midbody")
    assert not os.path.exists(marker)
    pd.read_hdf(evil, "df_with_missing")  # what the check prevents: pandas runs the payload
    assert os.path.isdir(marker)


def test_movement_is_imported_only_when_an_hdf5_file_is_read(tmp_path):
    csv = tmp_path / "p.csv"
    write_dlc_csv(csv, points(11))
    h5 = tmp_path / "p.h5"
    dlc_frame({None: points(11)}).to_hdf(h5, key="df_with_missing")
    code = ("import sys; from mouse_pipeline.pose import read_pose; "
            f"read_pose({str(csv)!r}, 'snout'); print(sorted(m for m in ('movement', 'pandas', 'xarray') if m in sys.modules)); "
            f"read_pose({str(h5)!r}, 'snout'); print('movement' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
    assert out.stderr == ""


def test_body_parts_of_every_format_and_all_parts_read_at_once(tmp_path):
    from mouse_pipeline.pose import read_parts, read_track
    from mouse_pipeline.pose_formats import list_bodyparts

    pts = points(7)
    csv_file, h5 = tmp_path / "a.csv", tmp_path / "a.h5"
    write_dlc_csv(csv_file, pts)
    dlc_frame({None: pts}).to_hdf(h5, key="df_with_missing", format="table", mode="w")
    multi = multi_csv(tmp_path / "m.csv", {"mouse1": pts, "mouse2": points(8)})
    sleap = sleap_analysis(tmp_path / "s.analysis.h5", np.random.default_rng(0).uniform(
        0, 100, (1, 2, 2, 12)), ["track_0"])
    for path in (csv_file, h5, multi, sleap):
        assert list_bodyparts(path) == list(PARTS), path
    for path in (csv_file, h5):
        both = read_parts(path, list(PARTS))
        assert list(both) == list(PARTS)
        for part in PARTS:
            np.testing.assert_allclose(both[part].xy, pts[part][:, :2], atol=1e-4)
            np.testing.assert_allclose(both[part].likelihood, pts[part][:, 2], atol=1e-4)
    assert np.array_equal(read_parts(multi, ["snout"], individual="mouse2")["snout"].xy,
                          read_track(multi, "snout", individual="mouse2").xy, equal_nan=True)
    with pytest.raises(InputError, match="choose one with data.crop.individual"):
        read_parts(multi, ["snout"])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"bad\.csv: not a DeepLabCut CSV"):
        list_bodyparts(tmp_path / "bad.csv")
