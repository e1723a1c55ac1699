"""``lm-latent``: one entry point, one module per sub-command (each has ``main(argv)``)."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "init-adapter": ("lm_latent.init_adapter", "write an untrained adapter directory (smoke tests)"),
    "train": ("lm_latent.training.train", "train the compressor and the LoRA adapter for a rate"),
    "export": ("lm_latent.export", "merge an adapter into a plain HF checkpoint (for hf / vLLM)"),
    "cache": ("lm_latent.merge_cache", "list or clear the merged checkpoints of --model latent-vllm"),
    "sweep": ("lm_latent.sweep", "lm_eval once per rate, then the results table and the chart"),
    "plot": ("lm_latent.sweep", "redraw the table and chart of a sweep folder"),
    "demo": ("lm_latent.demo", "the whole method in miniature, offline on a CPU (--quick: ~8 min on 2 cores)"),
    "eval": ("lm_latent.cli", "run lm_eval with the plugin imported (same flags as lm_eval)"),
}


def lm_eval_main(argv: list[str] | None = None) -> int:
    """Fallback for environments where the start-up hook is off: import the plugin, then lm_eval."""
    from lm_eval.api.registry import model_registry

    import lm_eval.models  # noqa: F401  (built-ins first)
    from lm_latent import autoload

    autoload.install()
    autoload.register_models(model_registry)
    import lm_eval.tasks.manager as manager

    autoload._after_task_manager(manager)
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = ["lm_eval", *argv]
    cli_evaluate()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; a reader that stops early (``lm-latent --help | head``) is not an error."""
    try:
        try:
            code = _dispatch(argv)
        finally:  # argparse's --help exits: flush here too, so a closed pipe never fails at shutdown
            sys.stdout.flush()
    except BrokenPipeError:
        # Python's documented recipe: point stdout at devnull so the interpreter's final flush
        # cannot raise again, and exit quietly as `cat` or `grep` would under `| head`.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def _dispatch(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lm-latent COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<14} {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lm-latent: unknown command {name!r}; try one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if name == "eval":
        return lm_eval_main(rest)
    module = importlib.import_module(COMMANDS[name][0])
    entry = module.plot_main if name == "plot" else module.main
    return int(entry(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
