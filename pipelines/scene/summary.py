"""One-line descriptions of a scene for the command line and the UI's status."""

from __future__ import annotations

_UP_SOURCES = {"vanishing_point": "vertical vanishing point", "manhattan_frame": "scene's lines (Manhattan frame)",
               "bodies": "bodies"}


def ground_summary(g) -> str:  # noqa: ANN001 - pipelines.scene.ground.GroundPlane
    """One line about the ground: the camera's height, pitch and roll above it."""
    return (f"  ground: camera {g.camera_height_m:.2f} m above it, pitch {g.pitch_deg:.1f} deg "
            f"(positive = looking down), roll {g.roll_deg:.1f} deg; up from the "
            f"{_UP_SOURCES.get(g.up_source, g.up_source)} "
            f"(up_source {g.up_source})")  # fmt: skip


def scene_summary(scene) -> list[str]:  # noqa: ANN001 - pipelines.scene.frame_scene.SceneResult | None
    """Lines about the ground and the scene depth (empty when there is no scene)."""
    if scene is None:
        return []
    lines = []
    g = scene.ground
    if g is not None:
        lines.append(ground_summary(g))
    d = scene.depth
    if d is not None:
        pts = 0 if scene.points is None else len(scene.points.xyz_n3)
        lines.append(f"  scene: depth from {scene.depth_source} ({d.kind}) scaled by the people: anchor error "
                     f"{100 * d.anchor_rel_err_global:.1f} % -> {100 * d.anchor_rel_err:.1f} % (global -> refined); "
                     f"{pts} points")  # fmt: skip
    lines += [f"  note: {n}" for n in scene.notes]
    return lines
