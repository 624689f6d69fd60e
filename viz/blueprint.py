"""The default Rerun layout: the 3D scene beside the photo, time panel collapsed."""

from __future__ import annotations

import rerun.blueprint as rrb


def default_blueprint(camera_path: str = "world/camera", time_panel: str = "collapsed") -> rrb.Blueprint:
    """A 3D view of `world` (camera frustum, meshes, skeletons) and a 2D view of the camera image;
    `time_panel` 'expanded' for videos (scrubbing)."""
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Spatial3DView(
                name="3D",
                origin="world",
                # World = first camera (OpenCV: y down, z forward): start above and to the left of the
                # camera, looking between it and where people usually stand (about 3 m ahead), the right way up, so the
                # frustum, its image and the people in front of it are all in view.
                eye_controls=rrb.EyeControls3D(position=(-3.2, -1.8, -0.6), look_target=(0.0, 0.3, 1.8),
                                               eye_up=(0.0, -1.0, 0.0)),  # fmt: skip
            ),
            rrb.Spatial2DView(name="Image", origin=f"{camera_path}/image"),
            column_shares=[3, 2],
        ),
        rrb.BlueprintPanel(state="collapsed"),
        rrb.SelectionPanel(state="collapsed"),
        rrb.TimePanel(state=time_panel),
    )
