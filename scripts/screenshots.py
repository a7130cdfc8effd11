"""Regenerate the README's screenshots of the MLflow UI (``docs/*.png``) from a sweep's tracking store, in
headless Chromium (Debian's ``chromium`` package; nothing is downloaded).

    .venv/bin/python scripts/screenshots.py        # after bash scripts/quickstart.sh: ./mlflow.db, its latest sweep

It starts ``mlflow ui`` on a free port of 127.0.0.1 against the store (``--tracking-uri``, default
``sqlite:///mlflow.db``), opens four pages of the latest sweep (or ``--sweep PARENT_RUN_ID``) and saves them:

- ``runs_table.png``: the sweep's trials in "Model training" mode, ranked, with the saved view's columns (the
  link the sweep prints; ``sweeps.mlflow_view``);
- ``parent_run.png``: the parent run's overview;
- ``winning_run.png``: the winning trial's run;
- ``compare_runs.png``: MLflow's Compare view of the sweep's trials.

It then stops everything it started.  A store written before the sweeps saved their view gets the view now
(an experiment tag; nothing else in the store changes).  CI does not run this script (it needs Chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a file, from any folder: the project's packages come first

from bibleqa.local_lm import free_port, stop_process  # noqa: E402
from bibleqa.tracking import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI  # noqa: E402
from sweeps.mlflow_view import MODE, VIEW_TAG_PREFIX, run_url, runs_table_url, save_trials_view  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WINDOW = (1600, 1000)
SERVER_START_S = 90
HOST_NAME = "mlflow.localhost"
"""The name the pages are opened by.  MLflow 3.17's UI opens its Assistant panel by itself on the first visit
to a server it sees as local (``localhost``, ``127.0.0.1``), and the panel takes a third of the page (a person
closes it once; a fresh browser profile per shot would show it every time).  Chromium resolves any
``*.localhost`` name to the loopback address itself, and the UI does not count this one as local; the server
is told to accept it (``--allowed-hosts``, ``--cors-allowed-origins``)."""


@dataclass(frozen=True)
class Sweep:
    """What the pages need of a sweep: its experiment, parent run, winner and trials (best first)."""

    experiment_id: str
    parent_run_id: str
    best_run_id: str
    trial_run_ids: list[str]
    objective: str
    mode: str


def pages(base_url: str, sweep: Sweep) -> dict[str, str]:
    """The file name and URL of each screenshot.

    >>> sweep = Sweep("1", "p", "w", ["w", "t2"], "theological_match_score", "max")
    >>> pages("http://127.0.0.1:5000", sweep)["compare_runs.png"]
    'http://127.0.0.1:5000/#/compare-runs?runs=%5B%22w%22%2C%22t2%22%5D&experiments=%5B%221%22%5D&workflowType=machine_learning'
    """
    base = base_url.rstrip("/")
    runs = quote(json.dumps(sweep.trial_run_ids, separators=(",", ":")))
    experiments = quote(json.dumps([sweep.experiment_id], separators=(",", ":")))
    return {
        "runs_table.png": runs_table_url(base, sweep.experiment_id, sweep.parent_run_id),
        "parent_run.png": run_url(base, sweep.experiment_id, sweep.parent_run_id),
        "winning_run.png": run_url(base, sweep.experiment_id, sweep.best_run_id),
        "compare_runs.png": f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&workflowType={MODE}",
    }


def find_sweep(tracking_uri: str, experiment: str, parent_run_id: str | None) -> Sweep:
    """The sweep to show (the latest one unless ``parent_run_id``); its view is saved if it has none."""
    import mlflow  # heavy: --help does without it

    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"screenshots: no experiment {experiment!r} in {tracking_uri}: run a sweep first")
    if parent_run_id:
        parent = client.get_run(parent_run_id)
    else:
        latest = client.search_runs(
            [found.experiment_id], "tags.run_type = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1
        )
        if not latest:
            raise SystemExit(f"screenshots: no sweep in experiment {experiment!r} of {tracking_uri}: run one first")
        parent = latest[0]
    objective, _, mode = parent.data.params.get("objective", "theological_match_score:max").partition(":")
    order = f"metrics.`{objective}` {'ASC' if mode == 'min' else 'DESC'}"
    trials = client.search_runs(
        [found.experiment_id],
        f"tags.run_type = 'trial' and tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=[order],
    )
    best = parent.data.tags.get("best_run_id") or (trials[0].info.run_id if trials else parent.info.run_id)
    if VIEW_TAG_PREFIX + parent.info.run_id not in found.tags:
        save_trials_view(client, found.experiment_id, parent.info.run_id, objective, mode or "max")
    return Sweep(found.experiment_id, parent.info.run_id, best, [t.info.run_id for t in trials], objective, mode)


@contextmanager
def mlflow_ui(tracking_uri: str, log_path: Path) -> Iterator[str]:
    """``mlflow ui`` on a free port of 127.0.0.1, as the README starts it; yields its URL (by ``HOST_NAME``),
    and stops it after."""
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    hosts = f"127.0.0.1:{port},localhost:{port},{HOST_NAME}:{port}"
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--allowed-hosts", hosts, "--cors-allowed-origins", f"http://{HOST_NAME}:{port}"]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while not _healthy(f"http://127.0.0.1:{port}"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"screenshots: mlflow ui did not start; its log: {log_path}")
                time.sleep(0.3)
            yield f"http://{HOST_NAME}:{port}"
        finally:
            stop_process(process)


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).ok
    except requests.RequestException:
        return False


def screenshot(chromium: str, url: str, path: Path, wait_ms: int) -> None:
    """One page as a PNG: headless Chromium with a fresh profile, after ``wait_ms`` of the page's own time."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                   f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not path.exists():
        raise SystemExit(f"screenshots: chromium failed on {url}: {done.stderr.strip()[-500:]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI, help="the store (default %(default)s)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    parser.add_argument("--sweep", default=None, help="parent run id of the sweep (default: the latest)")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where the PNGs go (default: docs/)")
    parser.add_argument("--chromium", default="chromium", help="the browser (default: chromium on the PATH)")
    parser.add_argument("--wait-ms", type=int, default=15000, help="page time before each shot (default 15000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chromium = shutil.which(args.chromium)
    if chromium is None:
        print(f"screenshots: {args.chromium!r} not found: apt-get install chromium or pass --chromium", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep = find_sweep(args.tracking_uri, args.experiment, args.sweep)
    with (
        tempfile.TemporaryDirectory(prefix="screenshots-") as scratch,
        mlflow_ui(args.tracking_uri, Path(scratch) / "mlflow_ui.log") as url,
    ):
        for name, page in pages(url, sweep).items():
            screenshot(chromium, page, out / name, args.wait_ms)
            print(f"{out / name}  <- {page.replace(url, 'http://localhost:5000')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
