"""Runs that never lose work and never give a silent wrong answer (issue 9): colliding video names,
unusable metadata, evaluations that scored nothing, damaged checkpoints and cache entries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from statechange.checkpoint import load_checkpoint, save_checkpoint
from statechange.cli import main
from statechange.config import ModelConfig
from statechange.data.cache import EXACT_SOURCE, FrameCache
from statechange.data.index import build_index, find_videos
from statechange.errors import StateChangeError
from statechange.factory import build_model
from statechange.features import FeatureStore


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def untrained_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny backbone for the tiny dataset's categories (no training needed)."""
    categories = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").categories
    model = build_model(ModelConfig(backbone="tiny", hidden_sizes=(32,)), len(categories), seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("untrained") / "last", model, categories, {})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a CUDA GPU")
@pytest.mark.parametrize(("command", "device", "said"), [
    ("predict", "cuda", "--device cuda was asked for but no CUDA GPU is visible; use --device cpu."),
    ("evaluate", "cuda:1", "--device cuda:1 was asked for but no CUDA GPU is visible; use --device cpu."),
    ("predict", "gpu", "--device gpu is not a device"),
])
def test_a_device_that_is_not_there_is_one_sentence(untrained_checkpoint, tiny_dataset, tmp_path, capsys, command,
                                                    device, said):
    video = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]
    where = ([str(video.path), "--category", video.category, "--output", str(tmp_path / "out")] if command == "predict"
             else ["--video-roots", str(tiny_dataset / "videos"), "--dataset-root", str(tiny_dataset / "dataset")])
    code = main([command, *where, "--checkpoint", str(untrained_checkpoint), "--device", device, "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and said in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# 3. video ids: the name without its last extension; collisions are errors


def test_names_with_dots_are_different_videos_and_keep_their_annotation(tmp_path):
    touch(tmp_path / "videos" / "cut" / "take.v1.mp4")
    touch(tmp_path / "videos" / "cut" / "take.v2.mp4")
    touch(tmp_path / "dataset" / "annotations" / "cut" / "take.v2.fps1.csv", "0,1\n1,2\n2,3\n")
    index = build_index([tmp_path / "videos"], tmp_path / "dataset", ignore_video_weight=True)
    assert [(v.key, v.split) for v in index.videos] == [("cut/take.v1", "train"), ("cut/take.v2", "test")]


@pytest.mark.parametrize("second", ["videos/cut/a.webm", "more/cut/a.mkv"])
def test_two_files_with_one_id_are_an_error_naming_both(tmp_path, second):
    first = touch(tmp_path / "videos" / "cut" / "a.mp4")
    other = touch(tmp_path / second)
    roots = [tmp_path / "videos", *([tmp_path / "more"] if second.startswith("more") else [])]
    with pytest.raises(StateChangeError, match="both have the id cut/a") as error:
        find_videos(roots)
    assert str(first) in str(error.value) and str(other) in str(error.value)


def test_predict_refuses_same_named_videos_from_two_folders_before_writing(untrained_checkpoint, tiny_dataset,
                                                                          tmp_path, capsys):
    source = sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[:2]
    for folder, video in zip(("day1", "day2"), source, strict=True):
        (tmp_path / folder).mkdir()
        shutil.copy(video, tmp_path / folder / "take.mp4")
    output = tmp_path / "predictions"
    code = main(["predict", "--checkpoint", str(untrained_checkpoint), "--category", "disc_slicing",
                 str(tmp_path / "day1"), str(tmp_path / "day2" / "take.mp4"), "--output", str(output),
                 "--device", "cpu", "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert str(tmp_path / "day1" / "take.mp4") in error and str(tmp_path / "day2" / "take.mp4") in error
    assert not output.exists()


# ---------------------------------------------------------------------------------------------
# 7. centring parameters and relevance scores must be finite numbers


def weighted_dataset(root: Path, theta: str = "0.4", score: str = "0.5") -> tuple[Path, Path]:
    touch(root / "videos" / "cut" / "a1.mp4")
    touch(root / "dataset" / "categories.csv", f"DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,Cutting,{theta}\n")
    touch(root / "dataset" / "videos" / "cut.csv", f"a1,{score}\n")
    return root / "videos", root / "dataset"


@pytest.mark.parametrize(("theta", "score", "file", "line"), [
    ("nan", "0.5", "categories.csv", 2), ("inf", "0.5", "categories.csv", 2),
    ("0.4", "nan", "cut.csv", 1), ("0.4", "-inf", "cut.csv", 1), ("0.4", "high", "cut.csv", 1),
])
def test_non_finite_centring_or_relevance_is_an_error_naming_file_and_line(tmp_path, theta, score, file, line):
    videos, dataset = weighted_dataset(tmp_path, theta, score)
    with pytest.raises(StateChangeError, match=rf"{file} line {line} .*finite"):
        build_index([videos], dataset)


def test_non_utf8_metadata_is_one_sentence_naming_the_file(tmp_path):
    videos, dataset = weighted_dataset(tmp_path)
    (dataset / "categories.csv").write_bytes("DIR_NAME,ACTION_NAME,CENTERING_PARAM\ncut,Schnitt\xe4,0.4\n"
                                             .encode("latin-1"))
    with pytest.raises(StateChangeError, match=r"categories\.csv is not UTF-8"):
        build_index([videos], dataset)


# ---------------------------------------------------------------------------------------------
# 8. an evaluation that scored no video fails


def test_evaluate_fails_when_no_annotated_video_could_be_scored(untrained_checkpoint, tiny_dataset, tmp_path,
                                                                 capsys):
    videos = tmp_path / "videos"
    shutil.copytree(tiny_dataset / "videos", videos)
    for annotation in (tiny_dataset / "dataset" / "annotations").glob("*/*.fps1.csv"):
        (video,) = (videos / annotation.parent.name).glob(annotation.name.removesuffix(".fps1.csv") + ".*")
        video.write_bytes(b"not a video" * 100)
    code = main(["evaluate", "--checkpoint", str(untrained_checkpoint), "--video-roots", str(videos),
                 "--dataset-root", str(tiny_dataset / "dataset"), "--device", "cpu", "--no-progress"])
    assert code == 2
    assert "None of the 4 annotated videos could be scored" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 9. one extraction at a time per cache


def extract_args(videos: Path, cache: Path) -> list[str]:
    return ["extract", "--video-roots", str(videos), "--cache", str(cache), "--workers", "1", "--no-progress"]


# A second `statechange extract` process, imported in advance and started by a line on its stdin, so that it
# runs while the first one is busy however slowly the interpreter starts on a loaded machine.
WARM_EXTRACT = """
import sys
from statechange.cli import build_parser, main
args = sys.argv[1:]
build_parser()  # imports every subcommand now
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(args))
"""


@pytest.mark.slow
def test_a_second_extract_on_a_busy_cache_is_refused_and_the_first_reports_no_false_failure(tiny_dataset, tmp_path):
    videos, cache = tmp_path / "videos", tmp_path / "cache"
    for copy in range(15):  # 180 videos: the first run is still busy when the second starts
        for source in (tiny_dataset / "videos").glob("*/*"):
            (videos / source.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(source, videos / source.parent.name / f"{copy}-{source.name}")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    second = subprocess.Popen([sys.executable, "-c", WARM_EXTRACT, *extract_args(videos, cache)], env=environment,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert second.stdout.readline() == "ready\n"
    first = subprocess.Popen([sys.executable, "-m", "statechange", *extract_args(videos, cache)], env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(cache.glob("*/*.frames")):  # the first run holds the lock and is writing
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    second_out, second_err = second.communicate("go\n", timeout=300)  # refused only if the first holds the lock
    out, err = first.communicate(timeout=600)

    assert second.returncode == 2, second_out + second_err
    assert f"Another statechange extract is writing to the frame cache {cache}" in second_err
    assert first.returncode == 0, err
    assert "180 videos: 180 extracted, 0 already cached, 0 failed" in out
    assert (cache / "failures.csv").read_text() == "path,status,error,source_size,source_mtime_ns\n"


# ---------------------------------------------------------------------------------------------
# 10. one sentence, before any long work, for bad option values and failed file operations


def train_args(dataset: Path, output: Path) -> list[str]:
    return ["train", "--video-roots", str(dataset / "videos"), "--dataset-root", str(dataset / "dataset"),
            "--output", str(output), "--backbone", "tiny", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("option", [
    ["--local-batch-size", "0"], ["--chunk-size", "0"], ["--lr", "-0.1"], ["--n-epochs", "0"], ["--kappa", "-5"],
    ["--hidden-sizes", "0"], ["--workers", "-1"], ["--lr-backbone", "nan"], ["--save-every-steps", "0"],
    ["--collective-timeout", "0"], ["--collective-timeout", "inf"],
])
def test_invalid_train_options_are_one_sentence_naming_the_option_before_any_work(tiny_dataset, tmp_path, capsys,
                                                                                  option):
    output = tmp_path / "run"
    assert main([*train_args(tiny_dataset, output), *option]) == 2
    error = capsys.readouterr().err
    assert f"error: {option[0]} must" in error and len(error.strip().splitlines()) == 1
    assert not output.exists()  # refused before anything was written


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB tmpfs the test may fill or remount read-only (needs root and mount)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and the mount command)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def predict_args(checkpoint: Path, video: Path, output: Path) -> list[str]:
    return ["predict", "--checkpoint", str(checkpoint), "--category", "disc_slicing", str(video), "--output",
            str(output), "--device", "cpu", "--no-progress"]


def test_a_full_disk_is_one_sentence_not_a_traceback(untrained_checkpoint, tiny_dataset, small_disk, capsys):
    with open(small_disk / "filler", "wb") as filler:  # fill the disk
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
    video = sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[0]
    assert main(predict_args(untrained_checkpoint, video, small_disk / "predictions")) == 2
    error = capsys.readouterr().err.strip()
    assert "No space left on device" in error and "free some space" in error and len(error.splitlines()) == 1


def test_a_read_only_output_is_one_sentence_not_a_traceback(untrained_checkpoint, tiny_dataset, small_disk, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    video = sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[0]
    assert main(predict_args(untrained_checkpoint, video, small_disk / "predictions")) == 2
    error = capsys.readouterr().err.strip()
    assert "Read-only file system" in error and "writable disk" in error and len(error.splitlines()) == 1


def test_a_legal_250_character_video_name_extracts(tiny_dataset, tmp_path, capsys):
    videos = tmp_path / "videos" / "disc_slicing"
    videos.mkdir(parents=True)
    source = sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[0]
    long_name = "x" * 246 + ".mp4"  # 250 characters, the longest the tests' file systems allow is 255
    shutil.copy(source, videos / long_name)
    assert main(["extract", "--video-roots", str(tmp_path / "videos"), "--cache", str(tmp_path / "cache"),
                 "--workers", "1", "--no-progress"]) == 0
    assert "1 extracted, 0 already cached, 0 failed" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 12. written files get the usual permissions


def test_checkpoints_cache_entries_and_features_are_written_0644_under_umask_022(untrained_checkpoint, tiny_dataset,
                                                                                tmp_path):
    old_umask = os.umask(0o022)
    try:
        loaded = load_checkpoint(untrained_checkpoint)
        checkpoint = save_checkpoint(tmp_path / "last", loaded.model, loaded.categories, {}, {"epoch": 1})
        (video,) = find_videos([tiny_dataset / "videos"])[:1]
        entry = FrameCache(tmp_path / "cache").put(video, np.zeros((2, 8, 8, 3), dtype=np.uint8))
        store = FeatureStore(tmp_path / "features", "fingerprint")
        store.put(video, torch.zeros(2, 4), EXACT_SOURCE)
    finally:
        os.umask(old_umask)
    written = [*checkpoint.iterdir(), entry, store.path_for(video, EXACT_SOURCE)]
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in written} == {
        path.name: "0o644" for path in written}


# ---------------------------------------------------------------------------------------------
# 11. a file that failed is not decoded again while it is unchanged


def test_a_failed_video_is_not_retried_until_it_changes_or_retry_failed(tiny_dataset, tmp_path, capsys):
    videos, cache = tmp_path / "videos", tmp_path / "cache"
    (videos / "disc_slicing").mkdir(parents=True)
    broken = videos / "disc_slicing" / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    extract = ["extract", "--video-roots", str(videos), "--cache", str(cache), "--workers", "1", "--no-progress"]
    assert main(extract) == 1
    assert "0 extracted, 0 already cached, 1 failed" in capsys.readouterr().out

    assert main(extract) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "1 of them failed before and are unchanged: not tried again" in out
    assert str(broken) in (cache / "failures.csv").read_text()  # still listed

    assert main([*extract, "--retry-failed"]) == 1
    assert "not tried again" not in capsys.readouterr().out
    shutil.copy(sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[0], broken)  # fixed
    assert main(extract) == 0
    assert "1 extracted, 0 already cached, 0 failed" in capsys.readouterr().out


def linked_copies(tiny_dataset: Path, videos: Path, copies: int) -> None:
    """``copies`` hard links of every video of the tiny dataset under ``videos`` (12 videos each)."""
    for copy in range(copies):
        for source in (tiny_dataset / "videos").glob("*/*"):
            (videos / source.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(source, videos / source.parent.name / f"{copy}-{source.name}")


def running_descendants(pid: int) -> set[int]:
    """The live (not zombie) processes below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state not in ("Z", "X"):
            children.setdefault(int(parent), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
def test_a_killed_extract_leaves_no_worker_process_running(tiny_dataset, tmp_path):
    videos, cache = tmp_path / "videos", tmp_path / "cache"
    linked_copies(tiny_dataset, videos, 10)  # 120 videos: the workers are busy when the extract is killed
    extract = subprocess.Popen([sys.executable, "-m", "statechange", "extract", "--video-roots", str(videos),
                                "--cache", str(cache), "--workers", "2", "--no-progress"],
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(cache.glob("*/*.frames")):  # the workers are decoding
        assert extract.poll() is None and time.monotonic() < deadline, extract.communicate()
        time.sleep(0.02)
    workers = running_descendants(extract.pid)  # the fork server and its workers (and a resource tracker)
    assert len(workers) >= 3, workers

    extract.kill()
    extract.wait()
    deadline = time.monotonic() + 30
    while any(is_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in workers if is_running(pid)] == []


KILLED_FEATURE_WRITER = """
import sys, time
from statechange._io import atomic_write
with atomic_write(sys.argv[1]) as file:
    file.write(b"half of a feature file")
    file.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_the_feature_store_removes_temporary_files_of_killed_writers_on_the_next_run(tiny_dataset, tmp_path):
    store = FeatureStore(tmp_path / "features", "an-older-backbone")
    (video,) = find_videos([tiny_dataset / "videos"])[:1]
    target = store.path_for(video, EXACT_SOURCE)
    target.parent.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", KILLED_FEATURE_WRITER, str(target)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait()
    (left,) = target.parent.glob(".*.tmp")  # what a killed train leaves

    run = [*train_args(tiny_dataset, tmp_path / "run"), "--n-epochs", "1", "--feature-cache", str(store.root)]
    assert main(run) == 0
    assert not left.exists() and not target.exists()


EXTRACT_WITHOUT_TORCH = """
import sys
from statechange.cli import main
code = main(sys.argv[1:])
print("torch imported" if any(name == "torch" or name.startswith("torch.") for name in sys.modules) else "no torch")
sys.exit(code)
"""


def test_extract_imports_no_torch(tiny_dataset, tmp_path):
    """Start-up is all a re-run over a finished cache costs: importing torch would be most of it."""
    videos = tmp_path / "videos" / "disc_slicing"
    videos.mkdir(parents=True)
    source = sorted((tiny_dataset / "videos" / "disc_slicing").glob("*.mp4"))[0]
    os.link(source, videos / source.name)
    run = subprocess.run([sys.executable, "-c", EXTRACT_WITHOUT_TORCH, *extract_args(tmp_path / "videos",
                                                                                      tmp_path / "cache")],
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-2:] == ["extract: 1 videos: 1 extracted, 0 already cached, 0 failed", "no torch"]
