"""The sweep folder ``<storage>/<sweep name>``: what a later ``resume_sweep(folder)`` will need, and the log.

- ``space.yaml``: the space as validated (a file's own text, or a mapping written out);
- ``sweep.json``: the options, the seed, the LM settings and the pool's endpoints (no key: it lives only in
  the environment), the space's name and hash;
- ``parent.json``: the parent run, its experiment and the tracking URI, once the parent run exists;
- ``study.log``: the Optuna study, as the search writes it (``sweeps.study_store``);
- ``processes.json``: the driver's PID and what it started (``sweeps.processes``);
- ``sweep.log``: every log line of the sweep, the libraries' included.  ``sweep_log`` sends them there for
  the length of a ``with`` block and puts every logger back as it found it afterwards: Ray's, MLflow's,
  Optuna's and DSPy's own console handlers are set aside meanwhile, so no library line reaches the console.

Example::

    >>> from sweeps.sweep_folder import sweep_name
    >>> from datetime import datetime
    >>> sweep_name("smoke", datetime(2026, 1, 2, 3, 4, 5))
    'sweep_smoke_20260102_030405'
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from sweeps.plan import ParentRun, SweepPlan

LIBRARY_LOGGERS = ("ray", "mlflow", "optuna", "dspy", "LiteLLM", "litellm", "httpx", "alembic", "urllib3", "bm25s",
                   "matplotlib", "filelock")  # fmt: skip
"""The libraries whose log lines go to ``sweep.log`` only, while a sweep runs."""
OWN_LOGGERS = ("bibleqa", "sweeps")
SETTINGS_FILE = "sweep.json"
PARENT_FILE = "parent.json"
SPACE_FILE = "space.yaml"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def sweep_name(space_name: str, now: datetime | None = None) -> str:
    """``sweep_<space>_<YYYYmmdd_HHMMSS>``: the parent run's name and the folder's."""
    return f"sweep_{space_name}_{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}"


def create_sweep_folder(plan: SweepPlan, name: str) -> Path:
    """Make a new folder ``<storage>/<name>`` and write ``space.yaml`` and ``sweep.json`` into it; return it.

    When ``<name>`` exists already (another sweep of the same space started in the same second, into the same
    storage), the folder is ``<name>_2``, ``<name>_3``, ...: its name is the sweep's name, so the caller takes
    ``folder.name``.  ``mkdir`` is atomic, so two processes never get the same folder."""
    storage = Path(plan.options.storage).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        folder = storage / (name if number == 1 else f"{name}_{number}")
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            break
    (folder / SPACE_FILE).write_text(plan.space.text, encoding="utf-8")
    options = asdict(plan.options)
    if options["data"]:  # a resume may start in another directory
        options["data"] = str(Path(options["data"]).resolve())
    settings = {
        "options": options,
        "seed": plan.seed,
        "lm": asdict(plan.lm),
        "pool": [asdict(endpoint) for endpoint in plan.pool],
        "space_name": plan.space.name,
        "space_sha256": plan.space.sha256,
    }
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder


def write_parent(parent: ParentRun, tracking_uri: str) -> None:
    """Write ``parent.json``: where the sweep's parent run is (its study has the sweep's name)."""
    record = {
        "run_id": parent.run_id,
        "experiment_id": parent.experiment_id,
        "sweep_name": parent.sweep_name,
        "tracking_uri": tracking_uri,
    }
    (parent.sweep_dir / PARENT_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def log_file_handler(path: Path) -> logging.Handler:
    """A handler that appends INFO and above to ``path``."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    return handler


@contextlib.contextmanager
def libraries_logging_to(handler: logging.Handler, names: Iterable[str] = LIBRARY_LOGGERS) -> Iterator[None]:
    """For the block, the named libraries' loggers write only to ``handler``; then they are as before."""
    saved = []
    for name in names:
        library = logging.getLogger(name)
        saved.append((library, list(library.handlers), library.propagate))
        library.handlers, library.propagate = [handler], False
    try:
        yield
    finally:
        for library, handlers, propagate in saved:
            library.handlers, library.propagate = handlers, propagate


@contextlib.contextmanager
def sweep_log(path: Path) -> Iterator[logging.Handler]:
    """Send the sweep's log lines to ``path`` for the block: ours (at INFO, also to the handlers you set on
    the root logger) and the libraries' (to the file only)."""
    handler = log_file_handler(path)
    root = logging.getLogger()
    own = [logging.getLogger(name) for name in OWN_LOGGERS]
    levels = [logger.level for logger in own]
    root.addHandler(handler)
    for logger, level in zip(own, levels, strict=True):
        if level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    try:
        with libraries_logging_to(handler):
            yield handler
    finally:
        for logger, level in zip(own, levels, strict=True):
            logger.setLevel(level)
        root.removeHandler(handler)
        handler.close()
