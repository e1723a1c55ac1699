"""Build hook: the editable install maps ``lm_latent`` only, without copies of tasks/ and training/.

The wheel force-includes ``tasks/`` and ``training/`` as ``lm_latent/tasks`` and
``lm_latent/training`` (pyproject.toml). Hatchling's editable build would copy every
force-included path into site-packages, leaving stale copies of the sources there; this hook
limits the editable build's copies to the start-up hook files. The editable package then
finds those subpackages in the checkout itself (``lm_latent/__init__.py``).
"""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: What an editable install copies into site-packages: the start-up hook, nothing else.
EDITABLE_COPIES = {name: name for name in ("lm_latent_autoload.pth", "lm_latent_autoload.start")}


class EditableLayoutHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            build_data["force_include_editable"] = dict(EDITABLE_COPIES)
