"""Ground plane from the fitted bodies' feet, and the camera's height, pitch and roll above it.

Conventions: OpenCV camera frame (x right, y down, z forward), metres. The plane is the set of camera
points X with normal_cam . X + offset_m = 0, `normal_cam` a unit vector pointing up (away from the
ground, towards the camera's side), so `offset_m` is the camera's height above the ground.

Contacts: per foot of each body, the lowest mesh vertex of its heel half and of its toe half (along the
current up estimate); those within FEET_LEVEL_M of the body's lowest are on the ground, weighted by how
low they are. The normal is the smallest eigenvector of the contacts' weighted scatter plus two priors:
the bodies' up (mid-ankles to mid-shoulders; weight BODY_PRIOR_W per body: it only decides the directions
the contacts leave open, e.g. one person standing on one foot in one photo) and the camera's roll near 0
(ROLL_PRIOR_W: most photos are level). Contacts are re-picked along the new normal and the fit repeated,
with Cauchy weights (CONTACT_SCALE_M) on the contacts' distances to the plane, so a foot in the air counts
little, and weights falling with the squared distance to the camera (a fitted body's depth error grows
with it). Bodies shorter than MIN_BODY_EXTENT_M (false or far detections) are left out. Several people
in one photo, or the frames of a static camera's video (`fit_ground_over_time`), give contacts spread
over the floor that fix the normal without the upright-body assumption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.scene.refine import _robust_weights

FEET_LEVEL_M = 0.05
"""A contact this much above the lowest one of its body is not on the ground."""
FOOT_RADIUS_M = 0.15
"""Mesh vertices this close to a foot's keypoints belong to that foot."""
BODY_PRIOR_W = 0.02
"""Weight (m^2) of a body's up direction against the contacts' scatter (4 contacts 0.25 m apart: ~0.06)."""
ROLL_PRIOR_W = 0.02
"""Weight (m^2) of the prior that the camera is not rolled (the up's x component near 0)."""
CONTACT_SCALE_M = 0.03
"""Scale of the Cauchy weights on the contacts' distances to the plane."""
ITERATIONS = 4
MIN_BODY_EXTENT_M = 1.0
"""Bodies whose joints span less than this along their up (a false detection, a far poster) put no contact
on the ground, unless no body is taller."""
"""Rounds of re-picking the contacts along the new normal and refitting."""


def pitch_deg(normal_cam_3: np.ndarray) -> float:
    """Angle of the optical axis below the horizon (positive = looking down), from the ground's up normal
    in the OpenCV camera frame."""
    return float(np.degrees(np.arcsin(np.clip(-normal_cam_3[2], -1, 1))))


def roll_deg(normal_cam_3: np.ndarray) -> float:
    """Rotation of the image about the optical axis: 0 when up is the image's -y; positive when the
    world's up, seen in the image, leans towards +x (right)."""
    return float(np.degrees(np.arctan2(normal_cam_3[0], -normal_cam_3[1])))


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
        return pitch_deg(self.normal_cam)

    @property
    def roll_deg(self) -> float:
        """See `roll_deg`."""
        return roll_deg(self.normal_cam)

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


def foot_contacts(body: FootedBody, up_3: np.ndarray) -> np.ndarray:
    """Per foot (left, right) the lowest point along `up_3` of its heel half and of its toe half (4, 3):
    left heel, left toe, right heel, right toe (mesh vertices; the keypoints without a mesh)."""
    out = []
    for side in ("left", "right"):
        names = [f"{side}_ankle", f"{side}_heel", f"{side}_big_toe", f"{side}_small_toe"]
        pts_k3 = np.stack([body.joints[n] for n in names if n in body.joints])
        centre_3 = pts_k3.mean(axis=0)
        near = np.linalg.norm(body.verts_v3 - centre_3, axis=1) < FOOT_RADIUS_M
        verts_v3 = body.verts_v3[near] if near.any() else pts_k3
        heel = body.joints.get(f"{side}_heel", body.joints[f"{side}_ankle"])
        toes = [body.joints[n] for n in (f"{side}_big_toe", f"{side}_small_toe") if n in body.joints]
        toe = np.mean(toes, axis=0) if toes else centre_3
        axis_3 = toe - heel
        axis_3 = axis_3 - (axis_3 @ up_3) * up_3
        along_v = (verts_v3 - centre_3) @ _unit(axis_3) if np.linalg.norm(axis_3) > 1e-6 else np.zeros(len(verts_v3))
        for half in (along_v <= 0, along_v >= 0):
            pts = verts_v3[half] if half.any() else verts_v3
            out.append(pts[np.argmin(pts @ up_3)])
    return np.stack(out)


def feet_only(body: FootedBody) -> FootedBody:
    """The same body with only its feet's mesh vertices (what the ground needs; to keep a video's history
    small)."""
    keep = np.zeros(len(body.verts_v3), dtype=bool)
    for side in ("left", "right"):
        names = [f"{side}_ankle", f"{side}_heel", f"{side}_big_toe", f"{side}_small_toe"]
        centre_3 = np.stack([body.joints[n] for n in names if n in body.joints]).mean(axis=0)
        keep |= np.linalg.norm(body.verts_v3 - centre_3, axis=1) < FOOT_RADIUS_M
    return FootedBody(verts_v3=body.verts_v3[keep], joints=dict(body.joints))


def _plane(c_n3: np.ndarray, w_n: np.ndarray, ups_b3: np.ndarray, up_3: np.ndarray) -> tuple[np.ndarray, float]:
    """Normal and offset from weighted contacts and the priors (see the module docstring)."""
    w_n = w_n / np.maximum(np.sum(c_n3**2, axis=1), 1.0)  # a fitted body's depth error grows with its distance
    w_n = w_n / max(float(w_n.max()), 1e-12)
    mean_3 = (w_n[:, None] * c_n3).sum(axis=0) / w_n.sum()
    centred = c_n3 - mean_3
    M_33 = (w_n[:, None] * centred).T @ centred
    for u_3 in ups_b3:
        M_33 += BODY_PRIOR_W * (np.eye(3) - np.outer(u_3, u_3))
    M_33[0, 0] += ROLL_PRIOR_W
    _, vecs = np.linalg.eigh(M_33)
    normal = _unit(vecs[:, 0] * np.sign(vecs[:, 0] @ up_3))
    return normal, -float(mean_3 @ normal)


def fit_ground_over_time(bodies_per_frame: Sequence[Sequence[FootedBody]]) -> GroundPlane | None:
    """The ground under the bodies of several frames seen by one static camera (or of one frame: a
    list of one list); None without any body or with the camera under the plane."""
    flat = [(f, b) for f, frame in enumerate(bodies_per_frame) for b in frame]
    if not flat:
        return None
    tall = [(f, b) for f, b in flat if np.ptp(np.stack(list(b.joints.values())) @ body_up(b)) >= MIN_BODY_EXTENT_M]
    flat = tall or flat
    ups_b3 = np.stack([body_up(b) for _, b in flat])
    up_3 = _unit(ups_b3.mean(axis=0))
    normal, offset = up_3, None
    for _ in range(ITERATIONS):
        contacts, weights = [], []
        for _, b in flat:
            c_43 = foot_contacts(b, normal)
            h_4 = c_43 @ normal
            low = h_4 - h_4.min()
            keep = low <= FEET_LEVEL_M
            contacts.append(c_43[keep])
            w = 1.0 - low[keep] / (2 * FEET_LEVEL_M)
            if offset is not None:  # a body in the air (a jump, a bad fit) counts little
                w = w * _robust_weights(h_4[keep] + offset, CONTACT_SCALE_M)
            weights.append(w)
        c_n3, w_n = np.concatenate(contacts), np.concatenate(weights)
        normal, offset = _plane(c_n3, w_n, ups_b3, up_3)
    n_frames = len({f for f, _ in flat})
    people = max(sum(1 for g, _ in flat if g == f) for f in range(len(bodies_per_frame)))
    source = (f"feet of {people} {'person' if people == 1 else 'people'}"
              + (f" over {n_frames} frames" if n_frames > 1 else "")
              + f" ({len(c_n3)} contacts, body up and level camera as weak priors)")  # fmt: skip
    if offset is None or offset < 0:  # the camera below the ground: the bodies say nothing sensible
        return None
    return GroundPlane(normal_cam=normal, offset_m=offset, contacts_cam_n3=c_n3, source=source)


def fit_ground(bodies: Sequence[FootedBody]) -> GroundPlane | None:
    """The ground under the given bodies of one photo (see the module docstring); None without any body."""
    return fit_ground_over_time([list(bodies)])
