"""Mask corrections in a video (pose2sim_single cam01, one person): a negative point, with a positive one
selecting the person on the same frame, removes that region from the person's mask on that frame and
on the later frames (the point carried with the person's box); the CLI writes the masks into result.rrd
and lists their frames in tracks.json; without a mask prompt no mask is made and frames are not
downscaled beyond the person detector's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from app.cli import EXIT_OK
from pipelines.tracking.prompts import VideoPrompts

STRIDE, END_S, MAX_SIDE = 6, 1.05, 640  # frames 0, 6, ..., 60 of the 60 fps clip, 360x640
AT = 12  # the correction's frame


@pytest.fixture(scope="module")
def video(data_dir: Path) -> Path:
    return data_dir / "multiview" / "pose2sim_single" / "cam01.mp4"


def _run(video: Path, prompts: VideoPrompts | None) -> tuple[list, object]:
    from app.cli import _pipeline
    from pipelines.io.video_io import probe, read_video
    from pipelines.modes.video import VideoOptions, VideoPipeline

    info = probe(video)
    pipe = VideoPipeline(_pipeline(), VideoOptions(rate_hz=info.fps / STRIDE, mesh_hz=0), prompts=prompts)
    frames = read_video(info, stride=STRIDE, end_s=END_S, max_side=MAX_SIDE, keep_source=pipe.wants_source_frames)
    results = list(pipe.run(frames))
    return results, pipe


@pytest.fixture(scope="module")
def plain(video: Path) -> tuple[list, object]:
    return _run(video, None)


def _landmark_mask(video: Path, index: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The landmark model's own mask of the person on frame `index` (processed pixels), their box, and
    the frame's scale: what the tracker sees there before any correction."""
    from pipelines.io.video_io import probe, read_video
    from pipelines.tracking.landmark_tracking import LandmarkTrackingDetector

    info = probe(video)
    tracker = LandmarkTrackingDetector()
    for frame in read_video(info, stride=STRIDE, end_s=(index + 1) / info.fps, max_side=MAX_SIDE, keep_source=True):
        people = tracker.detect_frame(frame)
    return tracker.last_regions[0].mask_hw(frame.shape_hw), np.asarray(people[0].bbox_xyxy), frame.scale


def test_without_a_mask_prompt_no_mask_is_made_and_frames_stay_undecoded_to_size(plain: tuple) -> None:
    results, pipe = plain
    assert all(not r.masks for r in results)
    assert all(not np.any(p.detection.mask_hw) for r in results for p in r.people)
    # The downscaled frame was made only on the frames the person detector ran (the fast path)
    downscaled = sum(r.frame._rgb_hw3 is not None for r in results)
    assert downscaled == pipe._detector.detector_runs < len(results)


def test_a_negative_point_removes_its_region_from_the_mask_on_its_frame_and_later(video: Path, plain: tuple) -> None:
    base_hw, box, scale = _landmark_mask(video, AT)
    rows, cols = np.nonzero(base_hw > 0.5)
    # The head: the top of the person's mask (the landmark model covers it)
    top = rows.min() + 0.06 * (rows.max() - rows.min())
    head_xy = np.array([np.median(cols[rows <= top]), top])
    torso_xy = np.array([(box[0] + box[2]) / 2, box[1] + 0.45 * (box[3] - box[1])])
    assert base_hw[int(head_xy[1]), int(head_xy[0])] > 0.5 and base_hw[int(torso_xy[1]), int(torso_xy[0])] > 0.5
    prompts = VideoPrompts()
    prompts.add_point(AT, *(torso_xy / scale), 1)
    prompts.add_point(AT, *(head_xy / scale), 0)
    results, pipe = _run(video, prompts)
    plain_results, _ = plain
    assert [p.id for r in results for p in r.people] == [p.id for r in plain_results for p in r.people]  # not dropped
    masked = {r.frame.index: r for r in results if r.masks}
    assert sorted(masked) == [AT, AT + 30]  # its frame, then at the mask rate (2 a second: 30 frames at 60 fps)
    assert pipe.masks.frames_with_mask == {0: sorted(masked)}
    uv = (head_xy - box[:2]) / (box[2:] - box[:2])
    for index, r in masked.items():
        mask_hw = r.masks[0]
        det = r.people[0].detection
        assert mask_hw.shape == r.frame.shape_hw and det.mask_hw is mask_hw
        b = np.asarray(det.bbox_xyxy)
        x, y = (b[:2] + uv * (b[2:] - b[:2])).astype(int)  # the point carried with the person's box
        assert mask_hw[y, x] < 0.5, index  # the region under the negative point is not the person
        assert (mask_hw > 0.5).sum() > 0.5 * (base_hw > 0.5).sum(), index  # the rest of them is
    assert masked[AT].masks[0][int(torso_xy[1]), int(torso_xy[0])] > 0.5
    assert (masked[AT].masks[0] > 0.5).sum() < (base_hw > 0.5).sum()  # the correction removed something


def test_cli_writes_the_corrected_masks(video: Path, tmp_path: Path, plain: tuple,
                                        capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    from viz.rrd_read import timeline_values

    results, _ = plain
    first = next(r for r in results if r.frame.index == AT)
    b = np.asarray(first.people[0].detection.bbox_xyxy) / first.frame.scale
    torso = ((b[0] + b[2]) / 2, b[1] + 0.45 * (b[3] - b[1]))
    chest = ((b[0] + b[2]) / 2, b[1] + 0.35 * (b[3] - b[1]))
    out = tmp_path / "masks"
    code, _, err = run_cli(["video", video, "--out", out, "--stride", STRIDE, "--end", END_S, "--max-side", MAX_SIDE,
                            "--quiet", "--mesh-hz", 0, f"--point={AT}:{torso[0]:.0f},{torso[1]:.0f},1",
                            f"--point={AT}:{chest[0]:.0f},{chest[1]:.0f},1"], capsys)  # fmt: skip
    assert code == EXIT_OK, err
    doc = json.loads((out / "tracks.json").read_text())
    frames = doc["tracks"][0]["mask_frames"]
    assert frames and frames[0] == AT
    logged = timeline_values(out / "result.rrd", "frame", "world/camera/image/people/0/mask")
    assert logged == set(frames)


def test_the_tracker_finds_the_same_landmarks_without_downscaling_every_frame(video: Path) -> None:
    from pipelines.io.video_io import VideoFrame, probe, read_video
    from pipelines.tracking.landmark_tracking import LandmarkTrackingDetector, LandmarkTrackingOptions

    info = probe(video)
    frames = list(read_video(info, stride=3, end_s=0.5, max_side=1280, keep_source=True, prefetch=0))
    per_path = {}
    for name, opts in (("whole", None), ("windows", LandmarkTrackingOptions()),
                       ("source", LandmarkTrackingOptions(source_crops=True))):  # fmt: skip
        tracker = LandmarkTrackingDetector(opts) if opts is not None else LandmarkTrackingDetector()
        lazy = [VideoFrame(f.index, f.time_s, None, f.scale, f.source_bgr_hw3) for f in frames]
        people = [tracker.detect(f.rgb_hw3) if opts is None else tracker.detect_frame(f) for f in lazy]
        per_path[name] = np.stack([p[0].keypoints2d.xy_k2 for p in people])
        if opts is not None:
            assert sum(f._rgb_hw3 is not None for f in lazy) == tracker.detector_runs < len(lazy)
    assert np.array_equal(per_path["windows"], per_path["whole"])  # the default: the same, to the last bit
    gap = np.linalg.norm(per_path["source"] - per_path["whole"], axis=-1)
    assert np.median(gap) < 3.0  # the opt-in source crops: close (a pixel or so), not the same
