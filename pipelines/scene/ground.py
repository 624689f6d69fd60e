"""Ground plane from the fitted bodies' feet, and the camera's height, pitch and roll above it.

Conventions: OpenCV camera frame (x right, y down, z forward), metres. The plane is the set of camera
points X with normal_cam . X + offset_m = 0, `normal_cam` a unit vector pointing up (away from the
ground, towards the camera's side), so `offset_m` is the camera's height above the ground.

Contacts: per foot of each body, the lowest mesh vertex of its heel half and of its toe half (along the
current up estimate); those within FEET_LEVEL_M of the body's lowest are on the ground, weighted by how
low they are, by Cauchy weights (CONTACT_SCALE_M) on their distance to the plane once there is one (a foot
in the air counts little) and by 1 / distance^2 to the camera. The normal is the smallest eigenvector of
the contacts' scatter (each contact's error CONTACT_SIGMA_M) plus the prior that each body's up
(mid-ankles to mid-shoulders) is the normal within `GroundPriors.body_up_sigma_rad`. A fitted body's
distance is off by a few per cent (`GroundPriors.depth_rel_err`): its whole body, feet included, is
scaled about the camera, which moves the plane through its own feet but does not tilt it; so each
person's (a video track's) own scatter counts fully and the scatter between people only with the weight
that this error leaves. Contacts are re-picked along the new normal and the fit repeated (ITERATIONS).
Bodies shorter than MIN_BODY_EXTENT_M (false or far detections) are left out. On the pose2sim captures
(bench/bench_ground_multiview.py, bench/bench_ground_video.py) the bodies' up is the better normal: the
plane through several people's fitted feet tilts with their distance errors. With exact distances and
people who lean (`GroundPriors(0.5, 0.0)`), several people or the frames of a static camera's video
(`fit_ground_over_time`) give contacts spread over the floor that fix the normal without the
upright-body assumption.

This is the one ground fitter of the project: the photo's scene, the video mode (`pipelines.tracking.feet`
turns its tracked joints into `FootedBody`s: keypoint feet, no mesh; one group per track) and the benches
use it.

World frame on the ground (`GroundPlane.world_T_cam_44`, maps camera points to world points): y up (the
normal), the origin where the camera's centre projects onto the ground, z towards the camera (the
camera's forward direction laid onto the ground, negated), x = y cross z; metres. A point's x, z are its
position on the ground and y its height above it. `ground_T_cam` is the same frame with z up (x, then
forward, then up), for viewers that want z up.
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
CONTACT_SIGMA_M = 0.03
"""A contact's own error (metres) along the normal, its distance error apart."""
CONTACT_SCALE_M = 0.03
"""Scale of the Cauchy weights on the contacts' distances to the plane."""
ITERATIONS = 4
"""Rounds of re-picking the contacts along the new normal and refitting."""
MIN_BODY_EXTENT_M = 1.0
"""Bodies whose joints span less than this along their up (a false detection, a far poster) put no contact
on the ground, unless no body is taller."""
INLIER_M = 0.03
"""Contacts this close to the plane count as its inliers (`GroundPlane.rms_m`)."""
# The world frame relabelled with z up: (x, y up, z back) -> (x, forward = -z, up = y).
_Z_UP_T_Y_UP_33 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass
class GroundPriors:
    """What the fit assumes about the bodies (the defaults: fitted bodies; chosen on pose2sim_single)."""

    body_up_sigma_rad: float = 0.05
    """How far (radians) a body's up (mid-ankles to mid-shoulders) may be from the ground's normal."""
    depth_rel_err: float = 0.05
    """A body's relative distance error (all its points scaled about the camera); 0 = distances exact."""
    up_outlier_rad: float = 0.0
    """Scale (radians) of Cauchy weights on each body's up against the current normal, for its up prior
    and its contacts (a body fitted upside down or lying, a far false detection, counts little);
    0 = every body counts fully."""
    stance_m: float = 0.0
    """Scale (metres) of Cauchy weights on the height difference of a body's two feet along the current
    normal, for its up prior only (a body with one foot raised, kicking, lunging or mid-stride, leans; its
    lower foot still touches the ground); 0 = off."""


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
    up_source: str = "bodies"
    """Where the normal came from: "bodies" (the bodies' up and their feet), "vanishing_point" (the
    scene's vertical vanishing point, pipelines.scene.vanishing; the feet fix only the offset) or
    "manhattan_frame" (the up axis of the photo's lines' Manhattan frame, vanishing.manhattan_frame)."""
    vanishing: dict | None = None
    """The vertical vanishing point's support (`VerticalVanishing.as_dict`), when one was looked for."""

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
            "up_source": self.up_source,
            "vanishing_point": self.vanishing,
            "n_contacts": self.n_contacts,
            "rms_m": None if not np.isfinite(self.rms_m) else round(self.rms_m, 5),
            "convention": "plane: normal_cam . X + offset_m = 0 (OpenCV camera frame, metres, normal up); "
                          "pitch positive = looking down",
        }  # fmt: skip

    @property
    def n_contacts(self) -> int:
        return len(self.contacts_cam_n3)

    @property
    def rms_m(self) -> float:
        """RMS distance to the plane of the contacts within INLIER_M of it (nan without any)."""
        d = np.abs(self.height_m(self.contacts_cam_n3))
        return float(np.sqrt(np.mean(d[d < INLIER_M] ** 2))) if (d < INLIER_M).any() else float("nan")

    @property
    def world_T_cam_44(self) -> np.ndarray:
        """Camera frame -> the world frame on the ground (y up; see the module docstring)."""
        return world_T_cam_from_plane(self.normal_cam, self.offset_m)

    def height_m(self, p_n3: np.ndarray) -> np.ndarray:
        """Signed heights of camera-frame points above the ground (metres)."""
        return np.asarray(p_n3, dtype=np.float64) @ self.normal_cam + self.offset_m

    def to_world(self, p_n3: np.ndarray) -> np.ndarray:
        """Camera-frame points -> world points (..., 3)."""
        T = self.world_T_cam_44
        return np.asarray(p_n3, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]

    def to_camera(self, p_n3: np.ndarray) -> np.ndarray:
        """World points -> camera-frame points (..., 3)."""
        T = self.world_T_cam_44
        return (np.asarray(p_n3, dtype=np.float64) - T[:3, 3]) @ T[:3, :3]

    def world_dict(self) -> dict:
        """The world frame on the ground, for a JSON file."""
        axes = "y up (ground normal), z towards the camera, origin below the camera; metres"
        return {"world_T_cam": np.round(self.world_T_cam_44, 6).tolist(), "world_axes": axes}

    def ground_T_cam(self) -> np.ndarray:
        """4x4 map of camera points into the world frame with z up (x, forward, up; origin on the ground
        under the camera)."""
        T = self.world_T_cam_44
        T[:3] = _Z_UP_T_Y_UP_33 @ T[:3]
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


def world_T_cam_from_plane(normal_cam_3: np.ndarray, offset_m: float) -> np.ndarray:
    """world_T_cam (4, 4) for a ground plane (y up; see the module docstring)."""
    y = np.asarray(normal_cam_3, dtype=np.float64)
    origin = -offset_m * y  # the camera centre (0) projected onto the plane
    fwd = np.array([0.0, 0.0, 1.0]) - y * y[2]
    if np.linalg.norm(fwd) < 1e-6:  # a camera looking straight down: its image "up" as forward
        fwd = np.array([0.0, -1.0, 0.0]) - y * (-y[1])
    z = -fwd / np.linalg.norm(fwd)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ origin
    return T


def unit_rows(v_n3: np.ndarray) -> np.ndarray:
    """Each row (or a single vector) scaled to unit length."""
    return v_n3 / np.maximum(np.linalg.norm(v_n3, axis=-1, keepdims=True), 1e-12)



@dataclass
class FootedBody:
    """What the ground needs from one fitted body (metres, camera frame)."""

    verts_v3: np.ndarray
    """Mesh vertices."""
    joints: dict[str, np.ndarray]
    """Named joints: the shoulders, hips, ankles, heels and toes (COCO + feet names)."""
    track_id: int | None = None
    """The same person on several frames of a video (None: a body of its own)."""


def body_up(body: FootedBody) -> np.ndarray:
    """The body's up direction: from the mid-ankles to the mid-shoulders."""
    j = body.joints
    shoulders = (j["left_shoulder"] + j["right_shoulder"]) / 2
    ankles = (j["left_ankle"] + j["right_ankle"]) / 2
    return unit_rows(shoulders - ankles)


def foot_points(body: FootedBody, side: str) -> tuple[np.ndarray, np.ndarray]:
    """One foot's centre (3,) (the mean of its ankle, heel and toe keypoints) and its points (n, 3): the mesh
    vertices within FOOT_RADIUS_M of the centre, or those keypoints without a mesh near it."""
    names = [f"{side}_ankle", f"{side}_heel", f"{side}_big_toe", f"{side}_small_toe"]
    pts_k3 = np.stack([body.joints[n] for n in names if n in body.joints])
    centre_3 = pts_k3.mean(axis=0)
    near = np.linalg.norm(body.verts_v3 - centre_3, axis=1) < FOOT_RADIUS_M
    return centre_3, (body.verts_v3[near] if near.any() else pts_k3)


def foot_contacts(body: FootedBody, up_3: np.ndarray) -> np.ndarray:
    """Per foot (left, right) the lowest point along `up_3` of its heel half and of its toe half (4, 3):
    left heel, left toe, right heel, right toe (mesh vertices; the keypoints without a mesh)."""
    out = []
    for side in ("left", "right"):
        centre_3, verts_v3 = foot_points(body, side)
        heel = body.joints.get(f"{side}_heel", body.joints[f"{side}_ankle"])
        toes = [body.joints[n] for n in (f"{side}_big_toe", f"{side}_small_toe") if n in body.joints]
        toe = np.mean(toes, axis=0) if toes else centre_3
        axis_3 = toe - heel
        axis_3 = axis_3 - (axis_3 @ up_3) * up_3
        flat = np.linalg.norm(axis_3) <= 1e-6
        along_v = np.zeros(len(verts_v3)) if flat else (verts_v3 - centre_3) @ unit_rows(axis_3)
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
    return FootedBody(verts_v3=body.verts_v3[keep], joints=dict(body.joints), track_id=body.track_id)


def _plane(c_n3: np.ndarray, w_n: np.ndarray, g_n: np.ndarray, ups_b3: np.ndarray, up_3: np.ndarray,
           offset_m: float, priors: GroundPriors, up_w_b: np.ndarray | None = None,
           fixed_normal_3: np.ndarray | None = None) -> tuple[np.ndarray, float]:  # fmt: skip
    """Normal and offset from weighted contacts (`g_n`: each one's person) and the priors (see the module
    docstring). A person's contacts share one distance error: its whole body scaled by 1 + e about the
    camera (e ~ priors.depth_rel_err), which moves its plane's offset by offset * e and keeps its normal. So each
    person's own scatter counts fully, the scatter between people with the weight left by that error."""
    w_n = w_n / CONTACT_SIGMA_M**2
    err = priors.depth_rel_err
    prec_offset = np.inf if err <= 0 else 1.0 / (max(offset_m, 0.3) * err) ** 2
    M_33 = np.zeros((3, 3))
    means, w_eff = [], []
    for g in np.unique(g_n):
        m = g_n == g
        W = float(w_n[m].sum())
        if W <= 0:
            continue
        mean_3 = (w_n[m, None] * c_n3[m]).sum(axis=0) / W
        centred = c_n3[m] - mean_3
        M_33 += (w_n[m, None] * centred).T @ centred
        means.append(mean_3)
        w_eff.append(W if not np.isfinite(prec_offset) else W * prec_offset / (W + prec_offset))
    means_g3, w_g = np.stack(means), np.array(w_eff)
    mean_3 = (w_g[:, None] * means_g3).sum(axis=0) / w_g.sum()
    d_g3 = means_g3 - mean_3
    if fixed_normal_3 is not None:
        return fixed_normal_3, -float(mean_3 @ fixed_normal_3)
    M_33 += (w_g[:, None] * d_g3).T @ d_g3
    up_w_b = np.ones(len(ups_b3)) if up_w_b is None else up_w_b
    M_33 += (up_w_b.sum() * np.eye(3) - (up_w_b[:, None] * ups_b3).T @ ups_b3) / priors.body_up_sigma_rad**2
    # = sum w (I - u u^T) / s^2
    _, vecs = np.linalg.eigh(M_33)
    normal = unit_rows(vecs[:, 0] * np.sign(vecs[:, 0] @ up_3))
    return normal, -float(mean_3 @ normal)


def _up_weights(ups_b3: np.ndarray, normal_3: np.ndarray, scale_rad: float) -> np.ndarray:
    """Cauchy weights of the bodies' ups on their angles to `normal_3`."""
    angle_b = np.arccos(np.clip(ups_b3 @ normal_3, -1.0, 1.0))
    return _robust_weights(angle_b, scale_rad)


def fit_ground_over_time(bodies_per_frame: Sequence[Sequence[FootedBody]], priors: GroundPriors | None = None,
                         up_cam_3: np.ndarray | None = None) -> GroundPlane | None:  # fmt: skip
    """The ground under the bodies of several frames seen by one static camera (or of one frame: a
    list of one list); None without any body or with the camera under the plane. `up_cam_3`: the normal
    from other evidence (the scene's vertical vanishing point): the feet then fix only the offset."""
    priors = priors or GroundPriors()
    flat = [(f, b) for f, frame in enumerate(bodies_per_frame) for b in frame]
    if not flat:
        return None
    tall = [(f, b) for f, b in flat if np.ptp(np.stack(list(b.joints.values())) @ body_up(b)) >= MIN_BODY_EXTENT_M]
    flat = tall or flat
    ups_b3 = np.stack([body_up(b) for _, b in flat])
    up_w_b = np.ones(len(flat))
    up_3 = unit_rows(ups_b3.mean(axis=0))
    if priors.up_outlier_rad > 0:  # a robust mean of the ups (IRLS on their angles to it)
        for _ in range(10):
            up_w_b = _up_weights(ups_b3, up_3, priors.up_outlier_rad)
            up_3 = unit_rows((up_w_b[:, None] * ups_b3).sum(axis=0))
    fixed = None if up_cam_3 is None else unit_rows(np.asarray(up_cam_3, dtype=np.float64))
    normal, offset = (up_3 if fixed is None else fixed), None
    group_of = {}
    for i, (_, b) in enumerate(flat):
        group_of[i] = group_of.setdefault(("track", b.track_id), len(group_of)) if b.track_id is not None else -1 - i
    for _ in range(ITERATIONS):
        if priors.up_outlier_rad > 0:
            up_w_b = _up_weights(ups_b3, normal, priors.up_outlier_rad)
        prior_w_b = up_w_b.copy()
        contacts, weights, groups = [], [], []
        for i, (_, b) in enumerate(flat):
            c_43 = foot_contacts(b, normal)
            h_4 = c_43 @ normal
            if priors.stance_m > 0:  # left foot (rows 0, 1) against right foot (rows 2, 3)
                prior_w_b[i] *= _robust_weights(np.array(h_4[:2].min() - h_4[2:].min()), priors.stance_m)
            low = h_4 - h_4.min()
            keep = low <= FEET_LEVEL_M
            contacts.append(c_43[keep])
            groups.append(np.full(int(keep.sum()), group_of[i]))
            w = 1.0 - low[keep] / (2 * FEET_LEVEL_M)
            if offset is not None:  # a body in the air (a jump, a bad fit) counts little
                w = w * _robust_weights(h_4[keep] + offset, CONTACT_SCALE_M)
            w = w / max(float(np.sum(c_43[keep].mean(axis=0) ** 2)), 1.0)  # its depth error grows with distance
            weights.append(w * up_w_b[i])
        c_n3, w_n = np.concatenate(contacts), np.concatenate(weights)
        if offset is None:
            offset = -float(np.median(c_n3 @ normal))
        normal, offset = _plane(c_n3, w_n, np.concatenate(groups), ups_b3, up_3, offset, priors, prior_w_b,
                                fixed_normal_3=fixed)
    n_frames = len({f for f, _ in flat})
    people = max(sum(1 for g, _ in flat if g == f) for f in range(len(bodies_per_frame)))
    source = (f"feet of {people} {'person' if people == 1 else 'people'}"
              + (f" over {n_frames} frames" if n_frames > 1 else "")
              + (f" ({len(c_n3)} contacts, the bodies' up as the normal's prior)" if fixed is None
                 else f" ({len(c_n3)} contacts, the normal from the vertical vanishing point)"))  # fmt: skip
    if offset is None or offset < 0:  # the camera below the ground: the bodies say nothing sensible
        return None
    return GroundPlane(normal_cam=normal, offset_m=offset, contacts_cam_n3=c_n3, source=source,
                       up_source="bodies" if fixed is None else "vanishing_point")  # fmt: skip


def fit_ground(bodies: Sequence[FootedBody], priors: GroundPriors | None = None) -> GroundPlane | None:
    """The ground under the given bodies of one photo (see the module docstring); None without any body."""
    return fit_ground_over_time([list(bodies)], priors)
