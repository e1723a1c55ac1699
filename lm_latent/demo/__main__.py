"""``python -m lm_latent.demo``: the same as ``lm-latent demo``."""

from lm_latent.demo.run import main

raise SystemExit(main())
