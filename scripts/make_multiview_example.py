"""Make the Multi-view tab's example (assets/examples/multiview/): the first 30 frames of Pose2Sim's
Demo_SinglePerson cameras (../shared/data/multiview/pose2sim_single), downscaled to a third and re-encoded
as H.264 (libx264 through PyAV: Rerun's viewer plays H.264, not the MPEG-4 Part 2 of OpenCV's own writer),
and its Qualisys calibration written as the project's JSON with the intrinsics scaled to the downscaled size.

PyAV is needed only here, not by the app (its wheels bundle FFmpeg with the GPL x264 encoder):

    python -m venv /tmp/avenv && /tmp/avenv/bin/pip install av
    PYTHONPATH=/tmp/avenv/lib/python3.11/site-packages .venv/bin/python scripts/make_multiview_example.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2

from pipelines.multiview.calibration import load_qualisys_calibration, make_camera
from pipelines.multiview.formats import save_project_json

N_FRAMES = 30
SCALE = 1 / 3
OUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "multiview"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    src = ap.parse_args().data / "multiview" / "pose2sim_single"
    OUT.mkdir(parents=True, exist_ok=True)
    cams = load_qualisys_calibration(src / "Calib.qca.txt")
    scaled = []
    for cam in cams:
        video = src / f"{cam.name}.mp4"
        cap = cv2.VideoCapture(str(video))
        fps = cap.get(cv2.CAP_PROP_FPS)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        size = (round(w * SCALE / 2) * 2, round(h * SCALE / 2) * 2)  # even sizes for the encoder
        with av.open(str(OUT / video.name), "w") as out:
            stream = out.add_stream("libx264", rate=round(fps))
            stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            stream.options = {"crf": "26", "bf": "0"}  # no B-frames: frame references stay in decode order
            for _ in range(N_FRAMES):
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            out.mux(stream.encode())
        cap.release()
        sx, sy = size[0] / cam.camera.width, size[1] / cam.camera.height
        K = cam.camera.K_33.copy()
        K[0] *= sx
        K[1] *= sy
        scaled.append(make_camera(cam.name, K, cam.dist_k, cam.cam_T_world_44, size[0], size[1]))
        print(video.name, size, f"{(OUT / video.name).stat().st_size / 1024:.0f} KB")
    save_project_json(scaled, OUT / "calibration.json",
                      {"source": "Pose2Sim Demo_SinglePerson Calib.qca.txt, intrinsics scaled to the clips"})


if __name__ == "__main__":
    main()
