"""The run-folder and label writers: exact bytes, and atomic (a failed write changes nothing)."""

import json
import os

import numpy as np
import pytest
import yaml

from mouse_pipeline.annotations import Labels, write_labels_csv
from mouse_pipeline.config import Config, dump_config
from mouse_pipeline.folds import make_folds, save_folds
from mouse_pipeline.scoring import write_rows_csv

FOLDS = make_folds(["a", "b", "c"], "leave_one_video_out")
LABELS = Labels(("grooming", "wall_rearing"), np.array([[1, 0], [-1, 1], [0, 0]]))

# name -> (writer of a path, the exact bytes it must write)
WRITERS = {
    "save_folds": (lambda path: save_folds(path, FOLDS),
                   (json.dumps({"version": 1, "folds": [f.to_dict() for f in FOLDS]}, indent=2)
                    + "\n").encode()),
    "dump_config": (lambda path: dump_config(Config(), path),
                    yaml.safe_dump(Config().to_dict(), sort_keys=False).encode()),
    "write_rows_csv": (lambda path: write_rows_csv(path, [{"a": 1, "b": "x"}, {"a": 2.5}]),
                       b"a,b\r\n1,x\r\n2.5,\r\n"),
    "write_labels_csv": (lambda path: write_labels_csv(path, LABELS),
                         b"grooming,wall_rearing\n1,0\n-1,1\n0,0\n"),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_bytes(tmp_path, name):
    write, expected = WRITERS[name]
    write(tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("name", list(WRITERS))
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, name):
    write, _ = WRITERS[name]
    target = tmp_path / "out.txt"
    target.write_bytes(b"old\n")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write(target)
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
