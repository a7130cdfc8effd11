"""sweeps.search and sweeps.trial_config: the define-by-run space and the typed trial config."""

from __future__ import annotations

import pickle

import optuna
import pytest

from bibleqa.errors import UserError
from bibleqa.optimizers import OPTIMIZER_PARAMS
from bibleqa.related import DEFAULT_RELATED_PASSAGES
from sweeps.search import DefineByRunSpace, make_searcher
from sweeps.space import load_space
from sweeps.trial_config import TrialConfig

SPACE = load_space("search_spaces/default.yaml")


def sample(space: DefineByRunSpace, n: int, seed: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
    configs = []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial)
        configs.append({**trial.params, **constants})
        study.tell(trial, 0.5)
    return configs


def test_each_optimizer_gets_exactly_its_own_parameters():
    for config in sample(DefineByRunSpace(SPACE, seed=3), 40, seed=1):
        optimizer = config["optimizer"]
        own = set(OPTIMIZER_PARAMS[optimizer])
        others = set().union(*OPTIMIZER_PARAMS.values()) - own
        assert own <= set(config), optimizer
        assert not (others & set(config)), (optimizer, others & set(config))
        assert config["seed"] == 3
        TrialConfig.from_ray(config)  # every sampled config converts


def test_the_space_is_picklable_and_seeded():
    space = pickle.loads(pickle.dumps(DefineByRunSpace(SPACE, seed=3)))
    assert sample(space, 5, seed=9) == sample(DefineByRunSpace(SPACE, seed=3), 5, seed=9)


def test_searchers():
    assert make_searcher(SPACE, algorithm="tpe", seed=1, n_startup_trials=2)._sampler.__class__.__name__ == "TPESampler"
    assert (
        make_searcher(SPACE, algorithm="random", seed=1, n_startup_trials=2)._sampler.__class__.__name__
        == "RandomSampler"
    )
    with pytest.raises(ValueError, match="search algorithm"):
        make_searcher(SPACE, algorithm="grid", seed=1, n_startup_trials=2)


def test_trial_config_is_the_one_conversion():
    trial = TrialConfig.from_ray(
        {"optimizer": "bootstrap", "max_bootstrapped_demos": 3, "train_size": 24, "retrieval_k": 2, "seed": 5}
    )
    assert trial.optimizer == "BootstrapFewShot"
    assert trial.params == {"max_bootstrapped_demos": 3, "max_labeled_demos": 2, "max_rounds": 1}
    params = trial.as_params()
    assert params["train_size"] == params["num_examples"] == 24
    train = trial.to_train_config()
    assert (train.max_bootstrapped_demos, train.train_size, train.retrieval_k, train.seed) == (3, 24, 2, 5)
    with pytest.raises(UserError, match="LabeledFewShot does not take"):
        TrialConfig.from_ray({"optimizer": "LabeledFewShot", "max_rounds": 2})
    mipro = TrialConfig.from_ray({"optimizer": "MIPROv2", "auto": "light"}).to_train_config()
    assert mipro.optimizer_params()["auto"] == "light"


def test_related_passages_goes_from_the_space_to_the_trial_and_the_training_config():
    configs = sample(DefineByRunSpace(SPACE, seed=3), 20, seed=2)
    assert {config["related_passages"] for config in configs} == {0, 5, 10, 15}  # default.yaml's choices
    trial = TrialConfig.from_ray({"optimizer": "LabeledFewShot", "related_passages": 5})
    assert trial.as_params()["related_passages"] == 5
    assert trial.to_train_config().related_passages == 5
    assert TrialConfig.from_ray({"optimizer": "LabeledFewShot"}).related_passages == DEFAULT_RELATED_PASSAGES


def suggested_configs(algorithm: str, seed: int, n: int = 6) -> list[dict]:
    searcher = make_searcher(SPACE, algorithm=algorithm, seed=seed, n_startup_trials=10)
    return [searcher.suggest(f"trial_{index}") for index in range(n)]


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_the_same_seed_suggests_the_same_configs_and_another_seed_others(algorithm):
    first = suggested_configs(algorithm, seed=5)
    assert suggested_configs(algorithm, seed=5) == first
    assert suggested_configs(algorithm, seed=6) != first
    assert all(config["seed"] == 5 for config in first)  # the trials' own seed is the sweep's
