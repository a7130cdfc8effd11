"""`cluster.yaml`: Ray's own validation passes on the raw file and on what `ray up` makes of it; rsync leaves
the laptop's virtualenv, MLflow store and sweep folders behind (Ray's own rsync arguments, run for real); and
every `ray start` has the secrets in its environment.  `test_cluster_up.py` runs the file for real."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_YAML = ROOT / "cluster.yaml"
SECRETS = "~/.bibleqa/cluster.env"


def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_ray_validates_the_raw_file():
    from ray.autoscaler._private.util import validate_config

    validate_config(raw_config())  # raises on a key Ray's schema does not know, or without cluster_synced_files


def test_ray_up_prepares_a_head_that_launches_both_workers():
    """What `ray up` does to the file before it starts anything (prepare_config, then validate_config)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(raw_config())
    validate_config(config)
    (node_type,) = config["available_node_types"].values()
    workers = len(config["provider"]["worker_ips"])
    assert node_type["min_workers"] == node_type["max_workers"] == workers == 2
    # Without the autoscaler on the head, `ray up` starts the head alone ("will not launch any workers").
    assert any("--autoscaling-config=~/ray_bootstrap_config.yaml" in c for c in config["head_start_ray_commands"])


def test_every_ray_start_sources_the_secrets_that_file_mounts_copies():
    config = raw_config()
    assert config["file_mounts"][SECRETS] == SECRETS
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    for command in starts:
        # `&&`: a missing file stops the command, instead of starting Ray without the token.
        assert command.startswith(f". {SECRETS} && "), command
        assert ";" not in command and "||" not in command, command
    assert "RAY_AUTH_TOKEN" not in yaml.safe_dump(config)  # never a value, nor even the name, outside comments


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (scripts/test.sh installs it)")
def test_rsync_leaves_the_laptops_state_behind(tmp_path):
    """The rsync arguments Ray builds from rsync_exclude/rsync_filter, run on a tree like a used checkout."""
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    source = tmp_path / "checkout"
    kept = ["bibleqa/program.py", "scripts/setup.sh", ".gitignore", ".git/HEAD", "search_spaces/default.yaml"]
    left = [".venv/bin/python", "mlflow.db", "mlruns/0/meta.yaml", "mlartifacts/1/a.json",
            "sweeps_results/sweep_x/study.log", "bibleqa/__pycache__/program.cpython-311.pyc", "sweep.log",
            ".pytest_cache/v/x", ".ruff_cache/x", "bibleqa_sweeps.egg-info/PKG-INFO"]  # fmt: skip
    for name in kept + left:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("x")
    shutil.copy(ROOT / ".gitignore", source / ".gitignore")
    config = raw_config()
    options = {"rsync_exclude": config["rsync_exclude"], "rsync_filter": config["rsync_filter"]}
    filter_args = SSHCommandRunner._create_rsync_filter_args(None, options)  # Ray's own; it reads only options
    listing = subprocess.run(
        ["rsync", "-avz", "--dry-run", "--out-format=%n", *filter_args, f"{source}/", str(tmp_path / "node")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    copied = {line for line in listing.splitlines() if (source / line).is_file()}  # not rsync's summary lines
    assert copied == set(kept)
