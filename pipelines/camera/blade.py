"""Focal length and the people's distances solved together, BLADE-style (an option after the body fits).

Perspective distortion is set by the distance: from nearer, a body's near parts look larger than its far
parts. Each fitted person is held rigid in the camera frame as fitted (its metric shape and pose: the
body's metric size is the anchor) and moved along its viewing ray by one factor k shared by everyone
(k < 1: nearer; one camera, and the bodies' sizes fix their relative distances). At each k the focal and
every person's x/y shift follow from the 2D keypoints in closed form (at fixed depths the projection is
linear in f and f * shift: weighted linear least squares); what is left of the keypoint residual is what
the distortion explains. The silhouette is the second term: the mesh rendered with that focal
(pipelines.scene.zbuffer, at a reduced resolution) against the person's mask (1 - IoU). The k with the
smallest cost (a parabola through the grid's minimum) gives the focal and the distances.

`geometry="landmarks"` takes the 3D keypoints from the detector's metric world landmarks (hip-centred,
focal-free, like BLADE's network-predicted body) scaled to the fitted body's size and put at its hips,
instead of the fitted joints (which the fit posed under its own focal).

Conventions: OpenCV camera frame (x right, y down, z forward), metres; pixels from the top-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SCALES_LOG = np.linspace(-0.4, 0.4, 17)
"""The grid of log(k) searched (k = 0.67 .. 1.49)."""
SILHOUETTE_W = 0.0
"""Weight of a person's 1 - IoU (in units of 1 %) against its keypoint residual (in units of sigma^2). 0 by
default: on pose2sim_single (tuning) 1.0 moved the focal no closer (9.5 % vs 9.4 % error), the distances
further (7.4 % vs 6.6 %), and took 17x longer (bench/bench_focal_solve.py)."""
SIGMA_FRAC = 0.004
"""Keypoint sigma: this fraction of the person's height in the image (at least 1.5 px), as the fit's."""
RENDER_SIDE_PX = 320
"""Silhouettes are compared at this long side."""
MIN_CONF = 0.5
"""Keypoints below this confidence are not used."""


@dataclass
class BladePerson:
    """One fitted person, as the solve needs it (camera frame, metres; pixels)."""

    points_cam_k3: np.ndarray
    """3D keypoints at the fitted placement."""
    xy_k2: np.ndarray
    """Their detected pixel positions."""
    conf_k: np.ndarray
    """Their confidences (0 = unused)."""
    root_cam_3: np.ndarray
    """The point moved along its ray (the mid-hip)."""
    verts_cam_v3: np.ndarray | None = None
    """The fitted mesh (for the silhouette), or None."""
    faces_f3: np.ndarray | None = None
    mask_hw: np.ndarray | None = None
    """The person's mask (bool or [0, 1]) at image resolution, or None."""


@dataclass
class BladeResult:
    """The focal and the people's placement found together."""

    focal_px: float
    scale: float
    """k: every person's distance times this."""
    shift_cam_p3: np.ndarray
    """Per person, the translation (metres, camera frame) to add to its fitted body."""
    keypoint_rms_px: float
    """RMS keypoint residual at the solution (all people)."""
    iou_p: np.ndarray
    """Per person, the silhouette IoU at the solution (nan without a mask)."""
    cost_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The cost on the grid SCALES_LOG."""
    source: str = ""
    """In words."""


def _linear_focal(people: list[BladePerson], k: float, cx: float, cy: float
                  ) -> tuple[float, np.ndarray, float, list[np.ndarray]]:  # fmt: skip
    """At distance factor k: the focal and per-person x/y shifts (metres) by weighted least squares; the
    weighted squared residual (sigma units) and each person's residuals (px)."""
    n = len(people)
    rows, rhs, wts, owner = [], [], [], []
    for i, p in enumerate(people):
        use = (p.conf_k >= MIN_CONF) & np.isfinite(p.points_cam_k3).all(axis=1) & np.isfinite(p.xy_k2).all(axis=1)
        if use.sum() < 3:
            continue
        pts = p.points_cam_k3[use] + (k - 1.0) * p.root_cam_3
        z = pts[:, 2]
        ys = p.xy_k2[use, 1]
        sigma = max(1.5, SIGMA_FRAC * float(np.ptp(ys)) / 0.8)
        w = np.sqrt(p.conf_k[use]) / sigma
        for axis, c in ((0, cx), (1, cy)):
            a = np.zeros((use.sum(), 1 + 2 * n))
            a[:, 0] = pts[:, axis] / z
            a[:, 1 + 2 * i + axis] = 1.0 / z
            rows.append(a * w[:, None])
            rhs.append((p.xy_k2[use, axis] - c) * w)
            wts.append(w)
            owner.append(np.full(use.sum(), i))
    if not rows:
        raise ValueError("no person with 3 confident keypoints")
    A, b = np.concatenate(rows), np.concatenate(rhs)
    keep = np.abs(A).sum(axis=0) > 0
    theta = np.zeros(A.shape[1])
    theta[keep] = np.linalg.lstsq(A[:, keep], b, rcond=None)[0]
    r = A @ theta - b
    f = float(theta[0])
    shifts = np.zeros((n, 3))
    if f > 0:
        shifts[:, :2] = theta[1:].reshape(n, 2) / f
    px = r / np.concatenate(wts)
    own = np.concatenate(owner)
    return f, shifts, float(r @ r), [px[own == i] for i in range(n)]


def silhouette_hw(verts_v3: np.ndarray, faces_f3: np.ndarray, K_33: np.ndarray, width: int, height: int
                  ) -> np.ndarray:  # fmt: skip
    """The mesh's silhouette (bool H x W): its triangles in front of the camera filled (OpenCV, 1/16 px)."""
    front = verts_v3[:, 2] > 1e-3
    uv = verts_v3[:, :2] / np.where(front, verts_v3[:, 2], 1.0)[:, None] * K_33[[0, 1], [0, 1]] + K_33[:2, 2]
    tri = faces_f3[front[faces_f3].all(axis=1)]
    out = np.zeros((height, width), np.uint8)
    if len(tri):
        pts = np.round((uv[tri] - 0.5) * 16).astype(np.int32)  # pixel centres at +0.5
        for tri_32 in pts:  # one at a time: fillPoly of many polygons leaves their overlaps empty
            cv2.fillConvexPoly(out, tri_32, 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def _iou(p: BladePerson, k: float, f: float, shift_3: np.ndarray, cx: float, cy: float, width: int, height: int
         ) -> float:  # fmt: skip
    if p.verts_cam_v3 is None or p.faces_f3 is None or p.mask_hw is None:
        return float("nan")
    s = RENDER_SIDE_PX / max(width, height)
    w, h = max(1, round(width * s)), max(1, round(height * s))
    K_33 = np.array([[f * s, 0, cx * s], [0, f * s, cy * s], [0, 0, 1.0]])
    verts = p.verts_cam_v3 + (k - 1.0) * p.root_cam_3 + shift_3
    sil = silhouette_hw(verts, p.faces_f3, K_33, w, h)
    mask = cv2.resize(np.asarray(p.mask_hw, dtype=np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    union = int((sil | mask).sum())
    return float((sil & mask).sum() / union) if union else float("nan")


def solve_focal_distance(people: list[BladePerson], K_33: np.ndarray, width: int, height: int,
                         silhouette_w: float = SILHOUETTE_W) -> BladeResult:  # fmt: skip
    """The shared focal and the people's distances (see the module docstring). Raises ValueError without a
    person with 3 confident keypoints."""
    cx, cy = float(K_33[0, 2]), float(K_33[1, 2])
    cost = np.full(len(SCALES_LOG), np.inf)
    for j, s in enumerate(SCALES_LOG):
        k = float(np.exp(s))
        f, shifts, r2, _ = _linear_focal(people, k, cx, cy)
        if f <= 0:
            continue
        cost[j] = r2
        if silhouette_w > 0:
            ious = np.array([_iou(p, k, f, shifts[i], cx, cy, width, height) for i, p in enumerate(people)])
            cost[j] += silhouette_w * float(np.nansum(100.0 * (1.0 - ious)))
    j = int(np.argmin(cost))
    s = float(SCALES_LOG[j])
    if 0 < j < len(cost) - 1 and np.isfinite(cost[j - 1 : j + 2]).all():
        c0, c1, c2 = cost[j - 1 : j + 2]
        den = c0 - 2 * c1 + c2
        if den > 0:
            step = float(SCALES_LOG[1] - SCALES_LOG[0])
            s += float(np.clip(0.5 * (c0 - c2) / den, -0.5, 0.5)) * step
    k = float(np.exp(s))
    f, shifts, _, res = _linear_focal(people, k, cx, cy)
    shifts = shifts + (k - 1.0) * np.stack([p.root_cam_3 for p in people])
    ious = np.array([_iou(p, k, f, shifts[i] - (k - 1.0) * p.root_cam_3, cx, cy, width, height)
                     for i, p in enumerate(people)])  # fmt: skip
    allres = np.concatenate(res) if res else np.zeros(0)
    rms = float(np.sqrt(np.mean(allres**2))) if len(allres) else float("nan")
    terms = "keypoints and silhouettes" if silhouette_w > 0 else "keypoints"
    source = (f"focal and distances solved together from the perspective of {len(people)} fitted "
              f"{'body' if len(people) == 1 else 'bodies'} ({terms})")  # fmt: skip
    return BladeResult(focal_px=f, scale=k, shift_cam_p3=shifts, keypoint_rms_px=rms, iou_p=ious, cost_s=cost,
                       source=source)  # fmt: skip


_FOOT_INDEX = {"left_foot_index": "left_big_toe", "right_foot_index": "right_big_toe"}


def blade_people(people: list, geometry: str = "fit") -> list[BladePerson]:  # noqa: ANN001 - list[PersonResult]
    """The fitted people as the solve's input: keypoints matched by name between the detection and the fitted
    joints (`geometry="fit"`) or the detector's world landmarks scaled to the fitted joints
    (`geometry="landmarks"`); people without a body or without 3 shared keypoints are left out."""
    out = []
    for person in people:
        body, det = person.body, person.detection
        if body is None or not det.keypoints2d.names:
            continue
        fitted = dict(zip(body.joints3d_cam.names, np.asarray(body.joints3d_cam.xyz_k3, dtype=np.float64),
                          strict=True))  # fmt: skip
        names = [n for n in det.keypoints2d.names if _FOOT_INDEX.get(n, n) in fitted]
        if len(names) < 3 or not all(h in fitted for h in ("left_hip", "right_hip")):
            continue
        idx = [det.keypoints2d.names.index(n) for n in names]
        pts = np.stack([fitted[_FOOT_INDEX.get(n, n)] for n in names])
        root = (fitted["left_hip"] + fitted["right_hip"]) / 2
        if geometry == "landmarks":
            world = dict(zip(det.keypoints3d_hip.names, np.asarray(det.keypoints3d_hip.xyz_k3, dtype=np.float64),
                             strict=True))  # fmt: skip
            lm = np.array([world.get(n, (np.nan,) * 3) for n in names])
            ok = np.isfinite(lm).all(axis=1)
            if ok.sum() < 3:
                continue
            spread = np.sqrt(np.mean(np.sum((pts[ok] - pts[ok].mean(0)) ** 2, axis=1)))
            lm_spread = np.sqrt(np.mean(np.sum((lm[ok] - lm[ok].mean(0)) ** 2, axis=1)))
            pts = root + lm * (spread / max(lm_spread, 1e-9))
        elif geometry != "fit":
            raise ValueError(f"unknown geometry {geometry!r}; expected fit or landmarks")
        out.append(BladePerson(points_cam_k3=pts, xy_k2=np.asarray(det.keypoints2d.xy_k2, dtype=np.float64)[idx],
                               conf_k=np.asarray(det.keypoints2d.conf_k, dtype=np.float64)[idx], root_cam_3=root,
                               verts_cam_v3=np.asarray(body.verts_cam_v3, dtype=np.float64), faces_f3=body.faces_f3,
                               mask_hw=det.mask_hw))  # fmt: skip
    return out


def solve_camera_with_bodies(people: list, camera, silhouette_w: float = SILHOUETTE_W):  # noqa: ANN001, ANN201
    """The image mode's option (`PipelineConfig.focal_solve = "blade"`): the focal from the solve, each fitted
    body (list[PersonResult]) moved by its shift in place; returns the new Camera (source 'estimated'), or
    `camera` unchanged when no person can be used."""
    from pipelines.types import Camera

    fitted = [p for p in people if p.body is not None]
    inputs = blade_people(fitted)
    used = [p for p in fitted if blade_people([p])]
    try:
        result = solve_focal_distance(inputs, np.asarray(camera.K_33, dtype=np.float64), camera.width,
                                      camera.height, silhouette_w=silhouette_w)  # fmt: skip
    except ValueError:
        return camera
    if not np.isfinite(result.focal_px) or result.focal_px <= 0:
        return camera
    for person, shift_3 in zip(used, result.shift_cam_p3, strict=True):
        body = person.body
        body.verts_cam_v3 = body.verts_cam_v3 + shift_3
        body.joints3d_cam.xyz_k3 = body.joints3d_cam.xyz_k3 + shift_3
        if body.joints3d_skeleton_cam is not None:
            body.joints3d_skeleton_cam.xyz_k3 = body.joints3d_skeleton_cam.xyz_k3 + shift_3
        params = body.params
        if hasattr(params, "root_pos_cam_3"):
            params.root_pos_cam_3 = params.root_pos_cam_3 + shift_3
        if hasattr(params, "focal_px"):
            params.focal_px = np.array(result.focal_px)
    return Camera.from_focal(result.focal_px, camera.width, camera.height, "estimated")
