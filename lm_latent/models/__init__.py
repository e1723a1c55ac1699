"""The models lm-eval loads: ``latent`` (HF) and ``latent-vllm``, with what they share: the setup step,
token accounting, latent decoding and the merged-checkpoint cache."""
