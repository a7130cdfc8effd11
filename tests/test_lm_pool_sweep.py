"""A sweep on a pool of two LM endpoints (real Ray, a real MLflow sqlite store, ``run_sweep``), against
FAKE servers that the test makes die and come back (``tests.fakes.FaultyLMServer``), one slot each.

What the pool promises, read from what the servers saw, the sweep's log and MLflow: each endpoint serves
calls and never has more than its one slot's worth at once; an endpoint that dies is taken out of the pool
with a log line while the sweep goes on with the other, and is back, with a line, once it answers; no trial
and no question is lost to it; the parent and every trial name the pool in ``lm_studio_api_url`` and
``concurrency``, and each trial's ``lm_endpoints`` tag counts the requests each endpoint served it."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator

import mlflow
import pytest

from bibleqa.lm import LMSettings
from sweeps import run_sweep
from tests.fakes import FaultyLMServer
from tests.helpers import small_data

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = (
    "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {choice: [1, 3]}\n"
    "train_size: 4\nretrieval_k: {choice: [0, 1]}\nmodel_format: completion\n"
)
TRIALS = 6


class Lines(logging.Handler):
    """The log lines of a logger, as they come."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("sweeps.pool_watch")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_endpoint_that_dies_leaves_the_pool_and_comes_back_while_the_sweep_goes_on(tmp_path, log_lines):
    first, second = FaultyLMServer(latency=0.2), FaultyLMServer(latency=0.2)
    events: dict[str, float] = {}
    failures: list[BaseException] = []

    def faults() -> None:
        """The second endpoint dies once it has served 3 requests; once the first has served 4 more alone, it
        comes back; once the pool has it back, the first dies until the second has served 3 requests alone."""
        try:
            wait_for(lambda: len(second.requests) >= 3, "the second endpoint's first requests")
            second.die()
            events["second died"] = time.monotonic()
            wait_for(lambda: len(first.posts_since(events["second died"])) >= 4, "the first endpoint alone")
            second.recover()
            events["second recovered"] = time.monotonic()
            wait_for(lambda: any("back in the pool" in line for line in log_lines.lines), "the second back")
            first.die()
            events["first died"] = time.monotonic()
            wait_for(lambda: len(second.posts_since(events["first died"])) >= 3, "the second endpoint alone")
            first.recover()
            events["first recovered"] = time.monotonic()
        except BaseException as error:  # reported by the test, below
            failures.append(error)

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pool = [LMSettings(lm_base=server.base_url, lm_model="fake-model", model_format="completion", cache=False,
                       slots=1, n_ctx=4096) for server in (first, second)]  # fmt: skip
    thread = threading.Thread(target=faults, daemon=True)
    thread.start()
    try:
        result = run_sweep(str(space), lm=pool, trials=TRIALS, data=str(small_data(tmp_path, train=6, dev=12, test=1)),
                           tracking_uri=uri, storage=str(tmp_path / "results"))  # fmt: skip
        thread.join(timeout=30)
    finally:
        for server in (first, second):
            with contextlib.suppress(Exception):
                server.close()
    assert not failures, failures
    assert set(events) == {"second died", "second recovered", "first died", "first recovered"}

    # Taken out with a line, back with a line; the sweep went on meanwhile, on the other endpoint.
    assert f"LM endpoint {second.base_url} is DOWN: taken out of the pool, 1 of 2 endpoint(s) left" in " ".join(
        log_lines.lines
    )
    assert f"LM endpoint {second.base_url} answers again: back in the pool" in log_lines.lines
    assert any(line.startswith(f"LM endpoint {first.base_url} is DOWN") for line in log_lines.lines)
    assert second.posts_since(events["second recovered"])  # it served again once back
    assert first.max_in_flight == 1 and second.max_in_flight == 1  # never more than its one slot

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_failed"] == 0
    urls = f"{first.base_url},{second.base_url}"
    assert parent.data.params["lm_studio_api_url"] == urls and parent.data.params["concurrency"] == "1,1"
    children = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    assert [child.info.status for child in children] == ["FINISHED"] * TRIALS  # none lost to the faults
    assert [child.data.metrics["n_errors"] for child in children] == [0.0] * TRIALS  # no question either
    served = {first.base_url: 0, second.base_url: 0}
    for child in children:
        assert child.data.params["lm_studio_api_url"] == urls
        for url, requests in json.loads(child.data.tags["lm_endpoints"]).items():
            served[url] += requests
    assert served[first.base_url] > 0 and served[second.base_url] > 0
    # The tags count every request the trials sent, the ones that found their endpoint dead included.
    assert sum(served.values()) == parent.data.metrics["lm_calls_through_slots"]
    assert served[second.base_url] >= len(second.requests)
