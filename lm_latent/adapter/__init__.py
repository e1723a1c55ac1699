"""The adapter directory of one rate: its format (``latent.json``), vocabulary, compressor, loading and
checks, export to a merged checkpoint, and untrained adapters for smoke tests."""
