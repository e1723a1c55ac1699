"""Latent spans: removed before extraction, so the digits in ``<latent_17>`` are never an answer."""

from __future__ import annotations

import re

_BO = "<boLatent>"
_EO = "<eoLatent>"
_LATENT_RUN_RE = re.compile(r"(?:\s*<latent_\d+>)*")
_STRAY_LATENT_RE = re.compile(r"<latent_\d+>|<eoLatent>|<boLatent>")


def strip_latent(text: str) -> str:
    """Remove latent spans so digits in ``<latent_17>`` never look like answers.

    ``<boLatent> ... <eoLatent>`` is removed whole; an unclosed ``<boLatent>`` takes the
    run of latent tokens after it; stray ``<latent_N>``/delimiters go too. Spans become
    one space so numbers on either side are not glued together. Linear time.
    """
    if "<" not in text:
        return text
    out: list[str] = []
    i = 0
    last_eo = text.rfind(_EO)
    while True:
        j = text.find(_BO, i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        out.append(" ")
        k = text.find(_EO, j + len(_BO)) if j < last_eo else -1
        if k >= 0:
            i = k + len(_EO)
        else:
            run = _LATENT_RUN_RE.match(text, j + len(_BO))
            assert run is not None  # a starred pattern always matches
            i = run.end()
    return _STRAY_LATENT_RE.sub(" ", "".join(out))

