"""lm-latent: evaluate language models that reason partly in latent tokens.

Kept import-free on purpose: the start-up hook imports this package in every Python
process, so nothing heavy (torch, lm_eval) may load here.

``lm_latent.tasks`` and ``lm_latent.training`` live in the top-level folders ``tasks/`` and
``training/``. A wheel puts them inside this package (pyproject.toml); in a source checkout
(an editable install, or the repository on ``sys.path``) they stay beside it, and the finder
below resolves exactly these two names there. Either way each module has one import name:
the folders refuse to load as top-level ``tasks``/``training``.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

#: Subpackages that a source checkout keeps in top-level folders of the same name.
CHECKOUT_SUBPACKAGES = ("tasks", "training")


class _CheckoutSubpackages:
    """A ``sys.meta_path`` finder for ``lm_latent.tasks``/``lm_latent.training`` in a checkout.

    Duck-typed (no ``importlib.abc``); appended after the standard finders, so it only
    answers when the package folder itself has no such subpackage (the wheel layout has).
    """

    _lm_latent_checkout = True

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in CHECKOUT_SUBPACKAGES:
            return None
        from importlib.machinery import PathFinder

        return PathFinder.find_spec(fullname, [self.root])

    def invalidate_caches(self) -> None:
        pass


def _source_checkout_root() -> "str | None":
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.isdir(_os.path.join(here, "tasks")):  # wheel layout: nothing to do
        return None
    root = _os.path.dirname(here)
    return root if _os.path.isfile(_os.path.join(root, "tasks", "__init__.py")) else None


_root = _source_checkout_root()
if _root is not None and not any(getattr(f, "_lm_latent_checkout", False) for f in _sys.meta_path):
    _sys.meta_path.append(_CheckoutSubpackages(_root))
del _root
