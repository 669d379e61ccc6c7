"""Property tests of the two on-disk stores: whatever the bytes of a cache file or of a
run folder's files, their readers raise only the project's own one-line errors."""

import json
import os

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mouse_pipeline.dataset import open_features
from mouse_pipeline.errors import PipelineError
from mouse_pipeline.features.store import DATASET, read_attrs
from mouse_pipeline.folds import Fold
from mouse_pipeline.runs import (
    FOLD_FILE,
    HISTORY_FILE,
    POSTPROCESS_FILE,
    PROBS_FILE,
    RUN_FILE,
    TIMINGS_FILE,
    RunFolder,
)
from tests.unit.test_runs import BEHAVIORS, FOLD, config, write_fold

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 100), st.floats(allow_nan=True),
              st.sampled_from(["groom", "rear", "d", "threshold", "window", "inference_stride", ""])),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["groom", "rear", "threshold", "max_gap", "min_len", "window",
                                         "inference_stride", "test", "val", "train", "index", "schema",
                                         "videos", "pooled"]), children, max_size=5)),
    max_leaves=12).map(json.dumps)
content = st.one_of(st.binary(max_size=400), json_like.map(str.encode))


def one_line(err: PipelineError) -> None:
    assert "\n" not in str(err) and str(err)


@FUZZ
@given(data=st.binary(max_size=2000), cut=st.integers(0, 4000), flip=st.integers(0, 4000))
def test_cache_reader_raises_only_project_errors(tmp_path, data, cut, flip):
    """Random bytes, or a real cache file truncated and with one byte changed."""
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATASET, data=np.ones((30, 4), np.float32))
        f.attrs.update({"backbone": "resnet50v2", "n_frames": 30, "fps": 10.0})
    real = bytearray(path.read_bytes())
    if flip < len(real):
        real[flip] ^= 0xFF
    for raw in (data, bytes(real[:cut or len(real)])):
        path.write_bytes(raw)
        try:
            read_attrs(path)
            features = open_features(path, "resnet50v2")
            features.check_finite()
            rows = features[0:30]
        except PipelineError as err:
            one_line(err)
            continue
        assert rows.shape == (30, 4) and np.isfinite(rows).all()


@FUZZ
@given(name=st.sampled_from([POSTPROCESS_FILE, FOLD_FILE, PROBS_FILE, HISTORY_FILE, TIMINGS_FILE]),
       data=content)
def test_run_folder_fold_reader_raises_only_project_errors(tmp_path, name, data):
    run = RunFolder(tmp_path / "run")
    run.write_config(config(run.path))
    folder = write_fold(run)
    (folder / name).write_bytes(data)
    try:
        got = run.read_fold("resnet50v2/lstm", FOLD, BEHAVIORS)
    except PipelineError as err:
        one_line(err)
        return
    assert set(got.post) == set(BEHAVIORS) and set(got.test) == set(FOLD.test)


@FUZZ
@given(name=st.sampled_from([POSTPROCESS_FILE, FOLD_FILE, RUN_FILE, "config.yaml"]), data=content)
def test_run_folder_final_reader_raises_only_project_errors(tmp_path, name, data):
    run = RunFolder(tmp_path / "run")
    run.write_config(config(run.path))
    folder = write_fold(run, -1, Fold(index=-1, train=("a", "b"), val=("c",), test=()))
    (run.path / name if name in (RUN_FILE, "config.yaml") else folder / name).write_bytes(data)
    try:
        cfg = run.read_config()
        final = run.read_final(cfg, "resnet50v2", "lstm")
        run.recorded_videos()
    except PipelineError as err:
        one_line(err)
        return
    assert len(final.thresholds) == len(cfg.data.behaviors) and final.window >= 1


predictions_like = st.lists(
    st.lists(st.one_of(st.sampled_from(["frame", "time_s", "grooming", "p_grooming", "0", "1", "0.5", "-1",
                                        "", "nan", "inf", "0.1", "1e9", "x", "0.0", "0.2"]),
                       st.text(max_size=5)), min_size=1, max_size=5),
    max_size=10).map(lambda rows: "\n".join(",".join(r) for r in rows))


def _table(header: list[str], cells: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), min_size=0, max_size=30).map(
        lambda rows: "\n".join([",".join(header), *(",".join(r) for r in rows)]).encode())


labels_file = st.one_of(st.binary(max_size=200), predictions_like.map(str.encode),
                        _table(["grooming"], st.sampled_from(["0", "1", "-1", "", "2"])),
                        _table(["frame", "grooming"], st.sampled_from(["0", "1", "3"])))
predictions_file = st.one_of(st.binary(max_size=200), predictions_like.map(str.encode),
                             _table(["grooming"], st.sampled_from(["0", "1", "0.3", "0.7", "nan", "1.5", ""])),
                             _table(["frame", "time_s", "grooming"], st.sampled_from(["0", "0.1", "0.2", "1", "0.5"])))


@FUZZ
@given(labels=labels_file, predictions=predictions_file,
       fps=st.sampled_from([None, 10.0]), fmt=st.sampled_from(["thesis", "deepethogram"]))
def test_score_raises_only_project_errors(tmp_path, labels, predictions, fps, fmt):
    from mouse_pipeline.scoring import score_files

    (tmp_path / "l.csv").write_bytes(labels)
    (tmp_path / "p.csv").write_bytes(predictions)
    (tmp_path / "m.csv").unlink(missing_ok=True)  # tmp_path is shared by the examples
    try:
        rows = score_files(tmp_path / "l.csv", tmp_path / "p.csv", label_format=fmt, fps=fps,
                           csv_out=tmp_path / "m.csv")
    except PipelineError as err:
        one_line(err)
        assert not (tmp_path / "m.csv").exists()
        return
    assert rows and all(0 <= r["pr_auc"] <= 1 for r in rows if isinstance(r.get("pr_auc"), float)
                        and np.isfinite(r["pr_auc"]))
