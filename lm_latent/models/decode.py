"""``decode_latents=true``: the compressor's decoder reads an answer's latent tokens back as text.

The method's one interpretability hook. Each run of latent codes is cut into chunks of
``chunk_len / rate`` codes; the decoder turns each chunk, given the prompt (tokenized the way
the compressor was trained: the prompt with BOS, its last ``max_prompt_len`` ids), into
``chunk_len`` text tokens. Runs only when asked, after generation and off its clock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from lm_latent.adapter.load import COMPRESSOR_DIR, AdapterError

logger = logging.getLogger(__name__)

#: How an incomplete chunk at the end of a span (fewer codes than one chunk needs) is shown.
INCOMPLETE = "[{n} latent(s) short of a chunk: not decodable]"


def parse_flag(value, name: str = "decode_latents") -> bool:
    """``true``/``false`` as ``--model_args`` gives them (a bool, a string or 0/1)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", "", "none"):
        return False
    raise AdapterError(f"{name} must be true or false, got {value!r}")


def load_compressor(adapter_path: str | Path, device=None):
    """The compressor the adapter ships in ``compressor/``, in float32 and eval mode."""
    import torch

    from lm_latent.adapter.compressor import LatentCompressor

    folder = Path(adapter_path) / COMPRESSOR_DIR
    if not (folder / "config.json").is_file():
        raise AdapterError(f"decode_latents=true needs the compressor that turns latent tokens back into text, "
                           f"but {folder} has none. Use the adapter directory `lm-latent train` wrote (it saves "
                           f"the compressor there), or drop decode_latents.")
    pickles = sorted(f.name for f in folder.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickles and not (folder / "model.safetensors").is_file():
        raise AdapterError(f"the compressor in {folder} has its weights only as {', '.join(pickles)} (a pickle); "
                           f"lm-latent loads safetensors only and never unpickles a file. Save the compressor with "
                           f"save_pretrained (it writes model.safetensors) or retrain it with `lm-latent train`.")
    try:
        model = LatentCompressor.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 -- damaged weights, a config from another version: say where
        raise AdapterError(f"cannot load the compressor in {folder}: {type(exc).__name__}: {exc}") from None
    if device is not None:
        model = model.to(device)
    return model.eval()


class LatentDecoder:
    """Turns the latent spans of many answers into text, in batches of chunks."""

    def __init__(self, compressor, tokenizer, batch_size: int = 64) -> None:
        self.compressor, self.tokenizer, self.batch_size = compressor, tokenizer, batch_size
        cfg = compressor.config
        self.per_chunk = cfg.latents_per_chunk
        self.max_prompt_len = cfg.max_prompt_len
        self.drop_ids = {cfg.pad_token_id} - {None}

    def prompt_ids(self, context: str) -> list[int]:
        """The prompt as the compressor saw it in training: with BOS, its last ``max_prompt_len`` ids."""
        ids = list(self.tokenizer(context)["input_ids"])
        return ids[-self.max_prompt_len:]

    def decode_many(self, contexts: Sequence[str], spans: Sequence[Sequence[Sequence[int]]]) -> list[str]:
        """One text per answer: each span's chunks decoded and joined; spans separated by a newline.

        An answer without latents gets ``""``.
        """
        import torch

        jobs = []  # (answer, span, prompt ids, one chunk of codes)
        prompts: dict[int, list[int]] = {}
        for a, (context, answer_spans) in enumerate(zip(contexts, spans, strict=True)):
            for s, span in enumerate(answer_spans):
                for start in range(0, len(span) - self.per_chunk + 1, self.per_chunk):
                    if a not in prompts:
                        prompts[a] = self.prompt_ids(context)
                    jobs.append((a, s, prompts[a], list(span[start:start + self.per_chunk])))
        pieces: dict[tuple[int, int], list[int]] = {}
        for first in range(0, len(jobs), self.batch_size):
            batch = jobs[first:first + self.batch_size]
            longest = max(1, max(len(p) for _, _, p, _ in batch))
            prompt = torch.zeros((len(batch), longest), dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.bool)
            for row, (_, _, p, _) in enumerate(batch):
                prompt[row, :len(p)] = torch.tensor(p, dtype=torch.long)
                mask[row, :len(p)] = True
            codes = torch.tensor([c for _, _, _, c in batch], dtype=torch.long)
            out = self.compressor.decode(codes, prompt, mask).cpu().tolist()
            for (a, s, _, _), ids in zip(batch, out, strict=True):
                pieces.setdefault((a, s), []).extend(i for i in ids if i not in self.drop_ids)
        texts = []
        for a, answer_spans in enumerate(spans):
            parts = []
            for s, span in enumerate(answer_spans):
                text = self.tokenizer.decode(pieces.get((a, s), []), skip_special_tokens=True)
                rest = len(span) % self.per_chunk
                if rest:
                    text = (text + " " if text else "") + INCOMPLETE.format(n=rest)
                parts.append(text)
            texts.append("\n".join(parts))
        return texts


def attach_latent_texts(generations: list, contexts: Sequence[str], decoder: LatentDecoder) -> list:
    """Copies of ``generations`` (``CountedText``) with ``latent_text`` filled in, same order."""
    from lm_latent.models.accounting import CountedText

    texts = decoder.decode_many(contexts, [g.latent_spans for g in generations])
    return [CountedText(str(g), g.gen_tokens, g.latent_tokens, g.truncated, g.latent_spans, g.codebook_size,
                        latent_text=t) for g, t in zip(generations, texts, strict=True)]
