"""``--model latent``: lm-eval's HF wrapper plus the adapter trained for one compression rate.

Loads the base model, the extended tokenizer and the LoRA adapter for ``rate``, resizes the
embeddings, merges the adapter (no LoRA cost while generating) and generates greedily in
batches. Every generation carries its exact ``gen_tokens`` and ``latent_tokens`` counts and
its latent codes; with ``decode_latents=true`` also the compressor's reading of them.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs
from tqdm import tqdm

from lm_latent.models.accounting import CountedText, CountingMixin
from lm_latent.adapter.load import AdapterError, attach_adapter
from lm_latent.models.decode import LatentDecoder, attach_latent_texts, load_compressor, parse_flag
from lm_latent.utils.errors import UserError, report_cleanly
from lm_latent.models.setup import (DEFAULT_MAX_GEN_TOKS, PLUGIN_ARGS, base_identity, check_run_args, prepare,
                                    refuse_response_cache)

logger = logging.getLogger(__name__)


_FROM_PRETRAINED_KWARGS = {  # popped by PreTrainedModel.from_pretrained (a fallback if its source is absent)
    "attn_implementation", "device_map", "torch_dtype", "dtype", "quantization_config", "low_cpu_mem_usage",
    "max_memory", "offload_folder", "offload_state_dict", "offload_buffers", "load_in_8bit", "load_in_4bit",
    "use_safetensors", "variant", "key_mapping", "tp_plan", "tp_size", "device_mesh", "subfolder",
    "gguf_file", "generation_config", "use_kernels", "output_loading_info", "experts_implementation",
}


def unknown_model_args(kwargs: dict, base_config=None) -> list[str]:
    """Arguments that neither the plugin, lm-eval's ``HFLM`` nor ``from_pretrained`` would use.

    ``HFLM`` passes its leftover ``**kwargs`` to ``from_pretrained``, which takes its own options
    and config overrides (any attribute of the base's config) and hands the rest to the model's
    ``__init__``, where they crash after the config loaded. Only those are flagged.
    """
    known = set(PLUGIN_ARGS) | set(inspect.signature(HFLM.__init__).parameters)
    candidates = [k for k in kwargs if k not in known]
    if not candidates:
        return []
    from transformers import PreTrainedModel

    accepted = set(inspect.signature(PreTrainedModel.from_pretrained).parameters) | _FROM_PRETRAINED_KWARGS
    try:
        source = inspect.getsource(PreTrainedModel.from_pretrained)
        accepted |= set(re.findall(r"kwargs\.pop\(\s*[\"'](\w+)[\"']", source))
    except (OSError, TypeError):
        pass
    if base_config is not None:
        accepted |= set(base_config.to_dict())
    return [k for k in candidates if k not in accepted]


class GenerationProgress:
    """Per-sample progress inside one batched ``generate`` (a ``transformers`` streamer).

    A row counts as done at its first EOS or pad token, so a long batch moves the bar as it goes
    (rows stopped by a stop string are padded from the next step on), and the postfix shows the
    batch's decoding step against its budget.
    """

    def __init__(self, pbar, rows: int, done_ids: set[int], max_new_tokens: int):
        self.pbar, self.done_ids, self.max_new_tokens = pbar, done_ids, max_new_tokens
        self.done = [False] * rows
        self.step = 0
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen and value.dim() == 2:  # generate first pushes the prompt ids
            self._prompt_seen = True
            return
        self.step += 1
        newly = 0
        for i, token in enumerate(value.reshape(-1).tolist()[:len(self.done)]):
            if not self.done[i] and token in self.done_ids:
                self.done[i] = True
                newly += 1
        if newly:
            self.pbar.update(newly)
        if newly or self.step % 32 == 0:
            self.pbar.set_postfix_str(f"batch step {self.step}/{self.max_new_tokens}")

    def end(self) -> None:
        """The batch is over: every row still running stopped at the budget (or a stop string)."""
        remaining = self.done.count(False)
        self.done = [True] * len(self.done)
        if remaining:
            self.pbar.update(remaining)


def _join_cpu_process_group(device: str) -> None:
    """Under a launcher with several processes and no GPU in use, join their group as CPU processes (gloo).

    ``HFLM`` creates ``Accelerator()``, which looks for a GPU backend only: without one every process
    under ``torchrun`` thought itself alone. accelerate's state is shared, so that ``Accelerator``
    finds the group joined here (``accelerate launch --cpu`` sets ``ACCELERATE_USE_CPU`` itself).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if torch.cuda.is_available() and not str(device).startswith("cpu"):
        return
    from accelerate import PartialState

    PartialState(cpu=True)


@register_model("latent")
class LatentLM(CountingMixin, HFLM):
    """A base causal LM with the lm-latent adapter for ``rate`` (0 or ``cot``: plain CoT)."""

    _model: torch.nn.Module  # set by HFLM._create_model, then merged with the adapter below

    def __init__(
        self,
        pretrained: str | None = None,
        rate: int | str = 16,
        adapter: str | None = None,
        adapters: str | None = None,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        decode_latents: bool | str = False,
        text_only: bool | str = False,
        device: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        **kwargs,
    ) -> None:
        try:
            if kwargs.get("peft") or kwargs.get("delta"):
                raise AdapterError("--model latent loads its own adapter: use adapter=PATH, not peft=/delta=")
            config_kwargs = {k: kwargs[k] for k in ("revision", "trust_remote_code", "subfolder") if k in kwargs}
            decode_latents = parse_flag(decode_latents)
            text_only = parse_flag(text_only, name="text_only")
            check_run_args(batch_size=kwargs.get("batch_size"), device=device, dtype=dtype)
            setup = prepare(pretrained, rate, adapter, adapters, max_gen_toks, max_length=kwargs.get("max_length"),
                            **config_kwargs)
            unknown = unknown_model_args(kwargs, setup.base_config)
            if unknown:
                raise AdapterError(f"unknown model argument(s) {unknown} for --model latent. The plugin's own: "
                                   f"{', '.join(PLUGIN_ARGS)}; also accepted: lm-eval's HF model arguments "
                                   f"(batch_size, dtype, device, max_length, revision, trust_remote_code, ...) "
                                   f"and transformers' from_pretrained arguments (attn_implementation, ...).")
        except UserError:
            report_cleanly()  # under the lm_eval CLI: the message, without a traceback
            raise
        self.rate, self.adapter_path, self.latent_config = setup.rate, setup.adapter_path, setup.config
        self.latent_vocab, tokenizer, pretrained = setup.vocab, setup.tokenizer, setup.pretrained
        self._latent_base = pretrained
        self.latent_tokenizer = tokenizer
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        _join_cpu_process_group(device)
        self._max_gen_toks = setup.max_gen_toks
        self._generation_seconds = 0.0  # wall time inside generate_until, reported in the results JSON
        self._decode_seconds = 0.0  # decode_latents: the compressor's time, kept off the generation clock
        self.decode_latents = decode_latents
        # text_only: the adapter's text path alone (latent tokens and delimiters suppressed), to see
        # what the latent path itself costs against the same weights writing plain CoT
        self.text_only = text_only and self.latent_config.rate > 0
        self._latent_decoder = None
        logger.info("lm-latent: base %s, adapter %s (rate=%s, codebook=%s)", pretrained,
                    self.adapter_path, self.rate, self.latent_config.codebook_size)
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, device=device, dtype=dtype, **kwargs)
        self._use_launcher_ranks()
        if decode_latents and self.latent_config.rate > 0:
            try:
                compressor = load_compressor(self.adapter_path, device=self.device)
            except UserError:
                report_cleanly()
                raise
            self._latent_decoder = LatentDecoder(compressor, tokenizer)
            logger.info("lm-latent: decode_latents=true: latent tokens are read back by %s/compressor",
                        self.adapter_path)

    def _use_launcher_ranks(self) -> None:
        """Data parallelism whenever ``accelerate launch`` / ``torchrun`` started several processes.

        lm-eval 0.4.13's ``HFLM`` splits the documents only when it also counts more than one GPU, so
        on CPU (gloo), or with one visible GPU per process, every process called itself rank 0 and
        evaluated everything. Here the launcher's ranks decide: the global ``process_index`` (HFLM's
        ``local_process_index`` would repeat across nodes), lm-eval's split and gather then run.
        """
        accelerator = getattr(self, "accelerator", None)
        if accelerator is None or accelerator.num_processes <= 1:
            return
        self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
        device_map = getattr(self._model, "hf_device_map", None) or {}
        if len({str(d) for d in device_map.values()}) <= 1:  # not split over devices (parallelize=True)
            self._device = accelerator.device
            try:
                self._model.to(self._device)
            except ValueError:  # quantized (bitsandbytes) models are placed by from_pretrained; as HFLM
                logger.debug("lm-latent: the model could not be moved to %s; left where it was loaded", self._device)
        if accelerator.is_main_process:
            logger.info("lm-latent: data parallel over %d processes (%s)", self._world_size, accelerator.device)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "LatentLM":
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> "LatentLM":
        """Like lm-eval's, but a key in both ``--model_args`` and the CLI (``batch_size``, ``device``) is fine.

        lm-eval always passes ``--batch_size`` (default 1), so ``--model_args batch_size=4`` would fail
        with "got multiple values". The ``--model_args`` value wins; a conflicting CLI value is logged.
        """
        args = dict(arg_dict)
        for key, value in (additional_config or {}).items():
            if value is None:
                continue
            if key in args:
                if str(args[key]) != str(value):
                    logger.warning("lm-latent: %s=%s from --model_args overrides %s=%s from the command line",
                                   key, args[key], key, value)
                continue
            args[key] = value
        return cls(**args)

    def set_cache_hook(self, cache_hook) -> None:
        refuse_response_cache(cache_hook, "latent")  # --use_cache's key omits the model args: answers of another rate
        super().set_cache_hook(cache_hook)

    def _create_model(self, pretrained: str, **kwargs) -> None:
        # The adapter was checked against this base's config.json in prepare(), before any weight.
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
        if getattr(self, "_latent_base", None):  # which base the numbers come from, by content
            info.update(base_identity(self._latent_base))
        if self.text_only:
            info.update(latent_text_only=True)
        if self.decode_latents:
            info.update(latent_decode_latents=True, latent_decode_seconds=round(self._decode_seconds, 3))
        return info

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        return {i for i in ids if i is not None}

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[CountedText]:
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
            if self.text_only:
                kwargs["suppress_tokens"] = self.latent_vocab.new_token_ids
            progress = None
            if not pbar.disable and int(kwargs.get("num_beams", 1) or 1) == 1:  # HF streams greedy/sampling only
                done_ids = self._eos_ids() | ({self.tokenizer.pad_token_id} - {None})
                progress = GenerationProgress(pbar, len(contexts), done_ids, max_gen_toks)
                kwargs["streamer"] = progress
            out = self._model_generate(context=context_enc, attention_mask=attn_masks, stop=until,
                                       max_length=context_enc.shape[1] + max_gen_toks, **kwargs)
            for ids, context in zip(out[:, context_enc.shape[1]:].tolist(), contexts, strict=True):
                text = self.count_generation(ids, until)
                results.append(text)
                self.cache_hook.add_partial("generate_until", (context, all_kwargs[0]), text)
            if progress is not None:
                progress.end()
            else:
                pbar.update(len(contexts))
        pbar.close()
        self._generation_seconds += time.perf_counter() - start
        results = reorder.get_original(results)
        if self._latent_decoder is not None:  # after the clock stopped: decoding is not generation time
            start = time.perf_counter()
            results = attach_latent_texts(results, [r.args[0] for r in requests], self._latent_decoder)
            self._decode_seconds += time.perf_counter() - start
        elif self.decode_latents:  # rate 0: no latents to read
            results = [CountedText(str(r), r.gen_tokens, r.latent_tokens, r.truncated, r.latent_spans,
                                   r.codebook_size, latent_text="") for r in results]
        return results
