"""The verdict in MLflow, read back from a real ``mlflow server`` after a sweep against a FAKE LM: the parent's
description, every trial's rank tags, the best-so-far history, the source tags, the winner's model on the
winner's run (its signature, its ``champion`` alias, ``pick --model``) and the reopened run's status.

The FAKE LM answers a question with its gold answer when the prompt carries demos, and "I do not know"
otherwise; the space's only choice is ``max_labeled_demos`` 0 or 2.  The seed is chosen (from the seeded
random search itself) so that exactly one of the three trials has demos: by the data, it wins, and its
per-question scores beat the runner-up's on the dev questions (checked from ``question_scores.csv``), so
the pick is clear.  (A sweep whose trials answer alike, NOT clear, is in ``test_sweep_fake_lm.py``.)
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

import bibleqa
from bibleqa.dataset import load_dataset
from bibleqa.lm import LMSettings
from bibleqa.metrics import TRACKED_METRICS
from sweeps import run_sweep
from sweeps.mlflow_view import VIEW_TAG_PREFIX
from sweeps.pick import pick_run
from sweeps.run_names import model_name
from sweeps.search import make_searcher
from sweeps.space import load_space
from sweeps.trial_config import TrialConfig
from tests.fakes import ScriptedLMServer, completion_body, prompt_of
from tests.helpers import small_data

pytestmark = [pytest.mark.mlflow_server, pytest.mark.ray, pytest.mark.slow]

SPACE = """
objective: {metric: theological_match_score, mode: max}
optimizers:
  LabeledFewShot:
    max_labeled_demos: {choice: [0, 2]}
train_size: 4
retrieval_k: 0
model_format: completion
"""
TRIALS = 3
REGISTERED = "bibleqa-verdict"


def seed_with_one_demo_trial(space) -> int:
    """The first seed whose random search gives exactly one of the ``TRIALS`` trials 2 demos."""
    for seed in range(100):
        searcher = make_searcher(space, algorithm="random", seed=seed, n_startup_trials=10)
        demos = [searcher.suggest(f"t{index}")["max_labeled_demos"] for index in range(TRIALS)]
        if demos.count(2) == 1:
            return seed
    raise AssertionError("no seed in 0..99 gives one trial with demos")


@pytest.fixture(scope="module")
def sweep(mlflow_server, tmp_path_factory):
    directory = tmp_path_factory.mktemp("verdict")
    space_file = directory / "verdict.yaml"
    space_file.write_text(SPACE)
    data = small_data(directory, train=8, dev=6, test=2)
    dataset = load_dataset(data)
    gold = {item.question: item for item in [*dataset.dev, *dataset.test, *dataset.train]}

    def answer(request: dict) -> tuple[int, dict]:
        prompt = prompt_of(request)
        question = prompt.rsplit("Question: ", 1)[-1].removesuffix("\nAnswer:").strip()
        item = gold.get(question)
        if prompt.count("Question: ") > 1 and item is not None:  # demos in the prompt: the gold answer
            return 200, completion_body(f" {item.answer}\nReferences: {'; '.join(item.references)}")
        return 200, completion_body(" I do not know\nReferences: Genesis 1:1")

    fake = ScriptedLMServer([], ["fake-model"], answer=answer)
    seed = seed_with_one_demo_trial(load_space(space_file, train_split_size=len(dataset.train)))
    settings = LMSettings(lm_base=fake.base_url, lm_model="fake-model", model_format="completion", cache=False,
                          n_ctx=4096, slots=2)  # fmt: skip
    try:
        result = run_sweep(str(space_file), lm=settings, trials=TRIALS, search="random", seed=seed, data=str(data),
                           tracking_uri=mlflow_server, storage=str(directory / "results"),
                           register=REGISTERED)  # fmt: skip
    finally:
        fake.close()
    client = mlflow.MlflowClient(mlflow_server)
    children = client.search_runs(
        [result.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    return result, client, children, mlflow_server


def ranked_by_the_readme(children: list) -> list:
    """The README's rule, written out: highest theological_match_score, then highest accuracy, then fewest
    lm_calls, then the smallest trial id."""

    def key(child):
        metrics = child.data.metrics
        return (
            -metrics["theological_match_score"],
            -metrics["accuracy"],
            metrics["lm_calls"],
            child.data.tags["trial_id"],
        )

    return sorted(children, key=key)


def scores(client, run_id: str, metric: str) -> dict[str, float]:
    text = client.download_artifacts(run_id, "question_scores.csv")
    return {row["id"]: float(row[metric]) for row in csv.DictReader(io.StringIO(Path(text).read_text()))}


def test_the_parents_description_is_the_verdict(sweep):
    result, client, children, _ = sweep
    ranked = ranked_by_the_readme(children)
    winner, runner_up = ranked[0], ranked[1]
    assert result.best_run_id == winner.info.run_id and winner.data.params["max_labeled_demos"] == "2"
    # By the data: the winner beats the runner-up on every dev question, so no resample can favour the runner-up.
    ours, theirs = (scores(client, run.info.run_id, "theological_match_score") for run in (winner, runner_up))
    assert set(ours) == set(theirs) and min(ours[q] - theirs[q] for q in ours) > 0
    parent = client.get_run(result.parent_run_id)
    description = parent.data.tags["mlflow.note.content"]
    head = description.splitlines()[0]
    assert winner.info.run_id in head and f"#/experiments/{result.experiment_id}/runs/{winner.info.run_id}" in head
    assert "The pick is clear." in head and "NOT clear" not in description
    for name in TRACKED_METRICS:  # dev and test scores against the seed's targets
        row = next(line for line in description.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in row.split("|")[2:5]]
        test = parent.data.metrics[f"test_{name}"]
        assert cells == [f"{winner.data.metrics[name]:.3f}", f"{test:.3f}", cells[2]] and cells[2].startswith("> 0.")
    top = description[description.index("**Top 5**") :]
    positions = [top.index(f"/runs/{run.info.run_id})") for run in ranked]
    assert positions == sorted(positions)  # the top trials, in rank order, each a link to its run


def test_every_trial_carries_its_rank(sweep):
    _, _, children, _ = sweep
    ranked = ranked_by_the_readme(children)
    assert len(children) == TRIALS and all(child.info.status == "FINISHED" for child in children)
    for rank, child in enumerate(ranked, start=1):
        tags = child.data.tags
        assert (tags["sweep_rank"], tags["is_winner"]) == (str(rank), str(rank == 1).lower())
        expected = f"**Winner: rank 1 of {TRIALS}**" if rank == 1 else f"**Rank {rank} of {TRIALS}**"
        assert tags["mlflow.note.content"].startswith(expected)
        config = TrialConfig.from_ray(
            {"optimizer": "LabeledFewShot", "max_labeled_demos": int(child.data.params["max_labeled_demos"])}
        )
        # Named by the settings that tell trials apart, first; the trial's number and the timestamp after.
        assert child.info.run_name.startswith(f"labeled l{config.params['max_labeled_demos']} k0 n4 #")


def test_the_parent_draws_the_best_so_far_one_step_per_finished_trial(sweep):
    result, client, children, _ = sweep
    history = client.get_metric_history(result.parent_run_id, "best_theological_match_score")
    steps, values = [point.step for point in history], [point.value for point in history]
    assert steps == list(range(1, len(children) + 1))  # 1..n, never step 0
    assert values == sorted(values)
    assert values[-1] == max(child.data.metrics["theological_match_score"] for child in children)


def test_source_tags_name_this_checkout(sweep):
    result, client, children, _ = sweep
    package = Path(bibleqa.__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True).stdout.strip()

    for run in [client.get_run(result.parent_run_id), *children]:
        tags = run.data.tags
        assert tags["mlflow.source.git.commit"] == git("rev-parse", "HEAD")
        assert tags.get("mlflow.source.git.branch") == (
            git("rev-parse", "--abbrev-ref", "HEAD").replace("HEAD", "") or None
        )
        assert tags.get("mlflow.source.git.repoURL") == (git("config", "--get", "remote.origin.url") or None)
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] and tags["mlflow.user"]


def test_the_winners_model_is_on_the_winners_run_with_its_alias_and_signature(sweep):
    result, client, children, _ = sweep
    winner = client.get_run(result.best_run_id)
    [output] = winner.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == winner.info.run_id and result.model_uri == f"models:/{model.model_id}"
    demos = TrialConfig.from_ray({"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "train_size": 4,
                                  "retrieval_k": 0, "model_format": "completion"})  # fmt: skip
    assert model.name == model_name(demos) == "bible_qa_LabeledFewShot_l2-k0-n4"
    assert model.params["max_labeled_demos"] == "2" and model.params["retrieval_k"] == "0"  # the trial's params
    assert not any(child.outputs.model_outputs for child in children if child.info.run_id != winner.info.run_id)
    signature = mlflow.models.get_model_info(model.artifact_location).signature
    assert signature.inputs.input_names() == ["question"]
    assert signature.outputs.input_names() == ["answer", "references"]
    champion = client.get_model_version_by_alias(REGISTERED, "champion")
    assert champion.run_id == winner.info.run_id and champion.source == result.model_uri
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["best_model_uri"] == result.model_uri
    assert f"#/experiments/{result.experiment_id}/models/{model.model_id}" in parent.data.tags["mlflow.note.content"]
    # The winner's run was reopened to log the model, then closed as it was: its end time is still the
    # trial's, before the model was created.
    assert winner.info.status == "FINISHED" and winner.info.end_time < model.creation_timestamp
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def test_pick_and_load_winner_read_the_winners_run(sweep):
    result, _, _, uri = sweep
    choice = pick_run(tracking_uri=uri, model=f"models:/{REGISTERED}@champion")
    assert (choice.run_id, choice.model_uri) == (result.best_run_id, result.model_uri)
    command = [sys.executable, "-m", "sweeps.cli", "pick", "--tracking-uri", uri, "--model",
               f"models:/{REGISTERED}@champion", "--json"]  # fmt: skip
    picked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert picked.returncode == 0, picked.stderr
    assert json.loads(picked.stdout)["run_id"] == result.best_run_id
    program = result.load_winner()
    state = json.loads(Path(result.sweep_dir, "program.json").read_text())  # what the trial compiled
    assert [dict(demo) for demo in program.answer_question.demos] == state["answer_question"]["demos"]
    assert len(program.answer_question.demos) == 2


def test_the_sweep_saved_its_ranked_view_of_the_runs_table(sweep):
    """The link the sweep prints opens a saved view (``sweeps.mlflow_view``): on the real server, MLflow's own
    search with the view's filter and order lists exactly this sweep's trials, in the README's rank order."""
    result, client, children, _ = sweep
    view = json.loads(client.get_experiment(result.experiment_id).tags[VIEW_TAG_PREFIX + result.parent_run_id])
    order = f"{view['orderByKey']} {'ASC' if view['orderByAsc'] else 'DESC'}"
    found = client.search_runs([result.experiment_id], view["searchFilter"], order_by=[order])
    by_score = [run.data.metrics["theological_match_score"] for run in ranked_by_the_readme(children)]
    assert [run.data.metrics["theological_match_score"] for run in found] == by_score
    assert {run.info.run_id for run in found} == {child.info.run_id for child in children}
