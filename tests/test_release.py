"""The release's trained checkpoints: a release-format ``.pth`` built here from a tiny OpenAI-style ViT with
random weights loads through ``load_model`` / ``statechange convert`` and gives the logits of a forward
pass written by hand on the same weights."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_weights import HEADS, LAYERS, PATCH, RESOLUTION, WIDTH, TinyOpenAIClip, frames, reference_features

from statechange.checkpoint import load_checkpoint
from statechange.cli import main
from statechange.config import IMPROVED_ENSEMBLE
from statechange.errors import StateChangeError
from statechange.inference import load_model
from statechange.release import CHANGEIT_CATEGORIES, load_release_checkpoint

CATEGORIES = ["bake", "fold", "peel"]
HIDDEN = (16,)
__all__ = ["frames"]  # the fixture, imported from test_weights


def release_content(visual: torch.nn.Module, n_classes: int, hidden: tuple[int, ...] = HIDDEN,
                    seed: int = 0) -> dict:
    """What the release's training saves: DDP keys, OpenAI visual keys without proj, the two heads."""
    generator = torch.Generator().manual_seed(seed)
    state = {f"module.backbone.{k}": v.detach().clone() for k, v in visual.state_dict().items() if k != "proj"}
    for head, n_out in (("state", 2 * n_classes + 1), ("action", n_classes + 1)):
        width = WIDTH
        for i, size in enumerate(hidden):
            state[f"module.heads.{head}.l{i}.weight"] = torch.randn(size, width, generator=generator) / width**0.5
            state[f"module.heads.{head}.l{i}.bias"] = torch.randn(size, generator=generator) * 0.1
            width = size
        state[f"module.heads.{head}_layer.weight"] = torch.randn(n_out, width, generator=generator) / width**0.5
        state[f"module.heads.{head}_layer.bias"] = torch.randn(n_out, generator=generator) * 0.1
    args = {"input_resolution": RESOLUTION, "patch_size": PATCH, "width": WIDTH, "layers": LAYERS, "heads": HEADS,
            "output_dim": 16}
    return {"state_dict": state, "args": args, "n_classes": n_classes, "hidden_mlp_layers": list(hidden)}


def reference_head(state: dict, head: str, features: torch.Tensor) -> torch.Tensor:
    """The release's head written out: ReLU after each hidden Linear, then the output layer."""
    x, i = features, 0
    while f"module.heads.{head}.l{i}.weight" in state:
        x = F.relu(x @ state[f"module.heads.{head}.l{i}.weight"].T + state[f"module.heads.{head}.l{i}.bias"])
        i += 1
    return x @ state[f"module.heads.{head}_layer.weight"].T + state[f"module.heads.{head}_layer.bias"]


@pytest.fixture(scope="module")
def visual() -> torch.nn.Module:
    torch.manual_seed(3)
    model = TinyOpenAIClip().visual.eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def release(visual, tmp_path_factory) -> tuple[Path, dict]:
    content = release_content(visual, len(CATEGORIES))
    path = tmp_path_factory.mktemp("release") / "model.pth"
    torch.save(content, path)
    return path, content


def logits_of(model: torch.nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model(frames)


def test_release_file_gives_the_logits_of_an_openai_style_forward(release, visual, frames):
    path, content = release
    predictor = load_model(path, device="cpu", categories=CATEGORIES)
    state, action = logits_of(predictor.model, frames)
    with torch.no_grad():
        features = reference_features(visual, frames)
        expected_state = reference_head(content["state_dict"], "state", features)
        expected_action = reference_head(content["state_dict"], "action", features)
    assert state.shape == (3, 2 * len(CATEGORIES) + 1) and action.shape == (3, len(CATEGORIES) + 1)
    assert (state - expected_state).abs().max() <= 1e-5
    assert (action - expected_action).abs().max() <= 1e-5
    assert predictor.categories == CATEGORIES


def test_44_categories_default_to_changeit_names_sorted(visual, tmp_path):
    path = tmp_path / "changeit.pth"
    torch.save(release_content(visual, 44, hidden=(4,)), path)
    loaded = load_release_checkpoint(path)
    assert loaded.categories == sorted(loaded.categories) == list(CHANGEIT_CATEGORIES)
    assert len(loaded.categories) == 44 and loaded.categories[0] == "apple" and loaded.categories[-1] == "whisk_eggs"
    assert loaded.model.state_head[-1].out_features == 89


def test_categories_missing_or_of_the_wrong_count_are_clear_errors(release):
    path, _ = release
    with pytest.raises(StateChangeError, match="3 categories and stores no names: pass them with --categories"):
        load_release_checkpoint(path)
    with pytest.raises(StateChangeError, match=r"2 category names were given but .* has 3 categories"):
        load_release_checkpoint(path, ["bake", "fold"])


@pytest.mark.parametrize("change, named", [
    ("drop", "state_head.2.bias"),
    ("extra", "module.backbone.proj"),
    ("shape", "module.heads.action_layer.weight"),
])
def test_missing_unexpected_and_misshapen_keys_are_named(visual, tmp_path, change, named):
    content = release_content(visual, len(CATEGORIES))
    state = content["state_dict"]
    if change == "drop":
        del state["module.heads.state_layer.bias"]
    elif change == "extra":
        state["module.backbone.proj"] = torch.zeros(WIDTH, 16)
    else:
        state["module.heads.action_layer.weight"] = torch.zeros(len(CATEGORIES) + 2, HIDDEN[-1])
    path = tmp_path / "bad.pth"
    torch.save(content, path)
    with pytest.raises(StateChangeError, match=f"does not fit .*{named.replace('.', '[.]')}"):
        load_release_checkpoint(path, CATEGORIES)


def test_files_that_are_not_plain_release_checkpoints_are_clear_errors(release, tmp_path):
    _, content = release
    pickled = tmp_path / "namespace.pth"  # args as an argparse.Namespace: needs pickled code to load
    torch.save({**content, "args": argparse.Namespace(**content["args"])}, pickled)
    with pytest.raises(StateChangeError, match=r"could not be read as a release checkpoint with .*weights_only"):
        load_release_checkpoint(pickled, CATEGORIES)
    bare = tmp_path / "bare.pth"  # a bare state dict, without args or n_classes
    torch.save(content["state_dict"], bare)
    with pytest.raises(StateChangeError, match="is not a release checkpoint: it needs the entries state_dict"):
        load_release_checkpoint(bare, CATEGORIES)


def test_convert_writes_a_checkpoint_with_the_same_logits(release, frames, tmp_path, capsys):
    path, _ = release
    output = tmp_path / "converted"
    assert main(["convert", "--release", str(path), "--output", str(output), "--categories", ",".join(CATEGORIES)]) == 0
    converted = load_checkpoint(output)
    original = load_release_checkpoint(path, CATEGORIES)
    assert converted.categories == CATEGORIES
    assert converted.metadata["release"]["args"]["width"] == WIDTH
    for ours, theirs in zip(logits_of(converted.model, frames), logits_of(original.model, frames), strict=True):
        assert torch.equal(ours, theirs)
    names = tmp_path / "names.txt"
    names.write_text("bake\nfold\n")
    assert main(["convert", "--release", str(path), "--output", str(tmp_path / "x"), "--categories", str(names)]) == 2
    assert "2 category names were given" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_train_init_from_a_release_file_starts_from_its_weights(visual, tiny_dataset, tmp_path, capsys):
    content = release_content(visual, 2)
    path = tmp_path / "release.pth"
    torch.save(content, path)
    data = ["--video-roots", str(tiny_dataset / "videos"), "--dataset-root", str(tiny_dataset / "dataset")]
    common = [*data, "--backbone", "tiny", "--n-epochs", "1", "--lr", "0", "--device", "cpu", "--workers", "0",
              "--no-progress"]
    # learning rate 0: the weights after one epoch are the weights the run started from
    init = ["--init-from", str(path)]
    assert main(["train", *common, *init, "--hidden-sizes", "16", "--output", str(tmp_path / "a")]) == 0
    trained = load_checkpoint(tmp_path / "a" / "last")
    names = trained.categories
    release = load_release_checkpoint(path, names)
    for key, value in release.model.state_dict().items():
        assert torch.equal(trained.model.state_dict()[key], value), key
    assert main(["train", *common, *init, "--hidden-sizes", "8", "--output", str(tmp_path / "b")]) == 2
    assert "pass --backbone tiny --hidden-sizes 16 --ensemble-size 1." in capsys.readouterr().err
    assert main(["train", *common, *init, "--hidden-sizes", "16", "--recipe", "improved",
                 "--output", str(tmp_path / "c")]) == 2  # the improved recipe's ensemble is another architecture
    said = capsys.readouterr().err
    assert "1 head pair(s), but this run builds" in said and f"px and {IMPROVED_ENSEMBLE}; pass" in said
    assert "--ensemble-size 1." in said
