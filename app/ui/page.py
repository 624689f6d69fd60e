"""The Gradio page: layout and wiring only; every callback is a function of app.ui.handlers.

Edits (upload, example, click, undo, clear) are light: each applies at once, in order, to the session
(app.ui.state) and answers with the canvas overlay and the prompt status (uploads and examples decode
their image in a bounded "decode" queue, as many at once as run jobs). Each is followed by the
automatic run, a heavy job in one queue slot shared by all sessions ("pipeline"), in trigger mode
"always_last": a run that is triggered while one is going is deferred, never dropped, and every run
works until the shown result uses the latest prompts (handlers.run_latest), then writes its downloads.
Writers never cross: only edits write the prompt status and the canvas, only runs write the viewer,
the run status and the downloads. Each browser session gets its own UISession (recording, temporary
folder) from a SessionRegistry, cleaned up when the tab closes (demo.unload) or when Gradio expires it.
The Video tab is laid out and wired by app.ui.video_page (same queue slot for its runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
from gradio_rerun import Rerun

from app.ui import canvas as C
from app.ui import handlers as H
from app.ui import lifecycle as L
from app.ui.multiview_page import build_multiview_tab
from app.ui.state import SessionRegistry, UISession, session_end_callbacks
from app.ui.video_page import build_video_tab
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
SESSION_STATE_TTL_S = L.IDLE_TIMEOUT_S
PROGRESS = gr.Progress()
"""Gradio replaces this default with a tracker of the running event."""
CSS = """
#status {min-height: 6em}
#video-status {min-height: 6em}
"""

INTRO = (
    f"# {TITLE}\n"
    "Upload a photo of people (or pick an example): the bodies appear in 3D, in metres, in the viewer. "
    "Click on the photo to guide it: a positive point on the person you want, a negative point on "
    "what is not them, a box around them, or a keypoint (pick the joint, click where it really is). "
    "After the first run every click updates the meshes."
)


def build_demo(engine: H.Engine | None = None, registry: SessionRegistry | None = None,
               lifecycle: L.Lifecycle | None = None) -> gr.Blocks:  # fmt: skip
    """The page. `engine` holds the shared pipelines (H.default_engine() when None); `lifecycle` ends the
    sessions of every tab (app.ui.lifecycle: idle timeout, cap on live sessions)."""
    engine = engine or H.default_engine()
    if lifecycle is None:  # (`or` would not do: an empty Lifecycle or registry is falsy)
        lifecycle = registry.lifecycle if registry is not None and registry.lifecycle is not None else L.Lifecycle()
    sessions = registry if registry is not None else SessionRegistry(lifecycle=lifecycle)
    gr.set_static_paths([L.server_dir()])  # downloads are served from the sessions' own folders (see lifecycle)
    choices = H.backend_choices()

    def session(state: UISession | None, request: gr.Request | None) -> UISession:
        if state is not None and not state.closed:
            sessions.touch(state.session_id)
            return state
        return sessions.get(getattr(request, "session_hash", None))

    # ------------------------------------------------------------------------------- callbacks

    def upload(state: UISession | None, path: str | None, request: gr.Request) -> tuple:
        state = session(state, request)
        lifecycle.claim_upload(state.session_id, path)
        return (state, *H.on_upload(state, path))

    def example(state: UISession | None, evt: gr.SelectData, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_example(state, evt))  # the index is checked there

    def click(state: UISession | None, mode: str, joint: str | None, evt: gr.EventData,
              request: gr.Request) -> tuple:  # fmt: skip
        state = session(state, request)
        try:
            x, y = C.click_xy(evt)
        except ValueError as err:
            raise gr.Error(f"The click could not be read ({err}); click on the photo again.") from err
        return (state, *H.on_click(state, mode, joint, x, y))

    def undo(state: UISession | None, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_undo(state))

    def clear(state: UISession | None, request: gr.Request) -> tuple:
        state = session(state, request)
        return (state, *H.on_clear(state))

    def make_run(force: bool) -> Callable[..., Iterator[tuple]]:
        """A streamed run: `force` for the Run button (runs even when nothing changed), else the automatic
        run after an edit (only when 'Update automatically' is on and something changed). Gradio finds
        the progress tracker among the positional parameters."""

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
            if force and (state is None or state.image is None):
                raise gr.Error("Upload a photo (or pick an example) first.")
            nothing = (None, gr.skip(), gr.skip())  # the streaming viewer takes None as "no new chunk"
            if state is None or not (force or auto):
                yield nothing
                return
            values = {"segmentation": segmentation, "keypoints": keypoints, "camera": camera, "hmr": hmr,
                      "body": body}  # fmt: skip
            backends = {k: v for k, v in values.items() if v}
            sent = False
            for u in H.run_latest(state, fov, backends, progress=progress, engine=engine, force=force):
                sent = True
                yield (u.chunk, gr.skip() if u.status is None else u.status,
                       gr.skip() if u.files is None else (u.files or None))  # fmt: skip
            if not sent:
                yield nothing

        return fn

    def show_joint(mode: str) -> Any:
        return gr.update(visible=mode == "keypoint")

    unload, delete_state = session_end_callbacks(sessions)

    # ---------------------------------------------------------------------------------- layout

    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as demo:
        state = gr.State(None, time_to_live=SESSION_STATE_TTL_S, delete_callback=delete_state)
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs, gr.Tab("Image"), gr.Row(equal_height=False):
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
                canvas = gr.HTML(
                    None,
                    html_template=C.TEMPLATE,
                    css_template=C.CSS,
                    js_on_load=C.JS_ON_LOAD,
                    elem_id="canvas",
                    label="Click to add prompts",
                )
                prompt_status = gr.Markdown("Upload a photo or pick an example.", elem_id="prompt-status")
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
                status = gr.Markdown("", elem_id="status")
                files = gr.File(
                    label="Downloads: meshes (GLB, OBJ), parameters (NPZ), result.json, recording (.rrd)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )

        # --------------------------------------------------------------------------------- wiring
        light: dict[str, Any] = {"concurrency_limit": None, "show_progress": "hidden", "trigger_mode": "multiple"}
        heavy: dict[str, Any] = {"concurrency_id": "pipeline", "concurrency_limit": engine.workers}
        # decoding an upload is heavy in memory (up to the image limit's ~0.5 GB): a bounded queue of its own
        decode: dict[str, Any] = {**light, "concurrency_id": "decode", "concurrency_limit": engine.workers}
        run_inputs = [state, auto, fov, *selectors]
        run_outputs = [viewer, status, files]
        edit_out = [state, canvas, prompt_status]
        auto_run = make_run(force=False)

        for event in (
            upload_file.upload(upload, [state, upload_file], edit_out, **decode),
            examples.select(example, [state], edit_out, **decode),
            canvas.click(click, [state, mode, joint], edit_out, **light),
            undo_btn.click(undo, [state], edit_out, **light),
            clear_btn.click(clear, [state], edit_out, **light),
        ):
            event.success(auto_run, run_inputs, run_outputs, trigger_mode="always_last", **heavy)
        run_btn.click(make_run(force=True), run_inputs, run_outputs, trigger_mode="always_last", **heavy)
        mode.change(show_joint, [mode], [joint], **light)
        demo.unload(unload)
        with tabs:
            build_video_tab(demo, engine, lifecycle=lifecycle)
            build_multiview_tab(demo, lifecycle=lifecycle, jobs=engine.workers)
    return demo
