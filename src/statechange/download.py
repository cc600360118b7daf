"""Downloading backbone weights (``statechange download --weights NAME``): the catalogue of known
files, the download cache, and one resumable, atomic, verified HTTP(S) download with the standard library.

A file is fetched into a hidden ``.<name>.part`` next to its final name, continued with an HTTP
``Range`` request when an earlier run was interrupted, checked (its SHA-256 where one is known,
otherwise that it reads as the format it should have), and only then renamed to its final name: a
half file never carries the name that training looks for. The known URLs of a file are tried in
order; when all fail, one message names each URL and why it failed.

Weights land in the download cache, ``$STATECHANGE_CACHE`` or ``~/.cache/statechange``, where
``train`` finds them when ``--clip-weights`` is not given (``find_cached_weights``).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from statechange import __version__
from statechange._io import fsync_directory
from statechange.config import OPENAI_VIT_L14_SHA256, ModelConfig
from statechange.errors import StateChangeError

CACHE_ENV = "STATECHANGE_CACHE"  # overrides the download cache folder
DEFAULT_CACHE = Path("~/.cache/statechange")
BLOCK_BYTES = 1 << 20  # bytes read from the network per write
TIMEOUT_SECONDS = 60.0  # socket timeout of every request
USER_AGENT = f"statechange/{__version__} (+urllib)"


class DownloadError(StateChangeError):
    """A file that could not be downloaded from any of its URLs, or did not verify."""


def default_cache_dir() -> Path:
    """Where downloaded weights go and are looked for: ``$STATECHANGE_CACHE``, else ``~/.cache/statechange``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE.expanduser()


# --------------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------------


def _check_hf_clip_config(path: Path) -> None:
    """A Hugging Face CLIP ``config.json`` (no checksum is published for it): valid JSON with a vision tower."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DownloadError(f"it is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "vision_config" not in config:
        raise DownloadError("it is not a Hugging Face CLIP config (no vision_config)")


def _check_openai_clip_state_dict(path: Path) -> None:
    """A state dict with OpenAI CLIP's visual tower (``visual.*`` keys), read without running code."""
    from statechange.weights import read_state_dict_file

    try:
        state = read_state_dict_file(path)
    except StateChangeError as error:
        raise DownloadError(f"it does not read as a weight file ({error})") from None
    if "visual.class_embedding" not in state:
        raise DownloadError("it holds no OpenAI CLIP image tower (no visual.class_embedding)")


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: where it goes (relative to the output folder), where it comes from, how
    it is verified (its SHA-256, or a format check where no checksum is published)."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    check: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class WeightsSpec:
    """Backbone weights ``statechange download --weights NAME`` knows."""

    name: str
    description: str
    backbone: str  # the timm backbone these weights fit
    path: str  # what --clip-weights takes, relative to the output folder (a file or a folder)
    files: tuple[RemoteFile, ...]


_OPENAI_CLIP = f"clip/models/{OPENAI_VIT_L14_SHA256}/ViT-L-14.pt"
_HF_CLIP = "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main"
_HF_CLIP_SAFETENSORS_SHA256 = "a2bf730a0c7debf160f7a6b50b3aaf3703e7e88ac73de7a314903141db026dcb"
_TIMM_CLIP = "https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main"

WEIGHTS: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            "vit-l-14",
            "OpenAI's CLIP ViT-L/14 (ViT-L-14.pt, the file the release loads)",
            ModelConfig().backbone,
            "ViT-L-14.pt",
            (RemoteFile("ViT-L-14.pt", (f"https://openaipublic.azureedge.net/{_OPENAI_CLIP}",
                                        f"https://openaipublic.blob.core.windows.net/{_OPENAI_CLIP}"),
                        sha256=OPENAI_VIT_L14_SHA256),),
        ),
        WeightsSpec(
            "vit-l-14-hf",
            "the same weights as Hugging Face's openai/clip-vit-large-patch14 (a folder)",
            ModelConfig().backbone,
            "clip-vit-large-patch14",
            (RemoteFile("clip-vit-large-patch14/config.json", (f"{_HF_CLIP}/config.json",),
                        check=_check_hf_clip_config),
             RemoteFile("clip-vit-large-patch14/model.safetensors", (f"{_HF_CLIP}/model.safetensors",),
                        sha256=_HF_CLIP_SAFETENSORS_SHA256)),
        ),
        WeightsSpec(
            "vit-l-14-timm",
            "the same weights as timm's vit_large_patch14_clip_224.openai (OpenAI key names)",
            ModelConfig().backbone,
            "vit_large_patch14_clip_224.openai.bin",
            (RemoteFile("vit_large_patch14_clip_224.openai.bin", (f"{_TIMM_CLIP}/pytorch_model.bin",),
                        check=_check_openai_clip_state_dict),),
        ),
    )
}


def weights_spec(name: str) -> WeightsSpec:
    """The catalogue entry ``name``, or an error listing the names there are."""
    if name not in WEIGHTS:
        raise StateChangeError(f"Unknown weights {name!r}: use one of {', '.join(WEIGHTS)}.")
    return WEIGHTS[name]


def download_weights(name: str, output: str | Path | None = None, urls: Sequence[str] | None = None,
                     *, progress: bool = False) -> Path:
    """Download the weights ``name`` into ``output`` (default: the download cache) and return what
    ``--clip-weights`` takes. ``urls`` replaces the known URLs (a mirror): the file's URL for a
    one-file entry, a folder URL ending in ``/`` for an entry of several files."""
    spec = weights_spec(name)
    folder = Path(output) if output is not None else default_cache_dir()
    for remote in spec.files:
        download_file(_mirror_urls(spec, remote, urls) if urls else remote.urls, folder / remote.name,
                      sha256=remote.sha256, check=remote.check, progress=progress)
    return folder / spec.path


def find_cached_weights(backbone: str, folder: str | Path | None = None) -> Path | None:
    """Weights for ``backbone`` already downloaded into ``folder`` (default: the download cache), in
    catalogue order; None when there are none."""
    folder = Path(folder) if folder is not None else default_cache_dir()
    for spec in WEIGHTS.values():
        if spec.backbone == backbone and all((folder / remote.name).is_file() for remote in spec.files):
            return folder / spec.path
    return None


def _mirror_urls(spec: WeightsSpec, remote: RemoteFile, urls: Sequence[str]) -> tuple[str, ...]:
    if len(spec.files) == 1:
        return tuple(urls)
    folder_urls = [url for url in urls if url.endswith("/")]
    if len(folder_urls) != len(urls):
        raise StateChangeError(
            f"Weights {spec.name} are {len(spec.files)} files, so --url must name the folder that holds them, "
            f"ending in '/' (e.g. https://mirror.example/clip-vit-large-patch14/)."
        )
    return tuple(url + Path(remote.name).name for url in folder_urls)


# --------------------------------------------------------------------------------------------------
# One file over HTTP(S)
# --------------------------------------------------------------------------------------------------


def partial_path(destination: Path) -> Path:
    """Where the bytes of ``destination`` collect until they are verified: a hidden name beside it."""
    return destination.with_name(f".{destination.name}.part")


def download_file(urls: Sequence[str], destination: str | Path, *, sha256: str | None = None,
                  check: Callable[[Path], None] | None = None, progress: bool = False,
                  timeout: float = TIMEOUT_SECONDS) -> Path:
    """Download ``destination`` from the first of ``urls`` that works; resumable, atomic, verified.

    An existing ``destination`` that verifies is kept (nothing is fetched); one that does not is
    removed and fetched again. A file whose checksum or format is wrong is removed, never renamed
    into place. Raises ``DownloadError`` naming every URL tried and why each failed.
    """
    destination = Path(destination)
    if destination.is_file():
        problem = _verification_problem(destination, sha256, check)
        if problem is None:
            return destination
        destination.unlink()
        print(f"Removed {destination}: {problem}; downloading it again.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(destination)
    failures: list[str] = []
    for url in urls:
        try:
            _fetch(url, partial, timeout, progress)
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(f"{url}: {_network_reason(error)}")
            continue
        problem = _verification_problem(partial, sha256, check)
        if problem is not None:
            partial.unlink()
            failures.append(f"{url}: {problem}; the downloaded file was removed")
            continue
        _rename_into_place(partial, destination)
        return destination
    kept = (f" The partial download {partial} is kept: the next run resumes it." if partial.is_file()
            and partial.stat().st_size else "")
    raise DownloadError(
        f"Could not download {destination.name} from any of its {len(failures)} URL(s):\n  "
        + "\n  ".join(failures)
        + f"\nCheck the network connection, or pass --url with a mirror of the file.{kept}"
    )


def _fetch(url: str, partial: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url``'s bytes to ``partial`` (or start it over where the server does not
    resume); raises when the connection ends before the announced length."""
    offset = partial.stat().st_size if partial.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after ``offset``: the partial file may be whole; verify it
            return
        raise
    with response:
        if offset and not (response.status == 206 and _range_start(response) == offset):
            offset = 0  # the server sends the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(partial, "ab" if offset else "wb") as file, _progress_bar(partial, total, offset, progress) as bar:
            for block in iter(lambda: response.read1(BLOCK_BYTES), b""):  # what has arrived, up to a block
                file.write(block)
                bar.update(len(block))
            file.flush()
            os.fsync(file.fileno())
    size = partial.stat().st_size
    if total is not None and size != total:
        raise ConnectionError(f"the connection ended after {size} of {total} bytes")


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """The first byte of a 206 response, from ``Content-Range: bytes START-END/TOTAL``."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in blocks: any size fits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _verification_problem(path: Path, sha256: str | None, check: Callable[[Path], None] | None) -> str | None:
    """Why ``path`` is not the expected file (None when it is)."""
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256:
            return f"its SHA-256 is {actual}, not the expected {sha256}"
    if check is not None:
        try:
            check(path)
        except DownloadError as error:
            return str(error)
    return None


def _rename_into_place(partial: Path, destination: Path) -> None:
    os.replace(partial, destination)  # the partial file is already synced
    fsync_directory(destination.parent)


def _network_reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot connect ({error.reason})"
    return str(error) or type(error).__name__


def _progress_bar(partial: Path, total: int | None, initial: int, enabled: bool):
    from statechange.progress import progress

    name = partial.name.removeprefix(".").removesuffix(".part")
    return progress(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                    enabled=enabled, leave=False)


__all__ = [
    "CACHE_ENV",
    "WEIGHTS",
    "DownloadError",
    "RemoteFile",
    "WeightsSpec",
    "default_cache_dir",
    "download_file",
    "download_weights",
    "file_sha256",
    "find_cached_weights",
    "partial_path",
    "weights_spec",
]
