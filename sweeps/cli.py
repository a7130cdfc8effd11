"""The ``bibleqa-sweep`` command: validate a search space, run a sweep, pick the winner.

    bibleqa-sweep validate search_spaces/smoke.yaml
    bibleqa-sweep run search_spaces/smoke.yaml --trials 6 --lm local
    bibleqa-sweep resume sweeps_results/sweep_smoke_20260101_120000
    bibleqa-sweep sync sweeps_results/sweep_smoke_20260101_120000
    bibleqa-sweep pick --ask "Who built the ark?" --lm local

Exit codes: 0 success; 1 nothing matched (``pick``); 2 a user error (bad file or flag, unreachable server,
unknown experiment), printed as one line (``validate`` prints one line per problem); 3 the sweep ended (``run``,
``resume``) or ``sync`` did, but writes still wait for an MLflow server that went away (one line says how
many, and the ``sync`` command); 75 the LM stayed unreachable past ``--lm-outage-limit`` (one line: which LM,
since when, what finished, the resume command); 130 Ctrl-C.

Ctrl-C (``run`` and ``resume``): the command handles SIGINT itself (Tune's handler is off).  The first one
stops the sweep: running trials end KILLED, the parent run ends KILLED with a summary of what finished, and
the resume command is printed.  A second one exits at once; ``resume`` still works afterwards (it ends the
runs left RUNNING and stops the processes left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from bibleqa.cli import add_lm_flags, configure_logging, lm_from_flags, lm_pool_from_flags, run_cli
from bibleqa.dataset import load_dataset
from bibleqa.errors import BibleQAError, UserError
from bibleqa.local_lm import DEFAULT_N_CTX
from bibleqa.metrics import TRACKED_METRICS
from bibleqa.tracking import DEFAULT_EXPERIMENT
from sweeps.journal import sync_command, sync_sweep, waiting_line
from sweeps.mlflow_view import run_url, runs_table_url
from sweeps.options import (
    DEFAULT_LM_OUTAGE_LIMIT,
    DEFAULT_N_STARTUP_TRIALS,
    DEFAULT_SEARCH,
    DEFAULT_STORAGE,
    DEFAULT_TRIALS,
    SEARCH_ALGORITHMS,
    TRIAL_CPUS,
)
from sweeps.progress import DEFAULT_STATUS_EVERY
from sweeps.space import SpaceError, load_space

PROG = "bibleqa-sweep"


def _validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.data)
    try:
        space = load_space(args.space_file, train_split_size=len(dataset.train), n_ctx=args.n_ctx or DEFAULT_N_CTX)
    except SpaceError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    searched = ", ".join(space.optimizers)
    print(f"{args.space_file}: valid; optimizers {searched}; objective {space.metric} ({space.mode})")
    return 0


def _sweep_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of ``run`` as ``run_sweep``'s keywords (the same names)."""
    return {
        "trials": args.trials,
        "concurrency": None if args.concurrency == "auto" else _positive_int(args.concurrency, "--concurrency"),
        "search": args.search,
        "n_startup_trials": args.n_startup_trials,
        "max_failures": args.max_failures,
        "time_budget": args.time_budget,
        "address": args.address,
        "trial_cpus": args.trial_cpus,
        "data": args.data,
        "tracking_uri": args.tracking_uri,
        "experiment": args.experiment,
        "seed": args.seed,
        "storage": args.storage,
        "register": args.register,
        "allow_mixed_models": args.allow_mixed_models,
        "lm_outage_limit": args.lm_outage_limit,
    }


def _run(args: argparse.Namespace) -> int:
    # The sweep's modules import DSPy, MLflow and Ray at their tops: --help and validate do without them.
    from sweeps.driver import run_sweep
    from sweeps.estimate import estimate_sweep

    keywords = _sweep_keywords(args)
    if args.lm_file and keywords["concurrency"] is not None:
        raise UserError(f"--concurrency sets every LM server's slots, but --lm-file {args.lm_file} gives each its "
                        "own: drop --concurrency, or write the slots in the file")  # fmt: skip
    try:
        with lm_pool_from_flags(args) as lm:
            if args.dry_run:
                estimate = estimate_sweep(args.space_file, lm=lm, **keywords)
            else:
                # Status lines are for a person watching; piped output stays one line per finished trial.
                status_every = args.status_every if args.status_every > 0 and sys.stdout.isatty() else None
                with ctrl_c_stops_the_sweep():
                    result = run_sweep(args.space_file, lm=lm, echo=_echo, status_every=status_every, **keywords)
    except SpaceError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    if args.dry_run:
        print_estimate(estimate, args.space_file)
        _write_json(args.output_json, estimate.as_json())
        return 0
    print_result(result)
    _write_json(args.output_json, result.as_json())  # parent_run_id, best_run_id, best_config, ...
    return mlflow_waits(result)


def mlflow_waits(result: Any) -> int:
    """Exit code 3, and the line that says so, when writes wait for MLflow (it went away and had not come
    back when the sweep ended); else 0."""
    if not result.mlflow_pending:
        return 0
    print(f"{PROG}: {waiting_line(result.mlflow_pending, Path(result.sweep_dir), result.tracking_uri)}",
          file=sys.stderr)  # fmt: skip
    return 3


def _sync(args: argparse.Namespace) -> int:
    report = sync_sweep(args.sweep_dir)
    refused = f"; {report.rejected} refused by MLflow (see sweep.log)" if report.rejected else ""
    if report.pending:
        again = sync_command(Path(args.sweep_dir))
        print(f"{PROG}: MLflow stopped answering: {report.delivered} write(s) delivered, {report.pending} still "
              f"wait; run again once it answers: {again}{refused}", file=sys.stderr)  # fmt: skip
        return 3
    if report.delivered:
        print(f"delivered {report.delivered} write(s) to MLflow; it holds the whole sweep{refused}")
    else:
        print(f"nothing waits for MLflow in {args.sweep_dir}: it holds the whole sweep{refused}")
    return 0


def _echo(line: str) -> None:
    print(line, flush=True)  # a status line from another thread, or a pipe read live: out now


def _resume(args: argparse.Namespace) -> int:
    from sweeps.resume import resume_sweep  # Ray, MLflow, DSPy: --help stays fast

    with ctrl_c_stops_the_sweep():
        status_every = DEFAULT_STATUS_EVERY if sys.stdout.isatty() else None  # as `run` does on a terminal
        result = resume_sweep(args.sweep_dir, echo=_echo, status_every=status_every)
    print_result(result)
    _write_json(args.output_json, result.as_json())  # the same parent_run_id as the first start
    return mlflow_waits(result)


@contextmanager
def ctrl_c_stops_the_sweep() -> Iterator[None]:
    """Ctrl-C is the command's business: Tune's own SIGINT handler is off, so the first Ctrl-C raises
    ``KeyboardInterrupt`` in the sweep (which ends its runs KILLED, sums up on the parent and raises
    ``SweepInterrupted``: the resume command is printed here); a second one exits at once, with code 130."""

    def again(signum: int, frame: Any) -> None:
        print(f"\n{PROG}: interrupted again: exiting now; resume the sweep with {PROG} resume and the sweep "
              "folder printed above", file=sys.stderr, flush=True)  # fmt: skip
        os._exit(130)

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, again)
        print(f"\n{PROG}: stopping the sweep (Ctrl-C again exits at once)", file=sys.stderr, flush=True)
        raise KeyboardInterrupt

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    except KeyboardInterrupt as error:
        if hasattr(error, "summary"):  # a SweepInterrupted: the sweep said what finished and how to resume
            print(f"{PROG}: {error.summary}", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def print_estimate(estimate: Any, space_file: str) -> None:
    """What ``--dry-run`` prints."""
    print(f"dry run: {space_file} is valid, the LM and MLflow answer; nothing was started.")
    for name, calls in estimate.lm_calls_per_trial.items():
        print(f"  {name:<34} about {calls} LM calls per trial")
    minutes = estimate.estimated_seconds / 60
    print(
        f"  {estimate.trials} trials: about {estimate.estimated_lm_calls} LM calls (the winner's "
        f"{estimate.test_calls} test questions included), {minutes:.1f} min at {estimate.seconds_per_call:.2f} s "
        f"a call on {estimate.slots} slot(s)"
    )
    print(f"  measured: {estimate.measured}")
    for note in estimate.notes:
        print(f"  note: {note}")


def print_result(result: Any) -> None:
    """The final table, how sure the pick is, and where to look."""
    print()
    print(f"{'rank':<5}{'trial':<14}{'optimizer':<34}" + "".join(f"{name[:24]:>26}" for name in TRACKED_METRICS))
    for rank, row in enumerate(result.top, start=1):
        print(f"{rank:<5}{row['trial_id']:<14}{row['optimizer']:<34}"
              + "".join(f"{row.get(name) or 0:>26.3f}" for name in TRACKED_METRICS))  # fmt: skip
    print(f"\n{result.n_trials} trials, {result.n_failed} failed. Winner: run {result.best_run_id}")
    if result.certainty:
        print(result.certainty)
    if result.test_metrics:
        print(
            "winner on test: "
            + ", ".join(f"{k}={v:.3f}" for k, v in result.test_metrics.items() if k != "test_n_errors")
        )
    if result.model_uri:
        print(f"winner's model: {result.model_uri}")
    print(tracking_links(result.tracking_uri, result.experiment_id, result.parent_run_id))
    print(f"sweep folder (full log in sweep.log): {result.sweep_dir}")


def tracking_links(uri: str, experiment_id: str, parent_run_id: str) -> str:
    """Where a person looks: the sweep's trials ranked in the runs table (its saved view,
    ``sweeps.mlflow_view``), and the parent run; for a local store, first how to start the UI on it.

    >>> print(tracking_links("http://mlflow:5000", "1", "abc"))
    MLflow, the trials ranked: http://mlflow:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=abc
    MLflow, the sweep's parent run: http://mlflow:5000/#/experiments/1/runs/abc?workflowType=machine_learning
    """
    if uri.startswith(("http://", "https://")):
        base, start = uri.rstrip("/"), ""
    else:
        base = "http://localhost:5000"
        ui = f"LITELLM_LOCAL_MODEL_COST_MAP=True mlflow ui --backend-store-uri {uri} --port 5000"
        start = f"MLflow: start its UI with  {ui}\n"
    return (
        f"{start}MLflow, the trials ranked: {runs_table_url(base, experiment_id, parent_run_id)}\n"
        f"MLflow, the sweep's parent run: {run_url(base, experiment_id, parent_run_id)}"
    )


def _pick(args: argparse.Namespace) -> int:
    from sweeps.pick import NothingMatched, ask, pick_run  # MLflow and DSPy: --help stays fast

    try:
        choice = pick_run(
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            sweep=args.sweep,
            run=args.run,
            model=args.model,
            metric=args.metric,
            mode=args.mode,
            filter=args.filter,
        )
    except NothingMatched as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    answer = None
    if args.ask:
        with lm_from_flags(args) as lm:
            prediction = ask(choice, args.ask, lm)
        answer = {"question": args.ask, "answer": prediction.answer, "references": prediction.references}
    if args.json:
        print(json.dumps({**choice.as_json(), **({"ask": answer} if answer else {})}, indent=2))
        return 0
    print(f"run {choice.run_id} ({choice.run_name}), best of {choice.candidates} by {args.metric}")
    print("config: " + ", ".join(f"{k}={v}" for k, v in sorted(choice.config.items())
                                 if k not in ("data_sha256", "git_commit")))  # fmt: skip
    print("metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(choice.metrics.items())))
    print(f"model: {choice.model_uri or '(no MLflow model on this run)'}; program state: {choice.program_uri}")
    if answer:
        print(f"Q: {answer['question']}\nA: {answer['answer']}\nreferences: {'; '.join(answer['references'])}")
    return 0


def _positive_int(value: str, flag: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"{flag} {value!r} is not auto or a positive integer") from None
    if number < 1:
        raise UserError(f"{flag} must be auto or at least 1, but got {number}")
    return number


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, default=str)


def _add_tracking_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT)


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (naming the flag, and where to look), exit 2: no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(prog=PROG, description="Sweeps over the DSPy Bible QA program.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the libraries' logs too")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a search-space file and list every problem")
    validate.add_argument("space_file")
    validate.add_argument("--data", default=None, help="QA JSONL file (default: the bundled data set)")
    validate.add_argument("--n-ctx", type=int, default=None, help="the LM's context window (default 4096)")
    validate.set_defaults(handler=_validate)

    run = commands.add_parser("run", help="run a sweep")
    run.add_argument("space_file")
    run.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help=f"number of trials (default {DEFAULT_TRIALS})")
    run.add_argument(
        "--concurrency",
        default="auto",
        help="LM slots of each LM server: auto (1 for --lm local, 4 for LM Studio, or the --lm-file's) or N",
    )
    run.add_argument(
        "--allow-mixed-models",
        action="store_true",
        help="accept LM servers that serve different models (scores then depend on which server answered)",
    )
    run.add_argument("--search", choices=SEARCH_ALGORITHMS, default=DEFAULT_SEARCH)
    run.add_argument(
        "--n-startup-trials",
        type=int,
        default=DEFAULT_N_STARTUP_TRIALS,
        help=f"TPE's random start (default {DEFAULT_N_STARTUP_TRIALS})",
    )
    run.add_argument("--max-failures", type=int, default=0, help="retries of a failed trial")
    run.add_argument(
        "--time-budget", type=float, default=None, help="stop the sweep after S seconds (running trials end KILLED)"
    )
    run.add_argument(
        "--lm-outage-limit",
        type=float,
        default=DEFAULT_LM_OUTAGE_LIMIT,
        metavar="MINUTES",
        help=f"how long the trials wait for an LM that stopped answering before the sweep stops, to be resumed "
        f"(default {DEFAULT_LM_OUTAGE_LIMIT:g})",
    )
    run.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    run.add_argument(
        "--trial-cpus", type=float, default=TRIAL_CPUS, help=f"CPUs each trial asks Ray for (default {TRIAL_CPUS})"
    )
    run.add_argument("--data", default=None, help="QA JSONL file (default: the bundled data set)")
    _add_tracking_flags(run)
    run.add_argument("--seed", type=int, default=None, help="overrides the space file's seed")
    run.add_argument("--storage", default=DEFAULT_STORAGE, help=f"where sweep folders go (default {DEFAULT_STORAGE})")
    run.add_argument("--register", default=None, help="register the winner's model under NAME, alias champion")
    run.add_argument(
        "--status-every",
        type=float,
        default=DEFAULT_STATUS_EVERY,
        help=f"on a terminal, a status line every S seconds of trials (default {DEFAULT_STATUS_EVERY:g}; 0: none)",
    )
    run.add_argument("--dry-run", action="store_true", help="validate, health-check and estimate; start nothing")
    run.add_argument("--output-json", default=None, help="write the summary as JSON to this file")
    add_lm_flags(run, pool=True)
    run.set_defaults(handler=_run)

    resume = commands.add_parser("resume", help="finish a stopped sweep, in the same parent run")
    resume.add_argument("sweep_dir", help="the sweep folder (under --storage, e.g. sweeps_results/sweep_...)")
    resume.add_argument("--output-json", default=None, help="write the summary as JSON to this file")
    resume.set_defaults(handler=_resume)

    sync = commands.add_parser("sync", help="deliver the MLflow writes that wait in a sweep folder's journal")
    sync.add_argument("sweep_dir", help="the sweep folder (under --storage, e.g. sweeps_results/sweep_...)")
    sync.set_defaults(handler=_sync)

    pick = commands.add_parser("pick", help="print the winning run (and ask it a question)")
    _add_tracking_flags(pick)
    pick.add_argument("--sweep", default="latest", help="parent run id of the sweep, or latest (default)")
    chosen = pick.add_mutually_exclusive_group()
    chosen.add_argument("--run", default=None, help="pick this run id instead")
    chosen.add_argument(
        "--model", default=None, help="pick the run this model was logged on: models:/NAME@champion, models:/m-..."
    )
    pick.add_argument("--metric", default="theological_match_score")
    pick.add_argument("--mode", choices=("max", "min"), default="max")
    pick.add_argument(
        "--filter", default=None, help='an MLflow filter, clauses joined by "and", e.g. "metrics.accuracy > 0.8"'
    )
    pick.add_argument("--ask", default=None, help="a question for the picked program")
    pick.add_argument("--json", action="store_true", help="print JSON")
    add_lm_flags(pick)
    pick.set_defaults(handler=_pick)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return run_cli(args.handler, args, PROG)
    except BibleQAError as error:  # not a user error, but still ours: one line
        print(f"{PROG}: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)  # sweeps.stopped.SweepStopped: 75, to be resumed


if __name__ == "__main__":
    sys.exit(main())
