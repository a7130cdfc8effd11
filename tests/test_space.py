"""sweeps.space: the shipped files validate; every kind of problem is reported as FILE: key: what; allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bibleqa.related import DEFAULT_RELATED_PASSAGES
from sweeps.space import SpaceError, load_space

SPACES = sorted(Path(__file__).resolve().parent.parent.joinpath("search_spaces").glob("*.yaml"))


def problems_of(tmp_path: Path, text: str, **checks) -> list[str]:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as raised:
        load_space(path, **checks)
    return raised.value.problems


@pytest.mark.parametrize("path", SPACES, ids=lambda path: path.name)
def test_every_shipped_space_is_valid(path):
    space = load_space(path, train_split_size=410, n_ctx=4096)
    assert space.metric == "theological_match_score" and space.mode == "max"
    assert space.optimizers


def test_shipped_files_cover_every_optimizer_family():
    names = {path.stem for path in SPACES}
    assert {"default", "smoke", "labeled_few_shot", "bootstrap_few_shot", "random_search", "mipro_v2"} <= names
    assert "MIPROv2" not in load_space(SPACES[[p.stem for p in SPACES].index("smoke")]).optimizers
    assert set(load_space(SPACES[[p.stem for p in SPACES].index("default")]).optimizers) == {
        "LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "MIPROv2"
    }  # fmt: skip


def test_unknown_keys_optimizers_and_parameters(tmp_path):
    problems = problems_of(
        tmp_path,
        "colour: red\noptimizers:\n  Adam: {}\n  LabeledFewShot:\n    max_rounds: 2\n",
    )
    where = str(tmp_path / "space.yaml")
    assert f"{where}: colour: unknown key; allowed: objective, seed, optimizers" in problems[0]
    assert any(p.startswith(f"{where}: optimizers.Adam: unknown optimizer; allowed: LabeledFewShot") for p in problems)
    assert any("optimizers.LabeledFewShot.max_rounds: LabeledFewShot does not take it; it takes max_labeled_demos"
               in p for p in problems)  # fmt: skip


def test_wrong_types_and_bad_ranges(tmp_path):
    problems = problems_of(
        tmp_path,
        "optimizers:\n  BootstrapFewShot:\n    max_labeled_demos: {int: [4, 2]}\n    max_rounds: {int: [1, 1]}\n"
        "    max_bootstrapped_demos: two\nretrieval_k: {float: [0.5, 2.5]}\nchain_of_thought: maybe\nseed: x\n",
    )
    text = "\n".join(problems)
    assert "max_labeled_demos: range [4, 2] is empty or inverted; allowed: low < high" in text
    assert "max_rounds: range [1, 1] is empty or inverted" in text
    assert "max_bootstrapped_demos: 'two' is not allowed; allowed: integers from 0 to 16" in text
    assert "retrieval_k: a float range is not allowed; allowed: integers from 0 to 10" in text
    assert "chain_of_thought: 'maybe' is not allowed; allowed: true, false" in text
    assert "seed: 'x' is not an integer" in text
    assert len(problems) == 6


def test_train_size_larger_than_the_train_split(tmp_path):
    problems = problems_of(
        tmp_path, "optimizers:\n  LabeledFewShot: {}\ntrain_size: {int: [8, 500]}\n", train_split_size=410
    )
    assert problems == [f"{tmp_path / 'space.yaml'}: train_size: up to 500 is larger than the train split (410 items); "
                        "allowed: at most 410"]  # fmt: skip


def test_demos_times_retrieval_that_cannot_fit_the_context(tmp_path):
    text = (
        "optimizers:\n  BootstrapFewShot:\n    max_bootstrapped_demos: 16\n    max_labeled_demos: 16\nretrieval_k: 10\n"
    )
    problems = problems_of(tmp_path, text, n_ctx=4096)
    assert "need about" in problems[0] and "more than the LM's context of 4096" in problems[0]
    load_space(tmp_path / "space.yaml", n_ctx=100_000)  # fits a bigger context


def test_mipro_takes_auto_or_both_manual_counts(tmp_path):
    problems = problems_of(tmp_path, "optimizers:\n  MIPROv2:\n    auto: light\n    num_trials: 4\n")
    assert any("give auto, or num_candidates and num_trials, not both" in p for p in problems)


def test_not_yaml_and_missing_file(tmp_path):
    assert "not valid YAML" in problems_of(tmp_path, "optimizers: [unclosed\n")[0]
    with pytest.raises(SpaceError, match="cannot read the file"):
        load_space(tmp_path / "missing.yaml")


def test_validate_command_prints_every_problem_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("colour: red\noptimizers:\n  Adam: {}\n")
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: ") for line in lines)
    assert "Traceback" not in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "validate", str(SPACES[0])], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "valid" in ok.stdout


def test_related_passages_is_a_program_knob_from_0_to_20(tmp_path):
    path = tmp_path / "space.yaml"
    optimizers = "optimizers:\n  LabeledFewShot: {}\n"
    path.write_text(optimizers + "related_passages: {choice: [0, 5, 20]}\n")
    assert load_space(path).knobs["related_passages"].choices == (0, 5, 20)
    path.write_text(optimizers + "related_passages: {int: [0, 20], step: 5}\n")
    assert (load_space(path).knobs["related_passages"].low, load_space(path).knobs["related_passages"].high) == (0, 20)
    path.write_text(optimizers)
    assert load_space(path).knobs["related_passages"].value == DEFAULT_RELATED_PASSAGES  # on unless a space says

    where = f"{path}: related_passages"
    assert problems_of(tmp_path, optimizers + "related_passages: 21\n") == [
        f"{where}: 21 is not allowed; allowed: integers from 0 to 20"
    ]
    assert problems_of(tmp_path, optimizers + "related_passages: {int: [0, 30]}\n") == [
        f"{where}: range [0, 30] is out of bounds; allowed: integers from 0 to 20"
    ]
    assert problems_of(tmp_path, optimizers + "related_passages: {choice: [5, -1]}\n") == [
        f"{where}: -1 is not allowed; allowed: integers from 0 to 20"
    ]
    assert problems_of(tmp_path, optimizers + "related_passages: {float: [0.5, 5.5]}\n") == [
        f"{where}: a float range is not allowed; allowed: integers from 0 to 20"
    ]


def test_a_mapping_goes_through_the_same_validator_as_a_file(tmp_path):
    import yaml

    text = ("optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [3, 1]}\n  Adam: {}\n"
            "retrieval_k: -1\ncolour: red\n")  # fmt: skip
    from_file = problems_of(tmp_path, text)
    with pytest.raises(SpaceError) as raised:
        load_space(yaml.safe_load(text))
    where = str(tmp_path / "space.yaml")
    assert raised.value.problems == [problem.replace(where, "<mapping space>") for problem in from_file]
    assert len(from_file) == 4


def test_a_mapping_may_carry_its_name_and_is_kept_as_yaml(tmp_path):
    import yaml

    mapping = {"name": "demos", "optimizers": {"LabeledFewShot": {"max_labeled_demos": {"int": [1, 8]}}},
               "retrieval_k": {"choice": [0, 3]}}  # fmt: skip
    space = load_space(mapping)
    assert (space.name, space.path) == ("demos", None)
    assert yaml.safe_load(space.text) == mapping  # what the sweep folder's space.yaml holds
    assert load_space(mapping).sha256 == space.sha256 != load_space({**mapping, "seed": 3}).sha256
    path = tmp_path / "named.yaml"
    path.write_text(space.text)
    assert load_space(path).name == "demos"  # a file may carry a name too; else its stem
    assert load_space(tmp_path.joinpath("plain.yaml").write_text("optimizers: {LabeledFewShot: {}}\n") and
                      tmp_path / "plain.yaml").name == "plain"  # fmt: skip
    with pytest.raises(SpaceError) as raised:
        load_space({**mapping, "name": "../../etc"})
    assert raised.value.problems == [
        "<mapping ../../etc>: name: '../../etc' is not allowed; allowed: letters, digits, '_', '.', '-' (at most 64)"
    ]
