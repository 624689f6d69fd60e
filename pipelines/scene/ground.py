"""Ground plane from the fitted bodies' feet, and the camera's height, pitch and roll above it.

Conventions: OpenCV camera frame (x right, y down, z forward), metres. The plane is the set of camera
points X with normal_cam . X + offset_m = 0, `normal_cam` a unit vector pointing up (away from the
ground, towards the camera's side), so `offset_m` is the camera's height above the ground.

Assumption with one person: the person stands on the ground with the body upright (gravity along the
line from the mid-ankles to the mid-shoulders); the plane passes under the lower foot's sole. With
both soles within FEET_LEVEL_M of each other, the normal is also made perpendicular to the line
between them (when that moves it by less than MAX_FOOT_TILT_DEG). With several people the soles of
all feet on the ground are fitted with a plane (least squares, normal near the mean body up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FEET_LEVEL_M = 0.05
"""A foot whose sole is this much above the lowest one of its body is not on the ground."""
MAX_FOOT_TILT_DEG = 10.0
"""Most the line between the two soles may turn the body's up direction."""
FOOT_RADIUS_M = 0.15
"""Mesh vertices this close to a foot's keypoints belong to that foot."""


@dataclass
class GroundPlane:
    """The ground in the camera frame (see the module docstring)."""

    normal_cam: np.ndarray
    """Unit normal (3,) pointing up, OpenCV camera frame."""
    offset_m: float
    """Plane offset: normal_cam . X + offset_m = 0 on the ground; = the camera's height above it."""
    contacts_cam_n3: np.ndarray
    """The sole points the plane was fitted to (metres, camera frame)."""
    source: str
    """How it was found, in words (e.g. 'feet of 1 person, body upright')."""

    @property
    def camera_height_m(self) -> float:
        return float(self.offset_m)

    @property
    def pitch_deg(self) -> float:
        """Angle of the optical axis below the horizon (positive = looking down)."""
        return float(np.degrees(np.arcsin(np.clip(-self.normal_cam[2], -1, 1))))

    @property
    def roll_deg(self) -> float:
        """Rotation of the image about the optical axis: 0 when up is the image's -y; positive when the
        world's up, seen in the image, leans towards +x (right)."""
        return float(np.degrees(np.arctan2(self.normal_cam[0], -self.normal_cam[1])))

    def as_dict(self) -> dict:
        return {
            "camera_height_m": self.camera_height_m,
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "normal_cam": [float(v) for v in self.normal_cam],
            "offset_m": float(self.offset_m),
            "source": self.source,
            "convention": "plane: normal_cam . X + offset_m = 0 (OpenCV camera frame, metres, normal up); "
                          "pitch positive = looking down",
        }  # fmt: skip

    def ground_T_cam(self) -> np.ndarray:
        """4x4 map of camera points into a ground frame: z up (the normal), origin on the ground under the
        camera, x along the camera's x axis laid onto the ground."""
        z_3 = self.normal_cam / np.linalg.norm(self.normal_cam)
        x_3 = np.array([1.0, 0.0, 0.0]) - z_3[0] * z_3
        if np.linalg.norm(x_3) < 1e-6:
            x_3 = np.array([0.0, 0.0, 1.0]) - z_3[2] * z_3
        x_3 /= np.linalg.norm(x_3)
        y_3 = np.cross(z_3, x_3)
        R_33 = np.stack([x_3, y_3, z_3])
        origin_cam_3 = -self.offset_m * z_3
        T = np.eye(4)
        T[:3, :3] = R_33
        T[:3, 3] = -R_33 @ origin_cam_3
        return T

    def depth_hw(self, K_33: np.ndarray, width: int, height: int, max_depth_m: float = np.inf) -> np.ndarray:
        """Depth (z, metres) of the ground seen through each pixel centre; NaN above the horizon or
        beyond `max_depth_m`."""
        u = (np.arange(width) + 0.5 - K_33[0, 2]) / K_33[0, 0]
        v = (np.arange(height) + 0.5 - K_33[1, 2]) / K_33[1, 1]
        denom_hw = self.normal_cam[0] * u[None, :] + self.normal_cam[1] * v[:, None] + self.normal_cam[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z_hw = -self.offset_m / denom_hw
        return np.where((z_hw > 0) & (z_hw <= max_depth_m), z_hw, np.nan)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass
class FootedBody:
    """What the ground needs from one fitted body (metres, camera frame)."""

    verts_v3: np.ndarray
    """Mesh vertices."""
    joints: dict[str, np.ndarray]
    """Named joints: the shoulders, hips, ankles, heels and toes (COCO + feet names)."""


def body_up(body: FootedBody) -> np.ndarray:
    """The body's up direction: from the mid-ankles to the mid-shoulders."""
    j = body.joints
    shoulders = (j["left_shoulder"] + j["right_shoulder"]) / 2
    ankles = (j["left_ankle"] + j["right_ankle"]) / 2
    return _unit(shoulders - ankles)


def soles(body: FootedBody, up_3: np.ndarray) -> np.ndarray:
    """Per foot (left, right) the sole point: the foot's centre laid down to its lowest vertex along up (2, 3)."""
    out = []
    for side in ("left", "right"):
        names = [f"{side}_ankle", f"{side}_heel", f"{side}_big_toe", f"{side}_small_toe"]
        pts_k3 = np.stack([body.joints[n] for n in names if n in body.joints])
        centre_3 = pts_k3.mean(axis=0)
        near = np.linalg.norm(body.verts_v3 - centre_3, axis=1) < FOOT_RADIUS_M
        verts = body.verts_v3[near] if near.any() else pts_k3
        low = float((verts @ up_3).min())
        out.append(centre_3 + (low - float(centre_3 @ up_3)) * up_3)
    return np.stack(out)


def fit_ground(bodies: Sequence[FootedBody]) -> GroundPlane | None:
    """The ground under the given bodies (see the module docstring); None without any body."""
    if not bodies:
        return None
    ups = np.stack([body_up(b) for b in bodies])
    up_3 = _unit(ups.mean(axis=0))
    contacts = []
    for b, up_b in zip(bodies, ups, strict=True):
        s_23 = soles(b, up_b)
        h_2 = s_23 @ up_b
        contacts += [s for s, h in zip(s_23, h_2, strict=True) if h - h_2.min() <= FEET_LEVEL_M]
    c_n3 = np.stack(contacts)
    if len(bodies) == 1:
        normal = up_3
        if len(c_n3) == 2:
            e_3 = _unit(c_n3[1] - c_n3[0])
            tilted = _unit(up_3 - (up_3 @ e_3) * e_3)
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
    normal = _unit(normal)
    offset = -float(np.median(c_n3 @ normal))
    if offset < 0:  # the camera below the ground: the bodies say nothing sensible
        return None
    return GroundPlane(normal_cam=normal, offset_m=offset, contacts_cam_n3=c_n3, source=source)
