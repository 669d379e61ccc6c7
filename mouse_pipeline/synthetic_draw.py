"""How a synthetic frame looks: the arena, and the animal drawn from one posture row.

:mod:`mouse_pipeline.synthetic` plans what the animal does (and describes the scene);
this module paints it, anti-aliased at sub-pixel precision so that slow movement changes
pixels smoothly.

A posture row holds, in this order: centre ``x, y`` (px), heading ``theta`` (rad),
``hunch`` (1 walking; smaller is shorter and wider), ``curl`` (bend along the spine,
rad), head offset ``head_dx`` (body lengths) and ``head_yaw`` (rad), ``rear`` (0 on four
paws, 1 reared), the stride ``phase`` (rad; sways the tail), then the grooming forepaws:
``paws`` (shown, 0-1), ``paw_fwd`` and ``paw_side`` (body lengths). Forepaws held at the
face but hidden under the head (grooming with no static cue) have ``paws`` 0 and a
non-zero ``paw_fwd``: they are not drawn, but their points are where they would be.

:func:`draw_animal` returns the points of :data:`BODY_PARTS`, where the drawing puts them
(the tracking "truth" from which :mod:`mouse_pipeline.synthetic` writes the pose file).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_PINK = np.array([165.0, 160.0, 215.0])  # BGR
_SHIFT = 4  # sub-pixel bits for cv2 drawing
#: The points :func:`draw_animal` returns, in order (left and right as the animal sees them).
BODY_PARTS = ("snout", "midbody", "tailbase", "left_ear", "right_ear", "left_forepaw",
              "right_forepaw")


def background(rng: np.random.Generator, size: int, margin: int, wall: int) -> np.ndarray:
    """Arena image (uint8 BGR): dark border, textured wall band, bright textured floor."""
    def blotches(cells: int, amp: float) -> np.ndarray:
        small = rng.standard_normal((cells, cells)).astype(np.float32)
        return amp * cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)

    floor = rng.uniform(165, 215) + blotches(10, 9) + rng.normal(0, 4, (size, size))
    specks = rng.random((size, size)) < 0.015
    floor[specks] -= rng.uniform(20, 45, int(specks.sum()))
    wall_v = rng.uniform(55, 95) + blotches(24, 6)
    img = np.empty((size, size, 3), np.float32)
    tint = np.array([rng.uniform(0.9, 0.98), rng.uniform(0.96, 1.0), 1.0], np.float32)
    img[:] = (floor * (1 - 0.04 * blotches(6, 1)))[..., None] * tint
    a, b = margin, size - margin
    band = np.zeros((size, size), bool)
    band[a:b, a:b] = True
    band[a + wall:b - wall, a + wall:b - wall] = False
    img[band] = wall_v[band][:, None] * np.array([1.0, 1.0, 1.02], np.float32)
    outside = np.ones((size, size), bool)
    outside[a:b, a:b] = False
    img[outside] = rng.uniform(15, 35)
    return np.clip(img, 0, 255).astype(np.uint8)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SHIFT))), int(round(p[1] * (1 << _SHIFT)))


def _circle(img: np.ndarray, p: np.ndarray, r: float, colour: np.ndarray) -> None:
    cv2.circle(img, _pt(p), max(1, round(r * (1 << _SHIFT))), colour.tolist(), -1, cv2.LINE_AA, _SHIFT)


def _ellipse(img: np.ndarray, p: np.ndarray, a: float, b: float, angle: float,
             colour: np.ndarray) -> None:
    axes = (max(1, round(a * (1 << _SHIFT))), max(1, round(b * (1 << _SHIFT))))
    cv2.ellipse(img, _pt(p), axes, math.degrees(angle), 0, 360, colour.tolist(), -1,
                cv2.LINE_AA, _SHIFT)


def _draw_tail(img: np.ndarray, base: np.ndarray, body_angle: float, phase: float, L: float,
               fur: np.ndarray) -> None:
    """The tail: from the tail base backwards, swaying with the stride ``phase``."""
    k = np.arange(9)
    tail_ang = body_angle + math.pi + 0.35 * np.sin(phase - 0.8 * k) * k / 8
    tail = base + np.vstack([np.zeros(2), np.cumsum(
        0.1 * L * np.stack([np.cos(tail_ang[1:]), np.sin(tail_ang[1:])], 1), 0)])
    tail_col = 0.55 * fur + 0.45 * _PINK
    cv2.polylines(img, [np.round(tail * (1 << _SHIFT)).astype(np.int32)], False,
                  tail_col.tolist(), max(1, round(0.045 * L)), cv2.LINE_AA, _SHIFT)


def draw_animal(img: np.ndarray, row: np.ndarray, length: float, fur: np.ndarray,
                wall_rear: bool) -> np.ndarray:
    """Draw the animal of one posture row in place; return the (7, 2) px points of :data:`BODY_PARTS`.

    ``length`` is nose to tail base in pixels, ``fur`` the body colour (BGR); at a wall
    (``wall_rear``) the raised forepaws are drawn over the wall, ahead of the head. The
    forepaws' points: at the face while grooming (``paw_fwd`` non-zero, drawn or not);
    raised with the body while rearing (moving there as ``rear`` rises); otherwise under the
    chest, stepping with the stride ``phase``.
    """
    x, y, theta, hunch, curl, head_dx, head_yaw, rear, phase, paws, paw_fwd, paw_side = row
    L = length
    fore = 1 - 0.5 * rear  # foreshortening of the raised body
    half = 0.36 * L * hunch * fore
    s = np.linspace(-1, 1, 13)
    ang = theta + 0.5 * curl * s
    mid_ang = 0.5 * (ang[1:] + ang[:-1])
    steps = half * (s[1] - s[0]) * np.stack([np.cos(mid_ang), np.sin(mid_ang)], 1)
    spine = np.vstack([np.zeros(2), np.cumsum(steps, 0)])
    centre = len(s) // 2
    spine += np.array([x, y]) - spine[centre]
    normal = np.stack([-np.sin(ang), np.cos(ang)], 1)
    width = 0.17 * L * (1 + 0.6 * (1 - hunch)) * (1 + 0.18 * rear)
    r = width * np.sqrt(np.clip(1 - s ** 2, 0, 1)) ** 0.8 * (1 - 0.12 * s)
    outline = np.vstack([spine + normal * r[:, None], (spine - normal * r[:, None])[::-1]])
    _draw_tail(img, spine[0], float(ang[0]), phase, L, fur)  # first: under the body
    body_col = np.minimum(fur + 40 * rear, 255)
    cv2.fillPoly(img, [np.round(outline * (1 << _SHIFT)).astype(np.int32)], body_col.tolist(),
                 cv2.LINE_AA, _SHIFT)
    # head, ears, forepaws
    hang = ang[-1] + head_yaw
    hdir = np.array([math.cos(hang), math.sin(hang)])
    hnorm = np.array([-hdir[1], hdir[0]])
    tip = np.array([math.cos(ang[-1]), math.sin(ang[-1])])
    grow = 1 + 0.3 * rear
    head = spine[-1] + tip * (0.10 * L * fore + head_dx * L)
    neck = head - spine[-2]  # a thin neck keeps a stretched head attached
    _ellipse(img, spine[-2] + neck / 2, 0.5 * float(np.hypot(*neck)), 0.05 * L,
             math.atan2(neck[1], neck[0]), body_col)
    _ellipse(img, head, 0.15 * L * grow, 0.105 * L * grow, hang, np.minimum(fur + 12 + 65 * rear, 255))
    ear_col = fur + 18 + rear * (_PINK - fur - 18)
    for side in (-1, 1):
        _circle(img, head - hdir * 0.06 * L + side * hnorm * 0.1 * L * grow,
                0.045 * L * (1 + 0.8 * rear), ear_col)
    if rear >= 0.5:
        paw = head + hdir * 0.17 * L if wall_rear else head - hdir * 0.24 * L
        for side in (-1, 1):
            _circle(img, paw + side * hnorm * 0.09 * L, 0.045 * L, _PINK)
    if paws > 0:  # grooming: forepaws over the face, drawn on top of the head
        col = fur + paws * (_PINK - fur)
        for side in (-1, 1):
            _ellipse(img, head + hdir * paw_fwd * L + side * hnorm * paw_side * L,
                     0.11 * L, 0.07 * L, hang, col)
    snout = head + hdir * 0.15 * L * grow
    ears = [head - hdir * 0.06 * L + side * hnorm * 0.1 * L * grow for side in (-1, 1)]
    chest, out = spine[9], normal[9] * 0.75 * r[9]
    step = tip * 0.05 * L * math.sin(phase)
    paw_pts = [chest + side * out - side * step for side in (-1, 1)]  # stepping: alternate
    if paws > 0 or paw_fwd != 0:  # grooming: at the face
        paw_pts = [head + hdir * paw_fwd * L + side * hnorm * paw_side * L for side in (-1, 1)]
    elif rear > 0:
        raised = head + hdir * 0.17 * L if wall_rear else head - hdir * 0.24 * L
        w = min(1.0, float(rear))
        paw_pts = [(1 - w) * p + w * (raised + side * hnorm * 0.09 * L)
                   for p, side in zip(paw_pts, (-1, 1), strict=True)]
    return np.array([snout, spine[centre], spine[0], *ears, *paw_pts])
