"""The same LM-bound trials run three ways, in one run, against a FAKE LM of fixed latency and slot count.

    .venv/bin/python bench/lm_bound_trials.py                       # 32 trials x 20 calls x 0.2 s, 4 slots
    .venv/bin/python bench/lm_bound_trials.py --trials 8 --latency 0.1

1. through this sweep (``run_sweep``: Ray Tune, OptunaSearch, the MLflow child-run callback, LM slots);
2. through a plain sequential loop (one MLflow run per trial);
3. through plain Optuna: ``study.optimize(n_jobs=slots)`` with optuna-integration's ``MLflowCallback``.

Each trial is the real trial function (``sweeps.trial.trial_result``): LabeledFewShot (no compile calls),
then one uncached LM call per dev question, ``--calls`` questions.  For each way it prints:

- wall time, split into start-up (until the first LM call), the LM phase (first call to last) and wrap-up
  (after the last call: for the sweep, the parent summary, test scoring, plots and the model);
- wall time / ideal and LM phase / ideal, where ideal = trials x calls x latency / slots;
- the share of the LM phase that the slots were busy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fixed_latency_lm import FixedLatencyLM
from bibleqa.dataset import write_subset
from bibleqa.lm import LMSettings
from sweeps import run_sweep
from sweeps.trial import SweepContext, trial_result

SPACE = """
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [1, 3]}
train_size: 4
retrieval_k: 0
model_format: completion
"""


def through_sweep(args, settings, data, directory) -> float:
    space = directory / "bench.yaml"
    space.write_text(SPACE)
    started = time.monotonic()
    run_sweep(str(space), lm=settings, trials=args.trials, concurrency=args.slots, data=str(data),
              tracking_uri=f"sqlite:///{directory / 'sweep.db'}", storage=str(directory / "results"))  # fmt: skip
    return started


def sequential(args, settings, data, directory) -> float:
    import random

    import mlflow

    from bibleqa.tracking import log_batch

    started = time.monotonic()
    mlflow.set_tracking_uri(f"sqlite:///{directory / 'sequential.db'}")
    mlflow.set_experiment("bench_sequential")
    context = SweepContext(lm_settings=settings, data=str(data), slots_actor=None)
    rng = random.Random(0)
    for _ in range(args.trials):
        config = {"optimizer": "LabeledFewShot", "max_labeled_demos": rng.randint(1, 3), "train_size": 4,
                  "retrieval_k": 0, "model_format": "completion", "seed": 0}  # fmt: skip
        with mlflow.start_run() as run:
            result = trial_result(config, context)
            log_batch(run.info.run_id, params=config, metrics={k: v for k, v in result.items() if isinstance(v, float)})
    return started


def plain_optuna(args, settings, data, directory) -> float:
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    started = time.monotonic()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    context = SweepContext(lm_settings=settings, data=str(data), slots_actor=None)
    store = f"sqlite:///{directory / 'optuna.db'}"
    callback = MLflowCallback(tracking_uri=store, metric_name="theological_match_score")

    def objective(trial: optuna.Trial) -> float:
        config = {"optimizer": "LabeledFewShot", "max_labeled_demos": trial.suggest_int("max_labeled_demos", 1, 3),
                  "train_size": 4, "retrieval_k": 0, "model_format": "completion", "seed": 0}  # fmt: skip
        return trial_result(config, context)["theological_match_score"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=args.trials, n_jobs=args.slots, callbacks=[callback])
    return started


def main() -> None:
    parser = argparse.ArgumentParser(description="LM-bound trials three ways")
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--calls", type=int, default=20, help="LM calls per trial (dev questions)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per LM call")
    parser.add_argument("--slots", type=int, default=4, help="the fake LM's parallel slots")
    parser.add_argument("--ways", default="sweep,sequential,optuna", help="which ways to run, comma-separated")
    args = parser.parse_args()
    fake = FixedLatencyLM(args.latency, args.slots).start()
    settings = LMSettings(lm_base=fake.base_url, lm_model="fixed-latency", model_format="completion", cache=False,
                          retries=0)  # fmt: skip
    ideal = args.trials * args.calls * args.latency / args.slots
    print(f"{args.trials} trials x {args.calls} calls x {args.latency} s on {args.slots} slots: ideal {ideal:.1f} s")
    print(f"{'way':<14}{'wall s':>8}{'start-up s':>12}{'wrap-up s':>11}{'wall/ideal':>12}{'LM phase/ideal':>16}"
          f"{'slots busy':>12}{'LM calls':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bibleqa-bench-") as scratch:
        directory = Path(scratch)
        data = write_subset(directory / "bench.jsonl", train=8, dev=args.calls, test=1)
        ways = {"sweep": ("this sweep", through_sweep), "sequential": ("sequential", sequential),
                "optuna": ("plain Optuna", plain_optuna)}  # fmt: skip
        for name, way in (ways[key] for key in args.ways.split(",")):
            fake.reset()
            started = way(args, settings, data, directory)
            wall = time.monotonic() - started
            ended = started + wall
            first, last, busy = fake.busy_share()
            calls = len(fake.busy_intervals)
            print(f"{name:<14}{wall:>8.1f}{first - started:>12.1f}{ended - last:>11.1f}{wall / ideal:>12.2f}"
                  f"{(last - first) / ideal:>16.2f}{busy:>12.0%}{calls:>10}", flush=True)  # fmt: skip
    fake.stop()


if __name__ == "__main__":
    main()
