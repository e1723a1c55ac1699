"""``--model latent``: lm-eval's HF wrapper plus the adapter trained for one compression rate.

Loads the base model, the extended tokenizer and the LoRA adapter for ``rate``, resizes the
embeddings, merges the adapter (no LoRA cost while generating) and generates greedily in
batches. Every generation carries its exact ``gen_tokens`` and ``latent_tokens`` counts.
"""

from __future__ import annotations

import logging
import time

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs
from tqdm import tqdm

from .accounting import CountingMixin
from .adapter import AdapterError, attach_adapter, check_base
from .latent_setup import DEFAULT_MAX_GEN_TOKS, prepare

logger = logging.getLogger(__name__)


@register_model("latent")
class LatentLM(CountingMixin, HFLM):
    """A base causal LM with the lm-latent adapter for ``rate`` (0 or ``cot``: plain CoT)."""

    def __init__(
        self,
        pretrained: str | None = None,
        rate: int | str = 16,
        adapter: str | None = None,
        adapters: str | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        device: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        **kwargs,
    ) -> None:
        if kwargs.get("peft") or kwargs.get("delta"):
            raise AdapterError("--model latent loads its own adapter: use adapter=PATH, not peft=/delta=")
        if not isinstance(pretrained, (str, type(None))):
            raise AdapterError("--model latent needs pretrained= as a path or hub id, not a model object")
        setup = prepare(pretrained, rate, adapter, adapters, max_gen_toks)
        self.rate, self.adapter_path, self.latent_config = setup.rate, setup.adapter_path, setup.config
        self.latent_vocab, tokenizer, pretrained = setup.vocab, setup.tokenizer, setup.pretrained
        self.latent_tokenizer = tokenizer
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._max_gen_toks = setup.max_gen_toks
        self._generation_seconds = 0.0  # wall time inside generate_until, reported in the results JSON
        logger.info("lm-latent: base %s, adapter %s (rate=%s, codebook=%s)", pretrained,
                    self.adapter_path, self.rate, self.latent_config.codebook_size)
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, device=device, dtype=dtype, **kwargs)

    def _create_model(self, pretrained: str, **kwargs) -> None:
        check_base(self.latent_config, pretrained, self.config, self.adapter_path)
        super()._create_model(pretrained, **kwargs)
        self._model = attach_adapter(self._model, self.adapter_path, self.latent_config, merge=True)

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info.update(latent_rate=self.rate, latent_adapter=str(self.adapter_path),
                    latent_codebook_size=self.latent_config.codebook_size,
                    latent_chunk_len=self.latent_config.chunk_len,
                    latent_generation_seconds=round(self._generation_seconds, 3))
        return info

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        return {i for i in ids if i is not None}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """HFLM's batched greedy loop, returning ``CountedText`` instead of plain strings."""
        def by_length(req):
            return -len(self.tok_encode(req[0])), req[0]

        if str(self.batch_size).startswith("auto"):
            batch_size = self._detect_batch_size()
        else:
            batch_size = self.batch_size
        reorder = Collator([r.args for r in requests], sort_fn=by_length, group_by="gen_kwargs",
                           group_fn=lambda x: x[1])
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        results = []
        start = time.perf_counter()
        pbar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                    desc=f"Generating (latent, rate={self.rate})")
        for chunk in reorder.get_batched(n=batch_size):
            contexts, all_kwargs = zip(*chunk, strict=True)
            kwargs = normalize_gen_kwargs(all_kwargs[0], self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = kwargs.pop("max_gen_toks")
            max_ctx_len = self.max_length - max_gen_toks
            if max_ctx_len <= 0:
                raise ValueError(f"max_gen_toks={max_gen_toks} leaves no room for the prompt in "
                                 f"max_length={self.max_length}: lower max_gen_toks or raise max_length")
            context_enc, attn_masks = self.tok_batch_encode(contexts, left_truncate_len=max_ctx_len,
                                                            truncation=self.truncation)
            context_enc, attn_masks = context_enc.to(self.device), attn_masks.to(self.device)
            kwargs.pop("max_length", None)
            out = self._model_generate(context=context_enc, attention_mask=attn_masks, stop=until,
                                       max_length=context_enc.shape[1] + max_gen_toks, **kwargs)
            for ids, context in zip(out[:, context_enc.shape[1]:].tolist(), contexts, strict=True):
                text = self.count_generation(ids, until)
                results.append(text)
                self.cache_hook.add_partial("generate_until", (context, all_kwargs[0]), text)
                pbar.update(1)
        pbar.close()
        self._generation_seconds += time.perf_counter() - start
        return reorder.get_original(results)
