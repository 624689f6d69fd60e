"""The first slice's ground (commit c39b6b3 of pipelines/scene/ground.py), kept as the baseline of
bench.bench_ground_multiview: one person upright (normal = mid-ankles -> mid-shoulders, tilted towards the
line between the soles), several people: a least-squares plane through their soles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.scene.ground import FEET_LEVEL_M, FootedBody, GroundPlane, body_up, foot_points, unit_rows

MAX_FOOT_TILT_DEG = 10.0


def _soles(body: FootedBody, up_3: np.ndarray) -> np.ndarray:
    """Per foot (left, right) the sole point: the foot's centre laid down to its lowest vertex along up (2, 3)."""
    out = []
    for side in ("left", "right"):
        centre_3, verts = foot_points(body, side)
        low = float((verts @ up_3).min())
        out.append(centre_3 + (low - float(centre_3 @ up_3)) * up_3)
    return np.stack(out)


def first_slice_ground(bodies: Sequence[FootedBody]) -> GroundPlane | None:
    """The ground under the given bodies (see the module docstring); None without any body."""
    if not bodies:
        return None
    ups = np.stack([body_up(b) for b in bodies])
    up_3 = unit_rows(ups.mean(axis=0))
    contacts = []
    for b, up_b in zip(bodies, ups, strict=True):
        s_23 = _soles(b, up_b)
        h_2 = s_23 @ up_b
        contacts += [s for s, h in zip(s_23, h_2, strict=True) if h - h_2.min() <= FEET_LEVEL_M]
    c_n3 = np.stack(contacts)
    if len(bodies) == 1:
        normal = up_3
        if len(c_n3) == 2:
            e_3 = unit_rows(c_n3[1] - c_n3[0])
            tilted = unit_rows(up_3 - (up_3 @ e_3) * e_3)
            if np.degrees(np.arccos(np.clip(tilted @ up_3, -1, 1))) < MAX_FOOT_TILT_DEG:
                normal = tilted
        source = "feet of 1 person (body upright, standing on the ground)"
    else:
        # plane through the soles; the mean body up as a prior for directions the soles leave open
        centred = c_n3 - c_n3.mean(axis=0)
        prior_w = 0.05 * len(c_n3)
        M_33 = centred.T @ centred + prior_w * (np.eye(3) - np.outer(up_3, up_3))
        _, vecs = np.linalg.eigh(M_33)
        normal = vecs[:, 0] * np.sign(vecs[:, 0] @ up_3)
        source = f"feet of {len(bodies)} people (least-squares plane through {len(c_n3)} soles)"
    normal = unit_rows(normal)
    offset = -float(np.median(c_n3 @ normal))
    if offset < 0:  # the camera below the ground: the bodies say nothing sensible
        return None
    return GroundPlane(normal_cam=normal, offset_m=offset, contacts_cam_n3=c_n3, source=source)
