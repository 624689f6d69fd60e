"""Synthetic scenes with known metric depth for the scene refinement (bench_scene and the tests).

A room (floor, back and side walls, boxes on the floor) and a person of a given height standing on the
floor, seen by a pinhole camera at a given height, pitch and roll. The person is the Anny body mesh
(pipelines.registry.create("body", "anny"): the average adult in Anny's rest A-pose, scaled to the
height, turned by a yaw, soles on the floor), or with body="proxy" the previous release's box person
(boxes for the legs, torso, arms and head). World frame: z up, floor z = 0. Everything is rendered
with pipelines.scene.zbuffer into the true depth (metres, OpenCV camera frame); the person's mask is
where its mesh is the nearest surface. `corrupt` makes the depth input: an unknown scale and shift and
a smooth low-frequency multiplicative warp, in depth ('relative') or disparity ('inverse').
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipelines.scene.ground import FootedBody, GroundPlane
from pipelines.scene.zbuffer import render_depth

_BOX_FACES = np.array([[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6], [0, 4, 5], [0, 5, 1],
                       [1, 5, 6], [1, 6, 2], [2, 6, 7], [2, 7, 3], [3, 7, 4], [3, 4, 0]])  # fmt: skip


def box_mesh(lo_3: np.ndarray, hi_3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, z0 = lo_3
    x1, y1, z1 = hi_3
    v = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                  [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], dtype=np.float64)  # fmt: skip
    return v, _BOX_FACES.copy()


def grid_quad(corner_3: np.ndarray, ex_3: np.ndarray, ey_3: np.ndarray, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A planar quad corner + [0,1]^2 (ex, ey) as an n x n grid of triangles."""
    t = np.linspace(0, 1, n + 1)
    a, b = np.meshgrid(t, t, indexing="ij")
    v = corner_3 + a.reshape(-1, 1) * ex_3 + b.reshape(-1, 1) * ey_3
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    q0, q1, q2, q3 = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.concatenate([np.stack([q0, q1, q2], 1), np.stack([q0, q2, q3], 1)])
    return v, f


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    vs, fs, n = [], [], 0
    for v, f in parts:
        vs.append(v)
        fs.append(f + n)
        n += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def proxy_body(foot_xy: np.ndarray, height_m: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A box person standing at `foot_xy` (world, z up): mesh and named joints (world)."""
    s = height_m / 1.75
    x, y = foot_xy
    parts = [
        box_mesh(np.array([x - 0.18, y - 0.08, 0]) , np.array([x - 0.04, y + 0.14, 0.88]) * [1, 1, s]),
        box_mesh(np.array([x + 0.04, y - 0.08, 0]), np.array([x + 0.18, y + 0.14, 0.88]) * [1, 1, s]),
        box_mesh(np.array([x - 0.2, y - 0.1, 0.88 * s]), np.array([x + 0.2, y + 0.1, 1.45 * s])),
        box_mesh(np.array([x - 0.3, y - 0.05, 0.85 * s]), np.array([x - 0.21, y + 0.05, 1.43 * s])),
        box_mesh(np.array([x + 0.21, y - 0.05, 0.85 * s]), np.array([x + 0.3, y + 0.05, 1.43 * s])),
        box_mesh(np.array([x - 0.09, y - 0.1, 1.5 * s]), np.array([x + 0.09, y + 0.1, height_m])),
    ]
    v, f = _merge(parts)
    j = {}
    for side, sx in (("left", 0.11), ("right", -0.11)):
        j[f"{side}_shoulder"] = np.array([x + sx * 1.8, y, 1.42 * s])
        j[f"{side}_hip"] = np.array([x + sx, y, 0.9 * s])
        j[f"{side}_ankle"] = np.array([x + sx, y, 0.08 * s])
        j[f"{side}_heel"] = np.array([x + sx, y + 0.1, 0.03])
        j[f"{side}_big_toe"] = np.array([x + sx, y - 0.07, 0.03])
        j[f"{side}_small_toe"] = np.array([x + sx * 1.3, y - 0.06, 0.03])
    return v, f, j


BODY_KINDS = ("anny", "proxy")


@lru_cache(maxsize=1)
def _anny_rest() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Anny's average adult at rest in Anny's frame (z up, facing -y, +x on its left): vertices, faces, joints."""
    from pipelines.body.anny_points import output_joints
    from pipelines.registry import create

    anny = create("body", "anny")
    verts_v3 = anny.rest_vertices(anny.coeffs(anny.default_pheno()))
    names, joints_j3 = output_joints(anny, verts_v3)
    return verts_v3, np.asarray(anny.faces_f3), dict(zip(names, joints_j3, strict=True))


def anny_body(foot_xy: np.ndarray, height_m: float, yaw_deg: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """The Anny mesh standing at `foot_xy` (world, z up; the ankles' midpoint), `height_m` tall (soles at
    z = 0), facing the camera (-y) turned by `yaw_deg` about z: mesh and named joints (world)."""
    v_rest, faces_f3, j_rest = _anny_rest()
    scale = height_m / float(np.ptp(v_rest[:, 2]))
    origin_3 = np.array([*(j_rest["left_ankle"][:2] + j_rest["right_ankle"][:2]) / 2, v_rest[:, 2].min()])
    a = np.radians(yaw_deg)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    at = np.array([foot_xy[0], foot_xy[1], 0.0])

    def place(p_n3: np.ndarray) -> np.ndarray:
        return scale * (p_n3 - origin_3) @ Rz.T + at

    return place(v_rest), faces_f3.copy(), {k: place(p[None])[0] for k, p in j_rest.items()}


@dataclass
class SynthScene:
    """One rendered scene."""

    depth_m_hw: np.ndarray
    """True depth in metres (z, OpenCV camera frame); NaN where nothing (never: the room is closed)."""
    person_mask_hw: np.ndarray
    """Where the person is the nearest surface."""
    K_33: np.ndarray
    cam_T_world_44: np.ndarray
    body_verts_cam_v3: np.ndarray
    body_faces_f3: np.ndarray
    body: FootedBody
    """The person's mesh and joints in the camera frame."""
    camera_height_m: float
    pitch_deg: float
    roll_deg: float
    body_height_m: float
    """The person's height (metres; the mesh's extent along the world's up)."""


def camera_pose(height_m: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """cam_T_world for a camera at (0, 0, height) looking along world +y, tilted down by pitch, rolled."""
    # level camera: x_cam = world x, y_cam = -world z, z_cam = world y
    R_level = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    p = np.radians(pitch_deg)
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])  # look down
    r = np.radians(roll_deg)
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    R = Rz @ Rx @ R_level
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ np.array([0, 0, height_m])
    return T


def make_scene(rng: np.random.Generator, width: int = 320, height: int = 240, body: str = "anny") -> SynthScene:
    """A random room, camera and person (see the module docstring); `body`: 'anny' or 'proxy' (BODY_KINDS).
    The same seed gives the same room, camera and person's place and height for both bodies."""
    if body not in BODY_KINDS:
        raise ValueError(f"body must be one of {', '.join(BODY_KINDS)}, not {body!r}")
    cam_h = rng.uniform(1.2, 1.8)
    pitch = rng.uniform(5, 20)
    roll = rng.uniform(-4, 4)
    f = width / (2 * np.tan(np.radians(rng.uniform(55, 70)) / 2))
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    T = camera_pose(cam_h, pitch, roll)
    back = rng.uniform(6, 9)
    left, right = -rng.uniform(2, 3.5), rng.uniform(2, 3.5)
    parts = [
        grid_quad(np.array([left, 0.2, 0]), np.array([right - left, 0, 0]), np.array([0, back - 0.2, 0])),
        grid_quad(np.array([left, back, 0]), np.array([right - left, 0, 0]), np.array([0, 0, 4.0])),
        grid_quad(np.array([left, 0.2, 0]), np.array([0, back - 0.2, 0]), np.array([0, 0, 4.0])),
        grid_quad(np.array([right, 0.2, 0]), np.array([0, back - 0.2, 0]), np.array([0, 0, 4.0])),
        grid_quad(np.array([left, 0.2, 4.0]), np.array([right - left, 0, 0]), np.array([0, back - 0.2, 0])),
    ]
    for _ in range(3):
        c = np.array([rng.uniform(left + 0.5, right - 0.5), rng.uniform(2.5, back - 0.8)])
        size = rng.uniform(0.3, 0.9, 3)
        parts.append(box_mesh(np.array([c[0] - size[0] / 2, c[1] - size[1] / 2, 0]),
                              np.array([c[0] + size[0] / 2, c[1] + size[1] / 2, size[2]])))  # fmt: skip
    foot = np.array([rng.uniform(-0.8, 0.8), rng.uniform(2.8, 4.5)])
    body_height = rng.uniform(1.6, 1.9)
    yaw = rng.uniform(-30, 30)
    bv, bf, joints = anny_body(foot, body_height, yaw) if body == "anny" else proxy_body(foot, body_height)

    def to_cam(v: np.ndarray) -> np.ndarray:
        return v @ T[:3, :3].T + T[:3, 3]

    room_v, room_f = _merge(parts)
    depth = render_depth(to_cam(room_v), room_f, K, width, height)
    body_cam = to_cam(bv)
    body_depth = render_depth(body_cam, bf, K, width, height)
    mask = body_depth < depth
    depth = np.minimum(depth, body_depth)
    depth = np.where(np.isfinite(depth), depth, np.nan)
    body = FootedBody(verts_v3=body_cam, joints={k: to_cam(v[None])[0] for k, v in joints.items()})
    return SynthScene(depth_m_hw=depth, person_mask_hw=mask, K_33=K, cam_T_world_44=T, body_verts_cam_v3=body_cam,
                      body_faces_f3=bf, body=body, camera_height_m=cam_h, pitch_deg=pitch, roll_deg=roll,
                      body_height_m=body_height)  # fmt: skip


def perturbed_ground(ground: GroundPlane, tilt_deg: float = 0.0, offset_m: float = 0.0) -> GroundPlane:
    """The ground plane tilted by `tilt_deg` about the camera's x axis through its contacts' centre (a
    pitch error: positive = the plane's far side lower) and moved `offset_m` down (the camera that much
    higher above it): a wrong ground anchor whose scale disagrees with the person's."""
    a = np.radians(tilt_deg)
    R = np.array([[1.0, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    n_3 = R @ ground.normal_cam
    pivot_3 = (ground.contacts_cam_n3.mean(axis=0) if len(ground.contacts_cam_n3)
               else -ground.offset_m * ground.normal_cam)  # fmt: skip
    return GroundPlane(normal_cam=n_3, offset_m=float(-n_3 @ pivot_3) + offset_m,
                       contacts_cam_n3=ground.contacts_cam_n3,
                       source=f"{ground.source}, tilted {tilt_deg:+.1f} deg, {offset_m:+.2f} m")  # fmt: skip


def smooth_warp(rng: np.random.Generator, width: int, height: int, amplitude: float) -> np.ndarray:
    """exp of a sum of a few low-frequency cosines (at most 0.75 cycles across the image), (H, W)."""
    yy, xx = np.mgrid[0:height, 0:width]
    u, v = (xx + 0.5) / width, (yy + 0.5) / height
    field = np.zeros((height, width))
    for _ in range(3):
        fx, fy = rng.uniform(-0.75, 0.75, 2)
        field += np.cos(2 * np.pi * (fx * u + fy * v) + rng.uniform(0, 2 * np.pi))
    return np.exp(amplitude * field / 3.0 * np.sqrt(3))


def corrupt(depth_m_hw: np.ndarray, kind: str, rng: np.random.Generator, warp_amplitude: float = 0.15,
            noise: float = 0.005) -> np.ndarray:  # fmt: skip
    """The depth input: scale, shift, smooth warp and a little noise in depth (relative) or disparity (inverse)."""
    h, w = depth_m_hw.shape
    warp = smooth_warp(rng, w, h, warp_amplitude) * (1 + noise * rng.standard_normal((h, w)))
    if kind == "inverse":
        disp = 1.0 / depth_m_hw
        return rng.uniform(0.3, 3.0) * disp * warp + rng.uniform(0.0, 0.3) * np.nanmedian(disp)
    if kind == "relative":
        return rng.uniform(0.1, 10.0) * depth_m_hw * warp + rng.uniform(-0.3, 1.0) * np.nanmedian(depth_m_hw)
    return rng.uniform(0.6, 1.6) * depth_m_hw * warp + rng.uniform(-0.5, 0.5)  # 'metric': metres, wrong


def abs_rel(pred_hw: np.ndarray, gt_hw: np.ndarray) -> float:
    ok = np.isfinite(pred_hw) & np.isfinite(gt_hw) & (gt_hw > 0)
    return float(np.mean(np.abs(pred_hw[ok] - gt_hw[ok]) / gt_hw[ok]))


def delta1(pred_hw: np.ndarray, gt_hw: np.ndarray) -> float:
    ok = np.isfinite(pred_hw) & np.isfinite(gt_hw) & (gt_hw > 0) & (pred_hw > 0)
    ratio = np.maximum(pred_hw[ok] / gt_hw[ok], gt_hw[ok] / pred_hw[ok])
    return float(np.mean(ratio < 1.25)) * ok.sum() / max(np.isfinite(gt_hw).sum(), 1)
