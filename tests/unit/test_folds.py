"""Per-video folds: schemes, validation from the training side, leakage, save/load."""

import json
import logging

import numpy as np
import pytest

from mouse_pipeline.annotations import Labels
from mouse_pipeline.errors import ConfigError, InputError, RunError
from mouse_pipeline.folds import (
    Fold,
    check_no_leakage,
    check_positives,
    load_folds,
    make_folds,
    save_folds,
)

VIDEOS = [f"v{i:02d}" for i in range(17)]


def assert_partition(folds, videos):
    for fold in folds:
        assert set(fold.train) | set(fold.val) | set(fold.test) == set(videos)
        assert not (set(fold.train) & set(fold.val))
        assert not (set(fold.test) & (set(fold.train) | set(fold.val)))
    tests = [v for fold in folds for v in fold.test]
    assert sorted(tests) == sorted(videos)  # every video tested exactly once


def test_leave_one_video_out():
    folds = make_folds(VIDEOS, "leave_one_video_out", n_val=2, seed=3)
    assert len(folds) == 17
    assert [f.test for f in folds] == [(v,) for v in VIDEOS]
    assert all(len(f.val) == 2 and len(f.train) == 14 for f in folds)
    assert_partition(folds, VIDEOS)


def test_group_kfold_balanced_and_deterministic():
    folds = make_folds(reversed(VIDEOS), "group_kfold", k=5, n_val=1, seed=7)
    assert sorted(len(f.test) for f in folds) == [3, 3, 3, 4, 4]
    assert_partition(folds, VIDEOS)
    assert folds == make_folds(VIDEOS, "group_kfold", k=5, n_val=1, seed=7)
    assert folds != make_folds(VIDEOS, "group_kfold", k=5, n_val=1, seed=8)


def test_fixed_scheme():
    (fold,) = make_folds(
        VIDEOS[:5], "fixed", n_val=1, fixed_train=VIDEOS[:3], fixed_test=[VIDEOS[4]]
    )
    assert fold.test == (VIDEOS[4],)
    assert len(fold.val) == 1 and set(fold.train) | set(fold.val) == set(VIDEOS[:3])
    (all_others,) = make_folds(VIDEOS[:5], "fixed", n_val=0, fixed_test=[VIDEOS[0]])
    assert all_others.train == tuple(VIDEOS[1:5]) and all_others.val == ()


def test_fixed_unknown_names():
    with pytest.raises(ConfigError, match=r"unknown video\(s\) \['ghost'\]"):
        make_folds(VIDEOS[:3], "fixed", fixed_test=["ghost"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"video_ids": VIDEOS[:3], "scheme": "group_kfold", "k": 5},
            r"train\.folds\.k=5 needs at least 5 videos, got 3",
        ),
        (
            {"video_ids": ["a", "b", "a"], "scheme": "leave_one_video_out"},
            r"duplicate video ids \['a'\]",
        ),
        (
            {"video_ids": VIDEOS[:3], "scheme": "leave_one_video_out", "n_val": 2},
            r"fold 0 has 2 training video\(s\).*n_val=2",
        ),
        ({"video_ids": VIDEOS[:3], "scheme": "random"}, "unknown train.folds.scheme"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as err:
        make_folds(**kwargs)
    assert "\n" not in str(err.value)


def test_check_no_leakage():
    check_no_leakage([Fold(0, ("a",), ("b",), ("c",))])
    with pytest.raises(RunError, match="fold 3: video 'c' is in both test and train"):
        check_no_leakage([Fold(3, ("a", "c"), ("b",), ("c",))])
    with pytest.raises(RunError, match="fold 0: video 'b' is in both val and train"):
        check_no_leakage([Fold(0, ("a", "b"), ("b",), ("c",))])


def labels(grooming, rearing):
    m = np.zeros((10, 2), dtype=np.int8)
    m[:grooming, 0] = 1
    m[:rearing, 1] = 1
    return Labels(("grooming", "rearing"), m)


def test_check_positives(caplog):
    by_video = {"a": labels(3, 0), "b": labels(2, 0), "c": labels(0, 4)}
    fold_ok = Fold(0, ("a", "c"), ("b",), ())
    with caplog.at_level(logging.WARNING):
        check_positives([fold_ok], by_video)
    assert "Fold 0: 'rearing' has no positive frame in validation videos ['b']" in caplog.text
    bad = Fold(1, ("a", "b"), ("c",), ())
    with pytest.raises(
        InputError,
        match=r"fold 1: 'rearing' has no positive frame in "
        r"training videos \['a', 'b'\]",
    ):
        check_positives([fold_ok, bad], by_video)
    with pytest.raises(InputError, match=r"no labels for video\(s\) \['z'\]"):
        check_positives([Fold(0, ("z",), (), ())], by_video)


def test_save_load_round_trip(tmp_path):
    folds = make_folds(VIDEOS[:6], "group_kfold", k=3, n_val=1)
    save_folds(tmp_path / "folds.json", folds)
    assert load_folds(tmp_path / "folds.json") == folds
    payload = json.loads((tmp_path / "folds.json").read_text())
    assert payload["version"] == 1 and payload["folds"][0] == folds[0].to_dict()
    assert Fold.from_dict(folds[1].to_dict()) == folds[1]


def test_load_errors(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_folds(tmp_path / "folds.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RunError, match="cannot read folds"):
        load_folds(tmp_path / "bad.json")
    (tmp_path / "leak.json").write_text(
        json.dumps({"folds": [{"index": 0, "train": ["a"], "val": [], "test": ["a"]}]})
    )
    with pytest.raises(RunError, match="video 'a' is in both test and train"):
        load_folds(tmp_path / "leak.json")
    (tmp_path / "short.json").write_text(json.dumps({"folds": [{"index": 0, "train": []}]}))
    with pytest.raises(RunError, match=r"lacks \['val', 'test'\]"):
        load_folds(tmp_path / "short.json")
