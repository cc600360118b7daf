"""What a training run reports (issue 11, part 4): per-step losses and learning rates, per-category metrics,
the run's settings beside its final metrics, in log.jsonl / steps.jsonl, TensorBoard and W&B (offline), a last
line naming the final checkpoint; progress that never writes carriage returns into a log; one spelling of
each option across commands, the release's spelling accepted."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from statechange.cli import build_parser, release_spelling
from statechange.config import ModelConfig, OptimConfig, TrainConfig
from statechange.data.decode import decode_video
from statechange.data.index import build_index
from statechange.errors import StateChangeError
from statechange.train import TrainOptions, TrainPaths, train

pytestmark = pytest.mark.slow

N_EPOCHS = 2


def tiny_config(n_epochs: int = N_EPOCHS) -> TrainConfig:
    return TrainConfig(model=ModelConfig(backbone="tiny", hidden_sizes=(32,)),
                       optim=OptimConfig(n_epochs=n_epochs, local_batch_size=2, warmup_epochs=1.0, lr=1e-2))


def paths_for(dataset: Path, output: Path) -> TrainPaths:
    return TrainPaths(video_roots=(dataset / "videos",), dataset_root=dataset / "dataset", output=output)


def options(**changes) -> TrainOptions:
    return TrainOptions(**{**TrainOptions(device="cpu", num_workers=0, progress=False, log_every_steps=1).__dict__,
                           **changes})


def steps_per_epoch(dataset: Path) -> int:
    return len(build_index([dataset / "videos"], dataset / "dataset").train) // 2  # local batch 2, one process


def tensorboard(directory: Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return events


def wandb_records(output: Path) -> list:
    """The records of the offline W&B run in OUTPUT/wandb, read from its .wandb file: a 7-byte header, then
    LevelDB-log framing (32 KiB blocks; each piece: CRC32, 2-byte length, type 1 full / 2 first / 3 middle /
    4 last) around protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    (run_file,) = (output / "wandb").glob("offline-run-*/run-*.wandb")
    data, block, position, records, pieces = run_file.read_bytes(), 32768, 7, [], b""
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:
            position += left_in_block  # the block's zero padding
            continue
        length, kind = struct.unpack("<HB", data[position + 4:position + 7])
        if length == 0 and kind == 0:
            position += left_in_block
            continue
        pieces += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def wandb_history(output: Path) -> list[dict[str, float]]:
    rows = []
    for record in wandb_records(output):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def wandb_values(output: Path, kind: str) -> dict:
    """The run's config ("config": given at the start, in its run record, or updated later) or summary."""
    values = {}
    for record in wandb_records(output):
        record_type = record.WhichOneof("record_type")
        if kind == "config" and record_type in ("run", "config"):
            items = (record.run.config if record_type == "run" else record.config).update
        elif kind == "summary" and record_type == "summary":
            items = record.summary.update
        else:
            continue
        values.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items})
    return values


@pytest.fixture(scope="module")
def reported_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two epochs reported to TensorBoard and W&B (offline), a record every step; returns (output, stderr)."""
    output = tmp_path_factory.mktemp("reported") / "run"
    script = (
        "import sys; from pathlib import Path; sys.path[:0] = [sys.argv[1]]\n"
        "from test_reporting import tiny_config, paths_for, options\n"
        "from statechange.train import train\n"
        "train(tiny_config(), paths_for(Path(sys.argv[2]), Path(sys.argv[3])), "
        "options(report_to=('tensorboard', 'wandb')))\n"
    )
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(tiny_dataset), str(output)],
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return output, done.stderr


def test_every_step_and_every_category_is_logged_and_the_run_ends_naming_its_checkpoint(reported_run, tiny_dataset):
    output, stderr = reported_run
    n_steps = N_EPOCHS * steps_per_epoch(tiny_dataset)
    steps = [json.loads(line) for line in (output / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, n_steps + 1))
    assert all({"loss", "state_loss", "action_loss", "grad_norm", "lr"} <= set(s) for s in steps)
    assert steps[0]["lr"] < steps[steps_per_epoch(tiny_dataset) - 1]["lr"]  # the warm-up shows step by step

    records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    categories = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").categories
    for record in records:
        assert sorted(record["per_category"]) == sorted(categories)
        per_category = [row["state_precision"] for row in record["per_category"].values()]
        assert record["metrics"]["state_precision"] == pytest.approx(sum(per_category) / len(per_category))

    events = tensorboard(output / "tensorboard")
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, n_steps + 1))
    assert [e.value for e in events.Scalars("step/loss")] == pytest.approx([s["loss"] for s in steps])
    for category in categories:
        logged = [e.value for e in events.Scalars(f"val/{category}/state_precision")]
        assert logged == pytest.approx([r["per_category"][category]["state_precision"] for r in records])
    hparams = tensorboard(output / "tensorboard" / "hparams")
    final = records[-1]["metrics"]
    assert hparams.Scalars("hparams/state_precision")[0].value == pytest.approx(final["state_precision"])

    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"done, {N_EPOCHS} epochs: final checkpoint {output / 'last'}")
    assert f"state P@1 {final['state_precision']:.1f}, action P@1 {final['action_precision']:.1f}" in last_line


def test_wandb_offline_gets_the_same_numbers_settings_and_final_metrics(reported_run, tiny_dataset):
    output, _ = reported_run
    history = wandb_history(output)
    steps = [json.loads(line) for line in (output / "steps.jsonl").read_text().splitlines()]
    logged_losses = [row["step/loss"] for row in history if "step/loss" in row]
    assert logged_losses == pytest.approx([s["loss"] for s in steps])
    records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    epochs = [row for row in history if "epoch" in row]
    assert [row["epoch"] for row in epochs] == [r["epoch"] for r in records]
    category = next(iter(records[-1]["per_category"]))
    assert epochs[-1][f"val/{category}/state_precision"] == records[-1]["per_category"][category]["state_precision"]
    config = wandb_values(output, "config")
    assert config["optim.lr"] == 1e-2 and config["model.backbone"] == "tiny"
    summary = wandb_values(output, "summary")
    assert summary["final/state_precision"] == pytest.approx(records[-1]["metrics"]["state_precision"])


def test_a_resumed_run_logs_every_step_once(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    train(tiny_config(), paths_for(tiny_dataset, output), options(stop_after_epoch=1))
    with open(output / "steps.jsonl", "a") as file:  # what a run killed during epoch 2 would have left
        file.write(json.dumps({"epoch": 2, "step": 10_000, "loss": 1.0}) + "\n")
    train(tiny_config(), paths_for(tiny_dataset, output), options(resume=True))
    n_steps = N_EPOCHS * steps_per_epoch(tiny_dataset)
    steps = [json.loads(line)["step"] for line in (output / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, n_steps + 1))
    assert [e.step for e in tensorboard(output / "tensorboard").Scalars("step/loss")] == steps


def test_report_to_wandb_without_the_package_or_an_unknown_tool_is_refused_before_any_work(tiny_dataset, tmp_path,
                                                                                            monkeypatch):
    with pytest.raises(StateChangeError, match="--report-to nowhere is not one of"):
        train(tiny_config(), paths_for(tiny_dataset, tmp_path / "a"), options(report_to=("nowhere",)))
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed (find_spec then finds none)
    with pytest.raises(StateChangeError, match=r"pip install 'statechange\[wandb\]'"):
        train(tiny_config(), paths_for(tiny_dataset, tmp_path / "b"), options(report_to=("wandb",)))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ----------------------------------------------------------------------------------------------
# progress in a log and on a terminal


def predict_command(checkpoint: Path, video: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "statechange", "predict", str(video), "--checkpoint", str(checkpoint),
            "--category", video.parent.name, "--output", str(output), "--device", "cpu"]


def test_progress_in_a_log_is_whole_lines_and_counts_the_seconds_of_a_video(tiny_checkpoint, tiny_dataset, tmp_path):
    video = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]
    done = subprocess.run(predict_command(tiny_checkpoint, video.path, tmp_path / "out"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\r" not in done.stdout
    seconds = len(decode_video(video.path))  # 1 frame per second
    assert f"{video.path.name}: {seconds} s of video" in done.stderr  # the last progress line: the whole video
    assert f"{video.path} [{video.category}]" in done.stdout  # the result line, apart from the progress


def test_progress_on_a_terminal_is_a_live_bar(tiny_checkpoint, tiny_dataset, tmp_path):
    video = build_index([tiny_dataset / "videos"], tiny_dataset / "dataset").test[0]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = subprocess.Popen(predict_command(tiny_checkpoint, video.path, tmp_path / "out"), stderr=follower,
                               stdout=subprocess.DEVNULL)
    os.close(follower)  # the child holds the terminal now; reading ends (EIO) once it has exited
    said = b""
    try:
        while chunk := os.read(leader, 65536):
            said += chunk
    except OSError:
        pass
    finally:
        os.close(leader)
    assert process.wait(timeout=300) == 0
    assert b"\r" in said and b"s of video" in said  # tqdm redraws its bar in place


# ----------------------------------------------------------------------------------------------
# option names


def subcommand_parsers() -> dict:
    import argparse

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices


def test_one_name_per_option_across_commands():
    """An option means one thing everywhere: the same setting (dest) has the same name in every command, and
    one name takes its value the same way (type, number of values) in every command."""
    by_dest: dict[str, set[str]] = {}
    by_name: dict[str, set[tuple]] = {}
    for parser in subcommand_parsers().values():
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            name = next(o for o in action.option_strings if o.startswith("--"))
            by_dest.setdefault(action.dest, set()).add(name)
            by_name.setdefault(name, set()).add((action.dest, action.type, action.nargs, type(action).__name__))
    assert {d: n for d, n in by_dest.items() if len(n) > 1} == {}
    assert {n: s for n, s in by_name.items() if len(s) > 1} == {}


def test_the_release_spelling_and_old_names_still_parse_the_same():
    parse = build_parser().parse_args
    ours = parse(["train", "--video-roots", "v", "--dataset-root", "d", "--train-backbone", "--local-batch-size", "2",
                  "--ignore-video-weight", "--workers", "3", "--output", "o_dir"])
    release = parse(release_spelling(["train", "--video_roots", "v", "--dataset_root", "d", "--train_backbone",
                                      "--local_batch_size", "2", "--ignore_video_weight", "--num_workers", "3",
                                      "--output=o_dir"]))
    assert vars(ours) == vars(release)
    assert str(release.output) == "o_dir"  # values keep their underscores
    assert parse(["demo", "--epochs", "3"]).n_epochs == parse(["demo", "--n-epochs", "3"]).n_epochs == 3
