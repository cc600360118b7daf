"""Downloading weights from a real HTTP server on 127.0.0.1: verified, atomic, resumable after a kill,
wrong files refused and removed, every failed URL named; the catalogue's files found in the cache."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from local_http import LocalServer

import statechange
from statechange.config import ModelConfig
from statechange.download import (
    CACHE_ENV,
    DownloadError,
    default_cache_dir,
    download_file,
    download_weights,
    find_cached_weights,
    partial_path,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    local = LocalServer(files={"/w/ViT-L-14.pt": PAYLOAD})
    yield local
    local.close()


def test_download_is_verified_and_renamed_into_place(tmp_path: Path, server: LocalServer) -> None:
    destination = tmp_path / "weights" / "ViT-L-14.pt"
    assert download_file([f"{server.url}/w/ViT-L-14.pt"], destination, sha256=PAYLOAD_SHA256) == destination
    assert destination.read_bytes() == PAYLOAD
    assert not partial_path(destination).exists()
    assert [r.range for r in server.requests] == [None]

    download_file([f"{server.url}/w/ViT-L-14.pt"], destination, sha256=PAYLOAD_SHA256)
    assert len(server.requests) == 1  # a file that verifies is not fetched again


def test_a_killed_download_resumes_where_it_stopped(tmp_path: Path, server: LocalServer) -> None:
    server.throttle_seconds, server.chunk_bytes = 0.05, 16 * 1024  # ~320 KB/s: the kill lands mid-file
    destination = tmp_path / "ViT-L-14.pt"
    partial = partial_path(destination)
    script = (
        "import sys; from statechange.download import download_file; "
        "download_file([sys.argv[1]], sys.argv[2], sha256=sys.argv[3])"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(statechange.__file__).parents[1])}
    process = subprocess.Popen([sys.executable, "-c", script, f"{server.url}/w/ViT-L-14.pt", str(destination),
                                PAYLOAD_SHA256], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (partial.is_file() and partial.stat().st_size >= 64 * 1024):
            assert process.poll() is None and time.monotonic() < deadline, "the download did not start"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not destination.exists()  # never a half file under the final name
    kept = partial.stat().st_size
    assert 0 < kept < len(PAYLOAD)

    server.throttle_seconds = 0.0
    download_file([f"{server.url}/w/ViT-L-14.pt"], destination, sha256=PAYLOAD_SHA256)
    assert server.requests[-1].range == f"bytes={kept}-"  # only the rest was asked for
    assert destination.read_bytes() == PAYLOAD
    assert not partial.exists()


def test_a_file_with_the_wrong_checksum_is_refused_and_removed(tmp_path: Path, server: LocalServer) -> None:
    server.files["/w/ViT-L-14.pt"] = PAYLOAD[:-1] + b"x"
    destination = tmp_path / "ViT-L-14.pt"
    with pytest.raises(DownloadError, match=r"SHA-256 is [0-9a-f]{64}, not the expected .*removed"):
        download_file([f"{server.url}/w/ViT-L-14.pt"], destination, sha256=PAYLOAD_SHA256)
    assert list(tmp_path.iterdir()) == []


def test_every_failed_url_is_named_with_its_reason(tmp_path: Path, server: LocalServer) -> None:
    server.status["/broken"] = 500
    closed = LocalServer()
    closed_url = f"{closed.url}/w/ViT-L-14.pt"
    closed.close()
    urls = [f"{server.url}/missing", f"{server.url}/broken", closed_url]
    with pytest.raises(DownloadError) as raised:
        download_file(urls, tmp_path / "ViT-L-14.pt", sha256=PAYLOAD_SHA256)
    message = str(raised.value)
    assert f"{urls[0]}: HTTP 404" in message
    assert f"{urls[1]}: HTTP 500" in message
    assert f"{urls[2]}: cannot connect" in message
    assert "--url" in message

    download_file([*urls, f"{server.url}/w/ViT-L-14.pt"], tmp_path / "ViT-L-14.pt", sha256=PAYLOAD_SHA256)
    assert (tmp_path / "ViT-L-14.pt").read_bytes() == PAYLOAD  # the first URL that works is used


def state_dict_bytes(tmp_path: Path, state: dict[str, torch.Tensor]) -> bytes:
    path = tmp_path / "state.bin"
    torch.save(state, path)
    return path.read_bytes()


def test_weights_without_a_published_checksum_are_checked_by_format(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    backbone = ModelConfig().backbone
    assert find_cached_weights(backbone) is None

    server.files["/not_clip.bin"] = state_dict_bytes(tmp_path, {"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(DownloadError, match=r"no OpenAI CLIP image tower.*removed"):
        download_weights("vit-l-14-timm", urls=[f"{server.url}/not_clip.bin"])
    assert find_cached_weights(backbone) is None

    server.files["/clip.bin"] = state_dict_bytes(tmp_path, {"visual.class_embedding": torch.zeros(8)})
    path = download_weights("vit-l-14-timm", urls=[f"{server.url}/clip.bin"])
    assert path == tmp_path / "cache" / "vit_large_patch14_clip_224.openai.bin"
    assert find_cached_weights(backbone) == path
    assert find_cached_weights("tiny") is None


def test_the_openai_file_is_checked_against_openai_checksum(tmp_path: Path, server: LocalServer) -> None:
    with pytest.raises(DownloadError, match=r"SHA-256 .* not the expected b8cca3fd41ae"):
        download_weights("vit-l-14", tmp_path, urls=[f"{server.url}/w/ViT-L-14.pt"])
    assert list(tmp_path.iterdir()) == []
