"""People across views: which track of each view is the same person, from epipolar geometry.

Pixels are undistorted (pipelines.multiview.calibration.undistort_points). For two views a, b the
fundamental matrix F_ab (x_b^T F_ab x_a = 0) gives each keypoint's symmetric epipolar distance in
pixels. The cost between track i of view a and track j of view b is the median distance over the
frames and joints both see confidently. Views are added one by one: the people found so far against
the new view's tracks, solved by scipy's linear_sum_assignment on the mean cost to each person's
members; a track left over joins a person whose track in that view it does not overlap in time (a
track broken by an occlusion), else it starts a new person. People seen by fewer than two views
cannot be triangulated and are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from pipelines.multiview.calibration import CalibratedCamera

MIN_CONF = 0.5
"""Keypoints below this confidence take no part in the association and the synchronisation."""


def skew(v_3: np.ndarray) -> np.ndarray:
    return np.array([[0, -v_3[2], v_3[1]], [v_3[2], 0, -v_3[0]], [-v_3[1], v_3[0], 0]])


def fundamental_33(cam_a: CalibratedCamera, cam_b: CalibratedCamera) -> np.ndarray:
    """F with x_b^T F x_a = 0 for undistorted pixels of a and b."""
    b_T_a = cam_b.cam_T_world_44 @ np.linalg.inv(cam_a.cam_T_world_44)
    E_33 = skew(b_T_a[:3, 3]) @ b_T_a[:3, :3]
    return np.linalg.inv(cam_b.camera.K_33).T @ E_33 @ np.linalg.inv(cam_a.camera.K_33)


def epipolar_px(xa_n2: np.ndarray, xb_n2: np.ndarray, F_33: np.ndarray) -> np.ndarray:
    """Symmetric epipolar distance (N,) in pixels: the mean of each point's distance to the other's line."""
    ha = np.concatenate([xa_n2, np.ones((len(xa_n2), 1))], axis=1)
    hb = np.concatenate([xb_n2, np.ones((len(xb_n2), 1))], axis=1)
    lb = ha @ F_33.T  # lines in b
    la = hb @ F_33  # lines in a
    num = np.abs(np.sum(hb * lb, axis=1))
    return 0.5 * (num / np.hypot(lb[:, 0], lb[:, 1]) + num / np.hypot(la[:, 0], la[:, 1]))


def pair_cost_px(xa_fk2: np.ndarray, ca_fk: np.ndarray, xb_fk2: np.ndarray, cb_fk: np.ndarray, F_33: np.ndarray,
                 min_samples: int = 20) -> float:  # fmt: skip
    """Median epipolar distance over the confidently co-visible (frame, joint) pairs; inf if too few."""
    ok = (ca_fk > MIN_CONF) & (cb_fk > MIN_CONF)
    ok &= np.isfinite(xa_fk2).all(-1) & np.isfinite(xb_fk2).all(-1)
    if ok.sum() < min_samples:
        return float("inf")
    return float(np.median(epipolar_px(xa_fk2[ok], xb_fk2[ok], F_33)))


@dataclass
class Person:
    """One person across views."""

    members: dict[int, list[int]] = field(default_factory=dict)
    """View index -> the rows (tracks) of that view that are this person (not overlapping in time)."""


def _present_f(conf_fk: np.ndarray) -> np.ndarray:
    return (conf_fk > MIN_CONF).sum(axis=1) >= 3


def associate(xy_vtfk2: list[np.ndarray], conf_vtfk: list[np.ndarray], cams: list[CalibratedCamera],
              max_cost_px: float = 40.0, min_samples: int = 100) -> list[Person]:  # fmt: skip
    """People across views. xy_vtfk2[v]: (tracks, F, K, 2) undistorted pixels of view v on a common frame
    grid; conf_vtfk[v]: (tracks, F, K).

    Every pair of tracks of two views gets its epipolar cost (`min_samples` co-visible keypoints at
    least). The pairs are taken from the cheapest: each merges the two groups it joins (union-find)
    when the mean cost over all their cross-view member pairs stays under `max_cost_px` and no view
    would hold two tracks seen in the same frames (a track broken by an occlusion joins its person).
    """
    n_views = len(cams)
    tracks = [(v, t) for v in range(n_views) for t in range(len(xy_vtfk2[v]))]
    present = {(v, t): _present_f(conf_vtfk[v][t]) for v, t in tracks}
    cost: dict[tuple[tuple[int, int], tuple[int, int]], float] = {}
    for a, b in combinations(range(n_views), 2):
        F_33 = fundamental_33(cams[a], cams[b])
        for i in range(len(xy_vtfk2[a])):
            for j in range(len(xy_vtfk2[b])):
                c = pair_cost_px(xy_vtfk2[a][i], conf_vtfk[a][i], xy_vtfk2[b][j], conf_vtfk[b][j], F_33, min_samples)
                cost[((a, i), (b, j))] = cost[((b, j), (a, i))] = c
    group = {tr: {tr} for tr in tracks}

    def mergeable(g1: set, g2: set) -> bool:
        for (v1, t1) in g1:
            for (v2, t2) in g2:
                if v1 == v2 and (present[(v1, t1)] & present[(v2, t2)]).sum() > 2:
                    return False
        costs = [cost[(x, y)] for x in g1 for y in g2 if x[0] != y[0]]
        finite = [c for c in costs if np.isfinite(c)]
        return bool(finite) and float(np.mean(finite)) <= max_cost_px

    for (x, y), c in sorted(cost.items(), key=lambda kv: kv[1]):
        if not np.isfinite(c) or c > max_cost_px or group[x] is group[y]:
            continue
        if mergeable(group[x], group[y]):
            merged = group[x] | group[y]
            for tr in merged:
                group[tr] = merged
    unique = {id(g): g for g in group.values()}.values()
    people = []
    for g in unique:
        p = Person()
        for v, t in sorted(g):
            p.members.setdefault(v, []).append(t)
        if len(p.members) >= 2:
            people.append(p)
    return people
