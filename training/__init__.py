"""Training recipes: compressor, mixed traces, LoRA fine-tuning (``lm-latent train``)."""
