"""Log a processed video to Rerun: the video as one asset with frame references, people over time.

Entity paths are those of viz.rerun_log (same annotation contexts, colours and keypoint ids):

    world/camera                              Pinhole (static: the camera is assumed static)
    world/camera/image                        AssetVideo (static) + VideoFrameReference per frame
                                              (a JPEG per frame only when Rerun cannot read the video)
    world/camera/image/people/{id}/bbox       Boxes2D per frame
    world/camera/image/people/{id}/keypoints  Points2D per frame
    world/camera/image/people/{id}/mask       SegmentationImage (class id = id + 1, source pixels), only for
                                              a person whose mask was corrected, on the frames it was made
                                              (VideoFrameResult.masks: the correction's frame, then at
                                              VideoMaskOptions.mask_hz); the viewer shows the last one
    world/people/{id}/skeleton                Points3D per frame (links from the AnnotationContext); logged
                                              again at the end once each whole track is smoothed
    world/people/{id}/mesh                    Mesh3D: triangles once, vertex positions at `mesh_hz`
    world/ground/plane                        Mesh3D (static, at the end): the fitted ground, a square
    world/ground/trajectory/{id}              LineStrips3D (static, at the end): each track's root on the ground

Timelines: `frame` (the video's frame index) and `video_time` (seconds), both set for every frame.
2D data is logged in pixels of the source video (the asset's), 3D in metres, OpenCV camera frame.
The full mesh is ~165 KB a person a frame; it is logged at a low rate (default 1 Hz) so the
recording stays small; the skeleton is logged on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rerun as rr

from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
from pipelines.io.video_io import VideoInfo
from pipelines.modes.video import VideoFrameResult
from pipelines.scene.ground import GroundPlane
from viz.blueprint import default_blueprint
from viz.export import person_color
from viz.rerun_log import (
    APPLICATION_ID,
    CAMERA_PATH,
    IMAGE_PATH,
    PEOPLE_2D_PATH,
    PEOPLE_3D_PATH,
    JointVocabulary,
    RerunLogger,
)
from viz.video_asset import log_video_asset


class VideoLogger:
    """Streams a video's results into an .rrd file as frames arrive."""

    def __init__(self, path: str | Path, info: VideoInfo, *, mesh_hz: float = 1.0, recording_id: str | None = None,
                 stream: bool = False) -> None:  # fmt: skip
        """`stream`: also keep what is logged for a streaming viewer (see `read`), as well as the file."""
        self.path = Path(path)
        self.info = info
        self.mesh_period_s = 1.0 / mesh_hz if mesh_hz > 0 else float("inf")
        # Larger chunks than Rerun's default (flushed every 0.2 s, i.e. about one chunk per frame here):
        # each chunk carries its own schema, so per-frame chunks made the file several times larger.
        batcher = rr.ChunkBatcherConfig(flush_tick=timedelta(seconds=10), flush_num_bytes=8 * 2**20)
        self.rec = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id, batcher_config=batcher)
        blueprint = default_blueprint(CAMERA_PATH, time_panel="expanded")
        self.stream = self.rec.binary_stream() if stream else None
        if self.stream is None:
            self.rec.save(self.path, default_blueprint=blueprint)
        else:  # the same messages go to the file and to the stream
            self.rec.set_sinks(rr.FileSink(str(self.path)), self.stream, default_blueprint=blueprint)
            self.rec.send_blueprint(blueprint)
        base = RerunLogger(self.rec)
        base.log_setup()  # world axes and the 2D / 3D annotation contexts
        self.vocab_2d = JointVocabulary()
        self.vocab_3d = base.vocab_3d
        self._last_mesh_s: dict[int, float] = {}
        self._topology_logged: set[int] = set()
        self._seen_2d: set[int] = set()
        self._seen_3d: set[int] = set()
        self._logged_focal_px: float | None = None
        self._rows: dict[str, _Rows] = {}
        self._rows_frames = 0
        self.frame_timestamps_ns: np.ndarray | None = None
        self.video_asset = False
        if not info.is_folder:  # a folder of frames, or a video the viewer cannot play: JPEG frames
            self.frame_timestamps_ns = log_video_asset(self.rec, IMAGE_PATH, info.path)
            self.video_asset = self.frame_timestamps_ns is not None

    def _log_camera(self, result: VideoFrameResult) -> None:
        scale = result.frame.scale
        K_src_33 = np.asarray(result.camera.K_33, dtype=np.float64).copy()
        K_src_33[:2] /= scale  # processed pixels -> source pixels
        h, w = result.frame.shape_hw
        size = [round(w / scale), round(h / scale)]
        pinhole = rr.Pinhole(image_from_camera=K_src_33.astype(np.float32), resolution=size,
                             camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.5)  # fmt: skip
        self.rec.log(CAMERA_PATH, pinhole, static=True)
        self._logged_focal_px = result.camera.focal_px

    def log(self, result: VideoFrameResult) -> None:
        frame = result.frame
        self.rec.set_time("frame", sequence=int(frame.index))
        self.rec.set_time("video_time", duration=float(frame.time_s))
        if self._logged_focal_px != result.camera.focal_px:  # static camera: re-logged only if the focal changes
            self._log_camera(result)
        scale = frame.scale
        if self.video_asset and self.frame_timestamps_ns is not None:
            if frame.index < len(self.frame_timestamps_ns):
                ts_ns = int(self.frame_timestamps_ns[frame.index])
            else:
                ts_ns = int(round(frame.time_s * 1e9))
            self._row(IMAGE_PATH, "frame_ref", frame, {"ts_ns": ts_ns})
        else:
            if frame.source_bgr_hw3 is not None:  # the decoded frame itself (source pixels, as decoded)
                bgr = frame.source_bgr_hw3
            else:
                bgr = cv2.cvtColor(np.ascontiguousarray(frame.rgb_hw3), cv2.COLOR_RGB2BGR)
                bgr = cv2.resize(bgr, (round(bgr.shape[1] / scale), round(bgr.shape[0] / scale)))
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                self.rec.log(IMAGE_PATH, rr.EncodedImage(contents=buf.tobytes(), media_type="image/jpeg"))

        ids_2d, ids_3d = set(), set()
        for person in result.people:
            cls = person.id + 1
            det = person.detection
            base2d = f"{PEOPLE_2D_PATH}/{person.id}"
            ids_2d.add(person.id)
            box = np.asarray(det.bbox_xyxy, dtype=np.float64) / scale
            self._row(f"{base2d}/bbox", "boxes", frame, {"centers": (box[:2] + box[2:]) / 2,
                                                         "half_sizes": (box[2:] - box[:2]) / 2, "cls": cls,
                                                         "label": f"person {person.id}"})  # fmt: skip
            if person.id in result.masks:
                self._log_mask(f"{base2d}/mask", result.masks[person.id], cls)
            kp = det.keypoints2d
            xy_k2 = np.asarray(kp.xy_k2, dtype=np.float64) / scale
            ok_k = np.isfinite(xy_k2).all(axis=1) & (np.asarray(kp.conf_k) > 0.3)
            ok_names = [n for n, good in zip(kp.names, ok_k, strict=True) if good]
            self.vocab_2d.add(ok_names)
            self._row(f"{base2d}/keypoints", "points2d", frame, {
                "positions": xy_k2[ok_k].astype(np.float32), "keypoint_ids": self.vocab_2d.ids(ok_names),
                "cls": cls, "radius": -3.0})  # fmt: skip
            body = person.body
            if body is None:
                continue
            ids_3d.add(person.id)
            base3d = f"{PEOPLE_3D_PATH}/{person.id}"
            joints = body.joints3d_cam
            self._row(f"{base3d}/skeleton", "points3d", frame, {
                "positions": np.asarray(joints.xyz_k3, dtype=np.float32),
                "keypoint_ids": self.vocab_3d.ids(joints.names), "cls": cls, "radius": 0.015})  # fmt: skip
            last = self._last_mesh_s.get(person.id)
            has_mesh = len(body.verts_cam_v3) > 0  # warm-started frames skip the mesh (VideoOptions.mesh_hz)
            if has_mesh and (last is None or frame.time_s - last >= self.mesh_period_s - 1e-6):
                self._last_mesh_s[person.id] = frame.time_s
                if person.id not in self._topology_logged:
                    self.rec.log(f"{base3d}/mesh", rr.Mesh3D.from_fields(
                        triangle_indices=np.asarray(body.faces_f3, dtype=np.uint32),
                        albedo_factor=(*person_color(person.id), 255)), static=True)  # fmt: skip
                    self._topology_logged.add(person.id)
                self.rec.log(f"{base3d}/mesh", rr.Mesh3D.from_fields(
                    vertex_positions=np.asarray(body.verts_cam_v3, dtype=np.float32)))  # fmt: skip
        for gone in self._seen_2d - ids_2d:
            self.rec.log(f"{PEOPLE_2D_PATH}/{gone}", rr.Clear(recursive=True))
        for gone in self._seen_3d - ids_3d:
            self.rec.log(f"{PEOPLE_3D_PATH}/{gone}", rr.Clear(recursive=True))
            self._last_mesh_s.pop(gone, None)
        self._seen_2d, self._seen_3d = ids_2d, ids_3d
        self._rows_frames += 1
        if self._rows_frames >= ROWS_PER_SEND:
            self._send_rows()

    def _row(self, path: str, kind: str, frame: Any, values: dict[str, Any]) -> None:
        """One frame's row of a per-frame entity, kept until `_send_rows` sends the entity's rows at once."""
        rows = self._rows.get(path)
        if rows is None:
            rows = self._rows[path] = _Rows(kind)
        rows.frames.append(int(frame.index))
        rows.times_s.append(float(frame.time_s))
        rows.values.append(values)

    def _send_rows(self) -> None:
        """The kept rows of every per-frame entity, one `send_columns` each (at their frames and times, as
        if each had been logged then; the rows of an entity come in frame order)."""
        rows, self._rows, self._rows_frames = self._rows, {}, 0
        for path, r in rows.items():
            index = [rr.TimeColumn("frame", sequence=r.frames), rr.TimeColumn("video_time", duration=r.times_s)]
            self.rec.send_columns(path, index, r.columns())

    def _log_mask(self, path: str, mask_hw: np.ndarray, cls: int) -> None:
        """A person's mask as a segmentation image of the source video's size (class `cls` where the mask
        is over 0.5, 0 elsewhere; nearest-neighbour upscaled, so the class ids stay ids). A binary image
        compresses to a few tens of KB in the .rrd's chunks."""
        dtype = np.uint8 if cls < 256 else np.uint16
        ids_hw = (np.asarray(mask_hw) > 0.5).astype(dtype) * dtype(cls)
        size = (int(self.info.width), int(self.info.height))
        if (ids_hw.shape[1], ids_hw.shape[0]) != size and all(size):
            ids_hw = cv2.resize(ids_hw, size, interpolation=cv2.INTER_NEAREST)
        self.rec.log(path, rr.SegmentationImage(ids_hw))

    def read(self) -> bytes | None:
        """With `stream`: everything logged since the last read (also after `close`), as one rrd chunk a
        viewer can append (flushes the file too); None when not streaming or nothing is new."""
        if self.stream is None:
            return None
        self._send_rows()
        return self.stream.read(flush=True) or None

    def log_ground(self, ground: GroundPlane, roots_cam: dict[int, np.ndarray]) -> None:
        """The ground plane (a square around the trajectories, 1 m beyond them, 4 m at least) and each
        track's root trajectory projected onto it (camera frame, metres), static."""
        pts_w = [ground.to_world(r) for r in roots_cam.values() if len(r)]
        allw = np.concatenate(pts_w) if pts_w else np.zeros((1, 3))
        lo, hi = allw[:, [0, 2]].min(axis=0) - 1.0, allw[:, [0, 2]].max(axis=0) + 1.0
        centre, half = (lo + hi) / 2, max(2.0, float((hi - lo).max()) / 2)
        corners_w = np.array([[centre[0] + sx * half, 0.0, centre[1] + sz * half] for sx, sz in
                              ((-1, -1), (1, -1), (1, 1), (-1, 1))])  # fmt: skip
        self.rec.log("world/ground/plane", rr.Mesh3D(
            vertex_positions=ground.to_camera(corners_w).astype(np.float32), triangle_indices=[[0, 1, 2], [0, 2, 3]],
            albedo_factor=(160, 160, 160, 90)), static=True)  # fmt: skip
        for track_id, root_cam in roots_cam.items():
            if len(root_cam) < 2:
                continue
            on_ground_w = ground.to_world(root_cam)
            on_ground_w[:, 1] = 0.0
            self.rec.log(f"world/ground/trajectory/{track_id}", rr.LineStrips3D(
                [ground.to_camera(on_ground_w).astype(np.float32)], colors=[person_color(track_id)],
                radii=0.01, labels=[f"person {track_id}"]), static=True)  # fmt: skip

    def log_skeletons(self, tracks: dict[int, Any]) -> None:
        """Each track's skeleton again on every one of its frames (TrackHistory's joints, camera frame,
        metres), e.g. once the whole track is smoothed: at the same timeline points the later rows are the
        ones the viewer shows (one send_columns a track)."""
        self._send_rows()  # the per-frame skeletons first: these replace them
        names = list(OUTPUT_JOINT_NAMES)
        for track in tracks.values():
            if not track.frames:
                continue
            r = _Rows("points3d")
            for index, time_s, joints_k3 in zip(track.frames, track.times_s, track.joints_cam_fk3, strict=True):
                r.frames.append(int(index))
                r.times_s.append(float(time_s))
                r.values.append({"positions": np.asarray(joints_k3, dtype=np.float32),
                                 "keypoint_ids": self.vocab_3d.ids(names), "cls": track.id + 1, "radius": 0.015})
            index = [rr.TimeColumn("frame", sequence=r.frames), rr.TimeColumn("video_time", duration=r.times_s)]
            self.rec.send_columns(f"{PEOPLE_3D_PATH}/{track.id}/skeleton", index, r.columns())

    def close(self) -> None:
        self._send_rows()
        self.rec.flush()
        self.rec.disconnect()  # closes the file sink, which writes the footer


ROWS_PER_SEND = 30
"""Frames of per-frame data (boxes, keypoints, skeletons, frame references) kept before they are sent as
columns (one send_columns per entity instead of one log call per entity and frame: ~1.5 ms less of the
fits' thread a frame, one person); also sent on every `read` (the streaming viewer), before the
end-of-run skeletons, and on `close`."""


@dataclass
class _Rows:
    """Per-frame rows of one entity, waiting to be sent as columns."""

    kind: str
    """"frame_ref" (VideoFrameReference), "boxes" (Boxes2D), "points2d" (Points2D) or "points3d" (Points3D)."""
    frames: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)

    def columns(self) -> list[Any]:
        """The rows as Rerun component columns: per-instance values partitioned by row, per-row values (class
        id, radius, label) one per row (Rerun repeats a single value over a row's instances)."""
        v, n = self.values, len(self.values)
        if self.kind == "frame_ref":
            return list(rr.VideoFrameReference.columns_nanos([x["ts_ns"] for x in v]))
        if self.kind == "boxes":
            return list(rr.Boxes2D.columns(centers=np.stack([x["centers"] for x in v]),
                                           half_sizes=np.stack([x["half_sizes"] for x in v]),
                                           class_ids=np.array([x["cls"] for x in v], dtype=np.uint16),
                                           labels=[x["label"] for x in v]))  # fmt: skip
        archetype = rr.Points2D if self.kind == "points2d" else rr.Points3D
        lengths = [len(x["positions"]) for x in v]
        per_instance = archetype.columns(positions=np.concatenate([x["positions"] for x in v]),
                                         keypoint_ids=np.concatenate([x["keypoint_ids"] for x in v]).astype(np.uint16)
                                         ).partition(lengths)  # fmt: skip
        per_row = archetype.columns(class_ids=np.array([x["cls"] for x in v], dtype=np.uint16),
                                    radii=np.array([x["radius"] for x in v], dtype=np.float32),
                                    show_labels=np.zeros(n, dtype=bool))  # fmt: skip
        return [*per_instance, *per_row]
