"""Every write a sweep makes to MLflow, journaled first: the sweep goes on while its MLflow server is away.

The sweep's writes (trial runs, their params, metrics, tags, text artifacts and end status; the parent's
params, summary, description, plots and end status; the rank tags; the winner's logged model and registry
alias) go through one ``MLflowJournal``.  Each write is appended to ``mlflow_journal.jsonl`` in the sweep
folder (one JSON line, fsynced), then delivered to MLflow, oldest first; ``mlflow_journal_state.json`` (written
atomically) holds how many lines are delivered, and the values MLflow gave back.

- **When MLflow does not answer** (connection refused or reset, a timeout, 5xx answers that outlast MLflow's
  own short retries: ``is_outage``), delivery stops at that write and the sweep goes on; the writes wait in the
  journal.  Delivery is retried at the next write, at most once every ``RETRY_EVERY_S`` seconds while MLflow
  is away (so an outage costs the trials one failed call per ``RETRY_EVERY_S``, not one per write), and once
  more when the sweep ends.  There is no background thread: a sweep writes at every trial's end, and its
  summary writes many times.  A write MLflow refuses for another reason (a 4xx: a bug, not an outage) is
  logged, recorded as ``rejected`` in the state and skipped, so one bad write never holds back the others.
- **Runs created while MLflow is away** have no id yet: ``create_run`` returns a placeholder,
  ``@journal-run-<line>@``, and later writes name the run by it; on delivery the placeholder is replaced, in
  every later write's arguments and text (the parent's description links to the runs), by the run id MLflow
  gave.  ``resolve`` does the same for what the sweep writes in its folder (``summary.json``, ``summary.md``,
  ``trials.csv``: ``settle_files``).  The winner's model id and URI and its registry version work alike.
- **Replay is idempotent**: a write whose response was lost is sent again.  Metrics keep the timestamp of
  their journal line, and MLflow keeps one row per (key, timestamp, step, value); params, tags, artifacts
  and statuses overwrite with the same values.  A created run carries the tag ``bibleqa.journal_key``
  (``<journal id>:<line>``), as does a logged model: before sending one again, the journal looks for it by
  that tag; a registry version is looked up by its run and model URI.
- ``bibleqa-sweep sync SWEEP_DIR`` (``sync_sweep``) delivers what waits, and ``bibleqa-sweep resume`` does so
  before it continues.

Example (``tests/test_journal.py`` drives it with a FAKE client that fails on cue)::

    >>> line = waiting_line(12, Path("/tmp/sweeps_results/sweep_x"), "http://mlflow:5000")
    >>> line.split("; ")[0].split(": ")[1]
    '12 write(s) wait in /tmp/sweeps_results/sweep_x/mlflow_journal.jsonl'
    >>> line.split("with: ")[1]
    'bibleqa-sweep sync /tmp/sweeps_results/sweep_x'
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bibleqa.errors import UserError
from bibleqa.tracking import check_tracking, configure_mlflow_http
from sweeps.sweep_folder import PARENT_FILE

logger = logging.getLogger(__name__)

JOURNAL_FILE = "mlflow_journal.jsonl"
STATE_FILE = "mlflow_journal_state.json"
MARKER_TAG = "bibleqa.journal_key"
"""The tag a journaled run and a journaled model carry: how a replay finds what a lost response created."""
RETRY_EVERY_S = 5.0
"""While MLflow is away, delivery is tried again at most this often.  Each try costs one failed call: a
refused connection fails at once (0.01 s, measured against a closed port), but a server that accepts and
does not answer holds the call for up to ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (10 s, as the driver sets it) per
attempt, and that is the time Tune's loop waits."""
SETTLED_FILES = ("summary.json", "summary.md", "trials.csv")
"""The sweep folder's files that may name a run by its placeholder until MLflow gave its id."""
TEXT_SUFFIXES = (".md", ".csv", ".json", ".txt")
PLACEHOLDER = re.compile(r"@journal-[a-z-]+-\d+@")
OUTAGE_WORDS = ("failed with exception", "timed out", "Max retries exceeded", "Connection refused",
                "Connection aborted", "RemoteDisconnected", "database is locked")  # fmt: skip
"""How an MLflow error that means "the server is not answering" reads (MLflow 3.17 wraps the requests error
into an ``MlflowException`` whose message is its text)."""


def is_outage(error: BaseException) -> bool:
    """True when ``error`` means MLflow did not answer (worth trying again later), not that it refused."""
    from mlflow.exceptions import MlflowException

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        if isinstance(seen, MlflowException):
            if seen.error_code == "TEMPORARILY_UNAVAILABLE":
                return True
            return any(word in str(seen) for word in OUTAGE_WORDS)
        seen = seen.__cause__ or seen.__context__
    return False


def sync_command(folder: Path) -> str:
    """The command that delivers the writes waiting in ``folder``'s journal."""
    return f"bibleqa-sweep sync {shlex.quote(str(folder))}"


def waiting_line(pending: int, folder: Path, tracking_uri: str) -> str:
    """What a sweep that ended while MLflow was away says, in one line."""
    return (
        f"MLflow at {tracking_uri} is not answering: {pending} write(s) wait in {folder / JOURNAL_FILE}; "
        f"deliver them once it answers with: {sync_command(folder)}"
    )


class MLflowJournal:
    """The sweep's writes to MLflow, journaled in ``folder`` and delivered in order (see the module docstring).

    Its write methods take ``MlflowClient``'s arguments; a run is named by its id or its placeholder.
    ``client`` is the ``MlflowClient`` to deliver to (default: one on ``tracking_uri``)."""

    def __init__(self, folder: Path, tracking_uri: str, *, client: Any = None, retry_every: float = RETRY_EVERY_S):
        self.folder = Path(folder)
        self.tracking_uri = tracking_uri
        self.retry_every = retry_every
        if client is None:
            import mlflow

            client = mlflow.MlflowClient(tracking_uri)
        self.client = client
        self._lock = threading.RLock()
        self._entries = self._read_entries()
        state = self._read_state()
        self._id: str = state.get("journal_id") or uuid.uuid4().hex[:12]
        self._delivered: int = int(state.get("delivered", 0))
        self._values: dict[str, str] = dict(state.get("values", {}))
        self._rejected: list[dict[str, Any]] = list(state.get("rejected", []))
        # Lines written by an earlier process and not marked delivered may have reached MLflow: look first.
        self._maybe_sent = set(range(self._delivered, len(self._entries)))
        self._away_since: float | None = None
        self._last_try = 0.0
        if not state:
            self._save_state()

    # Ray pickles the Tuner's callbacks (and so this journal) into its experiment folder: not the lock.
    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # --- the writes ------------------------------------------------------------------------------------

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        """Create a run; returns its id, or its placeholder while MLflow is away."""
        return self._write("create_run", {"experiment_id": experiment_id, "run_name": run_name, "tags": tags},
                           produces="run")  # fmt: skip

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = ()) -> None:  # fmt: skip
        """``MlflowClient.log_batch``, with MLflow's ``Metric``, ``Param`` and ``RunTag`` entities."""
        self._write("log_batch", {
            "run_id": run_id,
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
            "params": [[p.key, p.value] for p in params],
            "tags": [[t.key, t.value] for t in tags],
        })  # fmt: skip

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        self._write("log_metric", {"run_id": run_id, "key": key, "value": value, "timestamp": timestamp,
                                   "step": step})  # fmt: skip

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._write("set_tag", {"run_id": run_id, "key": key, "value": value})

    def delete_tag(self, run_id: str, key: str) -> None:
        self._write("delete_tag", {"run_id": run_id, "key": key})

    def update_run(self, run_id: str, status: str) -> None:
        self._write("update_run", {"run_id": run_id, "status": status})

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        """End the run; its end time is when this was journaled, not when it reached MLflow."""
        end_time = end_time if end_time is not None else int(time.time() * 1000)
        self._write("set_terminated", {"run_id": run_id, "status": status, "end_time": end_time})

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._write("log_text", {"run_id": run_id, "text": text, "artifact_file": artifact_file})

    def log_artifact(self, run_id: str, local_path: str) -> None:
        """Log a file of the sweep folder (read when delivered: the folder keeps it)."""
        self._write("log_artifact", {"run_id": run_id, "local_path": str(local_path)})

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._write("set_experiment_tag", {"experiment_id": experiment_id, "key": key, "value": value})

    def log_program_model(self, run_id: str, *, state_file: str, knobs: dict[str, Any], name: str,
                          tags: dict[str, str], status: str) -> tuple[str, str]:  # fmt: skip
        """Log the program whose DSPy state is ``state_file`` as an MLflow model on run ``run_id``, which
        ended ``status`` (``sweeps.winner_model``); returns the model's id and URI, or their placeholders."""
        args = {"run_id": run_id, "state_file": state_file, "knobs": knobs, "name": name, "tags": tags,
                "status": status}  # fmt: skip
        seq = len(self._entries)
        self._write("log_program_model", args)
        return self.resolve(_placeholder("model-id", seq)), self.resolve(_placeholder("model-uri", seq))

    def register_model(self, model_uri: str, name: str, run_id: str, alias: str) -> str:
        """Register ``model_uri`` under ``name`` and point ``alias`` at the version; returns the version, or
        its placeholder."""
        return self._write("register_model", {"model_uri": model_uri, "name": name, "run_id": run_id,
                                               "alias": alias}, produces="version")  # fmt: skip

    # --- delivery --------------------------------------------------------------------------------------

    def pending(self) -> int:
        """Writes that wait for MLflow."""
        return len(self._entries) - self._delivered

    def rejected(self) -> list[dict[str, Any]]:
        """Writes MLflow refused (not an outage): each ``{"line", "op", "error"}``."""
        return list(self._rejected)

    def deliver(self, force: bool = False) -> int:
        """Send what waits, oldest first, until MLflow does not answer; returns how many writes still wait.
        While MLflow is away, tries at most once every ``retry_every`` seconds unless ``force``."""
        with self._lock:
            if self._away_since is not None and not force and time.monotonic() - self._last_try < self.retry_every:
                return self.pending()
            self._last_try = time.monotonic()
            while self._delivered < len(self._entries):
                entry = self._entries[self._delivered]
                try:
                    self._apply(entry)
                except Exception as error:
                    if is_outage(error):
                        if self._away_since is None:
                            self._away_since = time.monotonic()
                            logger.warning("MLflow at %s is not answering (%s); the sweep goes on, its writes "
                                           "wait in %s", self.tracking_uri, str(error).splitlines()[0][:300],
                                           self.folder / JOURNAL_FILE)  # fmt: skip
                        return self.pending()
                    logger.error("MLflow refused write %d (%s) of %s: %s", entry["line"], entry["op"],
                                 self.folder / JOURNAL_FILE, error)  # fmt: skip
                    self._rejected.append({"line": entry["line"], "op": entry["op"], "error": str(error)[:500]})
                self._delivered += 1
                self._maybe_sent.discard(entry["line"])
                self._save_state()
            if self._away_since is not None:
                logger.warning("MLflow at %s answers again after %.0f s; every waiting write is delivered",
                               self.tracking_uri, time.monotonic() - self._away_since)  # fmt: skip
                self._away_since = None
            return 0

    def resolve(self, value: Any) -> Any:
        """``value`` with every placeholder MLflow has given a value for replaced by it (strings, and the
        strings inside lists and dicts)."""
        if isinstance(value, str):
            if "@journal-" not in value:
                return value
            return PLACEHOLDER.sub(lambda match: self._values.get(match.group(0), match.group(0)), value)
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):
            return {self.resolve(key): self.resolve(item) for key, item in value.items()}
        return value

    def settle_files(self) -> None:
        """Rewrite the sweep folder's ``SETTLED_FILES`` with the ids MLflow gave for their placeholders, and
        ``summary.json``'s ``mlflow_pending`` with the writes that still wait."""
        for name in SETTLED_FILES:
            path = self.folder / name
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                settled = self.resolve(text)
                if name == "summary.json":
                    settled = json.dumps({**json.loads(settled), "mlflow_pending": self.pending()}, indent=2)
                if settled != text:
                    _write_atomically(path, settled)

    # --- internals -------------------------------------------------------------------------------------

    def _write(self, op: str, args: dict[str, Any], produces: str | None = None) -> Any:
        with self._lock:
            line = len(self._entries)
            entry = {"line": line, "op": op, "args": args, "at": time.time()}
            with open(self.folder / JOURNAL_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._entries.append(entry)
            self.deliver()
            return self.resolve(_placeholder(produces, line)) if produces else None

    def _apply(self, entry: dict[str, Any]) -> None:
        line, args = entry["line"], self.resolve(entry["args"])
        unresolved = PLACEHOLDER.search(json.dumps(args))
        if unresolved:
            # A run whose create was refused: nothing can be written to it.
            raise _Refused(f"it names {unresolved.group(0)}, which MLflow never created")
        maybe_sent = line in self._maybe_sent
        self._maybe_sent.add(line)  # from here on, a lost response may have delivered it
        produced = OPERATIONS[entry["op"]](self, args, f"{self._id}:{line}", maybe_sent)
        for kind, value in (produced or {}).items():
            self._values[_placeholder(kind, line)] = value

    def _read_entries(self) -> list[dict[str, Any]]:
        path = self.folder / JOURNAL_FILE
        if not path.is_file():
            return []
        entries = []
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(text))
            except ValueError:  # a line cut short by a crash mid-write: the last one, never delivered
                logger.warning("%s: skipping a line cut short: %r", path, text[:80])
        return entries

    def _read_state(self) -> dict[str, Any]:
        path = self.folder / STATE_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _save_state(self) -> None:
        state = {"journal_id": self._id, "delivered": self._delivered, "values": self._values,
                 "rejected": self._rejected}  # fmt: skip
        _write_atomically(self.folder / STATE_FILE, json.dumps(state, indent=1))


class _Refused(Exception):
    """A write that cannot be delivered (not an outage)."""


def _placeholder(kind: str, line: int) -> str:
    return f"@journal-{kind}-{line}@"


def _write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".tmp")
    with open(scratch, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


# --- how each write is delivered: one entry per operation ---------------------------------------------------


def _create_run(journal: MLflowJournal, args: dict[str, Any], key: str, maybe_sent: bool) -> dict[str, str]:
    client = journal.client
    if maybe_sent:
        found = client.search_runs([args["experiment_id"]], filter_string=f"tags.`{MARKER_TAG}` = '{key}'")
        if found:
            return {"run": found[0].info.run_id}
    tags = {**args["tags"], MARKER_TAG: key}
    return {"run": client.create_run(args["experiment_id"], run_name=args["run_name"], tags=tags).info.run_id}


def _log_batch(journal: MLflowJournal, args: dict[str, Any], key: str, maybe_sent: bool) -> None:
    from mlflow.entities import Metric, Param, RunTag

    journal.client.log_batch(
        args["run_id"],
        metrics=[Metric(name, value, timestamp, step) for name, value, timestamp, step in args["metrics"]],
        params=[Param(name, value) for name, value in args["params"]],
        tags=[RunTag(name, value) for name, value in args["tags"]],
    )


def _log_artifact(journal: MLflowJournal, args: dict[str, Any], key: str, maybe_sent: bool) -> None:
    path = Path(args["local_path"])
    if path.suffix in TEXT_SUFFIXES:  # it may name runs by their placeholders: send the ids
        journal.client.log_text(args["run_id"], journal.resolve(path.read_text(encoding="utf-8")), path.name)
    else:
        journal.client.log_artifact(args["run_id"], str(path))


def _log_program_model(journal: MLflowJournal, args: dict[str, Any], key: str, maybe_sent: bool) -> dict[str, str]:
    from sweeps.winner_model import log_winner_model

    model_id, model_uri = log_winner_model(journal.client, journal.tracking_uri, marker=(MARKER_TAG, key),
                                           look_first=maybe_sent, **args)  # fmt: skip
    return {"model-id": model_id, "model-uri": model_uri}


def _register_model(journal: MLflowJournal, args: dict[str, Any], key: str, maybe_sent: bool) -> dict[str, str]:
    from sweeps.winner_model import register_winner_model

    return {"version": register_winner_model(journal.client, journal.tracking_uri, look_first=maybe_sent, **args)}


def _call(method: str) -> Callable[[MLflowJournal, dict[str, Any], str, bool], None]:
    """An operation that is the ``MlflowClient`` method of the same name, with the journaled keywords."""

    def apply(journal: MLflowJournal, args: dict[str, Any], key: str, maybe_sent: bool) -> None:
        getattr(journal.client, method)(**args)

    return apply


OPERATIONS: dict[str, Callable[[MLflowJournal, dict[str, Any], str, bool], dict[str, str] | None]] = {
    "create_run": _create_run,
    "log_batch": _log_batch,
    "log_metric": _call("log_metric"),
    "set_tag": _call("set_tag"),
    "delete_tag": _call("delete_tag"),
    "update_run": _call("update_run"),
    "set_terminated": _call("set_terminated"),
    "log_text": _call("log_text"),
    "log_artifact": _log_artifact,
    "set_experiment_tag": _call("set_experiment_tag"),
    "log_program_model": _log_program_model,
    "register_model": _register_model,
}
"""Each journaled write, by name: how it is delivered (and, for a create, the value MLflow gave back)."""


@dataclass(frozen=True)
class SyncReport:
    """What ``sync_sweep`` did: writes delivered now, writes still waiting, writes MLflow refused."""

    delivered: int
    pending: int
    rejected: int


def sync_sweep(folder: str | Path) -> SyncReport:
    """Deliver the writes waiting in the sweep folder's journal, and settle its files' run ids.

    Raises ``UserError`` when ``folder`` is not a sweep folder, or its MLflow server does not answer."""
    folder = Path(folder).resolve()
    parent_file = folder / PARENT_FILE
    if not parent_file.is_file():
        raise UserError(
            f"{folder} is not a sweep folder with a parent run (it has no {PARENT_FILE}): pass the folder that "
            "bibleqa-sweep run printed, under its --storage (default ./sweeps_results)"
        )
    tracking_uri = json.loads(parent_file.read_text(encoding="utf-8"))["tracking_uri"]
    if not (folder / JOURNAL_FILE).is_file():
        return SyncReport(0, 0, 0)
    configure_mlflow_http()
    check_tracking(tracking_uri)
    journal = MLflowJournal(folder, tracking_uri)
    before, refused = journal.pending(), len(journal.rejected())
    pending = journal.deliver(force=True)
    journal.settle_files()
    return SyncReport(before - pending, pending, len(journal.rejected()) - refused)
