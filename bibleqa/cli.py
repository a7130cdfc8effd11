"""The ``bibleqa`` command: a thin shell that parses flags, builds typed configs and calls one function.

    bibleqa train --lm local                    # train and log one run on the bundled LM
    bibleqa train --lm-model mistral-nemo       # the same against LM Studio (the default LM)
    bibleqa serve-lm --port 1234                # serve the bundled LM in the foreground

A user error (bad file, bad flag, unreachable server) prints one line and exits 2; nothing starts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from bibleqa.errors import UserError
from bibleqa.knobs import KNOB_DEFAULTS
from bibleqa.lm import DEFAULT_LM_BASE, MODEL_FORMATS, LMSettings, lm_studio
from bibleqa.lm_pool import read_lm_file
from bibleqa.local_lm import DEFAULT_N_CTX, bundled_lm, serve_forever
from bibleqa.tracking import DEFAULT_EXPERIMENT

LM_CHOICES = ("lmstudio", "local")
QUIET_LOGGERS = ("dspy", "LiteLLM", "litellm", "httpx", "alembic", "urllib3", "bm25s", "optuna", "ray", "matplotlib")


def add_lm_flags(parser: argparse.ArgumentParser, pool: bool = False) -> None:
    """The LM flags every command that calls an LM shares; with ``pool``, those of a pool of endpoints too
    (``--lm-base`` repeated, ``--lm-file``)."""
    group = parser.add_argument_group("LM")
    group.add_argument(
        "--lm",
        choices=LM_CHOICES,
        default="lmstudio",
        help="lmstudio: a running LM Studio server (default); local: start the bundled model",
    )
    group.add_argument(
        "--lm-base",
        action="append",
        default=None,
        help=f"LM server URL (default {DEFAULT_LM_BASE})" + ("; repeat it for a pool of servers" if pool else ""),
    )
    if pool:
        group.add_argument(
            "--lm-file",
            default=None,
            help="a YAML list of LM servers, '- url: ...' with optional model and slots each (see the README)",
        )
    group.add_argument("--lm-model", default=None, help="model name on the server (default: its first model)")
    group.add_argument(
        "--model-format",
        choices=MODEL_FORMATS,
        default=None,
        help="chat (instruct models; default for lmstudio) or completion (base models; default for local)",
    )
    group.add_argument("--max-tokens", type=int, default=LMSettings.max_tokens, help="cap on generated tokens")
    group.add_argument("--temperature", type=float, default=LMSettings.temperature)
    group.add_argument("--timeout", type=float, default=LMSettings.timeout, help="seconds per LM call")
    group.add_argument("--retries", type=int, default=LMSettings.retries, help="retries of a failed LM call")
    group.add_argument("--no-cache", action="store_true", help="do not use DSPy's response cache")


@contextlib.contextmanager
def lm_from_flags(args: argparse.Namespace) -> Iterator[LMSettings]:
    """Yield the LM the flags name, starting (and later stopping) the bundled server for ``--lm local``."""
    with lm_pool_from_flags(args) as pool:
        if len(pool) > 1:
            raise UserError(f"--lm-base is given {len(pool)} times, but this command calls one LM server: pass one")
        yield pool[0]


@contextlib.contextmanager
def lm_pool_from_flags(args: argparse.Namespace) -> Iterator[list[LMSettings]]:
    """Yield the LM endpoints the flags name: each ``--lm-base`` (one LM Studio server when none), the
    ``--lm-file`` entries, or the bundled server for ``--lm local``, started and later stopped."""
    call = {"temperature": args.temperature, "max_tokens": args.max_tokens, "timeout": args.timeout,
            "retries": args.retries, "cache": not args.no_cache}  # fmt: skip
    lm_file = getattr(args, "lm_file", None)
    if lm_file and args.lm_base:
        raise UserError("--lm-file lists the LM servers, and so does --lm-base: drop one of them")
    if lm_file and args.lm == "local":
        raise UserError("--lm-file lists LM servers, but --lm local starts its own: drop one of them")
    if args.lm != "local":
        if lm_file:
            pool = read_lm_file(lm_file, model_format=args.model_format or "chat", **call)
            if args.lm_model:
                pool = [replace(endpoint, lm_model=endpoint.lm_model or args.lm_model) for endpoint in pool]
            yield pool
            return
        yield [lm_studio(args.lm_model, base, model_format=args.model_format or "chat", **call)
               for base in args.lm_base or [DEFAULT_LM_BASE]]  # fmt: skip
        return
    if args.lm_base:
        raise UserError("--lm-base names an LM server, but --lm local starts its own: drop one of them")
    if args.lm_model:
        raise UserError("--lm-model names a model on a server, but --lm local serves its own: drop --lm-model")
    with bundled_lm(model_format=args.model_format or "completion", **call) as lm:
        yield [lm]


def _train(args: argparse.Namespace) -> int:
    from bibleqa.train import TrainConfig, run_training  # DSPy and MLflow: --help stays fast

    config = TrainConfig(
        optimizer=args.optimizer,
        train_size=args.num_examples,
        max_bootstrapped_demos=args.max_bootstrapped_demos,
        max_labeled_demos=args.max_labeled_demos,
        retrieval_k=args.retrieval_k,
        chain_of_thought=args.chain_of_thought,
        related_passages=args.related_passages,
    )
    with lm_from_flags(args) as lm:
        result = run_training(config, lm, data=args.data, tracking_uri=args.tracking_uri, experiment=args.experiment)
    print(f"run {result.run_name} ({result.run_id}) in {result.tracking_uri}")
    for name, value in result.metrics.items():
        print(f"  {name:<26} {value:.3f}")
    print(f"  n_errors                   {result.evaluation.n_errors}")
    print(f"model: {result.model_uri}")
    return 0


def _serve_lm(args: argparse.Namespace) -> int:
    serve_forever(args.host, args.port, args.n_ctx)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bibleqa", description="Bible QA with DSPy, tracked in MLflow.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the libraries' logs too")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="compile, score on dev and log one MLflow run")
    train.add_argument(
        "--optimizer",
        default="BootstrapFewShot",
        help="DSPy optimizer class (LabeledFewShot, BootstrapFewShot, "
        "BootstrapFewShotWithRandomSearch, MIPROv2) or the seed's alias (bootstrap, ...)",
    )
    train.add_argument(
        "--num-examples", type=int, default=KNOB_DEFAULTS["train_size"], help="training examples used (train_size)"
    )
    train.add_argument("--max-bootstrapped-demos", type=int, default=2)
    train.add_argument("--max-labeled-demos", type=int, default=2)
    train.add_argument(
        "--retrieval-k", type=int, default=KNOB_DEFAULTS["retrieval_k"], help="BM25 passages given to the LM"
    )
    train.add_argument(
        "--related-passages",
        type=int,
        default=KNOB_DEFAULTS["related_passages"],
        help=f"TSK cross references of the cited verses added to the references (0: off; default "
        f"{KNOB_DEFAULTS['related_passages']})",
    )
    train.add_argument("--chain-of-thought", action="store_true", help="let the LM reason first (never scored)")
    train.add_argument("--data", default=None, help="QA JSONL file (default: the bundled data set)")
    train.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    train.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    add_lm_flags(train)
    train.set_defaults(handler=_train)

    serve = commands.add_parser("serve-lm", help="serve the bundled LM (OpenAI-compatible) in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=1234)
    serve.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, help="context window in tokens")
    serve.set_defaults(handler=_serve_lm)
    return parser


def configure_logging(verbose: bool) -> None:
    """What a person sees: our own INFO lines and everyone's warnings (everything with ``-v``).

    The libraries' INFO chatter still reaches any file handler added later (a sweep's ``sweep.log``).
    """
    if not verbose:
        # Set before the libraries are imported: MLflow reads its level at import, DSPy draws tqdm bars.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("TQDM_DISABLE", "1")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*is experimental.*")
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not verbose:
        console.addFilter(_OwnInfoOrWarnings())
    root = logging.getLogger()
    root.addHandler(console)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


class _OwnInfoOrWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in ("bibleqa", "sweeps")


def run_cli(main: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str) -> int:
    """Run a command, turning a ``UserError`` into one line on stderr and exit code 2."""
    try:
        return main(args)
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    return run_cli(args.handler, args, "bibleqa")


if __name__ == "__main__":
    sys.exit(main())
