"""Whether the `mock` extra is installed: `pip install chatconform` gives the suite alone.

The suite needs none of the model's packages; `chatconform[mock]` adds them. Commands that run the
model (`serve`, `model`) call `require_mock_extra` first, so a light install gets one clear line
instead of an ImportError. Importing this module imports none of those packages.
"""

from __future__ import annotations

import importlib.util

# import name -> distribution to install (both listed in pyproject.toml's `mock` extra)
MOCK_MODULES: dict[str, str] = {
    "aiohttp": "aiohttp", "numpy": "numpy", "onnx": "onnx", "onnxruntime": "onnxruntime-gpu",
    "gguf": "gguf", "tokenizers": "tokenizers", "llguidance": "llguidance", "jinja2": "jinja2", "PIL": "pillow",
}
INSTALL_HINT = "pip install 'chatconform[mock]'"


class MockExtraMissing(RuntimeError):
    """A command needs the `mock` extra and some of its packages are not installed."""


def missing_mock_dependencies() -> list[str]:
    """The distributions of the `mock` extra whose modules cannot be found."""
    return [dist for module, dist in MOCK_MODULES.items() if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False


def require_mock_extra(command: str) -> None:
    """Raise MockExtraMissing naming the command, the missing packages and how to install them."""
    missing = missing_mock_dependencies()
    if missing:
        raise MockExtraMissing(
            f"{command} runs the reference model and needs the mock extra (missing: {', '.join(missing)}): "
            f"{INSTALL_HINT}"
        )
