"""A static camera's ground from the tracked feet, the feet's contacts with it, and their pinning.

A static camera is assumed: every frame's joints are in one camera frame (OpenCV: x right, y down,
z forward; metres), so the feet of every track over the whole video lie on one ground plane. The plane is
the project's one ground fit (`pipelines.scene.ground.fit_ground_over_time`: heel and toe contacts of
every body of every frame, the bodies' up and a level camera as weak priors), fed with each track's
output joints (the video keeps no meshes: the heel and toe keypoints are the feet). Its world frame
(`GroundPlane.world_T_cam_44`: y up, origin below the camera, z towards the camera; metres) carries the
roots' trajectories.

Feet contact: a foot (mean of its heel and toes) touches the ground on a frame where its lowest point
is within `contact_height_m` of the track's own floor level (the 20th percentile of its lowest foot
heights: a single view's depth error can put one person's feet below or above the shared plane) and
it moves slower than `contact_speed_mps` along the ground. `pin_feet` shifts the
root on the ground so that a touching foot stays where it landed (the shift is carried over between
contacts, so the trajectory has no jumps); `foot_slide_cm_per_s` measures what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
from pipelines.scene.ground import FootedBody, GroundPlane, fit_ground_over_time
from pipelines.scene.vanishing import fit_ground_with_vanishing

FOOT_JOINTS = {
    side: [OUTPUT_JOINT_NAMES.index(f"{side}_{n}") for n in ("heel", "big_toe", "small_toe")]
    for side in ("left", "right")
}
"""Output-joint indices of each foot's ground points."""
MIN_FRAMES = 10
"""Fewer fitted frames than this (all tracks together) give no ground."""
MAX_FRAMES = 300
"""At most this many frames (evenly spread over the video) feed the ground fit (its time stays bounded)."""


@dataclass
class ContactOptions:
    """When a foot touches the ground."""

    contact_height_m: float = 0.06
    """A foot this close to the ground (its lowest point) may touch it."""
    contact_speed_mps: float = 0.4
    """... when it moves slower than this along the ground."""


def tracks_ground(joints_per_track: Sequence[np.ndarray], frames_per_track: Sequence[Sequence[int]] | None = None,
                  segments_per_frame: Sequence[np.ndarray] | None = None, K_33: np.ndarray | None = None,
                  size_wh: tuple[int, int] | None = None, manhattan: bool = False) -> GroundPlane | None:  # fmt: skip
    """The ground under every track's feet over the video (each track (F, K, 3) output joints, camera frame;
    `frames_per_track`: the video frame index of each row, so that people seen together count as one
    frame's people; at most MAX_FRAMES frames are used); None with fewer than MIN_FRAMES frames in all, or
    when no sensible plane is found. With `segments_per_frame` (line segments of sampled frames, the people
    masked out; pixels of a `size_wh` image with intrinsics `K_33`) the normal comes from their lines when
    they support one (pipelines.scene.vanishing.fit_ground_with_vanishing): with `manhattan` their pooled
    Manhattan frame's up first (as the photo mode; off by default: better on the tuning capture, worse on the
    held-out one, README issue 11), then their pooled vertical vanishing point."""
    tracks = [np.asarray(j, dtype=np.float64) for j in joints_per_track]
    if sum(len(j) for j in tracks) < MIN_FRAMES:
        return None
    frames_per_track = frames_per_track or [range(len(j)) for j in tracks]
    by_frame: dict[int, list[FootedBody]] = {}
    no_mesh = np.zeros((0, 3))
    for track, (joints_fk3, frames) in enumerate(zip(tracks, frames_per_track, strict=True)):
        for f, joints_k3 in zip(frames, joints_fk3, strict=True):
            if np.isfinite(joints_k3).all():
                joints = dict(zip(OUTPUT_JOINT_NAMES, joints_k3, strict=True))
                by_frame.setdefault(int(f), []).append(FootedBody(verts_v3=no_mesh, joints=joints, track_id=track))
    frames = sorted(by_frame)
    if len(frames) > MAX_FRAMES:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int)]
    if segments_per_frame is not None and K_33 is not None and size_wh is not None:
        return fit_ground_with_vanishing([by_frame[f] for f in frames], segments_per_frame, K_33, *size_wh,
                                         manhattan=manhattan)  # fmt: skip
    return fit_ground_over_time([by_frame[f] for f in frames])


def foot_contacts(ground: GroundPlane, joints_fk3: np.ndarray, times_s: np.ndarray,
                  options: ContactOptions | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per foot ("left", "right"): (F,) bool, touching the ground on that frame (see the module docstring)."""
    o = options or ContactOptions()
    t = np.asarray(times_s, dtype=np.float64)
    out = {}
    j = np.asarray(joints_fk3, dtype=np.float64)
    floor = float(np.percentile(ground.height_m(j[:, FOOT_JOINTS["left"] + FOOT_JOINTS["right"]]).min(axis=1), 20))
    for side, idx in FOOT_JOINTS.items():
        pts = j[:, idx]
        low = ground.height_m(pts).min(axis=1) - floor
        w = ground.to_world(pts.mean(axis=1))[:, [0, 2]]
        speed = np.zeros(len(w))
        if len(w) > 1:
            step = np.linalg.norm(np.diff(w, axis=0), axis=1) / np.maximum(np.diff(t), 1e-6)
            speed = np.minimum(np.r_[step[0], step], np.r_[step, step[-1]])  # slower of the two neighbours
        out[side] = (low < o.contact_height_m) & (speed < o.contact_speed_mps)
    return out


def break_contacts_at_gaps(contacts: dict[str, np.ndarray], times_s: np.ndarray) -> dict[str, np.ndarray]:
    """Contacts with the first frame after a gap in the track (a step over 1.5x the median step: frames
    skipped or the person unseen) cleared, so a foot re-lands there: no pinning or slide across the gap."""
    t = np.asarray(times_s, dtype=np.float64)
    if len(t) < 3:
        return contacts
    step = np.diff(t)
    after_gap = np.r_[False, step > 1.5 * np.median(step)]
    return {side: np.asarray(c, dtype=bool) & ~after_gap for side, c in contacts.items()}


def foot_slide_cm_per_s(ground: GroundPlane, joints_fk3: np.ndarray, times_s: np.ndarray,
                        contacts: dict[str, np.ndarray]) -> float:  # fmt: skip
    """How far touching feet move along the ground, cm per second of contact (both feet summed over
    consecutive contact frames); nan without contact."""
    t = np.asarray(times_s, dtype=np.float64)
    dist, dur = 0.0, 0.0
    for side, idx in FOOT_JOINTS.items():
        w = ground.to_world(np.asarray(joints_fk3, dtype=np.float64)[:, idx].mean(axis=1))[:, [0, 2]]
        c = contacts[side]
        both = c[1:] & c[:-1]
        dist += float(np.linalg.norm(np.diff(w, axis=0), axis=1)[both].sum())
        dur += float(np.diff(t)[both].sum())
    return 100.0 * dist / dur if dur > 0 else float("nan")


def pin_feet(ground: GroundPlane, joints_fk3: np.ndarray, contacts: dict[str, np.ndarray]) -> np.ndarray:
    """Per frame, the shift (F, 3) along the ground (camera frame, metres) to add to the whole body so
    that touching feet stay where they landed; held between contacts (no jumps)."""
    j = np.asarray(joints_fk3, dtype=np.float64)
    feet_w = {s: ground.to_world(j[:, idx].mean(axis=1)) for s, idx in FOOT_JOINTS.items()}
    shift_w = np.zeros((len(j), 3))
    anchor: dict[str, np.ndarray | None] = {s: None for s in FOOT_JOINTS}
    prev = np.zeros(3)
    for f in range(len(j)):
        pulls = []
        for s in FOOT_JOINTS:
            if not contacts[s][f]:
                anchor[s] = None
                continue
            if anchor[s] is None:  # lands: it stays where it lands, with the shift so far
                anchor[s] = feet_w[s][f] + prev
            pulls.append(anchor[s] - feet_w[s][f])
        cur = np.mean(pulls, axis=0) if pulls else prev
        cur = cur * np.array([1.0, 0.0, 1.0])  # along the ground only
        shift_w[f] = cur
        prev = cur
    return shift_w @ ground.world_T_cam_44[:3, :3]  # a direction: world -> camera rotation only


def floor_shift_cam(ground: GroundPlane, joints_fk3: np.ndarray, contacts: dict[str, np.ndarray],
                    sole_m: float = 0.0) -> np.ndarray:  # fmt: skip
    """The constant shift (3,) along the ground's normal (camera frame, metres) that puts a track's
    touching feet on the ground: the median height of the lowest point of each touching foot over its
    contact frames (without contacts: of the track's lowest foot point, its 20th percentile, as
    foot_contacts' floor) brought to `sole_m` (how far the lowest foot joint sits above the sole: the
    mesh then stands on the plane). A single view's depth error lifts or sinks one person's feet off
    the plane fitted to everyone's; this lands them on it."""
    j = np.asarray(joints_fk3, dtype=np.float64)
    lows = [ground.height_m(j[np.asarray(contacts[s], dtype=bool)][:, idx]).min(axis=1)
            for s, idx in FOOT_JOINTS.items()]  # fmt: skip
    low = np.concatenate(lows)
    low = low[np.isfinite(low)]
    if not len(low):
        all_low = ground.height_m(j[:, FOOT_JOINTS["left"] + FOOT_JOINTS["right"]]).min(axis=1)
        all_low = all_low[np.isfinite(all_low)]
        if not len(all_low):
            return np.zeros(3)
        return (sole_m - float(np.percentile(all_low, 20))) * ground.normal_cam
    return (sole_m - float(np.median(low))) * ground.normal_cam


def sole_height_m(rest_verts_v3: np.ndarray, rest_joints_k3: np.ndarray, up_3: np.ndarray) -> float:
    """How far a body's lowest foot joint (heel, toes) sits above its sole (its lowest vertex) in its
    rest pose, along `up_3` (the rest frame's up), metres."""
    up = np.asarray(up_3, dtype=np.float64)
    feet = np.asarray(rest_joints_k3, dtype=np.float64)[FOOT_JOINTS["left"] + FOOT_JOINTS["right"]]
    return float((feet @ up).min() - (np.asarray(rest_verts_v3, dtype=np.float64) @ up).min())
