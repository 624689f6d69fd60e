"""The viewer shows every video: H.264 MP4 files are referenced as a Rerun video asset, while a video the
viewer cannot decode (MPEG-4 Part 2 from OpenCV's writer, Motion JPEG in AVI) is logged as JPEG frames,
in the video mode and in the multi-view mode."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from rerun.chunk import RrdReader

from app.cli import EXIT_OK, main
from app.ui.multiview_handlers import EXAMPLE_CALIBRATION, EXAMPLE_VIDEOS
from viz.video_asset import viewer_plays

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def components(rrd: Path, entity: str) -> set[str]:
    """Names of the component columns logged at `entity` (static or not), read back with Rerun's reader."""
    names: set[str] = set()
    for chunk in RrdReader(rrd).stream():
        if chunk.entity_path.lstrip("/") == entity:
            names.update(chunk.to_record_batch().schema.names)
    return names


def reencode(src: Path, dst: Path, fourcc: str, frames: int) -> Path:
    """The first `frames` frames of `src` written by OpenCV with `fourcc` (same size and rate)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for _ in range(frames):
        ok, bgr = cap.read()
        assert ok
        writer.write(bgr)
    writer.release()
    cap.release()
    return dst


def test_viewer_plays_h264_mp4_only(tmp_path: Path) -> None:
    for path in [EXAMPLES / "dancer.mp4", *EXAMPLE_VIDEOS]:
        assert viewer_plays(path), path.name  # the examples are H.264 MP4, so the viewer plays them
    assert not viewer_plays(reencode(EXAMPLES / "dancer.mp4", tmp_path / "mp4v.mp4", "mp4v", 3))
    assert not viewer_plays(reencode(EXAMPLES / "dancer.mp4", tmp_path / "mjpg.avi", "MJPG", 3))
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    assert not viewer_plays(tmp_path / "junk.mp4")


@pytest.mark.parametrize("asset", [True, False])
def test_video_mode_logs_an_asset_or_frames(asset: bool, tmp_path: Path) -> None:
    """The H.264 example as an asset; the same clip re-encoded as MPEG-4 Part 2 as JPEG frames."""
    src = EXAMPLES / "dancer.mp4"
    video = src if asset else reencode(src, tmp_path / "clip.mp4", "mp4v", 6)
    out = tmp_path / "out"
    code = main(["video", str(video), "--out", str(out), "--end", "0.09", "--quiet"])  # frames 0-5
    assert code == EXIT_OK
    logged = components(out / "result.rrd", "world/camera/image")
    if asset:
        assert "AssetVideo:blob" in logged and "VideoFrameReference:timestamp" in logged
        assert "EncodedImage:blob" not in logged
    else:
        assert "EncodedImage:blob" in logged and "AssetVideo:blob" not in logged


def test_multiview_logs_frames_for_views_the_viewer_cannot_play(tmp_path: Path) -> None:
    videos = [str(reencode(p, tmp_path / p.name, "mp4v", 30)) for p in EXAMPLE_VIDEOS[:2]]  # as long as the others
    videos += [str(p) for p in EXAMPLE_VIDEOS[2:]]
    out = tmp_path / "out"
    code = main(["multiview", "--videos", *videos, "--calib", str(EXAMPLE_CALIBRATION), "--out", str(out),
                 "--frames", "8", "--no-body", "--no-sync", "--no-refine", "--quiet"])  # fmt: skip
    assert code == EXIT_OK
    rrd = out / "result.rrd"
    for i, path in enumerate(EXAMPLE_VIDEOS):
        logged = components(rrd, f"world/cams/{path.stem}/image")
        if i < 2:  # re-encoded as MPEG-4 Part 2: JPEG frames
            assert "EncodedImage:blob" in logged and "AssetVideo:blob" not in logged
        else:
            assert "AssetVideo:blob" in logged and "VideoFrameReference:timestamp" in logged
