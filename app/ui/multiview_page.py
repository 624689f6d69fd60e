"""The Multi-view tab: layout and wiring only; the callbacks are app.ui.multiview_handlers.

Several video uploads (one per camera), the calibration file(s), options, Run and Cancel on the left;
the Rerun viewer (cameras as frusta with their videos, the fused people in the world frame), the status
(progress with its ETA, then the report as a table) and the downloads on the right. A run is a heavy
job in the page's one "pipeline" queue slot (shared with the other tabs); Cancel is a light event
that sets the tab's cancel token. Each browser tab gets its own MultiviewSession (temporary folder),
cleaned up when the tab closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio_rerun import Rerun

from app.multiview_run import CALIB_SUFFIXES
from app.ui import multiview_handlers as MH
from app.ui.lifecycle import IDLE_TIMEOUT_S, Lifecycle
from app.ui.multiview_state import MultiviewSession
from app.ui.state import SessionRegistry, session_end_callbacks
from app.ui.video_handlers import VIDEO_SUFFIXES, stream_outputs

SESSION_STATE_TTL_S = IDLE_TIMEOUT_S
PROGRESS = gr.Progress()
"""Gradio replaces this default with a tracker of the running event."""

INTRO = (
    "Upload synchronised videos of the same people, one per camera, and the rig's calibration (or use the "
    "example: 4 cameras, 0.5 s). Each view's people are tracked, associated across the views, each camera's time "
    "offset is estimated from their motion, the cameras are refined from the people (bundle adjustment) and the "
    "bodies triangulated in metres, in the calibration's world frame, then one Anny body per person is fitted to "
    "all views (an animated .glb per person). Without a calibration file the cameras are estimated from the "
    "people (less accurate; the scale takes the tallest person to be 1.70 m). Videos are matched to cameras by "
    "name (cam01.mp4 -> camera cam01), else by upload order."
)


def build_multiview_tab(demo: gr.Blocks, registry: SessionRegistry | None = None,
                        lifecycle: Lifecycle | None = None, jobs: int = 1) -> SessionRegistry:  # fmt: skip
    """Lay out the Multi-view tab inside the current gr.Tabs and wire it; returns its session registry (its
    sessions end with the page's others through `lifecycle`); `jobs`: heavy jobs at once, all tabs together."""
    sessions = registry if registry is not None else SessionRegistry(factory=MultiviewSession, lifecycle=lifecycle)

    def session(request: gr.Request | None) -> MultiviewSession:
        return sessions.get(getattr(request, "session_hash", None))

    def run(
        held: MultiviewSession | None,
        videos: list[str] | None,
        calibration: list[str] | None,
        n_frames: float | None,
        max_side: float | None,
        sync: bool,
        refine: bool,
        request: gr.Request,
        progress: gr.Progress = PROGRESS,
    ) -> Iterator[tuple]:
        state = session(request)
        if sessions.lifecycle is not None:
            for upload in [*(videos or []), *(calibration or [])]:
                sessions.lifecycle.claim_upload(state.session_id, upload)
        first = held is not state
        for u in MH.on_multiview_run(state, videos, calibration, n_frames, max_side, sync, refine,
                                     progress=progress):  # fmt: skip
            yield stream_outputs(u, state, first)
            first = False

    def cancel(request: gr.Request) -> None:
        if MH.on_multiview_cancel(session(request)) is not None:
            gr.Info("Cancelling the multi-view run.")

    def example() -> tuple[list[str], list[str]]:
        return [str(p) for p in MH.EXAMPLE_VIDEOS], [str(MH.EXAMPLE_CALIBRATION)]

    unload, expire = session_end_callbacks(sessions)

    with gr.Tab("Multi-view", elem_id="multiview-tab"), gr.Row(equal_height=False):
        held = gr.State(None, time_to_live=SESSION_STATE_TTL_S, delete_callback=expire)
        with gr.Column(scale=2, min_width=360):
            gr.Markdown(INTRO)
            videos = gr.File(label="Videos, one per camera (mp4, avi, mov, webm)", file_count="multiple",
                             file_types=list(VIDEO_SUFFIXES), type="filepath", elem_id="multiview-videos")  # fmt: skip
            calibration = gr.File(label="Calibration: project .json, Qualisys .qca.txt, Pose2Sim Calib.toml, or "
                                  "intri.yml + extri.yml (none: estimated from the people)", file_count="multiple",
                                  file_types=list(CALIB_SUFFIXES),
                                  type="filepath", elem_id="multiview-calibration")  # fmt: skip
            example_btn = gr.Button("Use the example (4 cameras, one person, 30 frames)", elem_id="multiview-example")
            with gr.Row():
                n_frames = gr.Number(0, label="Frames to process", minimum=0, precision=0,
                                     info="the first N frames of each video; 0: all")  # fmt: skip
                max_side = gr.Number(MH.DEFAULT_MAX_SIDE, label="Max resolution (px, longer side)", minimum=0,
                                     precision=0, info="for the detector; 0: never")  # fmt: skip
            with gr.Row():
                sync = gr.Checkbox(True, label="Estimate time offsets")
                refine = gr.Checkbox(True, label="Refine the cameras (bundle adjustment)")
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary", elem_id="multiview-run")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="multiview-cancel")
        with gr.Column(scale=3, min_width=480):
            viewer = Rerun(streaming=True, height=720, label="3D viewer", elem_id="multiview-viewer")
            status = gr.Markdown("", elem_id="multiview-status")
            files = gr.File(label="Downloads: tracks.json, report.json, calibration.json (refined), per person .glb "
                            "(animated body), .trc, .bvh and .npz, recording (.rrd)", file_count="multiple",
                            interactive=False,
                            elem_id="multiview-downloads")  # fmt: skip

    light: dict[str, Any] = {"concurrency_limit": None, "show_progress": "hidden"}
    example_btn.click(example, None, [videos, calibration], **light)
    run_btn.click(run, [held, videos, calibration, n_frames, max_side, sync, refine],
                  [viewer, status, files, held], concurrency_id="pipeline", concurrency_limit=jobs,
                  show_progress_on=[status])  # fmt: skip
    cancel_btn.click(cancel, None, None, **light)
    demo.unload(unload)
    return sessions
