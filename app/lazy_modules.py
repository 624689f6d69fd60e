"""Defer third-party imports that the command line never uses.

`import mediapipe` (which `mediapipe.tasks.python` runs first) imports the legacy solutions package,
whose drawing utilities import matplotlib.pyplot: 0.5-1 s of a cold start on this CPU for code the
Tasks API never calls. `import_mediapipe_lazily` imports mediapipe with those two modules
(`mediapipe.python.solutions.drawing_utils` and `drawing_styles`) registered as placeholders whose
code runs on the first attribute asked of them (PEP 562 module __getattr__), so
`mp.solutions.drawing_utils.draw_landmarks` still works, only later. (importlib's LazyLoader does not
do here: the import system reads `__spec__`, which makes it load at once.)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path

_DEFERRED = ("drawing_utils", "drawing_styles")
_PACKAGE = "mediapipe.python.solutions"


def _placeholder(name: str, path: Path) -> types.ModuleType | None:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return None
    loader = spec.loader
    module = types.ModuleType(name, f"{name} (loaded on first use)")
    module.__spec__, module.__file__, module.__loader__ = spec, str(path), loader
    loaded: list[bool] = []

    def load_on_use(attr: str) -> object:
        if loaded or attr.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        loaded.append(True)
        loader.exec_module(module)  # runs the module's code in this namespace
        return getattr(module, attr)

    module.__getattr__ = load_on_use  # type: ignore[method-assign]
    return module


def import_mediapipe_lazily() -> bool:
    """Import mediapipe without its drawing utilities (and matplotlib); returns whether the deferral
    was set up (False: mediapipe missing, already imported, or laid out differently)."""
    if "mediapipe" in sys.modules:
        return False
    top = importlib.util.find_spec("mediapipe")  # finds the package without executing it
    if top is None or not top.submodule_search_locations:
        return False
    folder = Path(next(iter(top.submodule_search_locations))) / "python" / "solutions"
    placeholders = {}
    for short in _DEFERRED:
        module = _placeholder(f"{_PACKAGE}.{short}", folder / f"{short}.py")
        if module is None:
            return False
        placeholders[short] = module
    for short, module in placeholders.items():
        sys.modules[f"{_PACKAGE}.{short}"] = module
    try:
        solutions = importlib.import_module(_PACKAGE)
    except BaseException:
        for short in placeholders:
            sys.modules.pop(f"{_PACKAGE}.{short}", None)
        raise
    for short, module in placeholders.items():  # what `import a.b.c` would have set on the package
        setattr(solutions, short, module)
    return True


def pyarrow_without_pandas() -> bool:
    """Tell pyarrow, before its first conversion, that pandas is not there, when nothing has imported it.

    Rerun converts every array it logs with pyarrow, and pyarrow's first conversion of a numpy array asks
    whether it is a pandas object, which imports pandas (~0.6 s of CPU, a tenth of a cold photo run) for
    data that never is one. With `pandas` blocked for that one first conversion, pyarrow records "no
    pandas" and converts numpy arrays and lists exactly as before; an explicit pandas call later (such as
    `Table.to_pandas()`) still imports it. Only for a process that does not use pandas otherwise (the
    command line): do nothing when pandas is already imported. Safe to call from several threads (once
    per process). Returns whether the flag is set."""
    with _PANDAS_LOCK:
        if _PANDAS_FLAG:
            return True
        if "pandas" in sys.modules:
            return False
        try:
            import numpy as np
            import pyarrow as pa
        except ImportError:
            return False
        blocker = _NoPandas()
        sys.meta_path.insert(0, blocker)  # `import pandas` raises ModuleNotFoundError meanwhile
        try:
            pa.array(np.zeros(1))  # the first conversion: pyarrow tries pandas once and remembers the answer
        finally:
            sys.meta_path.remove(blocker)
        _PANDAS_FLAG.append(True)
        return True


_PANDAS_LOCK = threading.Lock()
_PANDAS_FLAG: list[bool] = []  # non-empty once pyarrow was told




class _NoPandas:
    """A meta path finder that refuses pandas (and only it)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not used by this process", name=name)


def import_writers_ahead(modules: tuple[str, ...], rrd_modules: tuple[str, ...], rrd: bool) -> threading.Thread:
    """Read the body model's tables and import the output stage's writers in a daemon thread while the
    models run (they release the GIL, so on two cores part of it comes for free): `modules`, then, with
    `rrd`, pyarrow told that pandas is not there (pyarrow_without_pandas) and `rrd_modules` (rerun: ~0.6 s
    of CPU). A failure only shows later, where the writers are used."""

    def work() -> None:
        with contextlib.suppress(Exception):
            from pipelines.body import anny_tables

            anny_tables.load_cached()
        names = list(modules)
        if rrd:
            pyarrow_without_pandas()
            names += rrd_modules
        for name in names:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=work, name="import-writers", daemon=True)
    thread.start()
    return thread

