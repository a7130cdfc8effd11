"""Trials per minute on a pool of 1, 2 and 4 LM endpoints, side by side on the same trials, against FAKE
fixed-latency LM servers of one slot each.

    flock /tmp/bibleqa-heavy.lock .venv/bin/python bench/lm_pool_scaling.py     # 16 trials x 16 calls, 0.5 s
    .venv/bin/python bench/lm_pool_scaling.py --trials 8 --calls 8 --pools 1,2  # a quick look

Each sweep is ``run_sweep`` with random search and one seed, so every pool runs the same trials (the same
configs, in the same order): LabeledFewShot (no compile calls), then one uncached LM call per dev question,
``--calls`` questions.  The sweeps run one after the other on this machine; each gets fresh servers.

For each pool it prints the trials per minute over the trial phase (from the first trial's start to the last
trial's end, read from the MLflow child runs: the sweep's fixed start-up and wrap-up, about 15 s, are left
out, as a long sweep amortises them), the speed-up over one endpoint, the whole sweep's wall time, and per
endpoint the calls it served and the most it had at once (``max in flight``, at most its one slot).
At shorter latencies the 2 cores, not the LM, become the bottleneck.

Measured on 2 cores, machine alone (the default command, 16 trials x 16 calls x 0.5 s)::

    endpoints  trials  phase s  trials/min  speed-up  sweep wall s  wall speed-up  calls (max in flight)
            1      16    132.6         7.2     1.00x         146.2          1.00x  257 (1)
            2      16     68.5        14.0     1.94x          78.3          1.87x  129 (1), 128 (1)
            4      16     38.1        25.2     3.48x          50.3          2.90x  64 (1), 66 (1), 64 (1), 63 (1)

With ``--calls 32`` (nearer a real trial's hundreds of calls, so each trial's fixed cost weighs less)::

    endpoints  trials  phase s  trials/min  speed-up  sweep wall s  wall speed-up  calls (max in flight)
            1      16    263.3         3.6     1.00x         275.5          1.00x  513 (1)
            2      16    133.4         7.2     1.97x         144.4          1.91x  257 (1), 256 (1)
            4      16     70.9        13.5     3.71x          83.0          3.32x  129 (1), 128 (1), 128 (1), 128 (1)

The ideal phase is trials x calls x latency / endpoints: 128, 64 and 32 s.  Four endpoints lose 6 s of
it: five trial workers start at once on 2 cores (each imports DSPy and builds its BM25 index), and in the
last wave fewer trials than slots are left.
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

SPACE = """
optimizers:
  LabeledFewShot:
    max_labeled_demos: {int: [1, 3]}
train_size: 4
retrieval_k: {choice: [0, 1]}
model_format: completion
"""


def run_pool(size: int, args: argparse.Namespace, data: Path, directory: Path) -> dict:
    """One sweep on ``size`` fresh one-slot servers; its figures."""
    import mlflow

    servers = [FixedLatencyLM(args.latency, 1).start() for _ in range(size)]
    pool = [LMSettings(lm_base=server.base_url, lm_model="fixed-latency", model_format="completion", cache=False,
                       retries=0, slots=1) for server in servers]  # fmt: skip
    space = directory / "bench.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{directory / f'pool{size}.db'}"
    started = time.monotonic()
    try:
        result = run_sweep(str(space), lm=pool, trials=args.trials, search="random", seed=0, data=str(data),
                           tracking_uri=uri, storage=str(directory / "results"))  # fmt: skip
        wall = time.monotonic() - started
    finally:
        for server in servers:
            server.stop()
    runs = mlflow.MlflowClient(uri).search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    finished = [run for run in runs if run.info.status == "FINISHED"]
    phase = (max(run.info.end_time for run in finished) - min(run.info.start_time for run in finished)) / 1000
    configs = sorted(tuple(sorted((k, v) for k, v in run.data.params.items()
                                  if k in ("max_labeled_demos", "retrieval_k"))) for run in runs)  # fmt: skip
    return {
        "size": size,
        "finished": len(finished),
        "phase": phase,
        "per_minute": len(finished) * 60 / phase,
        "wall": wall,
        "calls": [server.posts for server in servers],
        "max_in_flight": [server.max_in_flight for server in servers],
        "configs": configs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--calls", type=int, default=16, help="LM calls per trial (dev questions)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per LM call")
    parser.add_argument("--pools", default="1,2,4", help="pool sizes, comma-separated")
    args = parser.parse_args()
    print(f"{args.trials} trials x {args.calls} calls x {args.latency} s, endpoints of 1 slot, on {os.cpu_count()} "
          "cores; trials/min over the trial phase (first trial start to last trial end)", flush=True)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="bibleqa-pool-bench-") as scratch:
        directory = Path(scratch)
        data = write_subset(directory / "bench.jsonl", train=8, dev=args.calls, test=1)
        for size in (int(size) for size in args.pools.split(",")):
            rows.append(run_pool(size, args, data, directory))
            row = rows[-1]
            print(f"  pool of {size}: {row['finished']} trials in {row['phase']:.1f} s", flush=True)
    base = rows[0]
    print(f"\n{'endpoints':>9}{'trials':>8}{'phase s':>9}{'trials/min':>12}{'speed-up':>10}{'sweep wall s':>14}"
          f"{'wall speed-up':>15}  calls per endpoint (max in flight)")  # fmt: skip
    for row in rows:
        served = ", ".join(f"{calls} ({most})" for calls, most in zip(row["calls"], row["max_in_flight"], strict=True))
        print(f"{row['size']:>9}{row['finished']:>8}{row['phase']:>9.1f}{row['per_minute']:>12.1f}"
              f"{row['per_minute'] / base['per_minute']:>9.2f}x{row['wall']:>14.1f}"
              f"{base['wall'] / row['wall']:>14.2f}x  {served}")  # fmt: skip
    same = all(row["configs"] == base["configs"] for row in rows)
    print(f"the same trials in every pool: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
