"""The parent run's plots: the objective by trial, what each optimizer's params did to it, and (from
``MIN_TRIALS_FOR_IMPORTANCE`` finished trials on) the params' importances.

``sweeps.finalize`` calls ``write_plots`` once the trials have ended; the PNGs go into the sweep folder and
onto the parent run.  Every axis that carries the objective is named by the metric (e.g.
``theological_match_score``).

* ``optimization_history.png``: the objective of each finished trial, in the order they started, and the best
  so far.
* ``parallel_coordinates.png``: one panel per optimizer, with an axis per param that optimizer has and the
  space searches (its own params, then the program knobs), and the objective's axis last; one line per
  trial, coloured by the objective on a scale whose low end is dark (no near-white line on the
  background).  A param an optimizer does not have gets no axis in its panel, so no "None" tick.
* ``param_importances.png``: Optuna's fANOVA importances, drawn only from ``MIN_TRIALS_FOR_IMPORTANCE``
  finished trials on (a log line says when it is skipped).

Example::

    >>> from sweeps.plots import MIN_TRIALS_FOR_IMPORTANCE, write_plots
    >>> write_plots(records, space, Path("sweeps_results/sweep_smoke_20260101_000000"))  # doctest: +SKIP
    [PosixPath('.../optimization_history.png'), PosixPath('.../parallel_coordinates.png')]
    >>> MIN_TRIALS_FOR_IMPORTANCE
    20
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from optuna.visualization import matplotlib as optuna_plots

from sweeps.records import TrialRecord
from sweeps.search import distribution
from sweeps.space import Param, SearchSpace

logger = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 20
"""Finished trials below which ``param_importances.png`` is not drawn.  Importances from a handful of trials
are noise: on the quickstart's 6-trial smoke sweep, Optuna's plot rated ``max_labeled_demos`` 0.63 and
``retrieval_k`` 0.14, the same evaluator over the params every trial has gave ``retrieval_k`` 0.81-0.91
(six seeds), and the data say ``retrieval_k`` is what mattered (every ``retrieval_k=2`` trial scored
0.20-0.30, every ``retrieval_k=0`` trial 0.05-0.06).  fANOVA's forest needs several trials per value of
each of the 5-8 params a space searches: about 20."""
OBJECTIVE_COLOURS = LinearSegmentedColormap.from_list(
    "objective", plt.get_cmap("plasma")([i / 10 * 0.62 for i in range(11)])
)
"""Plasma without its pale orange and yellow: low scores dark blue, then purple and magenta, high scores
coral red.  Every colour has at least 3:1 contrast with the white background (WCAG's floor for graphics);
Optuna's default drew low scores near-white on grey."""
FIGURE_WIDTH_IN = 11.0


def write_plots(
    records: list[TrialRecord], space: SearchSpace, directory: Path, study: optuna.Study | None = None
) -> list[Path]:
    """Draw the plots (see the module docstring) into ``directory``; returns the files written.  The history
    and the importances come from ``study`` (the sweep's persisted study, resumes included), else from one
    built from the records.  A plot that cannot be drawn (too few trials) is skipped with a log line, and
    never fails the sweep.  The warnings Optuna gives while it draws go to the debug log, not the console."""
    study = study or plotted_study(records, space)
    finished = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    plots: dict[str, Callable[[], Figure]] = {
        "optimization_history.png": lambda: history_figure(study, space.metric),
        "param_importances.png": lambda: importance_figure(study, space.metric),
        "parallel_coordinates.png": lambda: parallel_coordinates(records, space),
    }
    written = []
    for filename, draw in plots.items():
        if filename == "param_importances.png" and finished < MIN_TRIALS_FOR_IMPORTANCE:
            logger.info("skipped %s: %d finished trials, fewer than %d; importances from so few are noise",
                        filename, finished, MIN_TRIALS_FOR_IMPORTANCE)  # fmt: skip
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:  # to the log, not the console
                warnings.simplefilter("always")
                figure = draw()
            for warning in caught:
                logger.debug("%s: %s", filename, warning.message)
            figure.savefig(directory / filename, dpi=100)
            plt.close(figure)
            written.append(directory / filename)
        except Exception as error:  # a plot must never fail a sweep
            logger.info("skipped %s: %s", filename, error)
    return written


def history_figure(study: optuna.Study, metric: str) -> Figure:
    """The objective by trial, and the best so far, with the metric's name on the axis."""
    axes = optuna_plots.plot_optimization_history(study, target_name=metric)
    axes.set_title(f"{metric} of each finished trial, and the best so far")
    axes.set_xlabel("trial (in the order they started)")
    axes.set_ylabel(metric)
    axes.figure.set_size_inches(FIGURE_WIDTH_IN, 5)
    axes.figure.tight_layout()
    return axes.figure


def importance_figure(study: optuna.Study, metric: str) -> Figure:
    """Optuna's fANOVA importances of the searched params for the objective."""
    axes = optuna_plots.plot_param_importances(study, target_name=metric)
    axes.set_title(f"Importance of each param for {metric} (fANOVA, {len(study.trials)} trials)")
    axes.figure.set_size_inches(FIGURE_WIDTH_IN, 6)
    axes.figure.tight_layout()
    return axes.figure


def parallel_coordinates(records: list[TrialRecord], space: SearchSpace) -> Figure:
    """One panel per optimizer with finished trials: an axis per param the optimizer has and the space
    searches, then the objective's axis; one line per trial, coloured by the objective (see the module
    docstring).  Raises ``ValueError`` when no finished trial reports the objective."""
    metric = space.metric
    finished = [record for record in records if record.status == "FINISHED" and metric in record.metrics]
    if not finished:
        raise ValueError(f"no finished trial reports {metric}")
    scores = [record.metrics[metric] for record in finished]
    low, high = min(scores), max(scores)
    if math.isclose(low, high):
        low, high = low - 0.05, high + 0.05
    norm = Normalize(low, high)
    objective = Param(metric, "float", low=low, high=high)
    order = list(space.optimizers) + sorted({r.trial.optimizer for r in finished} - set(space.optimizers))
    groups = {name: [r for r in finished if r.trial.optimizer == name] for name in order}
    groups = {name: group for name, group in groups.items() if group}
    figure, panels = plt.subplots(
        len(groups), 1, figsize=(FIGURE_WIDTH_IN, 1.0 + 3.4 * len(groups)), squeeze=False, layout="constrained"
    )
    for axes, (optimizer, group) in zip(panels[:, 0], groups.items(), strict=True):
        axis_params: dict[str, Param] = {}
        for record in group:
            axis_params.update(searched_params(record.trial.as_params(), space))
        axis_params.pop("optimizer", None)
        axis_params[metric] = objective
        _draw_panel(axes, group, axis_params, metric, norm)
        axes.set_title(f"{optimizer}: {len(group)} finished trial{'s' if len(group) != 1 else ''}", loc="left")
    colourbar = figure.colorbar(
        plt.cm.ScalarMappable(norm=norm, cmap=OBJECTIVE_COLOURS), ax=list(panels[:, 0]), fraction=0.03, pad=0.01
    )
    colourbar.set_label(metric)
    figure.suptitle(f"{metric} by each optimizer's params (one line per trial; darker is lower)")
    return figure


def _draw_panel(axes: Any, group: list[TrialRecord], params: dict[str, Param], metric: str, norm: Normalize) -> None:
    """Vertical axes at x = 0, 1, ..., their ticks as text, and one line per trial (the best drawn last)."""
    names = list(params)
    for x, name in enumerate(names):
        axes.axvline(x, color="#555555", linewidth=1, zorder=1)
        for value, label in _ticks(params[name]):
            axes.text(x - 0.07, value, label, ha="right", va="center", fontsize=8, color="#222222")
    for record in sorted(group, key=lambda record: record.metrics[metric]):
        values = {**record.trial.as_params(), metric: record.metrics[metric]}
        ys = [_position(params[name], values.get(name)) for name in names]
        colour = OBJECTIVE_COLOURS(norm(record.metrics[metric]))
        axes.plot(range(len(names)), ys, color=colour, linewidth=2.2, marker="o", markersize=4, zorder=2)
    axes.set_xticks(range(len(names)), [_wrapped(name) for name in names], fontsize=9)
    axes.get_xticklabels()[-1].set_fontweight("bold")
    axes.set_xlim(-0.7, len(names) - 0.6)
    axes.set_ylim(-0.08, 1.08)
    axes.set_yticks([])
    axes.set_facecolor("white")
    for spine in axes.spines.values():
        spine.set_visible(False)


def _position(param: Param, value: Any) -> float:
    """Where ``value`` sits on ``param``'s axis, in [0, 1]; NaN (no point) when the trial has no value."""
    if value is None:
        return math.nan
    if param.kind == "choice":
        choices = list(param.choices)
        return choices.index(value) / max(len(choices) - 1, 1) if value in choices else math.nan
    low, high = float(param.low), float(param.high)
    if param.log and low > 0:
        low, high, value = math.log(low), math.log(high), math.log(float(value))
    return min(max((float(value) - low) / (high - low), 0.0), 1.0) if high > low else 0.5


def _ticks(param: Param) -> list[tuple[float, str]]:
    """The labelled ticks of ``param``'s axis: every choice, every integer of a short int range, else five
    values."""
    if param.kind == "choice":
        return [(_position(param, choice), str(choice)) for choice in param.choices]
    low, high = float(param.low), float(param.high)
    if param.kind == "int" and high - low <= 10:
        return [(_position(param, value), str(value)) for value in range(int(low), int(high) + 1)]
    values = [low + (high - low) * i / 4 for i in range(5)]
    return [(_position(param, value), f"{value:.3f}" if param.kind != "int" else str(round(value))) for value in values]


def _wrapped(name: str, width: int = 14) -> str:
    """``max_bootstrapped_demos`` as ``max_bootstrapped_\\ndemos``: axis names that fit beside each other."""
    lines = [""]
    for part in name.split("_"):
        if lines[-1] and len(lines[-1]) + 1 + len(part) > width:
            lines[-1] += "_"
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]}_{part}" if lines[-1] else part
    return "\n".join(lines)


def plotted_study(records: list[TrialRecord], space: SearchSpace) -> optuna.Study:
    """An Optuna study of the finished trials that report the objective, with the params the space
    searches: what the history and importance plots draw."""
    study = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize")
    for record in records:
        if record.status != "FINISHED" or space.metric not in record.metrics:
            continue
        params = record.trial.as_params()
        searched = searched_params(params, space)
        study.add_trial(
            optuna.trial.create_trial(
                params={name: params[name] for name in searched},
                distributions={name: distribution(param) for name, param in searched.items()},
                value=record.metrics[space.metric],
            )
        )
    return study


def searched_params(config: dict[str, Any], space: SearchSpace) -> dict[str, Param]:
    """The params of ``config`` (flat, as ``TrialConfig.as_params``) that the space searches (not
    constants), with their ``Param``."""
    searched = {}
    optimizer = config.get("optimizer")
    if len(space.optimizers) > 1:
        searched["optimizer"] = Param("optimizer", "choice", choices=tuple(space.optimizers))
    for name, param in {**space.optimizers.get(optimizer, {}), **space.knobs}.items():
        if not param.is_constant and name in config:
            searched[name] = param
    return searched
