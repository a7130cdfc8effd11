"""sweeps.result: what ``run_sweep`` returns when no trial finished, and its table.  (A sweep's full result
is checked by ``examples/launch_sweep.py``, which ``test_examples.py`` runs.)"""

from __future__ import annotations

import pytest

from sweeps import NoWinner, SweepResult


def test_no_winner_is_a_result_too_and_loading_it_says_why(tmp_path):
    rows = [{"trial_id": "t1", "status": "FAILED", "optimizer": "LabeledFewShot", "error": "HTTP 500"}]
    result = SweepResult(sweep_name="sweep_x_20260101_000000", parent_run_id="p", experiment_id="1",
                         tracking_uri="sqlite:///m.db", sweep_dir=str(tmp_path), n_trials=1, n_failed=1,
                         trials=rows)  # fmt: skip
    (tmp_path / "program.json").write_text("{}")  # a stale state in the folder is no winner either
    assert result.best_run_id is None and result.pick_is_clear is False
    frame = result.trials_dataframe()
    assert list(frame.columns) == list(rows[0]) and frame.iloc[0]["error"] == "HTTP 500"
    with pytest.raises(NoWinner, match="sweep sweep_x_20260101_000000 has no finished trial"):
        result.load_winner()
    assert result.as_json()["trials"] == rows
