"""The package's shape as a user meets it: ``statechange --help`` answers without loading torch,
every option says what it does and its default, and imports run one way (the model never imports
its weight loaders or checkpoints; prediction never imports the training augmentation)."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import statechange
from statechange.cli import build_parser
from statechange.cli._common import forward_settings
from statechange.config import ForwardSettings

PACKAGE = Path(statechange.__file__).parent
SOURCE_ROOT = PACKAGE.parent
HEAVY = ("torch", "numpy")  # what a parser must not wait for


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that imports this checkout's statechange."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [[], ["--help"], ["train", "--help"]], ids=["import", "help", "train-help"])
def test_import_and_help_load_no_torch(argv):
    code = (
        "import contextlib, io, sys\n"
        "import statechange\n"
        f"argv = {argv!r}\n"
        "if argv:\n"
        "    from statechange.cli import main\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "    assert 'usage: statechange' in out.getvalue(), out.getvalue()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]", f"{argv} imported {completed.stdout.strip()}"


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def test_every_subcommand_is_there():
    assert set(subcommand_parsers()) == {"convert", "dataset", "demo", "download", "evaluate", "extract", "predict",
                                         "score", "synth", "train"}


@pytest.mark.parametrize("name", sorted(subcommand_parsers()))
def test_every_option_has_help_and_help_shows_its_default(name):
    parser = subcommand_parsers()[name]
    text = " ".join(parser.format_help().split())  # unwrapped
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        option = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {option} has no help"
        flag = isinstance(action.default, bool)
        if action.required or flag or not action.option_strings:
            continue
        if action.default is None:  # nothing to show: the help must say what happens instead
            assert "when not given" in action.help, f"{name} {option}: say what happens without it"
        else:
            assert f"(default: {action.default})" in text, f"{name} {option} does not show its default"


def test_runtime_options_are_the_same_everywhere():
    """--device, --precision, --chunk-size and --no-progress mean the same in every subcommand; only
    --precision's default differs, by design: auto where speed matters (predict, demo), fp32 where
    parity with the release does (evaluate, train; training's precision is saved in its config)."""
    seen: dict[str, set[tuple]] = {}
    precision_defaults: dict[str, tuple] = {}
    for name, parser in subcommand_parsers().items():
        for action in parser._actions:
            if set(action.option_strings) & {"--device", "--precision", "--chunk-size", "--no-progress"}:
                if action.option_strings[0] == "--precision":
                    precision_defaults[name] = (action.default, tuple(action.choices))
                    key: tuple = ("--precision", action.help.split(",")[0], action.type)
                else:
                    key = (action.option_strings[0], action.default, tuple(action.choices or ()), action.type)
                seen.setdefault(action.option_strings[0], set()).add(key)
    assert set(seen) == {"--device", "--precision", "--chunk-size", "--no-progress"}
    for option, variants in seen.items():
        assert len(variants) == 1, f"{option} differs between subcommands: {variants}"
    with_auto = ("auto", "fp32", "bf16")
    assert precision_defaults == {"predict": ("auto", with_auto), "demo": ("auto", with_auto),
                                  "evaluate": ("fp32", with_auto), "train": ("fp32", ("fp32", "bf16"))}
    evaluate = subcommand_parsers()["evaluate"]
    args = evaluate.parse_args(["--checkpoint", "c", "--video-roots", "v", "--dataset-root", "d",
                                "--precision", "bf16", "--chunk-size", "8"])
    assert args.device is None and not args.no_progress
    assert forward_settings(args, "cpu") == ForwardSettings("cpu", "bf16", 8)


# ----------------------------------------------------------------------------------------------
# imports run one way


def statechange_imports(module: str) -> set[str]:
    """Every ``statechange.*`` module that ``module`` imports, at the top or inside a function."""
    tree = ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "statechange":
            parent = node.module.removeprefix("statechange").lstrip(".")
            found.add(parent)
            for alias in node.names:  # `from statechange import labels` imports the module labels
                name = f"{parent}.{alias.name}" if parent else alias.name
                if (PACKAGE / f"{name.replace('.', '/')}.py").is_file():
                    found.add(name)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("statechange.") for a in node.names if a.name.startswith("statechange."))
    return {name for name in found if name}


def test_model_imports_only_config_labels_and_errors():
    assert statechange_imports("model") <= {"config", "labels", "errors"}


def test_model_weights_checkpoint_factory_have_no_import_cycle():
    modules = ("model", "weights", "checkpoint", "factory")
    graph = {m: statechange_imports(m) & set(modules) for m in modules}

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    cycles = [m for m in modules if reaches(m, m)]
    assert not cycles, f"import cycle through {cycles}: {graph}"
    # and each one imports first, on its own: our modules are forgotten before each (torch is kept, for speed)
    completed = run_python(
        "import importlib, sys\nimport timm, torch\n"
        f"for module in {modules!r}:\n"
        "    for name in [n for n in sys.modules if n.split('.')[0] == 'statechange']:\n"
        "        del sys.modules[name]\n"
        "    importlib.import_module('statechange.' + module)\n"
    )
    assert completed.returncode == 0, completed.stderr


def test_inference_does_not_import_the_training_augmentation():
    completed = run_python(
        "import sys\nimport statechange.inference, statechange.evaluate, statechange.viz\n"
        "print('statechange.data.augment' in sys.modules)"
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
