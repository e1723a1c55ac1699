"""lm-eval task configs of lm-latent (``lm_latent.tasks``) and the Python they call.

Also the ``lm_eval.tasks`` entry point of newer lm-eval releases: this folder is the
task path they add.
"""

if __name__ != "lm_latent.tasks":  # one import name per module (see lm_latent/__init__.py)
    raise ImportError(f"this folder is the package lm_latent.tasks: import lm_latent.tasks, not {__name__!r} "
                      "(a second name would load every module twice)")
