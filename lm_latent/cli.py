"""``lm-latent``: one entry point, one module per sub-command (each has ``main(argv)``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

#: name -> ("module:function" run with the remaining argv, one-line help).
COMMANDS = {
    "init-adapter": ("lm_latent.adapter.init:main", "write an untrained adapter directory (smoke tests)"),
    "train": ("lm_latent.training.train:main", "train the compressor and the LoRA adapter for a rate"),
    "export": ("lm_latent.adapter.export:main", "merge an adapter into a plain HF checkpoint (for hf / vLLM)"),
    "cache": ("lm_latent.models.merge_cache:main", "list or clear the merged checkpoints of --model latent-vllm"),
    "sweep": ("lm_latent.sweep.run:main", "lm_eval once per rate, then the results table and the chart"),
    "plot": ("lm_latent.sweep.run:plot_main", "redraw the table and chart of a sweep folder"),
    "demo": ("lm_latent.demo:main", "the whole method in miniature, offline on a CPU (--quick: ~4 min on 2 cores)"),
    "eval": ("lm_latent.cli:eval_main", "run lm_eval with the plugin imported (same flags as lm_eval)"),
    "study": ("lm_latent.study:main", "a whole study from a recipe: --list, RECIPE --dry-run (plan, commands, costs)"),
}


def eval_main(argv: list[str] | None = None) -> int:
    """``lm-latent eval``: lm_eval with the plugin loaded explicitly, for when the start-up hook is off.

    The one evaluation route besides the stock ``lm_eval`` command (``lm-latent sweep`` runs it too).
    """
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
    if argv and argv[0] == "--version":
        from lm_latent import __version__

        print(f"lm-latent {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lm-latent [--version] COMMAND [ARGS]\n\ncommands:")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<14} {help_}")
        print("\n`lm-latent COMMAND --help` lists a command's flags. The plugin's own flags are kebab-case\n"
              "(--out, --global-batch-size); flags passed through to lm_eval keep lm-eval's spelling\n"
              "(--model_args, --batch_size).")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lm-latent: unknown command {name!r}; try one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(command_entry(name)(rest) or 0)


def command_entry(name: str) -> Callable[[list[str]], int | None]:
    """The function behind a sub-command, imported only when that command runs."""
    module, _, function = COMMANDS[name][0].partition(":")
    # This module may be running as __main__ (python -m lm_latent.cli): never import a second copy.
    namespace = globals() if module == "lm_latent.cli" else vars(importlib.import_module(module))
    return namespace[function]


if __name__ == "__main__":
    sys.exit(main())
