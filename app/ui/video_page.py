"""The Video tab: layout and wiring only; the callbacks are app.ui.video_handlers.

Upload (or the example), options, Run and Cancel on the left; the streaming Rerun viewer, the status
(with the progress bar and its ETA) and the downloads on the right. A run is a heavy job in the
page's one "pipeline" queue slot (shared with the Image tab: the models are shared); Cancel is a light
event that sets the tab's cancel token, and the run then writes and offers the frames done so far.
Each browser tab gets its own VideoSession (temporary folder), cleaned up when the tab closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr
from gradio_rerun import Rerun

from app.ui import canvas as C
from app.ui import handlers as H
from app.ui import video_handlers as VH
from app.ui import video_prompts as VP
from app.ui.lifecycle import IDLE_TIMEOUT_S, Lifecycle
from app.ui.state import SessionRegistry, session_end_callbacks
from app.ui.video_state import VideoSession
from pipelines.keypoints.names import PROMPTABLE_NAMES

SESSION_STATE_TTL_S = IDLE_TIMEOUT_S
MODE_CHOICES: list[tuple[str, str]] = [
    ("Positive point (track this person)", "positive"),
    ("Negative point (stop tracking this person)", "negative"),
    ("Box (two clicks: opposite corners)", "box"),
    ("Keypoint (choose the joint, click where it is)", "keypoint"),
]
"""The Prompts accordion's click modes (app.ui.prompts.MODES)."""
PROGRESS = gr.Progress()
"""Gradio replaces this default with a tracker of the running event."""

INTRO = (
    "Upload a video of people (or use the example): each person is tracked with a stable id and colour, "
    "and their metric 3D body follows them frame by frame in the viewer while the video is processed. "
    "A static camera is assumed. Cancel keeps what is done; the downloads hold the tracks (tracks.json, "
    "per person: parameters .npz, an animated .glb and a .bvh for animation tools) and the recording (.rrd)."
)


def build_video_tab(demo: gr.Blocks, engine: H.Engine, registry: SessionRegistry | None = None,
                    lifecycle: Lifecycle | None = None) -> SessionRegistry:  # fmt: skip
    """Lay out the Video tab inside the current gr.Tabs and wire it; returns its session registry (its sessions
    end with the page's others through `lifecycle`)."""
    sessions = registry if registry is not None else SessionRegistry(factory=VideoSession, lifecycle=lifecycle)

    def session(request: gr.Request | None) -> VideoSession:
        return sessions.get(getattr(request, "session_hash", None))

    def run(
        held: VideoSession | None,
        path: str | None,
        stride: float | None,
        start_s: float | None,
        end_s: float | None,
        max_side: float | None,
        smooth: bool,
        max_people: float | None,
        prompt_state: VP.VideoPromptState | None,
        request: gr.Request,
        progress: gr.Progress = PROGRESS,
    ) -> Iterator[tuple]:
        state = session(request)
        if sessions.lifecycle is not None:
            sessions.lifecycle.claim_upload(state.session_id, path)
        first = held is not state
        for u in VH.on_video_run(state, path, stride, start_s, end_s, max_side, smooth, max_people,
                                 progress=progress, engine=engine,
                                 prompts=VP.video_prompts(prompt_state, path)):  # fmt: skip
            yield VH.stream_outputs(u, state, first)
            first = False

    def cancel(request: gr.Request) -> None:
        if VH.on_video_cancel(session(request)) is not None:
            gr.Info("Cancelling: the frames done so far are being written.")

    def frame_click(p: VP.VideoPromptState | None, mode: str, joint: str | None, evt: gr.EventData) -> tuple:
        try:
            x, y = C.click_xy(evt)
        except ValueError as err:
            raise gr.Error(f"The click could not be read ({err}); click on the frame again.") from err
        return VP.on_frame_click(p, mode, joint, x, y)

    def example() -> str:
        return str(VH.EXAMPLE_VIDEO)

    unload, expire = session_end_callbacks(sessions)

    with gr.Tab("Video", elem_id="video-tab"), gr.Row(equal_height=False):
        held = gr.State(None, time_to_live=SESSION_STATE_TTL_S, delete_callback=expire)
        with gr.Column(scale=2, min_width=360):
            gr.Markdown(INTRO)
            video = gr.File(label="Video (mp4, avi, mov, webm)", file_types=list(VH.VIDEO_SUFFIXES),
                            type="filepath", elem_id="video-upload")  # fmt: skip
            example_btn = gr.Button("Use the example video (a dancer, 1.7 s)", elem_id="video-example")
            with gr.Row():
                stride = gr.Number(1, label="Frame stride", minimum=1, precision=0, info="every N-th frame")
                max_people = gr.Number(4, label="Max people", minimum=1, maximum=20, precision=0)
            with gr.Row():
                start_s = gr.Number(0, label="Start (s)", minimum=0)
                end_s = gr.Number(0, label="End (s)", minimum=0, info="0: the end")
            with gr.Row():
                max_side = gr.Number(VH.DEFAULT_MAX_SIDE, label="Max resolution (px, longer side)", minimum=0,
                                     precision=0, info="frames are downscaled to it; 0: never")  # fmt: skip
                smooth = gr.Checkbox(True, label="Temporal smoothing (each whole track, once the video has run)")
            with gr.Accordion("Prompts: who to track, mask and joint corrections", open=False, elem_id="video-prompts"):
                gr.Markdown("Show a frame and click on it. Positive points (or a box) track only the people "
                            "clicked, from that frame on; a negative point stops tracking a person; more than "
                            "one point on a person (or a box and a point) corrects their mask on that frame and "
                            "the following ones (negative: not the person), shown in the viewer; a keypoint "
                            "moves a joint on that frame, and the correction fades out over the next second.")
                prompt_state = gr.State(VP.VideoPromptState())
                with gr.Row():
                    frame_no = gr.Number(0, label="Frame", minimum=0, precision=0, elem_id="video-frame")
                    show_btn = gr.Button("Show frame", elem_id="video-show-frame")
                frame_canvas = gr.HTML(None, html_template=C.TEMPLATE, css_template=C.CSS, js_on_load=C.JS_ON_LOAD,
                                       elem_id="video-canvas", label="Click to add prompts")  # fmt: skip
                frame_status = gr.Markdown(VP.status(VP.VideoPromptState()), elem_id="video-prompt-status")
                mode = gr.Radio(MODE_CHOICES, value="positive", label="Click adds", elem_id="video-mode")
                joint = gr.Dropdown(PROMPTABLE_NAMES, value="left_wrist", label="Joint (keypoint clicks)",
                                    elem_id="video-joint")  # fmt: skip
                with gr.Row():
                    undo_btn = gr.Button("Undo", elem_id="video-undo")
                    clear_btn = gr.Button("Clear this frame", elem_id="video-clear")
            with gr.Row():
                run_btn = gr.Button("Run", variant="primary", elem_id="video-run")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="video-cancel")
        with gr.Column(scale=3, min_width=480):
            viewer = Rerun(streaming=True, height=720, label="3D viewer", elem_id="video-viewer")
            status = gr.Markdown("", elem_id="video-status")
            files = gr.File(label="Downloads: tracks.json, per-person files (.npz, .glb, .bvh), recording (.rrd)",
                            file_count="multiple", interactive=False, elem_id="video-downloads")  # fmt: skip

    light: dict[str, Any] = {"concurrency_limit": None, "show_progress": "hidden"}
    example_btn.click(example, None, [video], **light)
    edit_out = [prompt_state, frame_canvas, frame_status]
    # showing a frame decodes the video up to it: the page's bounded "decode" queue (see app.ui.page)
    decode: dict[str, Any] = {**light, "concurrency_id": "decode", "concurrency_limit": engine.workers}
    show_btn.click(VP.on_show_frame, [prompt_state, video, frame_no], edit_out, **decode)
    frame_no.submit(VP.on_show_frame, [prompt_state, video, frame_no], edit_out, **decode)
    frame_canvas.click(frame_click, [prompt_state, mode, joint], edit_out, **light)
    undo_btn.click(VP.on_frame_undo, [prompt_state], edit_out, **light)
    clear_btn.click(VP.on_frame_clear, [prompt_state], edit_out, **light)
    run_btn.click(run, [held, video, stride, start_s, end_s, max_side, smooth, max_people, prompt_state],
                  [viewer, status, files, held], concurrency_id="pipeline", concurrency_limit=engine.workers,
                  show_progress_on=[status])  # fmt: skip
    cancel_btn.click(cancel, None, None, **light)
    demo.unload(unload)
    return sessions
