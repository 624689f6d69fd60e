"""Hub backends' plumbing, in one place: the torch device, optional packages and checkpoint downloads.

- Device: CUDA when torch sees a GPU, else CPU; `device="cpu"` / `"cuda"` / `"cuda:1"` overrides
  (the CLI's `--device`). Asking for CUDA without one is a clear error, never a silent fallback.
- Packages: `require_package` imports an optional package (sam2, moge) and turns its absence, or a
  broken install (torchvision built for another torch raises RuntimeError), into one sentence.
- Checkpoints: `download` fetches one file of a Hugging Face repo with huggingface_hub. It is
  cached (HF_HOME / HF_HUB_CACHE), HF_TOKEN (or `hf auth login`) gives access to gated repos, and
  HF_HUB_OFFLINE=1 uses the cache only. Every failure (no network, offline and not cached, gated
  repo without access, unknown repo or file) raises `HubUnavailable` naming the repo and the fix.
- `add_to_cache` puts a file obtained elsewhere (another machine, a test) where `download` finds it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

from pipelines.errors import UserFacingError
from pipelines.registry import BackendUnavailable

_TRUE = {"1", "true", "yes", "on"}


class HubUnavailable(BackendUnavailable, UserFacingError):
    """A hub model cannot be had here; the message names the repo or package and the fix."""


# ------------------------------------------------------------------------------------------ device


def choose_device(override: str | None = None) -> str:
    """The torch device for the hub models: `override` ('cpu', 'cuda', 'cuda:N'; None or 'auto':
    CUDA when available, else CPU)."""
    torch = require_package("torch", "torch", "the hub backends")
    wanted = (override or "auto").strip().lower()
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cpu":
        return "cpu"
    if wanted.startswith("cuda"):
        index = wanted.partition(":")[2]
        if not torch.cuda.is_available():
            raise HubUnavailable(
                f"--device {override} was asked for but torch sees no CUDA GPU here; "
                "use --device cpu (or auto), or install a CUDA build of torch."
            )
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise HubUnavailable(f"--device {override}: this machine has {torch.cuda.device_count()} CUDA GPU(s).")
        return wanted
    raise HubUnavailable(f"unknown device {override!r}; use auto, cpu, cuda or cuda:N.")


# ---------------------------------------------------------------------------------------- packages


def require_package(module: str, pip_name: str, what: str, how: str | None = None) -> ModuleType:
    """Import `module` or raise HubUnavailable saying which PyPI package `what` needs (`how`: how to install
    it, for code that is not on PyPI)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        how = how or f"install it with `pip install {pip_name}`"
        raise HubUnavailable(
            f"{what} needs the Python package {pip_name!r}, which is not installed ({err}); {how} or use the "
            "embedded backend."
        ) from err
    except RuntimeError as err:  # e.g. torchvision built for another torch: "operator ... does not exist"
        raise HubUnavailable(
            f"{what}: the Python package {pip_name!r} is installed but cannot be imported ({err}); "
            "reinstall it for this torch build or use the embedded backend."
        ) from err


def missing_packages(*modules: str) -> list[str]:
    """Which of `modules` cannot be found (without importing them)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


# ------------------------------------------------------------------------------------- checkpoints


def offline() -> bool:
    """HF_HUB_OFFLINE, read at call time (huggingface_hub reads it once, when first imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def cache_dir() -> Path:
    """The Hugging Face hub cache: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def download(repo_id: str, filename: str, what: str) -> Path:
    """Local path of `filename` of the model repo `repo_id`, downloaded on first use, then cached."""
    hub = require_package("huggingface_hub", "huggingface-hub", what)
    errors = require_package("huggingface_hub.errors", "huggingface-hub", what)
    is_offline = offline()
    url = f"https://huggingface.co/{repo_id}"
    try:
        path = hub.hf_hub_download(
            repo_id=repo_id, filename=filename, repo_type="model", cache_dir=str(cache_dir()),
            local_files_only=is_offline, token=os.environ.get("HF_TOKEN") or None,
        )  # fmt: skip
    except errors.GatedRepoError as err:
        raise HubUnavailable(
            f"{what}: {repo_id} is a gated Hugging Face repo and this account has no access to it; "
            f"accept its licence on {url}, then log in (`hf auth login` or set HF_TOKEN)."
        ) from err
    except errors.RepositoryNotFoundError as err:
        raise HubUnavailable(
            f"{what}: the Hugging Face repo {repo_id} was not found (or is private and no token was "
            "given); check the name, or set HF_TOKEN to an account that can read it."
        ) from err
    except errors.LocalEntryNotFoundError as err:  # offline, or no connection, and not in the cache
        why = "HF_HUB_OFFLINE=1 is set" if is_offline else "the Hugging Face hub cannot be reached"
        raise HubUnavailable(
            f"{what}: {filename} of {repo_id} is not in the Hugging Face cache ({cache_dir()}) and {why}; "
            f"connect once without HF_HUB_OFFLINE to download it, or copy the file there with "
            f"pipelines.hub.add_to_cache, or use the embedded backend."
        ) from err
    except errors.EntryNotFoundError as err:
        raise HubUnavailable(
            f"{what}: the Hugging Face repo {repo_id} has no file {filename}; {url} lists its files."
        ) from err
    except (errors.HfHubHTTPError, OSError) as err:
        raise HubUnavailable(
            f"{what}: downloading {filename} of {repo_id} failed ({type(err).__name__}: {err}); "
            "check the network and try again, or use the embedded backend."
        ) from err
    return Path(path)


def add_to_cache(repo_id: str, filename: str, src: str | Path, revision: str = "main") -> Path:
    """Copy `src` into the hub cache as `filename` of `repo_id` (the layout huggingface_hub writes:
    models--org--name/refs/<revision> -> snapshots/<commit>/<filename>); returns the cached path."""
    repo_dir = cache_dir() / ("models--" + repo_id.replace("/", "--"))
    refs = repo_dir / "refs" / revision
    if refs.is_file():
        commit = refs.read_text().strip()
    else:
        commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(commit)
    dst = repo_dir / "snapshots" / commit / filename
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst
