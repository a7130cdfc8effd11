"""When a sweep stops before its end (Ctrl-C in ``bibleqa-sweep run``, or an LM that stayed unreachable past
``--lm-outage-limit``): what the parent run says about it, and the command that resumes it.

``sum_up_stopped`` counts the parent's child runs as MLflow holds them and logs, on the parent, ``n_trials``
(the trials that ended on their own: FINISHED or FAILED), ``n_failed``, ``n_killed`` (stopped by the sweep:
a resume replaces them) and the tag ``stopped_summary``, one sentence that ends with the resume command.

Example::

    >>> from pathlib import Path
    >>> from sweeps.stopped import resume_command
    >>> resume_command(Path("/tmp/sweeps_results/sweep_smoke_20260101_000000"))
    'bibleqa-sweep resume /tmp/sweeps_results/sweep_smoke_20260101_000000'
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

from bibleqa.errors import BibleQAError
from bibleqa.tracking import log_batch
from sweeps.journal import MLflowJournal, is_outage
from sweeps.past_trials import child_runs
from sweeps.plan import ParentRun


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep in ``sweep_dir``; its parent run ended KILLED and it can be resumed."""

    def __init__(self, sweep_dir: Path, summary: str):
        super().__init__(summary)
        self.sweep_dir = sweep_dir
        self.summary = summary


EXIT_STOPPED = 75
"""``bibleqa-sweep``'s exit code when the sweep stopped for an outage and can be resumed (``EX_TEMPFAIL`` of
sysexits.h: a temporary failure; try again later)."""


class SweepStopped(BibleQAError):
    """The sweep in ``sweep_dir`` stopped before its end for a reason outside it (the LM stayed unreachable
    past ``--lm-outage-limit``); its parent run ended KILLED with ``summary``, and it can be resumed.
    ``bibleqa-sweep`` prints it as one line and exits ``exit_code``."""

    exit_code = EXIT_STOPPED

    def __init__(self, sweep_dir: Path, reason: str, summary: str):
        super().__init__(f"{reason}: {summary}")
        self.sweep_dir = sweep_dir
        self.reason = reason
        self.summary = summary


def resume_command(folder: Path) -> str:
    """The command that resumes the sweep in ``folder``, ready to paste."""
    return f"bibleqa-sweep resume {shlex.quote(str(folder))}"


def sum_up_stopped(journal: MLflowJournal, parent: ParentRun, budget: int) -> str:
    """Log on the parent what its trials came to, as MLflow holds them (once it holds every write that
    waits in the journal); return the sentence (also the parent's ``stopped_summary`` tag).  While MLflow
    is not answering, the sentence says so, with the resume command."""
    try:
        if journal.deliver(force=True):
            raise ConnectionError("writes wait in the journal")
        statuses = Counter(run.info.status for run in child_runs(journal.client, parent.experiment_id, parent.run_id))
    except Exception as error:
        if not is_outage(error):
            raise
        summary = f"stopped while MLflow was not answering; resume with: {resume_command(parent.sweep_dir)}"
        journal.set_tag(parent.run_id, "stopped_summary", summary)
        return summary
    counted = statuses["FINISHED"] + statuses["FAILED"]
    summary = (
        f"stopped after {counted} of {budget} trials ({statuses['FINISHED']} finished, {statuses['FAILED']} failed); "
        f"{statuses['KILLED'] + statuses['RUNNING']} stopped under way will be run again; resume with: "
        f"{resume_command(parent.sweep_dir)}"
    )
    metrics = {"n_trials": counted, "n_failed": statuses["FAILED"], "n_killed": statuses["KILLED"]}
    log_batch(parent.run_id, metrics=metrics, tags={"stopped_summary": summary}, client=journal)
    return summary
