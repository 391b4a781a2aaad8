"""Architecture writers by name.

Writers register either as objects or lazily as "module:attribute" strings,
so naming an architecture costs nothing until a checkpoint of it is built
(and importing `engine` never imports torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.architectures.base import ArchitectureWriter

__all__ = ["DEFAULT_ARCHITECTURE", "architecture_names", "get_architecture", "register_architecture"]

DEFAULT_ARCHITECTURE = "gla_swa"

# Built-in writers. `gla_swa` is SpikingBrain's hybrid; its writer lives with
# the rest of the SpikingBrain code and is expected at this path.
_LAZY: dict[str, str] = {
    "qwen2": "engine.architectures.qwen2:Qwen2Writer",
    "idefics3": "engine.architectures.idefics3:Idefics3Writer",
    "gla_swa": "engine.spikingbrain.checkpoint:GlaSwaWriter",
    "long_vita": "engine.long_vita.checkpoint:LongVitaWriter",
}
_LOADED: dict[str, ArchitectureWriter] = {}


def register_architecture(name: str, writer: ArchitectureWriter | str) -> None:
    """Make `name` buildable; `writer` is an instance or a "module:attribute" path.

    The attribute may be a writer class (instantiated with no arguments) or
    instance. Registering a name again replaces the earlier writer.
    """
    _LOADED.pop(name, None)
    _LAZY.pop(name, None)
    if isinstance(writer, str):
        _LAZY[name] = writer
    else:
        _LOADED[name] = writer


def get_architecture(name: str) -> ArchitectureWriter:
    """The writer registered under `name`; a clear error if it is missing."""
    if name in _LOADED:
        return _LOADED[name]
    target = _LAZY.get(name)
    if target is None:
        raise ValueError(f"unknown architecture {name!r}; registered: {', '.join(architecture_names())}")
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"architecture {name!r} is registered at {target} but cannot be loaded: {exc}"
        ) from exc
    writer: ArchitectureWriter = obj() if isinstance(obj, type) else obj
    _LOADED[name] = writer
    return writer


def architecture_names() -> list[str]:
    """Every registered name, loaded or not."""
    return sorted({*_LAZY, *_LOADED})
