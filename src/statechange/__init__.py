"""statechange: learn object state changes (initial state, action, end state) from uncurated videos."""

from __future__ import annotations

__version__ = "0.1.0"

from statechange.errors import StateChangeError

__all__ = ["Prediction", "StateChangeError", "StateChangePredictor", "__version__", "load_model"]

_INFERENCE_NAMES = ("Prediction", "StateChangePredictor", "load_model")


def __getattr__(name: str):  # the inference API, imported on first use so `import statechange` stays light
    if name in _INFERENCE_NAMES:
        from statechange import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'statechange' has no attribute {name!r}")
