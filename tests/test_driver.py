"""sweeps.driver and sweeps.plan: bad input to ``run_sweep`` raises one clear error before anything starts
(no folder, no MLflow store, no LM call), for a space given as a file or a mapping alike."""

from __future__ import annotations

import pytest

from bibleqa.errors import LMUnavailableError, UserError
from bibleqa.lm import LMSettings
from bibleqa.local_lm import free_port
from sweeps import SpaceError, run_sweep
from tests.fakes import completion_body

GOOD = {"optimizers": {"LabeledFewShot": {"max_labeled_demos": 1}}, "train_size": 2, "retrieval_k": 0}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def keywords(workdir):
    return {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "storage": str(workdir / "results")}


def test_a_bad_mapping_lists_every_problem_and_starts_nothing(workdir, fake_lm_server):
    fake = fake_lm_server([(200, completion_body(" Noah"))])
    lm = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion")
    with pytest.raises(SpaceError) as raised:
        run_sweep({"optimizers": {"Adam": {}}, "retrieval_k": 99}, lm=lm, **keywords(workdir))
    assert [problem.split(": ")[1] for problem in raised.value.problems] == ["optimizers.Adam", "retrieval_k"]
    assert list(workdir.iterdir()) == [] and fake.requests == [] and fake.model_requests == []


def test_bad_keywords_are_user_errors_before_anything(workdir):
    for bad, message in (({"trials": 0}, "--trials must be at least 1, but got 0"),
                         ({"search": "grid"}, "--search 'grid' is not one of tpe, random"),
                         ({"concurrency": 0}, "--concurrency must be auto or at least 1, but got 0")):  # fmt: skip
        with pytest.raises(UserError, match=message):
            run_sweep(GOOD, **bad, **keywords(workdir))
    assert list(workdir.iterdir()) == []


def test_one_endpoint_or_a_list_of_them(workdir):
    base = f"http://127.0.0.1:{free_port()}/v1"
    down = LMSettings(lm_base=base, lm_model="m")
    with pytest.raises(UserError, match=f"--lm-base: {base} is in the LM pool twice"):
        run_sweep(GOOD, lm=[down, down], **keywords(workdir))
    with pytest.raises(UserError, match="lm= takes an LMSettings or a non-empty list of them"):
        run_sweep(GOOD, lm=[], **keywords(workdir))
    other = LMSettings(lm_base=f"http://127.0.0.1:{free_port()}/v1", lm_model="m")
    for lm in (down, [down], [down, other]):  # each reaches the health check, which names the server
        with pytest.raises(LMUnavailableError, match=f"LM Studio is not reachable at {base}"):
            run_sweep(GOOD, lm=lm, **keywords(workdir))
    assert list(workdir.iterdir()) == []
