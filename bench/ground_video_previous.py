"""The video mode's ground before it was merged into pipelines.scene.ground (a baseline for
bench.bench_ground_video only; not used by the app): the ground under a static camera, from the tracked
feet over time, and a world frame on it.

A static camera is assumed: every frame's joints are in one camera frame (OpenCV: x right, y down,
z forward; metres), so the feet of every track over the whole video lie on one ground plane. The
plane's normal is the bodies' own up direction (mid-ankle to mid-shoulder, averaged over every frame
of every track), and its height is fitted robustly to the heels and toes over time (the densest
layer of foot points along that normal: feet in the air are outliers). With `fit_normal` the normal is
fitted to the foot points too (a small RANSAC in numpy, within `max_tilt_deg` of the bodies' up);
chosen on pose2sim_single/cam01 against the calibrated floor: the bodies' up was 11 degrees off, the
RANSAC plane of the feet 16-19 (a single view's depth errors tilt the feet's plane), so it is off by
default.

World frame (`world_T_cam_44`, maps camera points to world points): y up (the plane's normal), the
origin where the camera's centre projects onto the ground, z towards the camera (the camera's
forward direction on the ground, negated), x = y cross z; metres. A root trajectory's x, z are its
position on the ground and y its height above it.

Only the plane fit is kept here; the feet's contacts and pinning are pipelines.tracking.feet's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
from pipelines.scene.ground import pitch_deg, roll_deg
from pipelines.scene.ground import world_T_cam_from_plane as world_from_plane
from pipelines.tracking.feet import FOOT_JOINTS

_SHOULDERS = [OUTPUT_JOINT_NAMES.index(n) for n in ("left_shoulder", "right_shoulder")]
_ANKLES = [OUTPUT_JOINT_NAMES.index(n) for n in ("left_ankle", "right_ankle")]


@dataclass
class GroundOptions:
    """Robust plane fit and contact thresholds."""

    inlier_m: float = 0.03
    """A foot point within this distance of a candidate plane supports it."""
    iterations: int = 300
    """RANSAC samples."""
    max_tilt_deg: float = 30.0
    """Largest angle between the plane's normal and the bodies' up direction."""
    contact_height_m: float = 0.06
    """A foot this close to the ground (its lowest point) may touch it."""
    contact_speed_mps: float = 0.4
    """... when it moves slower than this along the ground."""
    seed: int = 0
    """RANSAC's random seed (results are reproducible)."""
    fit_normal: bool = False
    """Fit the normal to the feet too (RANSAC) instead of taking the bodies' up (see the module docstring)."""


@dataclass
class Ground:
    """The fitted ground plane and the world frame on it."""

    normal_cam_3: np.ndarray
    """Unit normal (3,), camera frame, pointing up (away from the ground, towards the bodies)."""
    offset_m: float
    """Plane: normal . p + offset = 0 for points p on the ground (camera frame, metres)."""
    world_T_cam_44: np.ndarray
    """Camera frame -> world frame (see the module docstring)."""
    n_points: int
    """Foot points used."""
    n_inliers: int
    """Of them, within `inlier_m` of the plane."""
    rms_m: float
    """RMS distance of the inliers to the plane."""
    method: str
    """"ransac" (normal fitted) or "body-up" (normal from the bodies, offset fitted)."""

    @property
    def camera_height_m(self) -> float:
        """The camera centre's height above the ground."""
        return float(self.offset_m)

    def height_m(self, p_n3: np.ndarray) -> np.ndarray:
        """Signed heights of camera-frame points above the ground."""
        return np.asarray(p_n3, dtype=np.float64) @ self.normal_cam_3 + self.offset_m

    def to_world(self, p_n3: np.ndarray) -> np.ndarray:
        """Camera-frame points -> world points (..., 3)."""
        p = np.asarray(p_n3, dtype=np.float64)
        return p @ self.world_T_cam_44[:3, :3].T + self.world_T_cam_44[:3, 3]

    def to_camera(self, p_n3: np.ndarray) -> np.ndarray:
        """World points -> camera-frame points (..., 3)."""
        p = np.asarray(p_n3, dtype=np.float64) - self.world_T_cam_44[:3, 3]
        return p @ self.world_T_cam_44[:3, :3]

    def as_json(self) -> dict:
        return {
            "normal_cam": np.round(self.normal_cam_3, 6).tolist(),
            "offset_m": round(self.offset_m, 5),
            "camera_height_m": round(self.camera_height_m, 4),
            "pitch_deg": round(pitch_deg(self.normal_cam_3), 3),
            "roll_deg": round(roll_deg(self.normal_cam_3), 3),
            "world_T_cam": np.round(self.world_T_cam_44, 6).tolist(),
            "world_axes": "y up (ground normal), z towards the camera, origin below the camera; metres",
            "n_points": self.n_points,
            "n_inliers": self.n_inliers,
            "rms_m": round(self.rms_m, 5),
            "method": self.method,
            "assumes": "a static camera",
        }


def body_up_cam(joints_fk3: np.ndarray) -> np.ndarray | None:
    """The bodies' mean up direction (unit, camera frame): mid-ankle -> mid-shoulder, over frames."""
    j = np.asarray(joints_fk3, dtype=np.float64)
    v = j[:, _SHOULDERS].mean(axis=1) - j[:, _ANKLES].mean(axis=1)
    v = v[np.isfinite(v).all(axis=1)]
    n = np.linalg.norm(v, axis=1)
    v = v[n > 0.3] / n[n > 0.3, None]
    if not len(v):
        return None
    up = v.mean(axis=0)
    return up / np.linalg.norm(up)


def _plane_through(p3: np.ndarray) -> tuple[np.ndarray, float] | None:
    n = np.cross(p3[1] - p3[0], p3[2] - p3[0])
    norm = np.linalg.norm(n)
    if norm < 1e-9:
        return None
    n = n / norm
    return n, -float(n @ p3[0])


def fit_ground(joints_per_track: list[np.ndarray], options: GroundOptions | None = None) -> Ground | None:
    """The ground from every track's joints (each (F, K, 3), output joints, camera frame); None when
    there are too few feet (fewer than 10 frames in all)."""
    o = options or GroundOptions()
    tracks = [np.asarray(j, dtype=np.float64) for j in joints_per_track if len(j)]
    if sum(len(j) for j in tracks) < 10:
        return None
    all_j = np.concatenate(tracks)
    up = body_up_cam(all_j)
    if up is None:
        return None
    feet = all_j[:, FOOT_JOINTS["left"] + FOOT_JOINTS["right"]].reshape(-1, 3)
    feet = feet[np.isfinite(feet).all(axis=1)]
    cos_max = np.cos(np.radians(o.max_tilt_deg))
    rng = np.random.default_rng(o.seed)
    best: tuple[int, np.ndarray, float] | None = None
    # Points spread on the ground in 2 directions: fit the normal; else (feet on a line) the bodies' up.
    centred = feet - feet.mean(axis=0)
    sv = np.linalg.svd(centred - np.outer(centred @ up, up), compute_uv=False)
    if o.fit_normal and len(feet) >= 3 and sv[1] > 0.15 * sv[0] and sv[1] / np.sqrt(len(feet)) > 0.05:
        for _ in range(o.iterations):
            plane = _plane_through(feet[rng.choice(len(feet), 3, replace=False)])
            if plane is None:
                continue
            n, d = plane
            if n @ up < 0:
                n, d = -n, -d
            if n @ up < cos_max:
                continue
            count = int((np.abs(feet @ n + d) < o.inlier_m).sum())
            if best is None or count > best[0]:
                best = (count, n, d)
    if best is not None:
        _, n, d = best
        inl = np.abs(feet @ n + d) < o.inlier_m
        c = feet[inl].mean(axis=0)  # least squares on the inliers
        _, _, vt = np.linalg.svd(feet[inl] - c)
        n = vt[-1] if vt[-1] @ up > 0 else -vt[-1]
        d, method = -float(n @ c), "ransac"
    else:
        n = up
        # The offset: the height along `up` with the most foot points within `inlier_m` (1-D RANSAC,
        # every point a candidate), then the mean of those points.
        h = np.sort(feet @ n)
        lo = np.searchsorted(h, h - o.inlier_m, side="left")
        hi = np.searchsorted(h, h + o.inlier_m, side="right")
        centre = h[int(np.argmax(hi - lo))]
        d, method = -float(h[np.abs(h - centre) < o.inlier_m].mean()), "body-up"
    dist = np.abs(feet @ n + d)
    inl = dist < o.inlier_m
    return Ground(n, d, world_from_plane(n, d), len(feet), int(inl.sum()),
                  float(np.sqrt(np.mean(dist[inl] ** 2))) if inl.any() else float("nan"), method)  # fmt: skip
