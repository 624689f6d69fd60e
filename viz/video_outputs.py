"""Write a processed video into a folder, atomically (as viz.outputs does for a photo).

Layout of `out_dir`:
    tracks.json       fps, processed frame indices, joint names, camera K_33 (source video pixels), and per
                      track: id, height_m, frames, joints3d_cam (per frame, per joint [x, y, z]; metres, OpenCV
                      camera frame); plus the warnings; "ground": the ground plane and world frame fitted to
                      the feet (pipelines.tracking.feet; a static camera assumed), and per track its root
                      on it ("root_world", metres), its feet contacts and their slide; "mask_frames": the
                      frames on which a mask correction made its mask (logged to result.rrd)
    track_<id>.npz    per-frame body parameters of that track (bone rotations, root position, joints) + meta_json
    track_<id>.bvh    the skeleton's motion (see viz.bvh: metres), in the ground's world frame
    track_<id>.glb    the body as an animated, skinned glTF (see viz.gltf_anim): one keyframe per frame,
                      in the ground's world frame (y up = the ground's normal, the floor at y = 0; without a
                      ground, fewer than 10 frames: the camera's up, as the photo GLB)
    result.rrd        the Rerun recording (see viz.video_log), streamed while the video runs

The folder is staged beside `out_dir` while the video runs and moved into place by `finish`; the
frames processed so far are written even when decoding stopped early (truncated or damaged video).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.body.anny_points import OUTPUT_JOINT_NAMES, output_joint_regressor
from pipelines.io.video_io import VideoInfo
from pipelines.modes.video import TrackHistory, VideoFrameResult, VideoPipeline
from pipelines.scene.ground import GroundPlane
from pipelines.scene.vanishing import boxes_mask, line_segments, segments_off_mask
from pipelines.tracking.feet import (
    break_contacts_at_gaps,
    floor_shift_cam,
    foot_contacts,
    foot_slide_cm_per_s,
    pin_feet,
    sole_height_m,
    tracks_ground,
)
from viz import export
from viz.bvh import out_frame, write_bvh
from viz.gltf_anim import write_animated_glb
from viz.outputs import CAMERA_CONVENTION, commit_staging_dir, make_staging_dir

VP_SAMPLE_S = 1.0
"""A frame's line segments are kept for the ground's up (Manhattan frame, vanishing point) every this many s ..."""
VP_MAX_FRAMES = 10
"""... at most this many frames."""
ANNY_UP_3 = np.array([0.0, 0.0, 1.0])
"""Up in Anny's rest frame (z up)."""


class VideoOutputs:
    """Stages a video's outputs while it runs; `finish` writes the rest and moves the folder into place."""

    def __init__(self, out_dir: str | Path, info: VideoInfo, *, write_rrd: bool = True, mesh_hz: float = 1.0,
                 pin_feet: bool = True) -> None:  # fmt: skip
        """`pin_feet`: the exported motion (GLB, BVH, root_world) keeps touching feet in place (the
        root shifted along the ground); joints3d_cam stay as fitted."""
        self.out_dir = Path(out_dir)
        self.info = info
        self.pin_feet = pin_feet
        self.ground: GroundPlane | None = None
        self.world: dict[int, dict[str, Any]] = {}
        self.tmp = make_staging_dir(self.out_dir)
        self.logger = None
        self.scale = 1.0
        self.segments: list[np.ndarray] = []
        """Line segments (off the people) of frames sampled every VP_SAMPLE_S, for the ground's up from the lines."""
        self._segments_t = -np.inf
        self._segments_wh = (0, 0)
        if write_rrd:
            from viz.video_log import VideoLogger

            self.logger = VideoLogger(self.tmp / "result.rrd", info, mesh_hz=mesh_hz)

    def add(self, result: VideoFrameResult) -> None:
        self.scale = result.frame.scale
        self._sample_segments(result)
        if self.logger is not None:
            self.logger.log(result)

    def _sample_segments(self, result: VideoFrameResult) -> None:
        """Keep the line segments of a frame every VP_SAMPLE_S (at most VP_MAX_FRAMES), the people's boxes
        masked out: the ground's Manhattan frame and vertical vanishing point pool them (a static camera)."""
        if len(self.segments) >= VP_MAX_FRAMES or result.frame.time_s < self._segments_t + VP_SAMPLE_S:
            return
        rgb_hw3 = result.frame.rgb_hw3
        h, w = rgb_hw3.shape[:2]
        if self.segments and self._segments_wh != (w, h):
            return
        boxes = np.array([p.detection.bbox_xyxy for p in result.people]).reshape(-1, 4)
        self.segments.append(segments_off_mask(line_segments(rgb_hw3), boxes_mask(boxes, w, h, 0.15)))
        self._segments_t, self._segments_wh = result.frame.time_s, (w, h)

    def abort(self) -> None:
        """Drop the staging folder (nothing is changed in `out_dir`)."""
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, pipeline: VideoPipeline, warnings: list[str], options: dict[str, Any]) -> list[Path]:
        """Close the recording, write tracks.json and each track's files, and move the folder into place."""
        try:
            names = [] if self.logger is None else ["result.rrd"]
            smoothed = pipeline.smooth_tracks()  # the whole track, offline (VideoOptions.track_smoothing)
            self._fit_ground(pipeline)
            if self.logger is not None:
                if smoothed:
                    self.logger.log_skeletons(pipeline.tracks)
                if self.ground is not None:
                    self.logger.log_ground(self.ground, {i: w["root_cam_f3"] for i, w in self.world.items()})
                self.logger.close()
                self.logger = None
            names += self._write_tracks(pipeline, warnings, options)
            commit_staging_dir(self.tmp, self.out_dir)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return [self.out_dir / n for n in names]

    def _fit_ground(self, pipeline: VideoPipeline) -> None:
        """The ground under the static camera, and per track its contacts, foot slide and pinned root."""
        tracks = [t for t in pipeline.tracks.values() if t.frames]
        cam = pipeline.camera
        use_vp = bool(self.segments) and cam is not None and (cam.width, cam.height) == self._segments_wh
        self.ground = tracks_ground([np.stack(t.joints_cam_fk3) for t in tracks], [t.frames for t in tracks],
                                   self.segments if use_vp else None, cam.K_33 if use_vp else None,
                                   self._segments_wh if use_vp else None)  # fmt: skip
        self.world = {}
        if self.ground is None:
            return
        for t in tracks:
            joints = np.stack(t.joints_cam_fk3).astype(np.float64)
            times = np.asarray(t.times_s)
            contacts = break_contacts_at_gaps(foot_contacts(self.ground, joints, times), times)
            shift_f3 = pin_feet(self.ground, joints, contacts) if self.pin_feet else np.zeros((len(joints), 3))
            shift_f3 = shift_f3 + floor_shift_cam(self.ground, joints, contacts, self._sole_m(pipeline, t))
            root_cam_f3 = np.stack(t.root_pos_cam_f3) + shift_f3
            self.world[t.id] = {
                "contacts": contacts,
                "shift_cam_f3": shift_f3,
                "root_cam_f3": root_cam_f3,
                "slide": {"fitted": foot_slide_cm_per_s(self.ground, joints, times, contacts),
                          "exported": foot_slide_cm_per_s(self.ground, joints + shift_f3[:, None], times, contacts)},
            }  # fmt: skip

    @staticmethod
    def _sole_m(pipeline: VideoPipeline, track: TrackHistory) -> float:
        """How far the track's lowest foot joint sits above its sole (its held shape, rest pose)."""
        body = pipeline.image.hmr.body
        rest_v3 = body.rest_vertices(body.rest_heads(track.pheno_p).coeffs_n)
        idx_s, weights_ks = output_joint_regressor(body)
        return sole_height_m(rest_v3, weights_ks @ rest_v3[idx_s], ANNY_UP_3)

    def _world_entry(self, track_id: int) -> dict[str, Any]:
        w = self.world.get(track_id)
        if w is None or self.ground is None:
            return {}
        return {
            "root_world": np.round(self.ground.to_world(w["root_cam_f3"]), 4),
            "foot_contact": {s: c.astype(int).tolist() for s, c in w["contacts"].items()},
            "foot_slide_cm_per_s": {k: None if not np.isfinite(v) else round(v, 2) for k, v in w["slide"].items()},
            "feet_pinned": self.pin_feet,
        }

    def _exports_frame(self) -> tuple[np.ndarray | None, str]:
        """The exports' camera -> file transform (None: the camera's up) and its description."""
        if self.ground is None:
            return None, ("the camera's up (the OpenCV camera frame turned 180 degrees about x): too few frames "
                          "for a ground")  # fmt: skip
        return self.ground.world_T_cam_44, "the ground's world frame (ground.world_T_cam): y up, the floor at y = 0"

    def _camera_entry(self, pipeline: VideoPipeline) -> dict[str, Any]:
        cam = pipeline.camera
        if cam is None:
            return {"K_33": None, "convention": CAMERA_CONVENTION}
        K_src_33 = np.asarray(cam.K_33, dtype=np.float64).copy()
        K_src_33[:2] /= self.scale
        return {
            "K_33": K_src_33.tolist(),
            "pixels": "source video pixels, origin at the top-left corner",
            "width": self.info.width,
            "height": self.info.height,
            "focal_px": float(K_src_33[0, 0]),
            "source": cam.source,
            "processed_scale": self.scale,
            "static": True,
            "convention": CAMERA_CONVENTION,
        }

    def _write_tracks(self, pipeline: VideoPipeline, warnings: list[str], options: dict[str, Any]) -> list[str]:
        names: list[str] = []
        entries = []
        body = pipeline.image.hmr.body
        for track in sorted(pipeline.tracks.values(), key=lambda t: t.id):
            if not track.frames:
                continue
            entries.append({
                "id": track.id,
                "height_m": track.height_m,
                "frames": list(track.frames),
                "times_s": [round(float(v), 6) for v in track.times_s],
                "joints3d_cam": np.round(np.stack(track.joints_cam_fk3).astype(np.float64), 5),
                "files": {"params": f"track_{track.id}.npz", "bvh": f"track_{track.id}.bvh",
                          "glb": f"track_{track.id}.glb"},
                "mask_frames": list(pipeline.masks.frames_with_mask.get(track.id, [])),
                **self._world_entry(track.id),
            })  # fmt: skip
            names += self._write_track_files(track, body, pipeline)
        doc = {
            "video": str(self.info.path),
            "fps": self.info.fps,
            "frames": list(pipeline.frames_done),
            "joint_names": list(OUTPUT_JOINT_NAMES),
            "units": "metres, OpenCV camera frame (x right, y down, z forward)",
            "camera": self._camera_entry(pipeline),
            "options": options,
            "backends": {stage: {"asked": u.asked, "used": u.used, "fallback_reason": u.reason}
                         for stage, u in pipeline.backend_uses().items()},  # fmt: skip
            "ground": None if self.ground is None else {**self.ground.as_dict(), **self.ground.world_dict(),
                                                        "assumes": "a static camera"},
            "exports_frame": self._exports_frame()[1],
            "tracks": entries,
            "warnings": warnings,
        }
        export.write_json(self.tmp / "tracks.json", doc)
        return [*names, "tracks.json"]

    def _write_track_files(self, track: TrackHistory, body: Any, pipeline: VideoPipeline) -> list[str]:
        rest = body.rest_heads(track.pheno_p)
        G_fj33 = np.stack(track.bone_rot_cam_fj33)
        root_f3 = np.stack(track.root_pos_cam_f3)
        shift_f3 = self.world.get(track.id, {}).get("shift_cam_f3", np.zeros_like(root_f3))
        out_T_cam_44, _ = self._exports_frame()
        params = {
            "frames": np.asarray(track.frames, dtype=np.int64),
            "times_s": np.asarray(track.times_s, dtype=np.float64),
            "phenotype": track.pheno_p,
            "phenotype_labels": np.array(body.phenotype_labels),
            "bone_labels": np.array(body.bone_labels),
            "bone_parents": np.asarray(body.bone_parents),
            "rest_heads_j3": rest.heads_j3,
            "bone_rot_cam_fj33": G_fj33,
            "root_pos_cam_f3": root_f3,
            "feet_pin_shift_cam_f3": shift_f3,  # the exported motion's shift: feet pinned, landed on the floor
            "exports_T_cam_44": _as_44(*out_frame(out_T_cam_44)),  # camera frame -> the GLB's and BVH's frame
            "joints3d_cam_fk3": np.stack(track.joints_cam_fk3),
            "reprojection_px_f": np.asarray(track.reprojection_px_f),
            "focal_px": np.array(pipeline.camera.focal_px if pipeline.camera else np.nan),
        }
        meta = {"track_id": track.id, "model": "anny", "height_m": track.height_m, "fps": self.info.fps,
                "joint_names": OUTPUT_JOINT_NAMES, "convention": CAMERA_CONVENTION,
                "focal_px_pixels": "processed frame pixels"}  # fmt: skip
        export.save_params_npz(self.tmp / f"track_{track.id}.npz", params, meta)
        step = np.diff(track.times_s)
        frame_time = float(np.median(step)) if len(step) else 1.0 / self.info.fps
        write_bvh(self.tmp / f"track_{track.id}.bvh", body.bone_labels, np.asarray(body.bone_parents),
                  rest.heads_j3, G_fj33, root_f3 + shift_f3, 1.0 / frame_time, out_T_cam_44)  # fmt: skip
        write_animated_glb(self.tmp / f"track_{track.id}.glb", rest_verts_v3=body.rest_vertices(rest.coeffs_n),
                           faces_f3=body.faces_f3, skin_idx_vn=body.tables.skin_idx_v9,
                           skin_w_vn=body.tables.skin_w_v9, bone_labels=body.bone_labels,
                           parents_j=np.asarray(body.bone_parents), rest_heads_j3=rest.heads_j3,
                           bone_rot_cam_fj33=G_fj33, root_pos_cam_f3=root_f3 + shift_f3,
                           times_s=np.asarray(track.times_s),
                           color_rgb=export.person_color(track.id), name=f"track_{track.id}",
                           out_T_cam_44=out_T_cam_44)  # fmt: skip
        return [f"track_{track.id}.npz", f"track_{track.id}.bvh", f"track_{track.id}.glb"]


def _as_44(R_33: np.ndarray, t_3: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_33, t_3
    return T
