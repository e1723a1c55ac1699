"""lm-eval task configs of lm-latent and the Python they call.

Also the ``lm_eval.tasks`` entry point of newer lm-eval releases: this folder is the
task path they add.
"""
