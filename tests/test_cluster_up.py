"""`ray up cluster.yaml` for real, on this machine: SSH to 127.0.0.3 (the head) and 127.0.0.2 (a worker),
then a short sweep through the cluster, then `ray down`.

The test runs Debian's sshd for each node, on port 22 of its address (Ray's SSH has no port option, and the
head reaches the workers without `ssh_proxy_command`: Ray drops it from the head's config), with its own
config, host key and a throwaway client key, in PID and mount namespaces of its own (`unshare --pid
--mount-proc`), where root's home is a temporary directory (see `Machine`):
- Ray's files (`~/ray_bootstrap_config.yaml`, the synced checkout, `~/.bibleqa/cluster.env`) land in those
  directories, not in root's home;
- the `ray stop` that `cluster.yaml` and `ray down` run (Ray stops its processes by name) sees only its own
  node's processes, never another Ray on the machine, nor the other node's;
- stopping a node's sshd, its namespace's first process, ends every process started in it.
(A throwaway user would isolate it as well, but cannot run a virtualenv whose Python lives under /root.)
The copy of `cluster.yaml` differs from the file only where a single machine needs it: the hosts, the key,
one worker, free ports, one CPU per node, the MLflow server on 127.0.0.1 with one worker, and setup pointed
at this virtualenv (a symlink: nothing is reinstalled). The LM is a FAKE
of fixed latency (`bench/fixed_latency_lm.py`); MLflow is the real server `cluster.yaml` starts on the head.

Skipped, with the reason, without root, sshd or rsync (`scripts/test.sh` installs them where apt is
available), PID namespaces, or a free port 22 on 127.0.0.2 and 127.0.0.3.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests

from bench.fixed_latency_lm import FixedLatencyLM
from bibleqa.dataset import write_subset
from bibleqa.local_lm import free_port

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parent.parent
SSHD = Path("/usr/sbin/sshd")
RAY = Path(sys.executable).parent / "ray"
TRIALS = 4
HEAD, WORKER = "127.0.0.3", "127.0.0.2"


def _skip_unless_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it runs its own sshd")
    for tool, path in (("sshd", SSHD), ("rsync", shutil.which("rsync"))):
        if not path or not Path(path).exists():
            pytest.skip(f"{tool} is not installed: apt-get install openssh-server rsync (scripts/test.sh does)")
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no PID namespace here (unshare: {probe.stderr.strip()[-200:]}): `ray stop` would reach "
                    "every Ray process on the machine")  # fmt: skip
    for address in (HEAD, WORKER):
        with socket.socket() as probe_socket:
            try:
                probe_socket.bind((address, 22))
            except OSError as error:
                pytest.skip(f"port 22 of {address} is taken ({error}): is an sshd listening on every address?")


def processes_in(namespace: str) -> dict[int, str]:
    """PID -> name of the processes in the PID namespace ``namespace`` (Linux's /proc)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns/pid") == namespace:
                found[int(entry.name)] = (entry / "comm").read_text().strip()
    return found


def _with_home(passwd_line: str, home: Path) -> str:
    """A line of /etc/passwd, with root's home replaced by ``home``."""
    fields = passwd_line.split(":")
    if fields[0] == "root" and len(fields) == 7:
        fields[5] = str(home)
    return ":".join(fields)


def environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


class Machine:
    """One node: an sshd on port 22 of ``address``, in PID and mount namespaces of its own, where root's home
    is ``home`` (a copy of /etc/passwd mounted over it there: sshd takes HOME from it, and ssh expands the `~`
    of `-i ~/ray_bootstrap_key.pem`, which the head runs to reach the worker, from it, not from HOME).  Two
    nodes, two namespaces: the `ray stop` that starts each node's commands sees only its own node."""

    def __init__(self, address: str, keys: Path, log: Path):
        self.address = address
        self.home = Path(f"/tmp/bqc-{secrets.token_hex(3)}")  # short: Ray's unix socket paths are under it
        self.home.mkdir(mode=0o700)
        name = address.replace(".", "_")
        config, passwd = keys / f"sshd_config_{name}", keys / f"passwd_{name}"
        config.write_text(
            f"ListenAddress {address}:22\nHostKey {keys / 'host_key'}\nPidFile none\n"
            f"AuthorizedKeysFile {keys / 'client_key.pub'}\nAllowUsers root\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "X11Forwarding no\nLogLevel ERROR\n"
        )
        lines = Path("/etc/passwd").read_text().splitlines()
        passwd.write_text("".join(_with_home(line, self.home) + "\n" for line in lines))
        passwd.chmod(0o644)
        subprocess.run([str(SSHD), "-t", "-f", str(config)], check=True, capture_output=True)
        with open(log, "ab") as sink:
            self._unshare = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
                 'mount --bind "$0" /etc/passwd && exec "$@"', str(passwd), str(SSHD), "-D", "-e", "-f", str(config)],
                stdout=sink, stderr=sink,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._unshare.poll() is not None:
                raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((address, 22), timeout=1):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"sshd did not listen on {address}:22 within 20 s")
        self.namespace = os.readlink(f"/proc/{self._sshd()}/ns/pid")

    def _sshd(self) -> int:
        """sshd: unshare's child, the namespace's first process."""
        return int(Path(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children").read_text().split()[0])

    def stop(self) -> None:
        """Stop sshd, and so (the kernel does it) every process of the namespace; remove the home."""
        # unshare ignores SIGTERM while it waits, so sshd is stopped instead.
        with contextlib.suppress(OSError, IndexError, ValueError):
            os.kill(self._sshd(), signal.SIGTERM)
        try:
            self._unshare.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._unshare.kill()
            self._unshare.wait(timeout=20)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[Machine, Machine, Path]]:
    """The head and the worker, and the client key that reaches both."""
    _skip_unless_possible()
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for name in ("client_key", "host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    run_sshd = Path("/run/sshd")  # sshd's privilege separation directory
    made_run_sshd = not run_sshd.exists()
    run_sshd.mkdir(mode=0o755, exist_ok=True)
    started: list[Machine] = []
    try:
        for address in (HEAD, WORKER):
            started.append(Machine(address, keys, tmp_path / "sshd.log"))
        yield started[0], started[1], keys / "client_key"
    finally:
        for machine in started:
            machine.stop()
        if made_run_sshd:
            shutil.rmtree(run_sshd, ignore_errors=True)


def single_machine_copy(key: Path, cluster_name: str, ray_port: int, mlflow_port: int, secrets_file: Path) -> str:
    """cluster.yaml, changed only where one machine needs it (see the module's docstring)."""
    text = (ROOT / "cluster.yaml").read_text()
    replacements = [
        ("cluster_name: bibleqa-sweeps", f"cluster_name: {cluster_name}"),
        ("head_ip: HEAD_HOST", f"head_ip: {HEAD}"),
        ("worker_ips: [WORKER_HOST_1, WORKER_HOST_2]", f"worker_ips: [{WORKER}]"),
        ("max_workers: 2", "max_workers: 1"),
        ("HEAD_HOST", "bibleqa-head"),  # the name clients use for the head, in --allowed-hosts
        ("ssh_user: ubuntu", "ssh_user: root"),
        ("ssh_private_key: ~/.ssh/id_ed25519", f"ssh_private_key: {key}"),
        ('"~/bibleqa-sweeps": "."', f'"~/bibleqa-sweeps": "{ROOT}"'),
        ('"~/.bibleqa/cluster.env": "~/.bibleqa/cluster.env"', f'"~/.bibleqa/cluster.env": "{secrets_file}"'),
        ("- cd ~/bibleqa-sweeps && BIBLEQA_EXTRAS= bash scripts/setup.sh",
         f"- ln -sfn {sys.prefix} ~/bibleqa-sweeps/.venv"),
        ("--port=6379", f"--port={ray_port} --num-cpus=1 --node-ip-address={HEAD}"),
        ("--address=$RAY_HEAD_IP:6379", f"--address=$RAY_HEAD_IP:{ray_port} --num-cpus=1 --node-ip-address={WORKER}"),
        ("--host 0.0.0.0", "--host 127.0.0.1"),
        ("--workers 2", "--workers 1"),
        ("5000", str(mlflow_port)),
    ]  # fmt: skip
    for old, new in replacements:
        assert old in text, f"cluster.yaml no longer has {old!r}: update this test's copy"
        text = text.replace(old, new)
    return text


def sha(text: str) -> str:
    """How Ray names its SSH control folders (command_runner.py)."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def ray_cli(command: str, *args: str, config: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``ray COMMAND CONFIG ARGS...`` from the checkout's root, as a user runs it; fails the test on an error."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    result = subprocess.run([str(RAY), command, str(config), *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, f"ray {command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_ray_up_runs_a_sweep_over_ssh_and_ray_down_ends_it(machines, tmp_path):
    head, worker, key = machines
    token, api_key = secrets.token_hex(32), secrets.token_hex(8)
    secrets_file = tmp_path / "cluster.env"  # what the README has the user write, plus what one machine needs
    secrets_file.write_text(
        f"export RAY_AUTH_MODE=token\nexport RAY_AUTH_TOKEN={token}\nexport LM_STUDIO_API_KEY={api_key}\n"
        # One machine: the user's own temp dir for Ray (--address auto reads it), this checkout's code.
        'mkdir -p "$HOME/tmp"\nexport TMPDIR="$HOME/tmp"\nexport PYTHONPATH="$HOME/bibleqa-sweeps"\n'
        "export RAY_USAGE_STATS_ENABLED=0 LITELLM_LOCAL_MODEL_COST_MAP=True\n"
    )
    secrets_file.chmod(0o600)
    cluster_name = f"bibleqa-test-{head.home.name}"
    mlflow_port = free_port()
    config = tmp_path / "cluster.yaml"
    config.write_text(single_machine_copy(key, cluster_name, free_port(), mlflow_port, secrets_file))
    inputs = head.home / "inputs"
    inputs.mkdir()
    (inputs / "space.yaml").write_text(
        "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: {int: [1, 3]}\n"
        "train_size: 4\nretrieval_k: {choice: [0, 1]}\nmodel_format: completion\n"
    )
    write_subset(inputs / "small.jsonl", train=8, dev=4, test=2)
    lm = FixedLatencyLM(latency=0.05, slots=2).start()  # FAKE: a fixed answer after a fixed latency
    # What `ray up` leaves on the laptop's side: the cluster's state and lock, and the SSH control sockets' folder.
    local_state = [Path(f"/tmp/ray/cluster-{cluster_name}.{kind}") for kind in ("state", "lock")]
    control_path = Path(f"/tmp/ray_ssh_{sha(getpass.getuser())}/{sha(cluster_name)}")
    try:
        ray_cli("up", "-y", "--no-config-cache", config=config)
        # `ray up` returns once the head runs; the head's autoscaler then starts the worker.
        wait_for_two_nodes = (
            "import ray, time; ray.init('auto', logging_level='ERROR'); deadline = time.monotonic() + 180\n"
            "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.monotonic() < deadline: time.sleep(1)\n"
            "print('alive nodes:', sum(n['Alive'] for n in ray.nodes()))"
        )
        python = "~/bibleqa-sweeps/.venv/bin/python"
        nodes = ray_cli("exec", f'. ~/.bibleqa/cluster.env && {python} -c "{wait_for_two_nodes}"', config=config)
        assert "alive nodes: 2" in nodes.stdout, nodes.stdout[-2000:]
        sweep = (
            ". ~/.bibleqa/cluster.env && cd ~/bibleqa-sweeps && .venv/bin/bibleqa-sweep run ~/inputs/space.yaml "
            f"--trials {TRIALS} --address auto --lm-base {lm.base_url} --model-format completion --concurrency 2 "
            f"--trial-cpus 1 --data ~/inputs/small.jsonl --tracking-uri http://localhost:{mlflow_port} "
            "--storage ~/sweeps_results --output-json ~/out.json"
        )
        ray_cli("exec", sweep, config=config)
        summary = json.loads((head.home / "out.json").read_text())
        environments = [environment_of(pid) for machine in (head, worker)
                        for pid, name in processes_in(machine.namespace).items() if name == "raylet"]  # fmt: skip
        uri = f"http://127.0.0.1:{mlflow_port}"
        allowed = requests.get(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
                               headers={"Host": f"bibleqa-head:{mlflow_port}"}, timeout=10)  # fmt: skip
        refused = requests.get(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
                               headers={"Host": f"elsewhere.example:{mlflow_port}"}, timeout=10)  # fmt: skip
        client = mlflow.MlflowClient(uri)
        parent = client.get_run(summary["parent_run_id"])
        children = client.search_runs(
            [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'"
        )
        artifacts = [{entry.path for entry in client.list_artifacts(child.info.run_id)} for child in children]
        ray_cli("exec", "cd ~/bibleqa-sweeps && .venv/bin/python scripts/mlflow_server.py stop", config=config)
        ray_cli("down", "-y", config=config)
        deadline = time.monotonic() + 30  # `ray stop` waits for Ray's processes; its children may lag a moment
        while time.monotonic() < deadline and set(processes_in(head.namespace).values()) - {"sshd", "ssh"}:
            time.sleep(0.5)
        # Not counted: the SSH sessions Ray's connections keep open for 10 s (ControlPersist).
        left = [name for name in processes_in(head.namespace).values() if name not in ("sshd", "ssh")]
    finally:
        lm.stop()
        for path in local_state:
            path.unlink(missing_ok=True)
        shutil.rmtree(control_path, ignore_errors=True)

    # The secrets reached Ray on both nodes through the file, and so the trials' environment; the file kept its
    # mode on the way (the head copied it on to the worker).
    assert len(environments) == 2
    assert {(m.home / ".bibleqa/cluster.env").stat().st_mode & 0o777 for m in (head, worker)} == {0o600}
    for environment in environments:
        assert environment["RAY_AUTH_MODE"] == "token" and environment["RAY_AUTH_TOKEN"] == token
        assert environment["LM_STUDIO_API_KEY"] == api_key
    # The MLflow server answers the names in --allowed-hosts only.
    assert allowed.status_code == 200 and refused.status_code in (400, 403), (allowed.status_code, refused.text)
    # Every trial once, FINISHED, on both nodes, its artifacts served through the server; the parent summed up.
    assert len(children) == TRIALS
    assert len({child.data.tags["trial_id"] for child in children}) == TRIALS
    assert {child.info.status for child in children} == {"FINISHED"}
    assert len({child.data.tags["ray_node_id"] for child in children}) == 2
    assert all({"program.json", "question_scores.csv"} <= names for names in artifacts)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_trials"] == TRIALS and parent.data.metrics["n_failed"] == 0
    assert parent.data.tags["best_run_id"] in {child.info.run_id for child in children}
    # `ray down` (after the MLflow server's stop) left nothing running on the head. (The worker's Ray exits once
    # it has lost the head for a minute, as on separate machines; the fixture ends its namespace.)
    assert left == []
