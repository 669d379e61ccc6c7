"""Deterministic synthetic top-view mouse videos with per-frame labels and DLC pose.

A mouse-like animal (dark body ellipse, head, ears, tail) moves in a walled arena (bright
textured floor, darker wall band). Its behaviour follows a semi-Markov sequence: it walks
to a target, then rests, grooms, rears in the middle of the arena or rears at a wall.

- walk: moves along its heading with a lateral body undulation;
- rest: still;
- grooming: stays put, body a little curled, head oscillating a few pixels about 2.5 times
  a second. A single frame looks much like rest: telling them apart needs time;
- mid rearing: in the open field, body foreshortened, head raised (drawn larger and
  lighter, ears visible);
- wall rearing: at a wall and facing it, foreshortened, head over the wall band.

Durations are drawn in seconds and scaled by fps; each behaviour is about 10-20% of
frames, grooming in long bouts, wall rearing in many short ones, mid rearing rarer, as in
the thesis's data. Labels follow the rendered behaviour of every frame exactly.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .pose import write_dlc_csv

log = logging.getLogger(__name__)

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")
_ACTIONS = ("rest", "groom", "mid_rear", "wall_rear")
_ACTION_P = (0.30, 0.09, 0.21, 0.40)
_DURATION_S = {"rest": (1.0, 4.0), "groom": (4.0, 12.0), "mid_rear": (1.5, 4.0), "wall_rear": (1.0, 3.0)}


@dataclass
class _Animal:
    fur: int
    scale: float
    floor: int
    wall: int


def _plan(rng: np.random.Generator, n: int, fps: float, size: int, wall: float, body: float):
    """Per-frame state, position and heading of the animal."""
    state = np.empty(n, dtype=object)
    pos = np.zeros((n, 2))
    heading = np.zeros(n)
    lo, hi = wall + body * 0.8, size - wall - body * 0.8
    p = rng.uniform(lo, hi, 2)
    th = rng.uniform(0, 2 * math.pi)
    speed = size * 0.22 / fps  # px per frame
    t = 0
    # every behaviour once, in random order, then at random: short videos still show all
    first = [_ACTIONS[i] for i in rng.permutation(len(_ACTIONS))]
    while t < n:
        action = first.pop() if first else _ACTIONS[rng.choice(len(_ACTIONS), p=_ACTION_P)]
        if action == "wall_rear":
            side = rng.integers(4)
            along = rng.uniform(lo, hi)
            inset = wall + body * 0.35
            target = [(along, inset), (along, size - inset), (inset, along), (size - inset, along)][side]
            face = [-math.pi / 2, math.pi / 2, math.pi, 0.0][side]
        elif action == "mid_rear":
            c = size / 2
            target = rng.uniform(c - size * 0.18, c + size * 0.18, 2)
            face = None
        else:
            target = rng.uniform(lo, hi, 2)
            face = None
        target = np.asarray(target, float)
        # walk to the target
        while t < n and np.linalg.norm(target - p) > speed:
            d = target - p
            want = math.atan2(d[1], d[0])
            diff = (want - th + math.pi) % (2 * math.pi) - math.pi
            th += float(np.clip(diff, -0.5, 0.5))
            step = speed * (0.7 + 0.3 * math.cos(diff))
            p = p + step * np.array([math.cos(th), math.sin(th)])
            state[t], pos[t], heading[t] = "walk", p, th
            t += 1
        if face is not None:
            th = face
        lo_s, hi_s = _DURATION_S[action]
        dur = max(2, int(round(rng.uniform(lo_s, hi_s) * fps)))
        for _ in range(dur):
            if t >= n:
                break
            state[t], pos[t], heading[t] = action, p, th
            t += 1
    return state, pos, heading


def _background(rng: np.random.Generator, size: int, wall: int, a: _Animal) -> np.ndarray:
    noise = rng.normal(0, 1, (size // 8 + 2, size // 8 + 2))
    texture = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    floor = np.clip(a.floor + 10 * texture, 0, 255)
    img = np.repeat(floor[:, :, None], 3, axis=2)
    img[..., 0] *= 0.95  # a slightly warm floor (BGR)
    img[:wall], img[-wall:], img[:, :wall], img[:, -wall:] = a.wall, a.wall, a.wall, a.wall
    return img.astype(np.uint8)


def _draw(img: np.ndarray, state: str, p: np.ndarray, th: float, t: int, fps: float,
          body: float, a: _Animal, rng: np.random.Generator) -> np.ndarray:
    """Draw the animal; returns (snout, midbody, tailbase) positions."""
    u = np.array([math.cos(th), math.sin(th)])
    n = np.array([-u[1], u[0]])
    length, width, head_r, head_shade, ears = body, body * 0.45, body * 0.26, a.fur + 12, False
    bend = 0.0
    if state == "walk":
        bend = 0.12 * math.sin(2 * math.pi * 1.5 * t / fps)
    elif state == "groom":
        length *= 0.85
        width *= 1.1
        bend = 0.35 + 0.25 * math.sin(2 * math.pi * 2.5 * t / fps)
    elif state in ("mid_rear", "wall_rear"):
        length *= 0.6
        width *= 1.15
        head_r *= 1.3
        head_shade = min(255, a.fur + 55)
        ears = True
    centre = p
    body_axes = (max(1, int(length / 2)), max(1, int(width / 2)))
    col = (a.fur, a.fur, a.fur + 4)
    cv2.ellipse(img, (int(round(centre[0])), int(round(centre[1]))), body_axes, math.degrees(th), 0, 360,
                col, -1, cv2.LINE_AA)
    # head: ahead of the body, rotated by the bend (grooming: curled towards the flank)
    hd = u * math.cos(bend) + n * math.sin(bend)
    head = centre + hd * (length / 2 + head_r * 0.35)
    if state == "wall_rear":
        head = head + u * head_r * 0.25  # reaches over the wall band
    cv2.circle(img, (int(round(head[0])), int(round(head[1]))), max(1, int(head_r)),
               (head_shade, head_shade, head_shade + 4), -1, cv2.LINE_AA)
    if ears:
        for s in (-1, 1):
            e = head - hd * head_r * 0.3 + n * s * head_r * 0.9
            cv2.circle(img, (int(round(e[0])), int(round(e[1]))), max(1, int(head_r * 0.35)),
                       (150, 140, 190), -1, cv2.LINE_AA)
    # tail: a wavy line behind the body
    base = centre - u * length / 2
    pts = [base]
    for k in range(1, 6):
        wave = math.sin(k * 0.9 + 2 * math.pi * 0.7 * t / fps) * body * 0.06
        pts.append(base - u * body * 0.22 * k + n * wave)
    cv2.polylines(img, [np.round(np.array(pts)).astype(np.int32)], False, (a.fur + 30,) * 3,
                  max(1, int(body * 0.06)), cv2.LINE_AA)
    snout = head + hd * head_r
    return np.array([snout, centre, base])


def _labels(state: np.ndarray) -> np.ndarray:
    out = np.zeros((len(state), len(BEHAVIORS)), np.int8)
    out[:, 0] = state == "groom"
    out[:, 1] = state == "mid_rear"
    out[:, 2] = state == "wall_rear"
    return out


def generate_video(path: Path, n_frames: int, size: int, fps: float, seed: int):
    """Write one video; return its (n_frames, 3) labels and pose {part: (T, 3)}."""
    rng = np.random.default_rng(seed)
    a = _Animal(fur=int(rng.integers(35, 75)), scale=float(rng.uniform(0.9, 1.1)),
                floor=int(rng.integers(170, 215)), wall=int(rng.integers(70, 110)))
    wall = max(3, int(round(size * 0.07)))
    body = size / 6 * a.scale
    state, pos, heading = _plan(rng, n_frames, fps, size, wall, body)
    bg = _background(rng, size, wall, a)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise InputError(f"{path}: OpenCV cannot write mp4 video here")
    parts = np.zeros((n_frames, 3, 3))
    try:
        for t in range(n_frames):
            img = bg.copy()
            jitter = rng.normal(0, 0.3, 2) if state[t] in ("rest", "groom") else 0
            pts = _draw(img, state[t], pos[t] + jitter, heading[t], t, fps, body, a, rng)
            noise = rng.normal(0, 3.0, img.shape)
            writer.write(np.clip(img + noise, 0, 255).astype(np.uint8))
            parts[t, :, :2] = pts
    finally:
        writer.release()
    like = np.clip(rng.normal(0.96, 0.02, (n_frames, 3)), 0, 1)
    like[rng.random((n_frames, 3)) < 0.03] = 0.2  # a few unreliable points, as in real tracking
    parts[:, :, :2] += rng.normal(0, 0.5, (n_frames, 3, 2))
    parts[:, :, 2] = like
    pose = {"snout": parts[:, 0], "midbody": parts[:, 1], "tailbase": parts[:, 2]}
    return _labels(state), pose


def generate_dataset(out: str | Path, n_videos: int = 6, n_frames: int = 600, size: int = 128,
                     fps: float = 10.0, seed: int = 0) -> list[str]:
    """Write ``videos/<id>.mp4``, ``labels/<id>.csv`` and ``pose/<id>.csv`` for each video.

    Parameters
    ----------
    out
        Output folder.
    n_videos, n_frames, size, fps
        How many videos, frames per video, frame side in pixels, frame rate.
    seed
        The same seed gives the same labels, pose and frames.

    Returns
    -------
    list of str
        The video ids (``mouse_000``, ...).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    for sub in ("videos", "labels", "pose"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n_videos):
        vid = f"mouse_{i:03d}"
        labels, pose = generate_video(out / "videos" / f"{vid}.mp4", n_frames, size, fps,
                                      seed=seed * 1000 + i)
        with open(out / "labels" / f"{vid}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(BEHAVIORS)
            w.writerows(labels.tolist())
        write_dlc_csv(out / "pose" / f"{vid}.csv", pose)
        prev = ", ".join(f"{b} {labels[:, j].mean():.0%}" for j, b in enumerate(BEHAVIORS))
        log.info("%s: %d frames (%s)", vid, n_frames, prev)
        ids.append(vid)
    return ids
