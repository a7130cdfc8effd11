"""sweeps.plots: what the parent's plots draw, and that they are readable: an axis per optimizer's own param
and no "None" tick, colours that stand out on white, the metric's name on the axes, and no importance plot
from too few trials.  Expected axes come from the search-space file itself."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import yaml
from matplotlib.colors import to_rgb

from bibleqa.related import DEFAULT_RELATED_PASSAGES
from sweeps.plots import (
    MIN_TRIALS_FOR_IMPORTANCE,
    history_figure,
    parallel_coordinates,
    plotted_study,
    searched_params,
    write_plots,
)
from sweeps.records import TrialRecord
from sweeps.space import load_space
from sweeps.trial_config import TrialConfig

METRIC = "theological_match_score"
SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "smoke.yaml"


def trial_record(trial_id: str, run_id: str, run_name: str, config: dict, *args, **kwargs) -> TrialRecord:
    return TrialRecord(trial_id, run_id, run_name, TrialConfig.from_ray({"optimizer": "LabeledFewShot", **config}),
                       *args, **kwargs)  # fmt: skip


def smoke_trials(count: int) -> list[TrialRecord]:
    """``count`` finished trials over smoke.yaml's values, alternating the optimizers; scores rise with the
    trial's index, so the first trial is the lowest."""
    records = []
    for index in range(count):
        config = {"train_size": (4, 8)[index % 2], "retrieval_k": (0, 2)[index // 2 % 2],
                  "related_passages": (0, 15)[index // 4 % 2], "seed": 7}  # fmt: skip
        if index % 2:
            config.update({"optimizer": "BootstrapFewShot", "max_bootstrapped_demos": 1 + index % 3 // 2,
                           "max_labeled_demos": index % 3, "max_rounds": 1})  # fmt: skip
        else:
            config.update({"optimizer": "LabeledFewShot", "max_labeled_demos": 1 + index % 3})
        records.append(trial_record(f"t{index}", "r", "n", config, "FINISHED", {METRIC: 0.05 + index / (2 * count)}))
    return records


def luminance(colour) -> float:
    """Relative luminance (WCAG) of a colour: 1 is white."""
    channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def test_searched_params_are_the_non_constant_ones():
    space = load_space(SPACE)
    config = {"optimizer": "BootstrapFewShot", "max_bootstrapped_demos": 2, "max_labeled_demos": 1, "max_rounds": 1}
    config.update(
        {"train_size": 8, "retrieval_k": 2, "chain_of_thought": False, "model_format": "completion", "seed": 7}
    )
    searched = searched_params(config, space)
    assert set(searched) == {"optimizer", "max_bootstrapped_demos", "max_labeled_demos", "train_size", "retrieval_k"}
    assert searched["optimizer"].choices == ("LabeledFewShot", "BootstrapFewShot")
    labeled = {"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "train_size": 4}
    assert set(searched_params(labeled, space)) == {"optimizer", "max_labeled_demos", "train_size"}


def test_plots_are_written_for_finished_trials(tmp_path):
    space = load_space(SPACE)
    records = []
    trials = [("LabeledFewShot", 1, 4, 0), ("LabeledFewShot", 3, 8, 2), ("BootstrapFewShot", 2, 4, 2)]
    for index, (optimizer, demos, size, k) in enumerate([*trials, ("LabeledFewShot", 2, 8, 0)]):
        config = {"optimizer": optimizer, "train_size": size, "retrieval_k": k, "seed": 7}
        config.update({"max_labeled_demos": demos} if optimizer == "LabeledFewShot" else
                      {"max_bootstrapped_demos": demos, "max_labeled_demos": 1, "max_rounds": 1})  # fmt: skip
        records.append(trial_record(str(index), "r", "n", config, "FINISHED", {METRIC: index / 10}))
    records.insert(0, trial_record("x", "r", "n", {"optimizer": "LabeledFewShot"}, "FAILED"))
    records.insert(2, trial_record("y", "r", "n", {"optimizer": "LabeledFewShot", "train_size": 4}, "FINISHED", {}))
    written = write_plots(records, space, tmp_path)
    names = {path.name for path in written}
    assert names == {"optimization_history.png", "parallel_coordinates.png"}  # 4 trials: no importances
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG")

    study = plotted_study(records, space)  # what the plots drew: the four finished trials with the objective
    assert [trial.value for trial in study.trials] == [0.0, 0.1, 0.2, 0.3]
    assert study.direction.name == "MAXIMIZE"
    # related_passages is searched too: a trial whose config left it out ran with the default.
    assert study.trials[2].params == {"optimizer": "BootstrapFewShot", "max_bootstrapped_demos": 2,
                                      "max_labeled_demos": 1, "train_size": 4, "retrieval_k": 2,
                                      "related_passages": DEFAULT_RELATED_PASSAGES}  # fmt: skip
    assert plotted_study(records, replace(space, mode="min")).direction.name == "MINIMIZE"


def test_searched_params_for_a_single_optimizer_space_and_an_unknown_optimizer(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(
        "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\nretrieval_k: {choice: [0, 2]}\n"
    )
    space = load_space(path)
    assert set(searched_params({"optimizer": "LabeledFewShot", "max_labeled_demos": 2, "retrieval_k": 0}, space)) == {
        "max_labeled_demos",
        "retrieval_k",
    }  # one optimizer: it is not searched
    assert set(searched_params({"optimizer": "MIPROv2", "retrieval_k": 2}, space)) == {"retrieval_k"}
    both = load_space(SPACE)
    optimizer = searched_params({"optimizer": "LabeledFewShot"}, both)["optimizer"]
    assert (optimizer.name, optimizer.kind) == ("optimizer", "choice")


def test_the_importance_plot_is_skipped_below_the_documented_number_of_trials(tmp_path, caplog):
    space = load_space(SPACE)
    with caplog.at_level(logging.INFO, logger="sweeps.plots"):
        few = write_plots(smoke_trials(MIN_TRIALS_FOR_IMPORTANCE - 1), space, tmp_path)
    assert "param_importances.png" not in {path.name for path in few}
    assert f"{MIN_TRIALS_FOR_IMPORTANCE - 1} finished trials, fewer than {MIN_TRIALS_FOR_IMPORTANCE}" in caplog.text
    (tmp_path / "enough").mkdir()
    enough = write_plots(smoke_trials(MIN_TRIALS_FOR_IMPORTANCE), space, tmp_path / "enough")
    assert "param_importances.png" in {path.name for path in enough}
    assert (tmp_path / "enough" / "param_importances.png").read_bytes().startswith(b"\x89PNG")
    # The README documents the number.
    assert f"{MIN_TRIALS_FOR_IMPORTANCE} finished trials" in (SPACE.parent.parent / "README.md").read_text()


def test_parallel_coordinates_has_an_axis_per_optimizers_own_param_and_the_metric():
    raw = yaml.safe_load(SPACE.read_text())
    searched_knobs = [name for name, value in raw.items() if name in ("train_size", "retrieval_k", "related_passages",
                      "chain_of_thought", "model_format") and isinstance(value, dict)]  # fmt: skip
    records = smoke_trials(8)
    figure = parallel_coordinates(records, load_space(SPACE))
    panels = [axes for axes in figure.axes if axes.get_title(loc="left")]
    assert [axes.get_title(loc="left") for axes in panels] == ["LabeledFewShot: 4 finished trials",
                                                              "BootstrapFewShot: 4 finished trials"]  # fmt: skip
    for axes, optimizer in zip(panels, ("LabeledFewShot", "BootstrapFewShot"), strict=True):
        own = [name for name, value in raw["optimizers"][optimizer].items() if isinstance(value, dict)]
        names = [label.get_text().replace("\n", "") for label in axes.get_xticklabels()]
        assert set(names) == {*own, *searched_knobs, METRIC} and names[-1] == METRIC
        assert len(axes.lines) - len(names) == 4  # the axis lines, then one line per trial
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert "None" not in texts and "nan" not in texts
    # LabeledFewShot has no max_bootstrapped_demos axis, so no tick for a value it does not have.
    assert "max_bootstrapped_demos" not in [label.get_text().replace("\n", "") for label in panels[0].get_xticklabels()]
    colourbar = [axes for axes in figure.axes if axes not in panels]
    assert [axes.get_ylabel() for axes in colourbar] == [METRIC]
    plt.close(figure)


def test_every_line_stands_out_on_white_and_lower_scores_are_darker():
    records = smoke_trials(8)
    figure = parallel_coordinates(records, load_space(SPACE))
    panels = [axes for axes in figure.axes if axes.get_title(loc="left")]
    lines = [line for axes in panels for line in axes.lines if len(line.get_xdata()) > 2]  # trials, not axes
    assert len(lines) == len(records)
    # Contrast with the white background is at least 3:1 (WCAG's floor for graphics) for every line.
    for line in lines:
        assert (1.05) / (luminance(line.get_color()) + 0.05) >= 3.0, line.get_color()
    # The lowest-scoring trial (t0) is drawn darker than the highest (t7).
    lowest = min(lines, key=lambda line: line.get_ydata()[-1])
    highest = max(lines, key=lambda line: line.get_ydata()[-1])
    assert luminance(lowest.get_color()) < luminance(highest.get_color())
    plt.close(figure)


def test_the_history_names_the_metric_on_its_axis():
    space = load_space(SPACE)
    figure = history_figure(plotted_study(smoke_trials(3), space), space.metric)
    (axes,) = figure.axes
    assert axes.get_ylabel() == METRIC and METRIC in axes.get_title()
    plt.close(figure)
