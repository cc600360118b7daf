"""The fast prediction pipeline: one decode per prediction, decoding overlapped with the model (same
results as a sequential loop), features batched across short videos, bounded memory on long videos."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from statechange.checkpoint import save_checkpoint
from statechange.cli import main
from statechange.config import ForwardSettings, FrameConfig, ModelConfig, TrainConfig, to_dict
from statechange.data.cache import MEAN_ABS_ERROR_BOUND
from statechange.data.decode import decode_video
from statechange.data.index import build_index
from statechange.data.prefetch import prefetched
from statechange.evaluate import evaluate, logits_of, video_inputs
from statechange.inference import batched_features, load_model, video_features
from statechange.labels import category_probabilities
from statechange.model import init_model
from statechange.predictions import prediction_path, read_predictions

CATEGORIES = ["apple", "pear"]


def write_video(path: Path, seconds: int, size: tuple[int, int] = (32, 18), rate: int = 2) -> Path:
    """``seconds`` of H.264 whose colour and brightness change every second (so predictions vary)."""
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * rate):
            second = i // rate
            image = np.empty((height, width, 3), dtype=np.uint8)
            image[:] = ((second * 37) % 200 + 30, (second * 91) % 200 + 30, (second * 13) % 200 + 30)
            image[: height // 2, : width // 2] = 255 - image[0, 0]  # a block, so frames are not flat
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def tiny_checkpoint(directory: Path, frames: FrameConfig = FrameConfig()) -> Path:
    """A checkpoint of the tiny random backbone (input: the frames' crop)."""
    config = TrainConfig(frames=frames, model=ModelConfig(backbone="tiny", hidden_sizes=(16,), image_size=frames.crop))
    model = init_model(config.model, len(CATEGORIES), seed=0)
    return save_checkpoint(directory, model, CATEGORIES, {"train_config": to_dict(config)})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "model")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", seconds=150)


def test_a_prediction_and_its_picture_decode_the_video_once(checkpoint, video, tmp_path, monkeypatch):
    opened: list[str] = []
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)  # counts containers; decoding itself is untouched
    output = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--category", "apple", str(video),
                 "--output", str(output), "--device", "cpu", "--chunk-size", "64", "--no-progress"]) == 0
    assert opened == [str(video)]
    assert output.joinpath("apple", "clip.png").stat().st_size > 0

    # the picture's frames are the decoded frames at the chosen seconds (JPEG-kept: within its error)
    monkeypatch.setattr(av, "open", real_open)
    prediction = load_model(checkpoint, device="cpu").predict(video, "apple")
    decoded = decode_video(video)
    assert prediction.triplet is not None and len(prediction.triplet_frames) == 3
    for second, kept in zip(prediction.triplet, prediction.triplet_frames, strict=True):
        assert kept.shape == decoded[second].shape and kept.dtype == np.uint8
        assert np.abs(kept.astype(float) - decoded[second]).mean() <= MEAN_ABS_ERROR_BOUND


def test_decoding_overlapped_with_the_model_gives_the_sequential_result(checkpoint, video):
    predictor = load_model(checkpoint, device="cpu", precision="fp32", chunk_size=16)
    overlapped = predictor.predict(video, "pear")  # a background thread decodes chunk k+1 during chunk k
    sequential = predictor.predict(decode_video(video), "pear")  # decoded first, then the model
    for name in ("initial_state", "action", "end_state"):
        np.testing.assert_array_equal(getattr(overlapped, name), getattr(sequential, name))
    assert overlapped.triplet == sequential.triplet and overlapped.duration == 150


def test_prefetching_keeps_order_raises_in_place_and_stops_when_left():
    assert list(prefetched(range(200), depth=3)) == list(range(200))

    def failing():
        yield from range(5)
        raise ValueError("damaged at item 5")

    seen = []
    with pytest.raises(ValueError, match="damaged at item 5"):
        for item in prefetched(failing()):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    threads_before = threading.active_count()
    for item in prefetched(endless(), depth=2):
        if item == 10:
            break
    time.sleep(0.05)
    assert threading.active_count() == threads_before and len(produced) <= 10 + 1 + 2 + 1


def test_evaluation_overlapped_with_loading_gives_the_sequential_result(tiny_dataset, tmp_path):
    videos = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test
    model = init_model(ModelConfig(backbone="tiny", hidden_sizes=(16,)), 2, seed=0).eval()
    settings = ForwardSettings("cpu", chunk_size=8)
    evaluate(model, videos, settings, predictions_out=tmp_path)
    for video in videos:
        state, action = logits_of(model, video_inputs(video), settings)
        expected = category_probabilities(state, action, video.category_index)
        written = read_predictions(prediction_path(tmp_path, video.category, video.video_id))
        for column, values in zip(written, expected, strict=True):
            np.testing.assert_array_equal(column, values.numpy())


def test_features_of_short_videos_share_full_chunks_and_match_per_video_features():
    model = init_model(ModelConfig(backbone="tiny", hidden_sizes=(16,)), 2, seed=0).eval()
    settings = ForwardSettings("cpu", chunk_size=8)
    generator = np.random.default_rng(0)
    videos = [(name, generator.integers(0, 256, size=(n, 224, 398, 3), dtype=np.uint8))
              for name, n in (("a", 5), ("b", 3), ("empty", 0), ("c", 9), ("d", 1))]
    batch_sizes: list[int] = []
    hook = model.backbone.register_forward_hook(lambda _m, inputs, _o: batch_sizes.append(len(inputs[0])))
    try:
        batched = list(batched_features(model, iter(videos), settings))
    finally:
        hook.remove()
    assert batch_sizes == [8, 8, 2]  # 18 frames: full chunks, only the last one smaller
    assert [name for name, _ in batched] == ["a", "b", "c", "d"]
    for (name, features), (_, frames) in zip(batched, [v for v in videos if len(v[1])], strict=True):
        torch.testing.assert_close(features, video_features(model, frames, settings), rtol=1e-5, atol=1e-5,
                                   msg=f"video {name}")


def resident_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident memory from Linux /proc")
def test_a_5000_second_video_is_predicted_in_bounded_memory(tmp_path):
    seconds, frames = 5000, FrameConfig(width=160, height=96, crop=96)  # small frames keep the test fast
    whole_video_bytes = seconds * frames.width * frames.height * 3  # 230 MB if the decoded video were held
    bound = whole_video_bytes // 4
    predictor = load_model(tiny_checkpoint(tmp_path / "model", frames), device="cpu", precision="fp32", chunk_size=64)
    video = write_video(tmp_path / "long.mp4", seconds=seconds, size=(16, 16), rate=1)
    predictor.predict(write_video(tmp_path / "warm.mp4", seconds=130, size=(16, 16), rate=1), "apple")  # warm up
    baseline, peak, running = resident_bytes(), [0], True

    def sample() -> None:
        while running:
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        prediction = predictor.predict(video, "apple")
    finally:
        running = False
        sampler.join()
    assert prediction.duration == seconds and prediction.triplet is not None
    assert prediction.triplet_frames[0].shape == (frames.height, frames.width, 3)
    assert peak[0] - baseline < bound, f"grew by {(peak[0] - baseline) / 2**20:.1f} MiB"
