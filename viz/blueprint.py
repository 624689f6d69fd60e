"""The default Rerun layout: the 3D scene beside the photo, time panel collapsed."""

from __future__ import annotations

import rerun.blueprint as rrb


def default_blueprint(camera_path: str = "world/camera") -> rrb.Blueprint:
    """A 3D view of `world` (camera frustum, meshes, skeletons) and a 2D view of the camera image."""
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Spatial3DView(name="3D", origin="world"),
            rrb.Spatial2DView(name="Image", origin=f"{camera_path}/image"),
            column_shares=[3, 2],
        ),
        rrb.BlueprintPanel(state="collapsed"),
        rrb.SelectionPanel(state="collapsed"),
        rrb.TimePanel(state="collapsed"),
    )
