"""Training recipes: compressor, mixed traces, fine-tuning (``lm-latent train``)."""
