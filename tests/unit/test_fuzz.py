"""Property tests: whatever the bytes, only the project's own error escapes; valid input round-trips."""

import os

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mouse_pipeline.annotations import Labels, read_labels, write_labels_csv
from mouse_pipeline.config import load_config
from mouse_pipeline.errors import PipelineError
from mouse_pipeline.pose import read_dlc, read_pose, write_dlc_csv

# FUZZ_EXAMPLES=2000 make test runs a longer search (1,500 per property found nothing more).
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
BEHAVIORS = ("grooming", "mid_rearing")

# Text that looks like CSV or YAML often enough to reach deep into the parsers.
csv_like = st.lists(
    st.lists(st.one_of(st.sampled_from(["grooming", "mid_rearing", "background", "0", "1", "-1", "2",
                                        "0.5", "", "nan", "x", "START", "STOP", "Time", "Behavior",
                                        "Status", "scorer", "bodyparts", "coords", "midbody",
                                        "likelihood", "1e9", "-0", "individuals", "m1"]),
                       st.text(max_size=6)), max_size=8),
    max_size=12).map(lambda rows: "\n".join(",".join(r) for r in rows))
raw = st.one_of(st.binary(max_size=300), csv_like.map(lambda s: s.encode("utf-8", "surrogatepass")))


@FUZZ
@given(data=raw, fmt=st.sampled_from(["thesis", "deepethogram", "boris_events", "boris_aggregated"]))
def test_label_readers_raise_only_project_errors(tmp_path, data, fmt):
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    try:
        labels = read_labels(path, fmt, BEHAVIORS, fps=10.0, n_frames=20)
    except PipelineError:
        return
    assert labels.matrix.shape[1] == 2 and set(np.unique(labels.matrix)) <= {-1, 0, 1}


@FUZZ
@given(matrix=arrays(np.int8, st.tuples(st.integers(1, 40), st.just(2)), elements=st.sampled_from([-1, 0, 1])))
def test_labels_round_trip(tmp_path, matrix):
    path = tmp_path / "labels.csv"
    write_labels_csv(path, Labels(BEHAVIORS, matrix))
    again = read_labels(path, "thesis", BEHAVIORS)
    np.testing.assert_array_equal(again.matrix, matrix)


@FUZZ
@given(data=raw)
def test_pose_reader_raises_only_project_errors(tmp_path, data):
    path = tmp_path / "pose.csv"
    path.write_bytes(data)
    _read_or_project_error(path)


def _read_or_project_error(path):
    """Read a pose file: a PipelineError, or a well-formed track."""
    try:
        xy = read_pose(path, "midbody", 0.6)
    except PipelineError:
        return
    assert xy.ndim == 2 and xy.shape[1] == 2 and np.isfinite(xy).all()


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.binary(min_size=8, max_size=300).map(lambda b: b"\x89HDF\r\n\x1a\n" + b)),
       suffix=st.sampled_from([".h5", ".slp"]))
def test_hdf5_pose_reader_raises_only_project_errors(tmp_path, data, suffix):
    path = tmp_path / f"pose{suffix}"
    path.write_bytes(data)
    _read_or_project_error(path)


@FUZZ
@given(points=arrays(np.float64, st.tuples(st.integers(1, 30), st.just(3)),
                     elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))),
       table=st.booleans())
def test_dlc_h5_round_trip(tmp_path, points, table):
    points[:, 2] = np.where(np.isnan(points[:, 2]), np.nan, 0.9)  # trusted where it has a value
    columns = pd.MultiIndex.from_product([["S"], ["midbody"], ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    path = tmp_path / "pose.h5"
    pd.DataFrame(points, columns=columns).to_hdf(path, key="df_with_missing", mode="w",
                                                 format="table" if table else "fixed")
    valid = np.isfinite(points).all(axis=1)
    try:
        xy = read_pose(path, "midbody", 0.6)
    except PipelineError as exc:
        assert not valid.any() and "no point of 'midbody'" in str(exc)
        return
    np.testing.assert_array_equal(xy[valid], points[valid, :2])
    assert np.isfinite(xy).all()


@FUZZ
@given(points=arrays(np.float64, st.tuples(st.integers(2, 30), st.just(3)),
                     elements=st.floats(0, 500, allow_nan=False)))
def test_pose_round_trip(tmp_path, points):
    points[:, 2] = 1.0  # every point trusted
    path = tmp_path / "pose.csv"
    write_dlc_csv(path, {"midbody": points})
    np.testing.assert_allclose(read_dlc(path, "midbody", 0.6), points[:, :2], atol=1e-3)


yaml_like = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.lists(st.sampled_from(["data:", "extract:", "train:", "  batch_size: 3", "  batch_size: -1",
                              "  backbones: [resnet50v2]", "  window:", "    length: 8", "  - 1",
                              "[", "{", "  videos: x", "foo: 1", "  crop:", "    mode: box",
                              "    box: [1, 2, 3, 4]", ": :", "  lstm: {units: 0}", "\t"]),
             max_size=10).map("\n".join))


@FUZZ
@given(text=yaml_like)
def test_config_loader_raises_only_config_errors(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        cfg = load_config(path)
    except PipelineError:
        return
    assert cfg.extract.batch_size >= 1
