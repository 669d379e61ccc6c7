"""predict --resample: a video's frames taken at the training rate and the labels mapped back
(:class:`mouse_pipeline.predictor.Resampling`), against frame times computed exactly."""

from fractions import Fraction

import numpy as np
import pytest

from mouse_pipeline.predictor import Resampling
from mouse_pipeline.sequences.inference import predict_video

RATES = [(25, 30), (30, 25), (24, 30), (Fraction(2997, 100), 25), (50, 30), (30, 50), (10, 5), (5, 10),
         (60, 30), (90, 30), (30, 90), (Fraction(30000, 1001), 24)]


def nearest_in_time(n_from, rate_from, n_to, rate_to):
    """For each frame at ``rate_to``, the frame at ``rate_from`` whose centre is nearest its
    centre (exact fractions; ties to the earlier frame)."""
    centres = [(Fraction(j) + Fraction(1, 2)) / Fraction(rate_from) for j in range(n_from)]
    out = []
    for k in range(n_to):
        c = (Fraction(k) + Fraction(1, 2)) / Fraction(rate_to)
        out.append(min(range(n_from), key=lambda j: (abs(centres[j] - c), j)))
    return np.array(out)


@pytest.mark.parametrize(("fps", "target"), RATES)
def test_each_frame_takes_the_frame_of_the_other_rate_nearest_in_time(fps, target):
    n = 47
    r = Resampling(n, float(fps), float(target))
    m = len(r.index)
    assert m == round(n * target / fps)
    assert r.index.tolist() == nearest_in_time(n, fps, m, target).tolist()
    assert r.back.tolist() == nearest_in_time(m, target, n, fps).tolist()


@pytest.mark.parametrize(("fps", "target"), [(25, 30), (24, 30), (10, 25), (5, 10)])
def test_upsampled_video_frames_get_the_prediction_of_their_own_features(fps, target):
    """At a higher training rate every video frame is among the frames predicted, so each
    must get back the probability made from its own features (not its predecessor's)."""

    def model(xb, training=False):  # per frame: the first feature, whatever the window
        return np.asarray(xb)[..., :1]

    rng = np.random.default_rng(3)
    n = 61
    features = rng.random((n, 4)).astype(np.float32)
    r = Resampling(n, float(fps), float(target))
    probs = r.to_video(predict_video(model, r.features(features), length=8, stride=2))
    np.testing.assert_allclose(probs[:, 0], features[:, 0], rtol=1e-6)


def test_a_run_with_a_motion_stream_refuses_to_resample_before_anything_is_written(tmp_path):
    """Motion images show the movement between consecutive frames at the video's own rate:
    taken at another rate, their embeddings would show another speed than in training."""
    from pathlib import Path

    from mouse_pipeline.dataset import VideoFile
    from mouse_pipeline.errors import InputError
    from mouse_pipeline.predict import NewVideo, refuse_resampled_motion

    same = NewVideo(VideoFile(Path("/v/a.mp4"), "a"), 30.0, None)
    fast = NewVideo(VideoFile(Path("/v/b.mp4"), "b"), 60.0, 30.0)
    refuse_resampled_motion([same, fast], ["resnet50v2"], 30.0)  # no motion: resampled
    refuse_resampled_motion([same], ["resnet50v2", "resnet50v2+motion"], 30.0)  # no video resampled
    with pytest.raises(InputError, match=r"/v/b.mp4: 60 frames/s, and the run's input resnet50v2\+motion "
                                         r"is motion .* re-encode the video at 30 frames/s"):
        refuse_resampled_motion([same, fast], ["resnet50v2", "resnet50v2+motion"], 30.0)
