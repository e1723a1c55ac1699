"""lm-latent: evaluate language models that reason partly in latent tokens.

Import-free on purpose: the start-up hook (``lm_latent.autoload``) imports this package in
every Python process, so nothing heavy (torch, lm_eval) may load here.
"""

__version__ = "0.1.0"
