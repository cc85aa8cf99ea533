"""``roro ui``: a read-only web view of a store, served by Starlette or exported as static files.

Every page is a bounded query on the index (:mod:`roro.ui.pages`), rendered server-side by Jinja2
with autoescaping (:mod:`roro.ui.render`); :mod:`roro.ui.app` serves them with the safety headers,
:mod:`roro.ui.export` writes them as a static site. The web stack is the optional ``ui`` extra
(``pip install 'roro[ui]'``); importing this package does not import it.
"""

from __future__ import annotations

import importlib

from ..errors import RoroError

__all__ = ["UI_EXTRA_HINT", "require_ui"]

UI_EXTRA_HINT = "pip install 'roro[ui]'"
SERVER_MODULES = ("starlette", "uvicorn")
RENDER_MODULES = ("jinja2", "markdown_it")


def require_ui(server: bool = True) -> None:
    """Raise a :class:`~roro.errors.RoroError` naming the ``ui`` extra when a module of the web
    stack is missing (``server=False``: only what the static export needs)."""
    missing = []
    for name in (*RENDER_MODULES, *(SERVER_MODULES if server else ())):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name.replace("_", "-"))
    if missing:
        raise RoroError(f"roro ui needs the 'ui' extra ({', '.join(missing)} not installed): "
                        f"{UI_EXTRA_HINT}")
