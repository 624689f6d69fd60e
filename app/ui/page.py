"""The Gradio page: layout and wiring only; every callback is a function of app.ui.handlers.

Heavy jobs (pipeline runs) share one queue slot ("pipeline", one at a time across all sessions);
writing downloads has its own small slot; prompt clicks, undo and clear are light and never wait.
Each browser session gets its own UISession (recording, temporary folder) from a SessionRegistry,
cleaned up when the tab closes (demo.unload) or when Gradio expires the session state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
from gradio_rerun import Rerun

from app.ui import handlers as H
from app.ui.state import SessionRegistry, UISession
from pipelines.keypoints.names import PROMPTABLE_NAMES

TITLE = "HMR playground"
MODE_CHOICES: list[tuple[str, str]] = [
    ("Positive point (this is the person)", "positive"),
    ("Negative point (not this)", "negative"),
    ("Box (two clicks: opposite corners)", "box"),
    ("Keypoint (choose the joint, click where it is)", "keypoint"),
]
STAGE_LABELS = {
    "segmentation": "Detection / segmentation",
    "keypoints": "Hand keypoints",
    "camera": "Camera (field of view)",
    "hmr": "Body fit",
    "body": "Body model",
}
SESSION_STATE_TTL_S = 6 * 3600
DOWNLOADS_DELAY_S = 0.6
"""Quiet time after a run before its downloads are written (a quick next click goes first)."""
PROGRESS = gr.Progress()
"""Gradio replaces this default with a tracker of the running event."""
CSS = """
#status {min-height: 6em}
#canvas img {cursor: crosshair}
"""

INTRO = (
    f"# {TITLE}\n"
    "Upload a photo of people (or pick an example): the bodies appear in 3D, in metres, in the viewer. "
    "Click on the photo to guide it: a positive point on the person you want, a negative point on "
    "what is not them, a box around them, or a keypoint (pick the joint, click where it really is). "
    "After the first run every click updates the meshes."
)


def build_demo(engine: H.Engine | None = None, registry: SessionRegistry | None = None) -> gr.Blocks:
    """The page. `engine` holds the shared pipelines (H.default_engine() when None)."""
    engine = engine or H.default_engine()
    sessions = registry or SessionRegistry()
    choices = H.backend_choices()

    def session(state: UISession | None, request: gr.Request | None) -> UISession:
        if state is not None and not state.closed:
            return state
        return sessions.get(getattr(request, "session_hash", None))

    # ------------------------------------------------------------------------------- callbacks

    def upload(state: UISession | None, path: str | None, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_upload(state, path))

    def example(state: UISession | None, evt: gr.SelectData, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_example(state, int(evt.index)))

    def click(state: UISession | None, mode: str, joint: str | None, evt: gr.SelectData,
              request: gr.Request) -> tuple:  # fmt: skip
        state = session(state, request)
        x, y = evt.index
        return (state, *H.on_click(state, mode, joint, x, y))

    def undo(state: UISession | None, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_undo(state))

    def clear(state: UISession | None, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_clear(state))

    def make_run(when: str) -> Callable[..., Iterator[tuple]]:
        """A streamed run: 'always' (the Run button), 'upload' (auto, first run of a photo) or 'click'
        (auto, after a prompt edit). Gradio finds the progress tracker among the positional parameters."""

        def fn(
            state: UISession | None,
            auto: bool,
            fov: float | None,
            segmentation: str | None,
            keypoints: str | None,
            camera: str | None,
            hmr: str | None,
            body: str | None,
            progress: gr.Progress = PROGRESS,
        ) -> Iterator[tuple]:
            if when == "always":
                if state is None or state.image is None:
                    raise gr.Error("Upload a photo (or pick an example) first.")
            elif (
                not auto
                or state is None
                or state.image is None
                or (when == "upload" and state.runs > 0)
                or (when == "click" and not H.wants_rerun(state))
            ):
                yield gr.skip(), gr.skip()
                return
            values = {"segmentation": segmentation, "keypoints": keypoints, "camera": camera, "hmr": hmr,
                      "body": body}  # fmt: skip
            backends = {k: v for k, v in values.items() if v}
            for update in H.on_run(state, fov, backends, progress=progress, engine=engine):
                yield update.chunk, update.status

        return fn

    def downloads(state: UISession | None) -> Any:
        """Write the downloads once the clicks pause: writing them competes with the next fit for the CPU."""
        if state is None:
            return gr.skip()
        runs = state.runs
        time.sleep(DOWNLOADS_DELAY_S)
        if state.runs != runs or state.active_runs:
            return gr.skip()  # a newer run is under way; its own chain writes them
        files = H.on_downloads(state)
        return gr.skip() if files is None else files

    def show_joint(mode: str) -> Any:
        return gr.update(visible=mode == "keypoint")

    def delete_state(state: UISession | None) -> None:
        if state is not None:
            sessions.close(state.session_id)
            state.cleanup()

    def unload(request: gr.Request) -> None:
        sessions.close(getattr(request, "session_hash", None))

    # ---------------------------------------------------------------------------------- layout

    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as demo:
        state = gr.State(None, time_to_live=SESSION_STATE_TTL_S, delete_callback=delete_state)
        gr.Markdown(INTRO)
        with gr.Tabs(), gr.Tab("Image"), gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=360):
                with gr.Row():
                    upload_file = gr.UploadButton(
                        "Upload a photo", file_count="single", type="filepath", elem_id="upload", scale=1
                    )
                    examples = gr.Gallery(
                        value=[(str(H.EXAMPLES_DIR / n), n) for n in H.EXAMPLE_NAMES],
                        label="Examples (click one)",
                        columns=3,
                        height=120,
                        allow_preview=False,
                        interactive=False,
                        elem_id="examples",
                        scale=2,
                    )
                canvas = gr.Image(
                    label="Click to add prompts",
                    interactive=False,
                    format="jpeg",
                    height=520,
                    elem_id="canvas",
                    buttons=[],
                )
                mode = gr.Radio(MODE_CHOICES, value="positive", label="Click adds", elem_id="mode")
                joint = gr.Dropdown(PROMPTABLE_NAMES, value=None, label="Joint", visible=False, elem_id="joint")
                with gr.Row():
                    undo_btn = gr.Button("Undo", elem_id="undo")
                    clear_btn = gr.Button("Clear prompts", elem_id="clear")
                    run_btn = gr.Button("Run", variant="primary", elem_id="run")
                auto = gr.Checkbox(True, label="Update automatically (on upload and after each click)")
                with gr.Accordion("Camera and models", open=False):
                    fov = gr.Number(
                        None,
                        label="Horizontal field of view (degrees)",
                        minimum=0,
                        maximum=H.FOV_RANGE_DEG[1],
                        info="Empty: from the photo's EXIF, else estimated with the body.",
                    )
                    selectors = []
                    for stage in H.CONFIG_STAGES:
                        names, _ = choices[stage]
                        selectors.append(
                            gr.Dropdown(
                                names,
                                value=names[0] if names else None,
                                label=STAGE_LABELS[stage],
                                interactive=len(names) > 1,
                            )
                        )
                    gr.Markdown(H.unavailable_note(choices))
            with gr.Column(scale=3, min_width=480):
                viewer = Rerun(streaming=True, height=720, label="3D viewer", elem_id="viewer")
                status = gr.Markdown("Upload a photo or pick an example.", elem_id="status")
                files = gr.File(
                    label="Downloads: meshes (GLB, OBJ), parameters (NPZ), result.json, recording (.rrd)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )

        # --------------------------------------------------------------------------------- wiring
        light: dict[str, Any] = {"concurrency_limit": None, "show_progress": "hidden"}
        heavy: dict[str, Any] = {"concurrency_id": "pipeline", "concurrency_limit": 1}
        files_kw: dict[str, Any] = {"concurrency_id": "downloads", "concurrency_limit": 2, "show_progress": "hidden"}
        run_inputs = [state, auto, fov, *selectors]
        run_outputs = [viewer, status]
        photo_out = [state, canvas, status]

        def then_run(event: Any, when: str, **kw: Any) -> None:
            event.success(make_run(when), run_inputs, run_outputs, **heavy, **kw).success(
                downloads, [state], [files], **files_kw
            )

        then_run(upload_file.upload(upload, [state, upload_file], photo_out, **light), "upload")
        then_run(examples.select(example, [state], photo_out, **light), "upload")
        clicked = canvas.select(click, [state, mode, joint], photo_out, trigger_mode="multiple", **light)
        then_run(clicked, "click", trigger_mode="multiple")
        then_run(undo_btn.click(undo, [state], photo_out, **light), "click")
        then_run(clear_btn.click(clear, [state], photo_out, **light), "click")
        run_btn.click(make_run("always"), run_inputs, run_outputs, **heavy).success(
            downloads, [state], [files], **files_kw
        )
        mode.change(show_joint, [mode], [joint], **light)
        demo.unload(unload)
    return demo
