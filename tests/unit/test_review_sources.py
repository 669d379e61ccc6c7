"""Which predictions and annotations ``review`` shows a video: a run's labelled video's own,
and never another file's that merely has the same name (id)."""

import shutil

import numpy as np
import pytest

from mouse_pipeline.errors import InputError
from mouse_pipeline.review.sources import load_videos
from mouse_pipeline.synthetic import generate_dataset
from tests.integration.review_run import FPS, FRAMES, SIZE, ReviewRun


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ReviewRun(tmp_path_factory.mktemp("sources"))


def test_a_labelled_video_shows_its_out_of_fold_predictions_and_labels(data):
    _, videos = load_videos(data.run)
    by_id = {v.video_id: v for v in videos}
    for vid in data.ids:
        v = by_id[vid]
        assert v.n_frames == FRAMES and np.allclose(v.predictions.probs, data.probs[vid])
        assert (v.annotations.matrix == data.truth[vid]).all()


def test_a_copy_of_a_labelled_video_is_that_video(data, tmp_path):
    vid = data.ids[0]
    copy = tmp_path / f"{vid}.mp4"
    shutil.copyfile(data.data / "videos" / f"{vid}.mp4", copy)
    _, (v,) = load_videos(data.run, [copy])
    assert v.predictions is not None and (v.annotations.matrix == data.truth[vid]).all()


def test_another_video_with_a_labelled_videos_name_is_refused(data, tmp_path):
    """A new recording named like a labelled one (``mouse_000.mp4`` of another cohort) was
    shown the labelled video's out-of-fold predictions and labels, and its corrections
    started from those labels."""
    other = generate_dataset(tmp_path / "new", n_videos=1, n_frames=FRAMES, size=SIZE, fps=FPS, seed=99)
    assert other[0] == data.ids[0]
    path = tmp_path / "new" / "videos" / f"{other[0]}.mp4"
    with pytest.raises(InputError, match="different file") as err:
        load_videos(data.run, [path])
    assert str(path) in str(err.value) and "rename" in str(err.value)


def test_a_model_finished_after_the_report_is_not_a_crash(data, tmp_path):
    """Two complete models, the report scored only one (the other was trained since): the
    scored one is shown (choosing raised KeyError on the unscored one)."""
    import json

    from mouse_pipeline.runs import RunFolder

    run = shutil.copytree(data.run, tmp_path / "run")
    shutil.copytree(run / "resnet50v2" / "lstm", run / "resnet50v2" / "tcn")
    RunFolder(run).metrics_file.write_text(json.dumps({"pooled": [
        {"stage": "raw", "model": "resnet50v2/tcn", "behavior": "grooming", "pr_auc": 0.5}]}))
    _, videos = load_videos(run)
    assert all(v.predictions.source.startswith("resnet50v2/tcn, out-of-fold") for v in videos)


def test_predictions_made_from_another_file_are_refused(data, tmp_path):
    from mouse_pipeline.predict import write_folder_outputs, write_predictions_csv
    from tests.integration.review_run import BEHAVIORS

    probs = np.full((40, 3), 0.2)
    write_predictions_csv(tmp_path / "fresh_000_predictions.csv", probs, (probs > 0.5).astype(np.int8), BEHAVIORS,
                          FPS, "fresh_000")
    model = {"model": "resnet50v2/lstm", "behaviors": {b: {"threshold": 0.5, "max_gap": 0, "min_len": 1}
                                                       for b in BEHAVIORS}}
    made_from = tmp_path / "predicted" / "fresh_000.mp4"
    made_from.parent.mkdir()
    write_folder_outputs(tmp_path, data.run, model, [], [], [
        {"video": "fresh_000", "source": str(made_from), "fps": FPS, "n_frames": 40, "files": []}])
    video = data.extra / "videos" / "fresh_000.mp4"
    shutil.copyfile(video, made_from)  # predicted from a copy of this video: shown
    _, (v,) = load_videos(data.run, [video], predictions=tmp_path)
    assert v.predictions is not None and v.n_frames == 40
    shutil.copyfile(data.data / "videos" / f"{data.ids[1]}.mp4", made_from)  # from another recording
    with pytest.raises(InputError, match="different file"):
        load_videos(data.run, [video], predictions=tmp_path)
