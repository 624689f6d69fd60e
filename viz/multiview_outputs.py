"""Write a processed multi-view capture into a folder, atomically (staged beside it, then moved).

Layout of `out_dir`:
    tracks.json        {"fps", "frames", "joint_names", "tracks": [{"id", "height_m", "frames",
                       "joints3d_world": per frame, per joint [x, y, z]}]}: metres, the calibration's world
                       frame; "frames" are indices of the reference (first) video, a track's frames those
                       where it has >= 12 joints (the others are null)
    report.json        {"median_reproj_px", "plain_median_reproj_px", "fused_fps", "views": [{"name",
                       "time_offset_frames", "median_reproj_px", "rotation_change_deg", "translation_change_m"}],
                       "warnings", "seconds"}
    calibration.json   the refined cameras, project JSON (pipelines.multiview.formats)
    track_<id>.trc     OpenSim markers (viz.trc: y up, metres)
    track_<id>.bvh     the skeleton's motion (viz.bvh: y up, metres)
    track_<id>.glb     the person's Anny body as an animated, skinned glTF (viz.gltf_anim; world frame turned
                       y up, metres), one keyframe per frame with a body
    track_<id>.npz     per-frame body parameters (world frame: bone rotations, bone heads, root, joints) +
                       meta_json (pipelines.multiview.body_fit.PersonBody)
    result.rrd         the Rerun recording (viz.multiview_log)
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np

from pipelines.io.atomic import write_text_atomic
from pipelines.modes.multiview import MultiviewResult
from pipelines.multiview.formats import save_project_json
from pipelines.multiview.fuse import FUSED_JOINT_NAMES
from pipelines.multiview.skeleton import BONE_NAMES, PARENTS, skeleton_motion
from viz import export
from viz.bvh import write_bvh
from viz.gltf_anim import write_animated_glb
from viz.outputs import commit_staging_dir, make_staging_dir
from viz.trc import write_trc

PSEUDO_CAM_T_WORLD_33 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""World (z up) -> the y-down frame viz.bvh expects as its 'camera' frame, so that BVH's y is world z."""


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def report_dict(result: MultiviewResult) -> dict:
    fusion = result.fusion
    n_frames = fusion.n_frames
    total_s = sum(result.seconds.values())
    views = []
    for v, cam in enumerate(fusion.cams):
        ref = fusion.refine
        views.append({"name": cam.name, "video": result.infos[v].path.name,
                      "used": bool(fusion.used_v[v]),
                      "time_offset_frames": _num(fusion.offsets_v[v]) if fusion.used_v[v] else None,
                      "median_reproj_px": _num(fusion.median_reproj_px_v[v]),
                      "rotation_change_deg": None if ref is None else _num(ref.rotation_change_deg_v[v]),
                      "translation_change_m": None if ref is None
                      else _num(ref.translation_change_m_v[v])})  # fmt: skip
    return {"median_reproj_px": _num(fusion.median_reproj_px),
            "plain_median_reproj_px": _num(fusion.plain_median_reproj_px),
            "body_median_reproj_px": _num(float(np.median(np.concatenate([b.reproj_px_vf[np.isfinite(b.reproj_px_vf)]
                                                                          for b in result.bodies])))
                                          if result.bodies else None),
            "fused_fps": _num(n_frames / total_s) if total_s > 0 else None,
            "n_frames": n_frames, "n_people": len(fusion.people),
            "reprojection": "median over the inlier keypoints (confidence >= 0.5) of every view, person and frame, "
                            "undistorted source pixels; plain = the given calibration, no time offsets, no refinement",
            "time_offset": "frames; a view's frame f + offset shows the instant of the first view's frame f",
            "views": views, "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "self_calibration": None if result.selfcalib is None else {
                "cameras": "estimated from the people (no calibration file)",
                "person_height_m": result.selfcalib.person_height_m,
                "inlier_correspondences": dict(zip([c.name for c in fusion.cams], result.selfcalib.inliers_v,
                                                   strict=False))},
            "warnings": result.warnings}  # fmt: skip


def _body_entry(result: MultiviewResult, person_id: int) -> dict | None:
    body = next((b for b in result.bodies if b.id == person_id), None)
    if body is None:
        return None
    return {"model": "anny", "height_m": _num(body.height_m), "frames": body.frames.tolist(),
            "fitted": body.fitted_f.astype(int).tolist(), "reference_camera": result.fusion.cams[body.ref_view].name,
            "median_reproj_px": _num(body.median_reproj_px), "joint_names": list(body.joint_names),
            "joints3d_world": np.round(body.joints_world_fk3, 4).tolist(),
            "root_world": np.round(body.root_world_f3, 4).tolist(),
            "phenotype": dict(zip(_phenotype_labels(), np.round(body.pheno_p, 4).tolist(), strict=False)),
            "files": {"params": f"track_{person_id}.npz", "glb": f"track_{person_id}.glb"}}  # fmt: skip


def _phenotype_labels() -> list[str]:
    from pipelines.registry import create

    return list(create("body", "anny").phenotype_labels)


def tracks_dict(result: MultiviewResult) -> dict:
    tracks = []
    for p in result.fusion.people:
        ok = p.frames_ok
        joints = [None if not ok[f] else [[_num(c) for c in xyz] for xyz in p.joints_fk3[f]]
                  for f in range(len(ok))]  # fmt: skip
        tracks.append({"id": p.id, "height_m": _num(p.height_m), "frames": np.flatnonzero(ok).tolist(),
                       "views": {result.fusion.cams[v].name: rows for v, rows in p.members.items()},
                       "joints3d_world": [joints[f] for f in np.flatnonzero(ok)],
                       "body": _body_entry(result, p.id)})  # fmt: skip
    return {"fps": result.fps, "frames": list(range(result.fusion.n_frames)), "joint_names": FUSED_JOINT_NAMES,
            "units": "metres", "frame": "world frame of the calibration", "tracks": tracks}  # fmt: skip


def _write_body(result: MultiviewResult, body, tmp: Path) -> list[str]:  # noqa: ANN001 - PersonBody
    """track_<id>.npz and track_<id>.glb of one fitted body."""
    from pipelines.registry import create

    anny = create("body", "anny")
    rest = anny.rest_heads(body.pheno_p)
    times = body.frames / result.fps
    params = {"frames": body.frames.astype(np.int64), "times_s": times, "fitted": body.fitted_f,
              "phenotype": body.pheno_p, "phenotype_labels": np.array(anny.phenotype_labels),
              "bone_labels": np.array(anny.bone_labels), "bone_parents": np.asarray(anny.bone_parents),
              "rest_heads_j3": rest.heads_j3, "bone_rot_world_fj33": body.bone_rot_world_fj33,
              "bone_head_world_fj3": body.bone_head_world_fj3, "root_world_f3": body.root_world_f3,
              "joints3d_world_fk3": body.joints_world_fk3}  # fmt: skip
    meta = {"track_id": body.id, "model": "anny", "height_m": body.height_m, "fps": result.fps,
            "joint_names": list(body.joint_names), "convention": "world frame of the calibration, metres, z up",
            "reference_camera": result.fusion.cams[body.ref_view].name}  # fmt: skip
    export.save_params_npz(tmp / f"track_{body.id}.npz", params, meta)
    write_animated_glb(tmp / f"track_{body.id}.glb", rest_verts_v3=anny.rest_vertices(rest.coeffs_n),
                       faces_f3=anny.faces_f3, skin_idx_vn=anny.tables.skin_idx_v9, skin_w_vn=anny.tables.skin_w_v9,
                       bone_labels=anny.bone_labels, parents_j=np.asarray(anny.bone_parents),
                       rest_heads_j3=rest.heads_j3, bone_rot_cam_fj33=PSEUDO_CAM_T_WORLD_33 @ body.bone_rot_world_fj33,
                       root_pos_cam_f3=body.root_world_f3 @ PSEUDO_CAM_T_WORLD_33.T, times_s=times,
                       color_rgb=export.person_color(body.id), name=f"track_{body.id}")  # fmt: skip
    return [f"track_{body.id}.npz", f"track_{body.id}.glb"]


class OutputStaging:
    """write_outputs in two steps, for run_multiview's `on_fused`: `fused(result)` writes the files that need only
    the fusion (calibration.json, each person's TRC and BVH, result.rrd's cameras, videos, keypoints and
    skeletons) into a staging folder beside `out_dir` while the bodies are fitted in forked processes; then
    `write_outputs(result, out_dir, staged=this)` writes the rest and moves the folder into place. The same files
    as write_outputs alone. `discard()` removes what was staged (a run that stopped before its outputs)."""

    def __init__(self, out_dir: str | Path, *, rrd: bool = True, mesh_hz: float = 5.0) -> None:
        self.out_dir, self.rrd, self.mesh_hz = Path(out_dir), rrd, mesh_hz
        self.tmp: Path | None = None
        self.recording = None
        self.names: list[str] = []
        """The files written so far (relative to the staging folder)."""

    def fused(self, result: MultiviewResult) -> None:
        """The files that need only the fusion (once; a failure removes the staging folder and is raised)."""
        if self.tmp is not None:
            raise RuntimeError("OutputStaging.fused was already called")
        self.tmp = tmp = make_staging_dir(self.out_dir)
        try:
            save_project_json(result.fusion.cams, tmp / "calibration.json",
                              {"refined": result.fusion.refine is not None})  # fmt: skip
            for p in result.fusion.people:
                if not p.frames_ok.any():
                    continue
                write_trc(tmp / f"track_{p.id}.trc", FUSED_JOINT_NAMES, p.joints_fk3, result.fps)
                motion = skeleton_motion(p.joints_fk3)
                write_bvh(tmp / f"track_{p.id}.bvh", BONE_NAMES, PARENTS, motion.rest_heads_b3,
                          PSEUDO_CAM_T_WORLD_33 @ motion.rot_world_fb33,
                          motion.root_world_f3 @ PSEUDO_CAM_T_WORLD_33.T, result.fps)  # fmt: skip
                self.names += [f"track_{p.id}.trc", f"track_{p.id}.bvh"]
            if self.rrd:
                from viz.multiview_log import MultiviewRecording

                self.recording = MultiviewRecording(tmp / "result.rrd")
                self.recording.log_fusion(result)
        except BaseException:
            self.discard()
            raise

    def finish(self, result: MultiviewResult) -> list[Path]:
        """The rest (tracks.json and report.json, which name the bodies; the bodies' NPZ and GLB; result.rrd's
        bodies), then the staging folder moved into place as `out_dir`; a failure removes it and is raised."""
        if self.tmp is None:
            self.fused(result)
        tmp = self.tmp
        assert tmp is not None
        try:
            write_text_atomic(tmp / "tracks.json", json.dumps(tracks_dict(result)))
            write_text_atomic(tmp / "report.json", json.dumps(report_dict(result), indent=1))
            names = ["tracks.json", "report.json", "calibration.json", *self.names]
            for body in result.bodies:
                names += _write_body(result, body, tmp)
            if self.recording is not None:
                self.recording.log_bodies(result, mesh_hz=self.mesh_hz)
                self.recording.close()
                self.recording = None
                names.append("result.rrd")
            commit_staging_dir(tmp, self.out_dir)
            self.tmp = None
        except BaseException:
            self.discard()
            raise
        return [self.out_dir / n for n in names]

    def discard(self) -> None:
        """Remove the staging folder (nothing when none was made or it was moved into place)."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            with contextlib.suppress(Exception):  # the folder goes anyway
                recording.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def write_outputs(result: MultiviewResult, out_dir: str | Path, *, rrd: bool = True, mesh_hz: float = 5.0,
                  staged: OutputStaging | None = None) -> list[Path]:  # fmt: skip
    """Write everything (see the module docstring); `mesh_hz`: full body meshes per second in result.rrd.
    `staged`: the files already written while the bodies were fitted (OutputStaging, its out_dir, rrd and
    mesh_hz; they must match these)."""
    if staged is None:
        staged = OutputStaging(out_dir, rrd=rrd, mesh_hz=mesh_hz)
    elif (staged.out_dir, staged.rrd, staged.mesh_hz) != (Path(out_dir), rrd, mesh_hz):
        staged.discard()
        raise ValueError("write_outputs: `staged` was made for another folder or other options")
    return staged.finish(result)
