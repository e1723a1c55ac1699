"""Start-up hook that lets the stock ``lm_eval`` 0.4.13 command find the plugin.

Installed by ``lm_latent_autoload.pth``, one line that imports this module and calls
:func:`install` (and ``.start`` for Python >= 3.15, PEP 829). It runs in *every* Python
process, so it imports nothing (``os`` and ``sys`` are loaded before ``site`` runs) and
defines only a duck-typed ``sys.meta_path`` finder: no ``importlib.abc``, no ``importlib.util``. The finder waits for
``lm_eval.api.registry`` and ``lm_eval.tasks.manager`` to be imported and then

* registers the ``latent`` and ``latent-vllm`` models as lazy ``"module:Class"`` targets
  (after the built-ins, so ``--model hf`` keeps working), and
* puts the plugin's task folder first in ``TaskManager``'s ``include_path`` (a user's
  own ``--include_path`` comes later and so still wins).

Set ``LM_LATENT_NO_AUTOLOAD=1`` to switch it off. A newer lm-eval with entry-point discovery makes the hook step aside.
Measured by ``benchmarks/bench_autoload.py``.
"""

import os
import sys

DISABLE_ENV = "LM_LATENT_NO_AUTOLOAD"
# Lazy targets: nothing is imported until lm-eval asks for the model by name.
MODELS = {
    "latent": "lm_latent.models.latent_hf:LatentLM",
    "latent-vllm": "lm_latent.models.latent_vllm:LatentVLLM",
}


def disabled() -> bool:
    """True when ``$LM_LATENT_NO_AUTOLOAD`` is 1/true/yes/on."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def task_dir() -> str:
    """The plugin's task folder, found without importing it."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks")


def _after_registry(module) -> None:
    if hasattr(module, "load_plugins"):  # lm-eval with entry-point discovery
        return
    import lm_eval.models  # noqa: F401  (built-ins first, else registering empties them)

    register_models(module.model_registry)


def register_models(registry) -> None:
    """Register every lm-latent model name (lazily, by ``module:Class``) that is not taken yet."""
    for name, target in MODELS.items():
        if name not in registry:
            registry.register(name, target=target)


def _after_task_manager(module) -> None:
    manager = getattr(module, "TaskManager", None)
    if manager is None or hasattr(manager, "discover_plugin_task_paths"):
        return
    if getattr(manager.__init__, "_lm_latent", False):
        return
    original = manager.__init__

    def __init__(self, *args, **kwargs):  # noqa: N807  (it replaces TaskManager.__init__)
        # include_path is the second positional parameter (after verbosity).
        if len(args) >= 2:
            args = list(args)
            args[1] = _with_plugin_tasks(args[1])
        else:
            kwargs["include_path"] = _with_plugin_tasks(kwargs.get("include_path"))
        original(self, *args, **kwargs)

    __init__._lm_latent = True  # type: ignore[attr-defined]
    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__doc__ = original.__doc__
    manager.__init__ = __init__


def _with_plugin_tasks(include_path):
    paths = [] if include_path is None else (
        list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
    )
    ours = task_dir()
    if not any(os.path.abspath(str(p)) == ours for p in paths):
        paths.insert(0, ours)
    return paths


_HOOKS = {"lm_eval.api.registry": _after_registry, "lm_eval.tasks.manager": _after_task_manager}


def _warn(text: str) -> None:
    print(f"lm-latent: {text} (set {DISABLE_ENV}=1 to silence)", file=sys.stderr)


class _Loader:
    """Wraps the real loader of a watched module and runs the hook after the module executed."""

    def __init__(self, loader, hook):
        self._loader, self._hook = loader, hook

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            self._hook(module)
        except Exception as exc:  # noqa: BLE001  (never break lm_eval because of the plugin)
            _warn(f"start-up hook failed for {module.__name__}: {exc!r}")

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class _Finder:
    """A ``sys.meta_path`` finder (duck-typed: ``importlib.abc`` costs ~20 ms to import)."""

    _lm_latent = True

    def find_spec(self, fullname, path=None, target=None):
        hook = _HOOKS.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "_lm_latent", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, hook)
                return spec
        return None

    def invalidate_caches(self):
        pass


def install() -> None:
    """Idempotent (``.pth`` files may be processed twice per start); never raises."""
    try:
        if disabled() or any(getattr(f, "_lm_latent", False) for f in sys.meta_path):
            return
        sys.meta_path.insert(0, _Finder())
        for name, hook in _HOOKS.items():  # lm_eval already imported (e.g. install() called late)
            if name in sys.modules:
                hook(sys.modules[name])
    except Exception as exc:  # noqa: BLE001  (a start-up hook must not break an unrelated process)
        _warn(f"start-up hook failed: {exc!r}")
