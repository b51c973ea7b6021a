"""Your own features and models, used by every part of botlib like the built-in ones.

Register them in a module of yours::

    from botlib.features import register_feature
    from botlib.models import register_model

    register_feature("range_pct", range_pct)          # fn(bars, *, window=...) -> columns
    register_model("momentum", MomentumModel)         # a BaseModel subclass

and make botlib import that module in every process (the notebook kernels, ``botlib
serve``, the bridge's workers) in one of two ways: name it in ``BOTLIB_PLUGINS``
(comma-separated modules, e.g. ``BOTLIB_PLUGINS=mylab.plugins``, in the environment or
the project's ``.env``), or declare it in your
package's metadata under the entry-point group ``botlib.plugins``::

    [project.entry-points."botlib.plugins"]
    mylab = "mylab.plugins"

Plugins load once, the first time botlib looks up a feature or model it does not know.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["load_plugins"]

_loaded: list[str] = []


def load_plugins() -> list[str]:
    """Import every plugin module (``BOTLIB_PLUGINS``, then the ``botlib.plugins`` entry
    points) once; returns the modules imported. An import error names the plugin."""
    if _loaded:
        return list(_loaded)
    _loaded.append("")  # once, even if a plugin fails below
    from importlib.metadata import entry_points

    from botlib.errors import ConfigError
    from botlib.settings import get_settings

    listed = os.environ.get("BOTLIB_PLUGINS") or get_settings().plugins  # env, or .env
    names = [m.strip() for m in listed.split(",") if m.strip()]
    names += [ep.value.split(":")[0] for ep in entry_points(group="botlib.plugins")]
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"botlib plugin {name!r} could not be imported: {exc}") from exc
        _loaded.append(name)
    return [n for n in _loaded if n]
