"""Deterministic synthetic top-view mouse videos with per-frame labels and DeepLabCut pose.

Used by the tests and the demo, so that the whole pipeline can be run, and shown to learn,
without real data.

Scene
-----
A square arena fills the frame: a thin dark border, a dark wall band with its own texture
and a bright floor with blotches and bedding specks; every frame gets a little grey
noise and a slight flicker. The animal is a dark body (drawn along a bendable spine, so
it can undulate and curl), a lighter head, ears, and a thin tail about as long as the
body; nose to tail base it is about ``size / 6`` long. Each video varies fur shade,
floor and wall brightness, texture, walking speed and animal size (+-10 %).

Behaviour
---------
A semi-Markov process picks what comes next (explore, rest, groom, mid rear, wall rear)
with weights that lean towards behaviours below their target share (grooming and wall
rearing about 12-14 % of frames, mid rearing about 10-12 %); until each labelled
behaviour has appeared once, a bout of one not yet shown is likely, so short videos
show all three. Bout lengths are drawn in seconds (log-normal) and scaled by ``fps``:
grooming long (2.5-25 s, median 7 s), wall rearing short and frequent (0.8-4.5 s,
median 2 s), mid rearing rarer (1.5-7 s). Movement is continuous: the animal walks to a wall and turns to face it
before rearing there, and walks to the open centre before rearing in the middle.

- walk: moves along its heading, body undulating, tail swaying;
- rest: still, a little hunched, body possibly curled;
- grooming, as a mouse grooms: it sits on its haunches (shorter and wider than at rest),
  forepaws raised to its face, and grooms in fast strokes at 2.5-4 Hz (at most
  0.4 x fps, so frames do not alias) while the body rocks. It starts with face washing,
  both pink forepaws at the snout stroking from the nose back over the head and out to
  the sides, the head nodding with them; then alternates with body licking: the body
  bends hard to one side, the head turns back to the flank and licks in quick nods,
  the paws holding the fur beside the mouth (phases of 1.5-4 s and 1-3 s, blending
  in ~0.2 s). (Earlier versions drew grooming as rest with a slightly moving head,
  which untrained CNN features could not tell from rest: issue #3.) The grooming
  details draw from a random stream of their own, so which behaviour happens when, and
  so the label files, are what they were before. With ``grooming_cue="motion"`` grooming
  has no static cue: the animal keeps a resting posture (drawn from the same ranges as
  rest, no paws drawn: they are hidden under the head) and only its head nods and turns
  and its body rocks at the grooming rhythm, so one frame of grooming looks like one of
  rest and only movement (or the pose file's forepaws) tells them apart. The plan, and so
  the labels, are the same in both modes;
- mid rearing: in the open, body foreshortened (shorter, rounder, lighter), head larger
  and lighter (closer to the camera), pink ears and forepaws visible;
- wall rearing: the same posture at a wall, facing it, head and forepaws over the
  wall band.

The first and last 0.2 s of a rearing bout are the rise and the drop. Labels follow the
rendered behaviour of every frame exactly: ``grooming``, ``mid_rearing``,
``wall_rearing`` (never more than one at a time; walk and rest are all zero).

Files
-----
``videos/<id>.mp4`` (``mp4v``, colour), ``labels/<id>.csv`` (header
``grooming,mid_rearing,wall_rearing``, one 0/1 row per frame) and ``pose/<id>.csv``
(DeepLabCut analysis layout; body parts ``snout``, ``midbody``, ``tailbase``, then
``left_ear``, ``right_ear``, ``left_forepaw``, ``right_forepaw``), where the drawing
puts them, with tracking noise:

- gaussian jitter (0.8 % of the body length for the first three, 1 % for the ears, 1.5 %
  for visible and 3 % for hidden forepaws);
- likelihoods near 0.95 for visible points, lower for the snout while grooming and about
  0.6 for forepaws hidden under the body (walking, resting, grooming without a static cue);
- about 2 % of points per part are wrong detections (a jump of 1-3 body lengths) with
  likelihood below 0.5; the four later parts also have short gaps (1-8 frames) with no
  point at all (empty cells) and short runs where the two forepaws are swapped with a
  high likelihood, as trackers do.

The first three parts draw from the pose stream of earlier versions and the later four
from a stream of their own, so the first three columns are what they were.
Video ``i`` depends only on ``(seed, i)`` (and ``grooming_cue``); label and pose files
are byte-identical for a seed, and the decoded frames identical. Every file is written under a temporary
name and renamed into place (:mod:`mouse_pipeline.fileio`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .annotations import Labels, write_labels_csv
from .errors import PipelineError
from .fileio import atomic_path
from .pose import write_dlc_csv
from .synthetic_draw import BODY_PARTS, background, draw_animal
from .synthetic_pose import pose_tracks

log = logging.getLogger(__name__)

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")
GROOMING_CUES = ("static", "motion")
_LABEL = {"groom": 0, "mid_rear": 1, "wall_rear": 2}
# bout length in seconds: log-normal (median, sigma), clipped to [lo, hi]
_BOUT_S = {"rest": (2.5, 0.6, 0.8, 10.0), "groom": (7.0, 0.55, 2.5, 25.0),
           "mid_rear": (3.5, 0.35, 1.5, 7.0), "wall_rear": (2.0, 0.4, 0.8, 4.5)}
_TARGET = {"groom": 0.12, "mid_rear": 0.10, "wall_rear": 0.12}
_WEIGHT = {"explore": 1.0, "rest": 0.5, "groom": 0.06, "mid_rear": 0.15, "wall_rear": 0.6}
_GAIN = 8.0  # how strongly choices lean towards behaviours below their target share


@dataclass(frozen=True)
class _Scene:
    size: int
    lo: float  # inner edge of the wall band (px from the frame's top-left)
    hi: float
    length: float  # animal, nose to tail base (px)
    speed: float  # walking speed (px per second)
    fur: np.ndarray  # BGR


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class _Planner:
    """Semi-Markov behaviour sequence and the animal's per-frame posture."""

    def __init__(self, rng: np.random.Generator, scene: _Scene, fps: float, n: int,
                 detail: np.random.Generator, grooming_cue: str = "static",
                 targets: dict[str, float] | None = None):
        self.rng, self.s, self.fps, self.n = rng, scene, fps, n
        self.grooming_cue = grooming_cue
        self.target = {**_TARGET, **(targets or {})}
        # the grooming sequence (face washing / body licking) draws from its own stream, so
        # which behaviour happens when depends on ``rng`` alone
        self.detail = detail
        self.states: list[str] = []
        self.rows: list[tuple[float, ...]] = []
        self.counts = dict.fromkeys(self.target, 0)
        L = scene.length
        self.x, self.y = rng.uniform(scene.lo + L, scene.hi - L, 2)
        self.theta = rng.uniform(-math.pi, math.pi)
        self.hunch, self.curl, self.phase = 1.0, 0.0, 0.0
        self.alpha = 1 - math.exp(-1 / (0.2 * fps))  # posture follows its target in ~0.2 s
        self.turn = math.radians(300) / fps

    @property
    def done(self) -> bool:
        return len(self.states) >= self.n

    def emit(self, state: str, hunch: float, curl: float, head_dx: float = 0.0,
             head_yaw: float = 0.0, rear: float = 0.0, dx: float = 0.0, dy: float = 0.0,
             wiggle: float = 0.0, paws: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        """Append one frame; hunch and curl move smoothly towards the values given, while
        ``wiggle`` (extra curl), head, offsets and ``paws`` apply at once. ``paws`` is
        (shown 0-1, forward of the head centre, half spread), lengths in body lengths: the
        forepaws held at the face while grooming."""
        self.hunch += self.alpha * (hunch - self.hunch)
        self.curl += self.alpha * (curl - self.curl)
        self.states.append(state)
        self.rows.append((self.x + dx, self.y + dy, self.theta, self.hunch, self.curl + wiggle,
                          head_dx, head_yaw, rear, self.phase, *paws))
        if state in self.counts:
            self.counts[state] += 1

    def bout(self, kind: str) -> int:
        med, sigma, lo, hi = _BOUT_S[kind]
        sec = float(np.clip(med * math.exp(sigma * self.rng.standard_normal()), lo, hi))
        return max(1, round(sec * self.fps))

    def run(self) -> tuple[list[str], np.ndarray]:
        last = ""
        t0 = 20 * self.fps  # pseudo-frames at target share: damps early corrections
        while not self.done:
            t = len(self.states)
            unseen = [k for k in self.target if self.counts[k] == 0]
            if unseen and self.rng.random() < 0.6:  # short videos still show every behaviour
                last = unseen[self.rng.integers(len(unseen))]
                getattr(self, f"do_{last}")()
                continue
            w = {}
            for k, base in _WEIGHT.items():
                if k in self.target:
                    goal = self.target[k]
                    share = (self.counts[k] + goal * t0) / (t + t0)
                    base *= math.exp(float(np.clip(_GAIN * (goal - share) / goal, -4, 3)))
                w[k] = 0.0 if k == last and k != "wall_rear" else base
            p = np.array(list(w.values()))
            last = list(w)[self.rng.choice(len(w), p=p / p.sum())]
            getattr(self, f"do_{last}")()
        return self.states[:self.n], np.array(self.rows[:self.n])

    def walk_to(self, tx: float, ty: float, face: float | None = None) -> None:
        step = self.s.speed / self.fps
        stride = 2 * math.pi * min(3.0, 0.4 * self.fps) / self.fps
        for _ in range(int(30 * self.fps)):
            dist = math.hypot(tx - self.x, ty - self.y)
            if self.done or dist < 0.5 * step:
                break
            diff = _wrap(math.atan2(ty - self.y, tx - self.x) - self.theta)
            self.theta += float(np.clip(diff, -self.turn, self.turn))
            v = min(dist, step * max(0.2, math.cos(diff)))
            self.x += v * math.cos(self.theta)
            self.y += v * math.sin(self.theta)
            self.phase += stride * v / step
            self.emit("walk", 1.0, 0.35 * math.sin(self.phase) + 0.6 * float(np.clip(diff, -1, 1)))
        while face is not None and not self.done and abs(_wrap(face - self.theta)) > 1e-3:
            diff = _wrap(face - self.theta)
            self.theta += float(np.clip(diff, -self.turn, self.turn))
            self.emit("walk", 1.0, 0.6 * float(np.clip(diff, -1, 1)))

    def do_explore(self) -> None:
        m = 0.5 * self.s.length
        self.walk_to(*self.rng.uniform(self.s.lo + m, self.s.hi - m, 2))

    def _still_posture(self) -> tuple[float, float, float, float]:
        """Hunch, curl, head offset and yaw shared by rest and grooming (frames look alike)."""
        r = self.rng
        return (r.uniform(0.84, 0.9), r.choice([-1, 1]) * r.uniform(0.0, 0.5),
                r.uniform(-0.12, 0.12), r.uniform(-0.5, 0.5))

    def do_rest(self) -> None:
        hunch, curl, hdx, hyaw = self._still_posture()
        for _ in range(self.bout("rest")):
            self.emit("rest", hunch, curl, hdx, hyaw)

    def do_groom(self) -> None:
        """Groom in a compact sitting posture, forepaws up, in strokes at 2.5-4 Hz.

        Face washing (first, then alternating with body licking): both forepaws at the
        snout, stroking from the nose back over the head and out to the sides, the head
        nodding with them. Body licking: the body bends hard to one side, the head turns
        back to the flank and licks in quick nods, the paws holding the fur beside the
        mouth. Phases last 1.5-4 s (face) and 1-3 s (body) and blend in ~0.2 s."""
        still = self._still_posture()  # the plan's draws are those of earlier versions
        hyaw = still[3]
        hz = min(self.rng.uniform(2.5, 4.0), 0.4 * self.fps)
        w, ph = 2 * math.pi * hz / self.fps, self.rng.uniform(0, 2 * math.pi)
        n = self.bout("groom")
        if self.grooming_cue == "motion":
            self._groom_unseen(still, w, ph, n)
            return
        d = self.detail  # everything below: the plan's stream is not touched
        hunch = d.uniform(0.68, 0.76)  # sitting on its haunches: shorter and wider than at rest
        side = 0.05 * self.s.length * np.array([-math.sin(self.theta), math.cos(self.theta)])
        face, left = True, round(d.uniform(1.5, 4.0) * self.fps)
        lick_side, blend = float(d.choice([-1, 1])), 0.0  # blend: 0 face washing, 1 licking
        for i in range(n):
            if left <= 0:
                face = not face
                left = round((d.uniform(1.5, 4.0) if face else d.uniform(1.0, 3.0)) * self.fps)
                if not face:
                    lick_side = float(d.choice([-1, 1]))
            left -= 1
            blend += self.alpha * ((0.0 if face else 1.0) - blend)
            a = ph + w * i
            amp = 0.75 + 0.25 * math.sin(a / 6.3)  # strokes wax and wane
            stroke, rock, bend = amp * math.sin(a), amp * math.sin(a + 2.0), blend * lick_side
            self.emit("groom", hunch, 1.6 * bend,
                      head_dx=(1 - blend) * (-0.04 + 0.09 * stroke) + blend * 0.06 * stroke,
                      head_yaw=0.2 * hyaw + 1.1 * bend + 0.3 * amp * math.sin(a + 1.1 - 0.5 * blend),
                      dx=rock * side[0], dy=rock * side[1],
                      wiggle=(1 - blend) * 0.15 * stroke + blend * 0.25 * amp * math.sin(a + 0.7),
                      paws=(1.0, (1 - blend) * (0.08 + 0.11 * math.cos(a))
                            + blend * (0.1 + 0.04 * math.cos(a)),
                            (1 - blend) * (0.06 + 0.04 * math.sin(a)) + blend * 0.05))

    def _groom_unseen(self, still: tuple[float, float, float, float], w: float, ph: float,
                      n: int) -> None:
        """Grooming without a static cue: rest's posture, only the rhythm moves.

        Hunch and curl are rest's; head offset and yaw stay within rest's ranges
        (+-0.12 body lengths, +-0.5 rad) while they nod and turn with the strokes; the body
        rocks a little; the forepaws are at the face but hidden under the head (not drawn).
        """
        hunch, curl, hdx, hyaw = still
        hdx, hyaw = float(np.clip(hdx, -0.07, 0.07)), float(np.clip(hyaw, -0.3, 0.3))
        side = 0.04 * self.s.length * np.array([-math.sin(self.theta), math.cos(self.theta)])
        for i in range(n):
            a = ph + w * i
            amp = 0.75 + 0.25 * math.sin(a / 6.3)
            stroke, rock = amp * math.sin(a), amp * math.sin(a + 2.0)
            self.emit("groom", hunch, curl, head_dx=hdx + 0.05 * stroke,
                      head_yaw=hyaw + 0.2 * amp * math.sin(a + 1.1),
                      dx=rock * side[0], dy=rock * side[1], wiggle=0.1 * stroke,
                      paws=(0.0, 0.08 + 0.11 * math.cos(a), 0.06 + 0.04 * math.sin(a)))

    def _rear(self, kind: str, toward: tuple[float, float] = (0.0, 0.0)) -> None:
        n, ramp = self.bout(kind), max(1, round(0.2 * self.fps))
        sway, ph = 2 * math.pi * 0.4 / self.fps, self.rng.uniform(0, 2 * math.pi)
        for i in range(n):
            r = min(1.0, (i + 1) / ramp, (n - i) / ramp)
            self.emit(kind, 1.0, 0.0, 0.02 * math.sin(3 * (ph + sway * i)),
                      0.3 * math.sin(ph + sway * i), r, r * toward[0], r * toward[1])

    def do_mid_rear(self) -> None:
        lo, hi = self.s.lo + 1.3 * self.s.length, self.s.hi - 1.3 * self.s.length
        if hi <= lo:
            lo = hi = (self.s.lo + self.s.hi) / 2
        if not (lo <= self.x <= hi and lo <= self.y <= hi):
            self.walk_to(*self.rng.uniform(lo, hi, 2))
        self._rear("mid_rear")

    def do_wall_rear(self) -> None:
        s, L = self.s, self.s.length
        dists = [self.x - s.lo, s.hi - self.x, self.y - s.lo, s.hi - self.y]
        side = int(np.argmin(dists)) if self.rng.random() < 0.6 else int(self.rng.integers(4))
        along_now = self.y if side < 2 else self.x
        lo, hi = s.lo + 0.8 * L, s.hi - 0.8 * L
        if side == int(np.argmin(dists)):
            along = along_now + self.rng.choice([-1, 1]) * self.rng.uniform(0.3, 1.5) * L
        else:
            along = self.rng.uniform(lo, hi)
        along = float(np.clip(along, lo, hi))
        d0, d1 = 0.59 * L, 0.17 * L  # centre-to-wall distance: standing (nose at wall), reared
        x, y, face = [(s.lo + d0, along, math.pi), (s.hi - d0, along, 0.0),
                      (along, s.lo + d0, -math.pi / 2), (along, s.hi - d0, math.pi / 2)][side]
        self.walk_to(x, y, face)
        self._rear("wall_rear", ((d0 - d1) * math.cos(face), (d0 - d1) * math.sin(face)))


def _make_video(path: Path, n_frames: int, size: int, fps: float, margin: int,
                seq: np.random.SeedSequence,
                grooming_cue: str = "static",
                targets: dict[str, float] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Write one video; return its (n_frames, 3) int8 labels and its pose tracks."""
    # spawn(6) begins with the same four children as spawn(4): adding the grooming detail
    # stream, then the stream of the later body parts, left every other stream, and so the
    # behaviour plan, the frames and the first three body parts, as they were
    plan_rng, look_rng, noise_rng, pose_rng, detail_rng, parts_rng = (
        np.random.default_rng(s) for s in seq.spawn(6))
    wall = max(2, round(0.07 * size))
    length = size / 6 * look_rng.uniform(0.9, 1.1)
    fur = np.array([1.0, 1.05, 1.12]) * look_rng.uniform(35, 80)
    scene = _Scene(size, margin + wall, size - margin - wall, length,
                   look_rng.uniform(1.6, 2.4) * length, fur)
    bg = background(look_rng, size, margin, wall)
    states, rows = _Planner(plan_rng, scene, fps, n_frames, detail_rng, grooming_cue, targets).run()
    parts = np.empty((n_frames, len(BODY_PARTS), 2))
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
        if not writer.isOpened():
            raise PipelineError(f"{path}: OpenCV cannot write an mp4v video here; check the "
                                "folder is writable")
        try:
            for t in range(n_frames):
                img = bg.copy()
                parts[t] = draw_animal(img, rows[t], scene.length, scene.fur, states[t] == "wall_rear")
                noisy = img * np.float32(1 + 0.01 * noise_rng.standard_normal())
                noisy += noise_rng.normal(0, 3.0, (size, size, 1)).astype(np.float32)
                writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
        finally:
            writer.release()
    labels = np.zeros((n_frames, len(BEHAVIORS)), np.int8)
    for t, st in enumerate(states):
        if st in _LABEL:
            labels[t, _LABEL[st]] = 1
    return labels, pose_tracks(pose_rng, parts_rng, parts, rows, states, scene.length, size)


def generate_dataset(out: str | Path, n_videos: int = 6, n_frames: int = 600, size: int = 128,
                     fps: float = 10.0, seed: int = 0, prefix: str = "mouse",
                     grooming_cue: str = "static", targets: dict[str, float] | None = None) -> list[str]:
    """Write ``videos/<id>.mp4``, ``labels/<id>.csv`` and ``pose/<id>.csv`` for each video.

    Parameters
    ----------
    out
        Output folder (created; existing files of the same ids are replaced).
    n_videos
        Number of videos.
    n_frames
        Frames per video.
    size
        Side of the square frames in pixels (at least 32; an odd size is rounded down,
        as mp4v needs even sides).
    fps
        Frame rate; bout lengths and movements are defined in seconds.
    seed
        The same seed gives the same labels, pose and frames.
    prefix
        Video ids are ``<prefix>_000``, ``<prefix>_001``, ...
    grooming_cue
        ``static`` (grooming is seen in a single frame: sitting posture, forepaws at the
        face) or ``motion`` (grooming looks like rest in any one frame; only its rhythmic
        movement shows it). The labels are the same either way.
    targets
        Share of frames to aim at per behaviour (``groom``, ``mid_rear``, ``wall_rear``),
        replacing the defaults (0.12, 0.10, 0.12) for those named, e.g. ``{"mid_rear": 0.02}``
        for a rare behaviour. Every behaviour still appears at least once per video when
        the video is long enough.

    Returns
    -------
    list of str
        The video ids, in order.
    """
    if n_videos < 1 or n_frames < 1 or fps <= 0 or size < 32:
        raise ValueError(f"need n_videos >= 1, n_frames >= 1, fps > 0 and size >= 32; got "
                         f"{n_videos}, {n_frames}, {fps}, {size}")
    if grooming_cue not in GROOMING_CUES:
        raise ValueError(f"grooming_cue must be one of {', '.join(GROOMING_CUES)}, got {grooming_cue!r}")
    bad = {k: v for k, v in (targets or {}).items() if k not in _TARGET or not 0 < v < 1}
    if bad:
        raise ValueError(f"targets {bad}: expected shares in (0, 1) of {sorted(_TARGET)}")
    if size % 2:
        log.warning("frame size %d is odd; mp4v needs even sides, using %d", size, size - 1)
        size -= 1
    margin = round(0.02 * size)  # dark border between the frame edge and the arena wall
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PipelineError(f"{out}: exists and is not a folder; choose another output folder")
    for sub in ("videos", "labels", "pose"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n_videos):
        vid = f"{prefix}_{i:03d}"
        labels, pose = _make_video(out / "videos" / f"{vid}.mp4", n_frames, size, fps, margin,
                                   np.random.SeedSequence([seed % 2**63, i]), grooming_cue, targets)
        write_labels_csv(out / "labels" / f"{vid}.csv", Labels(BEHAVIORS, labels))
        with atomic_path(out / "pose" / f"{vid}.csv") as tmp:
            write_dlc_csv(tmp, pose)
        log.info("%s: %d frames, %s", vid, n_frames,
                 ", ".join(f"{b} {labels[:, j].mean():.0%}" for j, b in enumerate(BEHAVIORS)))
        ids.append(vid)
    return ids
