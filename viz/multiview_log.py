"""Log a fused multi-view capture to Rerun.

    world                                    the calibration's world frame (z up, metres)
    world/cams/{name}                        Transform3D (camera pose, refined) + Pinhole (static)
    world/cams/{name}/image                  AssetVideo (static) + VideoFrameReference per frame (the view's own
                                             frame: grid frame + its time offset); for a video the viewer cannot
                                             play (not H.264/H.265/AV1/VP9 in MP4), JPEG frames at IMAGE_HZ
    world/cams/{name}/image/detected/{id}    the view's keypoints of person id (raw pixels)
    world/cams/{name}/image/fused/{id}       the fused skeleton reprojected into the view (with distortion)
    world/people/{id}/skeleton               fused 3D joints per frame
    world/people/{id}/mesh                   the fitted Anny body (Mesh3D: triangles once, vertices at `mesh_hz`)
    reproj/{name}                            per-view median reprojection error (px) as a time series
    reproj_body/{name}                       the same for the fitted bodies' keypoints

Timelines: `frame` (the first video's frame index) and `video_time` (seconds). Keypoint names and
links come from one AnnotationContext (class id = person id + 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rerun as rr

from pipelines.keypoints.names import BLAZEPOSE_LINKS
from pipelines.modes.multiview import MultiviewResult
from pipelines.multiview.calibration import distort_points
from pipelines.multiview.fuse import FUSED_JOINT_NAMES
from viz.export import person_color
from viz.rerun_log import APPLICATION_ID
from viz.video_asset import FrameImages, log_video_asset

IMAGE_HZ = 5.0
"""Rate of the JPEG frames logged for a view whose video the viewer cannot play (full size, quality 70)."""

_LINKS = [(FUSED_JOINT_NAMES.index(a), FUSED_JOINT_NAMES.index(b)) for a, b in BLAZEPOSE_LINKS
          if a in FUSED_JOINT_NAMES and b in FUSED_JOINT_NAMES]  # fmt: skip


def save_multiview_rrd(result: MultiviewResult, path: str | Path, *, mesh_hz: float = 5.0) -> Path:
    """Write the recording (see the module docstring); `mesh_hz` <= 0: no meshes, inf: every frame."""
    recording = MultiviewRecording(path)
    recording.log_fusion(result)
    recording.log_bodies(result, mesh_hz=mesh_hz)
    return recording.close()


class MultiviewRecording:
    """save_multiview_rrd in steps: `log_fusion` (the cameras, videos, keypoints, skeletons: all that needs only
    the fusion, e.g. while the bodies are fitted), then `log_bodies` (the bodies' meshes and reprojection), then
    `close`. The same entities and values as one call (in another order within the file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rec = rr.RecordingStream(APPLICATION_ID)
        self.rec.save(str(self.path))

    def log_fusion(self, result: MultiviewResult) -> None:
        fusion, rec = result.fusion, self.rec
        kp = [rr.AnnotationInfo(id=i, label=n) for i, n in enumerate(FUSED_JOINT_NAMES)]
        classes = [rr.ClassDescription(info=rr.AnnotationInfo(id=p.id + 1, label=f"person {p.id}",
                                                              color=person_color(p.id)),
                                       keypoint_annotations=kp, keypoint_connections=_LINKS)
                   for p in fusion.people]  # fmt: skip
        rec.log("/", rr.AnnotationContext(classes), static=True)
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        timestamps: list[np.ndarray | None] = []
        images: dict[int, FrameImages] = {}
        last_image_s: dict[int, float] = {}
        for v, cam in enumerate(fusion.cams):
            base = f"world/cams/{cam.name}"
            R = cam.cam_T_world_44[:3, :3]
            rec.log(base, rr.Transform3D(translation=cam.centre_world_3, mat3x3=R.T), static=True)
            rec.log(base, rr.Pinhole(image_from_camera=cam.camera.K_33,
                                     resolution=[cam.camera.width, cam.camera.height],
                                     camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.4),
                    static=True)  # fmt: skip
            ts = log_video_asset(rec, f"{base}/image", result.infos[v].path)
            timestamps.append(ts)
            if ts is None:  # a video the viewer cannot play: its frames as images, at IMAGE_HZ
                images[v] = FrameImages(result.infos[v].path)
        ids = np.arange(len(FUSED_JOINT_NAMES))
        for f in range(fusion.n_frames):
            rec.set_time("frame", sequence=f)
            rec.set_time("video_time", duration=f / result.fps)
            for v, cam in enumerate(fusion.cams):
                base = f"world/cams/{cam.name}/image"
                own = int(round(f + fusion.offsets_v[v]))
                ts = timestamps[v]
                if ts is not None and 0 <= own < len(ts):
                    rec.log(base, rr.VideoFrameReference(nanoseconds=int(ts[own])))
                elif v in images and f / result.fps - last_image_s.get(v, -np.inf) >= 1.0 / IMAGE_HZ - 1e-6:
                    image = images[v].at(own) if own >= 0 else None
                    if image is not None:
                        rec.log(base, image)
                        last_image_s[v] = f / result.fps
                err = fusion.reproj_px_vf[v, f]
                if np.isfinite(err):
                    rec.log(f"reproj/{cam.name}", rr.Scalars(float(err)))
                for p, raw in zip(fusion.people, fusion.obs_xy_pvfk2, strict=True):
                    det = raw[v, f]
                    ok = np.isfinite(det).all(-1)
                    rec.log(f"{base}/detected/{p.id}", rr.Points2D(det[ok], class_ids=p.id + 1,
                                                                   keypoint_ids=ids[ok], radii=-2.0))  # fmt: skip
                    xyz = p.joints_fk3[f]
                    ok3 = np.isfinite(xyz).all(-1)
                    if ok3.any():
                        xy = np.full((len(xyz), 2), np.nan)
                        xy[ok3] = distort_points(cam.project_world(xyz[ok3]), cam)
                        rec.log(f"{base}/fused/{p.id}", rr.Points2D(xy[ok3], class_ids=p.id + 1,
                                                                    keypoint_ids=ids[ok3], radii=-4.0))  # fmt: skip
            for p in fusion.people:
                xyz = p.joints_fk3[f]
                ok3 = np.isfinite(xyz).all(-1)
                rec.log(f"world/people/{p.id}/skeleton", rr.Points3D(xyz[ok3], class_ids=p.id + 1,
                                                                     keypoint_ids=ids[ok3], radii=0.02))  # fmt: skip

    def log_bodies(self, result: MultiviewResult, *, mesh_hz: float = 5.0) -> None:
        """The bodies' meshes (`mesh_hz` a second; <= 0: none, inf: every frame) and median reprojection."""
        if not result.bodies:
            return
        from pipelines.registry import create

        fusion, rec = result.fusion, self.rec
        anny = create("body", "anny")
        period_s = 1.0 / mesh_hz if mesh_hz > 0 else float("inf")
        if np.isfinite(period_s):
            for b in result.bodies:
                rec.log(f"world/people/{b.id}/mesh", rr.Mesh3D.from_fields(
                    triangle_indices=np.asarray(anny.faces_f3, dtype=np.uint32),
                    albedo_factor=(*person_color(b.id), 255)), static=True)  # fmt: skip
        rests = {b.id: anny.rest_heads(b.pheno_p) for b in result.bodies}
        index = {b.id: {int(f): i for i, f in enumerate(b.frames)} for b in result.bodies}
        last_mesh_s: dict[int, float] = {}
        for f in range(fusion.n_frames):
            rec.set_time("frame", sequence=f)
            rec.set_time("video_time", duration=f / result.fps)
            for v, cam in enumerate(fusion.cams):
                body_err = [b.reproj_px_vf[v, f] for b in result.bodies if np.isfinite(b.reproj_px_vf[v, f])]
                if body_err:
                    rec.log(f"reproj_body/{cam.name}", rr.Scalars(float(np.median(body_err))))
            for b in result.bodies:
                i = index[b.id].get(f)
                t_s = f / result.fps
                if i is None or t_s - last_mesh_s.get(b.id, -np.inf) < period_s - 1e-6:
                    continue
                last_mesh_s[b.id] = t_s
                rest = rests[b.id]
                verts = anny.skin(rest.coeffs_n, rest.heads_j3, b.bone_rot_world_fj33[i].astype(np.float64),
                                  b.bone_head_world_fj3[i].astype(np.float64))  # fmt: skip
                rec.log(f"world/people/{b.id}/mesh", rr.Mesh3D.from_fields(vertex_positions=verts.astype(np.float32)))

    def close(self) -> Path:
        self.rec.flush()
        self.rec.disconnect()
        return self.path
