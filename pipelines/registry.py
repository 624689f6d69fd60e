"""One factory per stage: backends are registered under a name and created by name.

    from pipelines.registry import create
    segmenter = create("segmentation", "embedded")

Backends register themselves with the `register` decorator in their module; `create` imports the
stage's backend modules lazily so that an uninstalled optional backend (hub) never breaks the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# stage -> backend name -> module that defines it (imported on first use)
_BACKEND_MODULES: dict[str, dict[str, str]] = {
    "segmentation": {"embedded": "pipelines.segmentation.embedded", "hub": "pipelines.segmentation.hub_sam2"},
    "keypoints": {"embedded": "pipelines.keypoints.embedded"},
    "camera": {"embedded": "pipelines.camera.embedded", "hub": "pipelines.camera.hub_moge"},
    "hmr": {"embedded": "pipelines.hmr.embedded", "embedded+smplx": "pipelines.hmr.smplx_fit",
            "hub": "pipelines.hmr.hub_sam3d"},
    "body": {"anny": "pipelines.body.anny_model", "smplx": "pipelines.body.smplx_model"},
    "depth": {"hub": "pipelines.depth.hub_moge"},
}
# Backends that are designed for but not shipped yet: shown in selectors with the reason.
_PLANNED: dict[str, dict[str, str]] = {
}
_FACTORIES: dict[tuple[str, str], Callable[..., Any]] = {}


class BackendUnavailable(RuntimeError):
    """A backend is unknown, or its packages or model files are missing (the message says which)."""


def register(stage: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator: make `cls` the backend `name` of `stage`."""

    def wrap(cls: Callable[..., Any]) -> Callable[..., Any]:
        _FACTORIES[(stage, name)] = cls
        return cls

    return wrap


def stages() -> list[str]:
    return list(_BACKEND_MODULES)


def backend_names(stage: str) -> list[str]:
    """The selectable backends of `stage` (not the body-specific variants named 'backend+body')."""
    return [n for n in _BACKEND_MODULES.get(stage, {}) if "+" not in n]


def hmr_backend(hmr: str, body: str) -> str:
    """The registered hmr backend that fits `body` for the hmr choice `hmr` (e.g. embedded + smplx ->
    'embedded+smplx', the SMPL-X fit); `hmr` itself when it has no body-specific variant."""
    variant = f"{hmr}+{body}"
    return variant if variant in _BACKEND_MODULES["hmr"] else hmr


def availability(stage: str) -> dict[str, str | None]:
    """Backend name -> None when it can be used here, else the reason in plain words (planned ones too).

    A backend class may define a static `unavailable_reason() -> str | None` for what its module's
    import cannot tell (an optional package, a GPU); model files are only fetched on first use.
    """
    out: dict[str, str | None] = {}
    for name in backend_names(stage):
        try:
            check = getattr(_factory(stage, name), "unavailable_reason", None)
            out[name] = check() if check is not None else None
        except BackendUnavailable as err:
            out[name] = str(err)
    for name, reason in _PLANNED.get(stage, {}).items():
        out.setdefault(name, reason)
    return out


def _factory(stage: str, name: str) -> Callable[..., Any]:
    if stage not in _BACKEND_MODULES:
        raise BackendUnavailable(f"unknown stage {stage!r}; stages: {', '.join(stages())}")
    if (stage, name) not in _FACTORIES:
        module = _BACKEND_MODULES[stage].get(name)
        if module is None and name in _PLANNED.get(stage, {}):
            raise BackendUnavailable(_PLANNED[stage][name])
        if module is None:
            known = ", ".join(backend_names(stage)) or "none"
            raise BackendUnavailable(f"no {stage} backend named {name!r}; available: {known}")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise BackendUnavailable(f"{stage} backend {name!r} needs a package that is missing: {err}") from err
    return _FACTORIES[(stage, name)]


def create(stage: str, name: str, **kwargs: Any) -> Any:
    """Instantiate the backend `name` of `stage` (models load lazily, on first use)."""
    return _factory(stage, name)(**kwargs)
