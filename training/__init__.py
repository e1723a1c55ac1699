"""Training recipes: compressor, mixed traces, LoRA fine-tuning (``lm-latent train``)."""

if __name__ != "lm_latent.training":  # one import name per module (see lm_latent/__init__.py)
    raise ImportError(f"this folder is the package lm_latent.training: import lm_latent.training, not {__name__!r} "
                      "(a second name would load every module twice)")
