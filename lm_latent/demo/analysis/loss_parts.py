"""Where an adapter's loss sits on the held-out traces: latent codes, delimiters, restatement, arithmetic.

A latent adapter is trained on mixed traces; this scores it, teacher-forced, on the held-out
problems mixed the same way (the adapter's own compressor, ``--schedule`` m tokens replaced),
and splits the summed cross-entropy by what each target token is. The trace's text is split at
its goal sentence ("We need to find ..."): before it, the restatement of the problem (the part
a latent span replaces); then the goal sentence; after it, the arithmetic. Rate 0, or
``--schedule 0``, scores the plain trace. Comparing the arithmetic's loss per token across
adapters and modes tells whether a latent adapter computes worse after a latent span, or worse
everywhere (docs/demo.md, "where the gap comes from").

    python -m lm_latent.demo.analysis.loss_parts --out demo_out --rate 16 --schedule 48
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

PARTS = ("codes", "delimiters", "restatement", "goal", "arithmetic", "solution")
GOAL = "We need to find"


@dataclass
class LossParts:
    """Summed cross-entropy and target-token count per part, over ``samples`` traces."""

    samples: int = 0
    loss: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PARTS, 0))

    def row(self, label: str) -> str:
        n = max(self.samples, 1)
        cells = [f"{self.tokens[p] / n:.1f} / {self.loss[p] / max(self.tokens[p], 1):.3f}" for p in PARTS]
        return f"| {label} | " + " | ".join(cells) + f" | {sum(self.loss.values()) / n:.2f} |"


HEADER = ("| adapter, mode | " + " | ".join(f"{p}: tokens / loss per token" for p in PARTS)
          + " | loss per trace |")


def split_points(trace: str, tokenizer) -> tuple[int, int]:
    """Trace tokens before the goal sentence, and up to its end ((0, 0) when it has none)."""
    at = trace.find(GOAL)
    if at < 0:
        return 0, 0
    end = trace.find(".", at) + 1 or len(trace)

    def tokens(text: str) -> int:
        return len(tokenizer.encode(text.rstrip(), add_special_tokens=False))

    return tokens(trace[:at]), tokens(trace[:end])


def loss_parts(adapter: str | Path, test_file: str | Path, schedule: int = 48, limit: int | None = None,
               pretrained: str | Path | None = None) -> LossParts:
    """Teacher-forced loss of ``adapter`` on ``test_file``'s traces, split by :data:`PARTS`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_latent.adapter.load import attach_adapter, check_adapter, load_adapter_tokenizer
    from lm_latent.models.decode import load_compressor
    from lm_latent.training.data import load_examples, tokenize_examples
    from lm_latent.training.mixed_traces import MixConfig, MixedTraceDataset
    from lm_latent.training.train_compressor import encode_traces
    from lm_latent.adapter.vocab import LatentVocab

    config = check_adapter(adapter)
    tokenizer = load_adapter_tokenizer(adapter, config)
    base = str(pretrained or config.base_model)
    model = attach_adapter(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter, config).eval()
    base_tokenizer = AutoTokenizer.from_pretrained(base)
    examples = load_examples(str(test_file), limit=limit)
    samples = tokenize_examples(examples, base_tokenizer, progress=False)
    vocab = LatentVocab.from_tokenizer(tokenizer, config.codebook_size)
    latent = config.codebook_size > 0 and schedule > 0
    codes = encode_traces(load_compressor(adapter), samples, progress=False) if latent else None
    chunk_len = config.chunk_len or 1
    # mixed as in training; one m in the schedule, so every trace long enough carries latents
    traces = MixedTraceDataset(samples, codes, MixConfig(chunk_len=chunk_len, schedule=(schedule,)), vocab)
    out = LossParts(samples=len(samples))
    with torch.no_grad():
        for i, n in enumerate(traces.order):
            example, s, mixed = examples[n], samples[n], traces.mixed(i)
            logits = model(torch.tensor([mixed.input_ids])).logits[0, :-1]
            targets = torch.tensor(mixed.labels[1:])
            losses = torch.nn.functional.cross_entropy(logits, targets.clamp(min=0), reduction="none").tolist()
            # one left-to-right span: its codes and two delimiters, standing for num_latents * rate text tokens
            first_text = len(s.prompt_ids) + (mixed.num_latents + 2 if mixed.num_latents else 0)
            skipped = mixed.num_latents * config.rate
            restated, goal = split_points(example.trace, base_tokenizer)
            for j, target in enumerate(targets.tolist()):
                if target < 0:
                    continue
                pos = j + 1  # the target's position in the mixed sequence
                if pos < first_text:
                    part = "delimiters" if target in (vocab.bo_id, vocab.eo_id) else "codes"
                else:
                    k = pos - first_text + skipped  # its index in the plain trace + solution
                    part = ("restatement" if k < restated else "goal" if k < goal else
                            "arithmetic" if k < len(s.trace_ids) else "solution")
                out.loss[part] += losses[j]
                out.tokens[part] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lm_latent.demo.analysis.loss_parts",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="a demo output folder")
    p.add_argument("--rate", type=int, required=True, help="a rate the demo trained (0: the CoT adapter)")
    p.add_argument("--schedule", type=int, default=48, help="text tokens m replaced per trace (0: plain traces)")
    p.add_argument("--limit", type=int, default=300, help="held-out problems scored")
    args = p.parse_args(argv)
    from lm_latent.demo.stages import demo_paths

    paths = demo_paths(Path(args.out))
    parts = loss_parts(paths["adapters"] / f"rate{args.rate}", paths["test"], args.schedule, args.limit,
                       pretrained=paths["base"])
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    print(parts.row(f"rate {args.rate}, m={args.schedule if args.rate else 0}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
