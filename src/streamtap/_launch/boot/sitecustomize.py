"""Run at start-up by every Python process under `streamtap run` (this directory is first on
PYTHONPATH, and `site` imports the first `sitecustomize` it finds).

It does two things and must stay cheap, since every Python process started from the program
runs it, most of which never stream anything:

1. put a finder on `sys.meta_path` that waits for `import openai`: when the SDK has loaded,
   streamtap is imported and instruments it (`streamtap._launch.child`). Until then nothing but
   this file is loaded: a program that never imports openai never imports streamtap.
2. run the user's own `sitecustomize` (the next one on `sys.path`), as `site` would have, so
   that it becomes the `sitecustomize` module and its errors are reported as usual.

It may run under any Python the program starts, so it uses the standard library only and
tolerates a Python that cannot import streamtap (one line on stderr, the program runs as is).
"""

import os
import sys

# Nothing more is imported at start-up (not even `typing` or `__future__`): the annotations
# are strings, and the import machinery is taken from the frozen modules already loaded.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


class _OpenAIFinder:
    """Finds nothing itself; on the first `import openai`, wraps the SDK's loader so that the
    SDK is instrumented as soon as its module has run."""

    @classmethod
    def find_spec(cls, fullname: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if fullname != "openai":
            return None
        # The import lock for `openai` is held: no other thread gets here meanwhile.
        _remove_finder()
        import importlib.util

        spec = importlib.util.find_spec("openai")  # the other finders, as without us
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _InstrumentingLoader(spec.loader)  # type: ignore[assignment]
        return spec


class _InstrumentingLoader:
    """The SDK's own loader, then streamtap; the module only ever sees its own loader."""

    def __init__(self, loader: "Any") -> None:
        self._loader = loader

    def create_module(self, spec: "Any") -> "Any":
        return self._loader.create_module(spec)

    def exec_module(self, module: "Any") -> None:
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _instrument()

    def __getattr__(self, name: str) -> "Any":
        return getattr(self._loader, name)


def _remove_finder() -> None:
    try:
        sys.meta_path.remove(_OpenAIFinder)
    except ValueError:
        pass


def _instrument() -> None:
    try:
        from streamtap._launch.child import start
    except ImportError as exc:
        sys.stderr.write(
            f"streamtap run: {sys.executable} cannot import streamtap ({exc}); "
            "this program runs without instrumentation\n"
        )
        return
    start()


def _user_sitecustomize() -> None:
    """Run the `sitecustomize` that `site` would have found without us, as that module."""
    try:  # CPython: already loaded, free
        from _frozen_importlib import module_from_spec
        from _frozen_importlib_external import PathFinder
    except ImportError:  # pragma: no cover - other interpreters
        from importlib.machinery import PathFinder
        from importlib.util import module_from_spec

    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = module_from_spec(spec)
    # The import system hands out whatever `sys.modules` holds once this file has run: theirs.
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


if "openai" in sys.modules:  # imported by something that ran before us (a .pth file)
    _instrument()
else:
    sys.meta_path.insert(0, _OpenAIFinder)
_user_sitecustomize()
