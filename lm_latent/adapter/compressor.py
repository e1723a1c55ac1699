"""The latent compressor: a small VQ-VAE that turns a chunk of L text tokens into L/r codes.

Encoder: a transformer over the chunk, then a strided projection (kernel = stride = r) that
folds each run of r token states into one vector. Quantizer: ``vector_quantize_pytorch``'s
EMA codebook with k-means init and dead-code replacement (codebook collapse is the known
failure of this method, so every forward reports usage and perplexity). Decoder: one
bidirectional transformer over ``[prompt tokens ; quantized latents ; L position queries]``
that predicts all L tokens at once (non-autoregressive: fast, and the code alone must
carry the chunk). Output logits share the token embedding matrix, so a 128k-token base
vocabulary costs one matrix, not two.

Imported lazily (torch is loaded here, never at ``lm_latent`` import time).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from lm_latent.utils.dataclass_cli import option

__all__ = ["CompressorArchitecture", "LatentCompressorConfig", "LatentCompressor", "LatentCompressorOutput",
           "code_stats", "code_stats_tensors"]


@dataclass
class CompressorArchitecture:
    """The compressor's size and quantizer knobs, declared once.

    :class:`LatentCompressorConfig` takes these defaults, ``lm-latent train`` nests them in its
    compressor recipe (:class:`~lm_latent.training.train_compressor.CompressorTrainConfig`) and
    generates its ``--compressor-*`` flags from them; the last three are recipe constants (no flag).
    """

    hidden_size: int = option(256, flag="--compressor-hidden", help="hidden size", group="compressor")
    num_layers: int = option(2, flag="--compressor-layers", help="transformer layers", group="compressor")
    num_heads: int = option(4, flag="--compressor-heads", help="attention heads", group="compressor")
    codebook_dim: int | None = option(64, flag="--compressor-codebook-dim", help="codebook vector size",
                                      group="compressor")
    max_prompt_len: int = option(256, flag="--compressor-max-prompt-len", help="prompt tokens the decoder sees",
                                 group="compressor")
    commitment_weight: float = 0.25
    codebook_decay: float = 0.99
    threshold_ema_dead_code: float = 2.0


_ARCHITECTURE = tuple(f.name for f in fields(CompressorArchitecture))


class LatentCompressorConfig(PretrainedConfig):
    """Sizes of the compressor. ``vocab_size`` is the *base* tokenizer's size (text ids only).

    The :class:`CompressorArchitecture` fields (``hidden_size``, ``num_layers``, ...) are keyword
    arguments too, with that class's defaults; ``config.json`` holds every field flat, as before.
    """

    model_type = "lm_latent_compressor"

    def __init__(self, vocab_size: int = 32000, rate: int = 16, chunk_len: int | None = None,
                 codebook_size: int = 1024, pad_token_id: int | None = None, kmeans_init: bool = True,
                 dropout: float = 0.0, initializer_range: float = 0.02, **kwargs) -> None:
        arch = CompressorArchitecture(**{name: kwargs.pop(name) for name in _ARCHITECTURE if name in kwargs})
        chunk_len = rate if chunk_len is None else chunk_len
        if rate <= 0:
            raise ValueError(f"rate must be > 0 for a compressor, got {rate}")
        if chunk_len <= 0 or chunk_len % rate:
            raise ValueError(f"chunk_len ({chunk_len}) must be a positive multiple of rate ({rate})")
        if codebook_size <= 1:
            raise ValueError(f"codebook_size must be > 1, got {codebook_size}")
        if arch.hidden_size % arch.num_heads:
            raise ValueError(f"hidden_size ({arch.hidden_size}) must be divisible by num_heads ({arch.num_heads})")
        if pad_token_id is not None and not 0 <= pad_token_id < vocab_size:
            raise ValueError(f"pad_token_id ({pad_token_id}) must be a text id < vocab_size ({vocab_size}) or None")
        self.vocab_size = vocab_size
        self.rate = rate
        self.chunk_len = chunk_len
        self.codebook_size = codebook_size
        self.pad_token_id = pad_token_id
        for name, value in asdict(arch).items():
            setattr(self, name, value)
        self.kmeans_init = kmeans_init
        self.dropout = dropout
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def architecture(self) -> CompressorArchitecture:
        return CompressorArchitecture(**{name: getattr(self, name) for name in _ARCHITECTURE})

    @property
    def latents_per_chunk(self) -> int:
        return self.chunk_len // self.rate


@dataclass
class LatentCompressorOutput(ModelOutput):
    """``loss`` = reconstruction CE + commitment; the rest are for logs (all detached but logits)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    recon_loss: torch.Tensor | None = None
    commit_loss: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    usage: torch.Tensor | None = None


def code_stats_tensors(codes: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`code_stats` as 0-d fp32 tensors on ``codes.device`` (no host sync inside a training step)."""
    counts = torch.bincount(codes.reshape(-1).long(), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp(min=1)
    entropy = -torch.xlogy(probs, probs).sum()  # 0 * log 0 = 0, no boolean indexing (no sync)
    return (counts > 0).float().mean(), entropy.exp()


def code_stats(codes: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """(codebook usage = share of codes used at least once, perplexity = exp(entropy of code use))."""
    usage, ppl = code_stats_tensors(codes, codebook_size)
    return float(usage), float(ppl)


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_in_rank_order(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``x`` of every process, concatenated along ``dim`` in rank order; ``x`` itself in one process.

    Rank r holds the r-th slice of the global batch (accelerate's sequential sharding), so this is
    the batch one process would see. Sizes may differ (a short last batch): padded for the gather.
    """
    import torch.distributed as dist

    world = _world()
    if world == 1:
        return x
    x = x.detach().contiguous()  # draws only: no gradient crosses ranks
    size = torch.tensor(x.shape[dim], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(sizes))
    padded = torch.cat([x, x.new_zeros(*x.shape[:dim], longest - x.shape[dim], *x.shape[dim + 1:])], dim)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part.narrow(dim, 0, int(n)) for part, n in zip(parts, sizes)], dim)


def _draw_from_the_global_batch(codebook) -> None:
    """Make k-means init and dead-code replacement draw as one process does, on every rank.

    vector-quantize-pytorch samples per rank under DDP (a multinomial split, then a local
    ``randperm``), so the codebook depended on the world size. Here every rank gathers the global
    batch and runs the one-process draw with the same torch RNG (same seed, same draws on every
    rank): the codebook is the same on all ranks and equals a one-process run's up to the float
    order of the all-reduced k-means and EMA sums. One process: unchanged.
    """
    from vector_quantize_pytorch.vector_quantize_pytorch import batched_sample_vectors

    def sample(samples, num):
        return batched_sample_vectors(gather_in_rank_order(samples), num)

    replace = codebook.replace

    def replace_from_all(batch_samples, batch_mask, seq_mask=None):
        seq_mask = None if seq_mask is None else gather_in_rank_order(seq_mask)
        return replace(gather_in_rank_order(batch_samples), batch_mask, seq_mask=seq_mask)

    codebook.sample_fn = sample  # k-means' starting means; its iterations stay all-reduced
    codebook.replace_sample_fn = batched_sample_vectors
    codebook.replace = replace_from_all


def _stack(config: LatentCompressorConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(config.hidden_size, config.num_heads, 4 * config.hidden_size,
                                       dropout=config.dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, config.num_layers, norm=nn.LayerNorm(config.hidden_size),
                                 enable_nested_tensor=False)


class LatentCompressor(PreTrainedModel):
    """VQ-VAE over chunks of text tokens; see the module docstring for the architecture."""

    config_class = LatentCompressorConfig
    base_model_prefix = "compressor"
    main_input_name = "chunks"
    # An EMA codebook kept in bf16 drifts; the quantizer always runs in fp32.
    _keep_in_fp32_modules = ["quantizer"]
    _keep_in_fp32_modules_strict = ["quantizer"]

    def __init__(self, config: LatentCompressorConfig) -> None:
        super().__init__(config)
        from vector_quantize_pytorch import VectorQuantize

        h, length, n_lat = config.hidden_size, config.chunk_len, config.latents_per_chunk
        self.embed = nn.Embedding(config.vocab_size, h)
        self.chunk_pos = nn.Embedding(length, h)
        self.encoder = _stack(config)
        # kernel = stride = r: each latent sees exactly its r token states, in order.
        self.to_latent = nn.Conv1d(h, h, kernel_size=config.rate, stride=config.rate)
        self.quantizer = VectorQuantize(
            dim=h, codebook_size=config.codebook_size, codebook_dim=config.codebook_dim,
            decay=config.codebook_decay, kmeans_init=config.kmeans_init,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
            commitment_weight=config.commitment_weight)
        if _world() > 1:
            _draw_from_the_global_batch(self.quantizer._codebook)
        self.prompt_pos = nn.Embedding(config.max_prompt_len, h)
        self.latent_pos = nn.Embedding(n_lat, h)
        self.query_pos = nn.Embedding(length, h)
        self.segment = nn.Embedding(3, h)  # prompt / latent / query
        self.decoder = _stack(config)
        self.out_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init
        from vector_quantize_pytorch import VectorQuantize

        super()._init_weights(module)
        if module is self:
            init.zeros_(self.out_bias)
        elif isinstance(module, VectorQuantize):
            # A non-persistent buffer (the loss accumulator's start): never in a checkpoint, so
            # from_pretrained leaves it as uninitialised memory unless set here.
            init.zeros_(module.zero)

    # -- pieces -------------------------------------------------------------------------------
    def _check_chunks(self, chunks: torch.Tensor) -> None:
        if chunks.dim() != 2 or chunks.shape[1] != self.config.chunk_len:
            raise ValueError(f"chunks must be [batch, {self.config.chunk_len}], got {tuple(chunks.shape)}")

    def _encode_vectors(self, chunks: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, L/r, H] continuous latents (before quantization)."""
        self._check_chunks(chunks)
        pos = torch.arange(chunks.shape[1], device=chunks.device)
        x = self.encoder(self.embed(chunks) + self.chunk_pos(pos))
        return self.to_latent(x.transpose(1, 2)).transpose(1, 2)

    def _quantize(self, vectors: torch.Tensor, update: bool):
        # In the codebook's own dtype (fp32, see _keep_in_fp32_modules), read through the public property.
        with torch.autocast(device_type=vectors.device.type, enabled=False):
            return self.quantizer(vectors.to(self.quantizer.codebook.dtype), freeze_codebook=not update)

    def _decode_logits(self, quantized: torch.Tensor, prompt_ids: torch.Tensor,
                       prompt_mask: torch.Tensor | None) -> torch.Tensor:
        """Quantized latents [B, L/r, H] + prompt -> logits [B, L, V]."""
        cfg = self.config
        bsz, n_lat, _ = quantized.shape
        device = quantized.device
        if prompt_ids is None:
            prompt_ids = torch.zeros(bsz, 0, dtype=torch.long, device=device)
        if prompt_mask is None:
            prompt_mask = torch.ones_like(prompt_ids, dtype=torch.bool)
        prompt_mask = prompt_mask.bool()
        if prompt_ids.shape[0] != bsz:
            raise ValueError(f"prompt_ids has batch {prompt_ids.shape[0]}, latents have {bsz}")
        if prompt_ids.shape[1] > cfg.max_prompt_len:  # keep the end: the template's start is boilerplate
            prompt_ids, prompt_mask = prompt_ids[:, -cfg.max_prompt_len:], prompt_mask[:, -cfg.max_prompt_len:]
        prompt_ids = prompt_ids.masked_fill(~prompt_mask, 0)
        n_prompt = prompt_ids.shape[1]
        seg = self.segment.weight
        prompt = self.embed(prompt_ids) + self.prompt_pos(torch.arange(n_prompt, device=device)) + seg[0]
        latents = quantized.to(prompt.dtype) + self.latent_pos(torch.arange(n_lat, device=device)) + seg[1]
        per = cfg.chunk_len // n_lat
        queries = (self.query_pos(torch.arange(cfg.chunk_len, device=device)) + seg[2]
                   + latents.repeat_interleave(per, dim=1))
        x = torch.cat([prompt, latents, queries], dim=1)
        pad = torch.cat([~prompt_mask, torch.zeros(bsz, n_lat + cfg.chunk_len, dtype=torch.bool, device=device)], 1)
        h = self.decoder(x, src_key_padding_mask=pad)[:, -cfg.chunk_len:]
        return F.linear(h, self.embed.weight, self.out_bias)

    # -- public API ---------------------------------------------------------------------------
    def forward(self, chunks: torch.Tensor, prompt_ids: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None, **_: object) -> LatentCompressorOutput:
        """Training step: reconstruct ``chunks``; EMA codebook updates happen in train mode."""
        vectors = self._encode_vectors(chunks)
        quantized, codes, commit = self._quantize(vectors, update=self.training)
        logits = self._decode_logits(quantized, prompt_ids, prompt_mask)
        ignore = -100 if self.config.pad_token_id is None else self.config.pad_token_id
        recon = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), chunks.reshape(-1),
                                ignore_index=ignore)
        commit = commit.reshape(-1).sum()
        with torch.no_grad():
            keep = chunks != ignore
            acc = ((logits.argmax(-1) == chunks) & keep).sum() / keep.sum().clamp(min=1)
            usage, ppl = code_stats_tensors(codes, self.config.codebook_size)  # on the model's device
        return LatentCompressorOutput(loss=recon + commit, logits=logits, codes=codes, recon_loss=recon.detach(),
                                      commit_loss=commit.detach(), accuracy=acc, perplexity=ppl, usage=usage)

    @torch.no_grad()
    def encode(self, chunks: torch.Tensor) -> torch.Tensor:
        """[B, L] text ids -> [B, L/r] codes in [0, K). Never updates the codebook."""
        was_training = self.training
        self.eval()
        try:
            _, codes, _ = self._quantize(self._encode_vectors(chunks.to(self.device)), update=False)
        finally:
            self.train(was_training)
        return codes.long()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, prompt_ids: torch.Tensor | None = None,
               prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L/r] codes + prompt -> [B, L] greedy reconstruction (for people to read latents)."""
        n_lat = self.config.latents_per_chunk
        if codes.dim() != 2 or codes.shape[1] != n_lat:
            raise ValueError(f"codes must be [batch, {n_lat}], got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.config.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.config.codebook_size})")
        was_training = self.training
        self.eval()
        try:
            codes = codes.to(self.device)
            quantized = self.quantizer.get_output_from_indices(codes).float()
            if prompt_ids is not None:
                prompt_ids = prompt_ids.to(self.device)
                prompt_mask = None if prompt_mask is None else prompt_mask.to(self.device)
            logits = self._decode_logits(quantized.to(self.embed.weight.dtype), prompt_ids, prompt_mask)
        finally:
            self.train(was_training)
        return logits.argmax(-1)

    @property
    def chance_accuracy(self) -> float:
        """Token accuracy of guessing uniformly: the floor a trained compressor must clear."""
        return 1.0 / self.config.vocab_size

    def num_bits_per_chunk(self) -> float:
        return self.config.latents_per_chunk * math.log2(self.config.codebook_size)
