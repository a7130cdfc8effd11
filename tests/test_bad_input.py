"""Bad input, as a table: each malformed input to ``bibleqa-sweep`` gets one line on stderr that names the
input and the fix, exit code 2, no traceback, and nothing is started (no file written where the command runs,
no LM request, no Ray session, no MLflow store).

Each row: an id, the command's arguments (``{space}`` is the row's space file, ``{lm}`` a FAKE LM that
answers, ``{dir}`` the row's input folder), the space file's text (or ``None``), and the fragments the error
line must hold: what names the input, then what names the fix.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bibleqa.local_lm import free_port

GOOD_SPACE = "optimizers:\n  LabeledFewShot:\n    max_labeled_demos: 1\ntrain_size: 2\nretrieval_k: 0\n"
RUN = ["run", "{space}", "--lm-base", "{lm}", "--model-format", "completion"]

CASES = [
    # space files
    ("yaml-syntax", RUN, "optimizers: [unclosed\n", ["space.yaml", "not valid YAML"]),
    ("empty-file", RUN, "", ["space.yaml", "expected a mapping", "see search_spaces/default.yaml"]),
    ("unknown-key", RUN, "colour: red\n" + GOOD_SPACE, ["colour: unknown key", "allowed: objective"]),
    ("wrong-type", RUN, GOOD_SPACE.replace("max_labeled_demos: 1", "max_labeled_demos: two"),
     ["max_labeled_demos: 'two'", "allowed: integers"]),
    ("inverted-range", RUN, GOOD_SPACE.replace("max_labeled_demos: 1", "max_labeled_demos: {int: [3, 1]}"),
     ["max_labeled_demos: range [3, 1]", "allowed: low < high"]),
    ("empty-range", RUN, GOOD_SPACE.replace("max_labeled_demos: 1", "max_labeled_demos: {int: [2, 2]}"),
     ["max_labeled_demos: range [2, 2]", "allowed: low < high"]),
    ("unknown-metric", RUN, "objective: {metric: bleu, mode: max}\n" + GOOD_SPACE, ["bleu", "allowed"]),
    ("unknown-mode", RUN, "objective: {metric: accuracy, mode: up}\n" + GOOD_SPACE, ["up", "allowed"]),
    ("param-the-optimizer-lacks", RUN, GOOD_SPACE.replace("max_labeled_demos: 1", "max_rounds: 2"),
     ["max_rounds: LabeledFewShot does not take it", "it takes max_labeled_demos"]),
    ("unknown-optimizer", RUN, "optimizers:\n  Adam: {}\n", ["optimizers.Adam: unknown optimizer", "allowed: "]),
    ("float-range-for-an-int", RUN, GOOD_SPACE.replace("retrieval_k: 0", "retrieval_k: {float: [0.5, 2.5]}"),
     ["retrieval_k: a float range", "allowed: integers from 0 to 10"]),
    ("bad-boolean", RUN, GOOD_SPACE + "chain_of_thought: maybe\n", ["chain_of_thought: 'maybe'", "true, false"]),
    ("missing-space-file", ["run", "{dir}/nosuch.yaml", "--lm-base", "{lm}"], None,
     ["nosuch.yaml", "cannot read the file"]),
    # flags
    ("zero-trials", [*RUN, "--trials", "0"], GOOD_SPACE, ["--trials", "at least 1"]),
    ("negative-trials", [*RUN, "--trials", "-3"], GOOD_SPACE, ["--trials", "at least 1"]),
    ("not-a-number-of-trials", [*RUN, "--trials", "many"], GOOD_SPACE, ["--trials", "'many'", "--help"]),
    ("zero-concurrency", [*RUN, "--concurrency", "0"], GOOD_SPACE, ["--concurrency", "at least 1"]),
    ("words-for-concurrency", [*RUN, "--concurrency", "many"], GOOD_SPACE, ["--concurrency 'many'", "auto"]),
    ("zero-time-budget", [*RUN, "--time-budget", "0"], GOOD_SPACE, ["--time-budget", "positive"]),
    ("zero-lm-outage-limit", [*RUN, "--lm-outage-limit", "0"], GOOD_SPACE, ["--lm-outage-limit", "positive"]),
    ("zero-trial-cpus", [*RUN, "--trial-cpus", "0"], GOOD_SPACE, ["--trial-cpus", "positive"]),
    ("negative-retries-of-failures", [*RUN, "--max-failures", "-1"], GOOD_SPACE, ["--max-failures", ">= 0"]),
    ("unknown-search", [*RUN, "--search", "grid"], GOOD_SPACE, ["--search", "'grid'", "'tpe'"]),
    ("storage-that-cannot-be-written", [*RUN, "--storage", "{dir}/a_file/results"], GOOD_SPACE,
     ["--storage", "a_file is a file", "pass a writable folder"]),
    ("pick-unknown-experiment", ["pick", "--tracking-uri", "sqlite:///{dir}/mlflow.db", "--experiment", "nosuch"],
     None, ["nosuch", "--experiment"]),
    # resume
    ("resume-not-a-sweep", ["resume", "{dir}"], None, ["is not a sweep folder", "pass the folder"]),
    ("resume-missing-folder", ["resume", "{dir}/nosuch"], None, ["nosuch", "is not a sweep folder"]),
    ("resume-space-changed", ["resume", "{dir}/sweep"], None,
     ["space.yaml: the space changed", "put the original back"]),
    # the LM
    ("lm-wrong-url", ["run", "{space}", "--lm-base", "http://127.0.0.1:{closed}/v1"], GOOD_SPACE,
     ["LM Studio is not reachable at http://127.0.0.1:{closed}/v1", "--lm local"]),
    ("lm-not-a-url", ["run", "{space}", "--lm-base", "localhost:1234"], GOOD_SPACE,
     ["localhost:1234", "--lm-base http"]),
    ("lm-model-the-server-lacks", [*RUN, "--lm-model", "nosuch-model"], GOOD_SPACE, ["nosuch-model", "fake-model"]),
    ("lm-not-openai-compatible", ["run", "{space}", "--lm-base", "{html}"], GOOD_SPACE,
     ["{html} answers, but not as an OpenAI-compatible LM server", "HTTP 200, text/html", "--lm local"]),
    # the LM pool
    ("pool-duplicate-url", [*RUN, "--lm-base", "{lm}/"], GOOD_SPACE, ["--lm-base: {lm} is in the LM pool twice",
                                                                       "list each LM server once"]),
    ("pool-mixed-models", [*RUN, "--lm-base", "{other}"], GOOD_SPACE,
     ["{lm} 'fake-model'", "{other} 'other-model'", "--allow-mixed-models"]),
    ("pool-zero-slots", ["run", "{space}", "--lm-file", "{dir}/zero_slots.yaml"], GOOD_SPACE,
     ["--lm-file {dir}/zero_slots.yaml: endpoint 2: slots must be an integer of at least 1", "0"]),
    ("pool-file-duplicate-url", ["run", "{space}", "--lm-file", "{dir}/twice.yaml"], GOOD_SPACE,
     ["--lm-file {dir}/twice.yaml: {lm} is in the LM pool twice"]),
    ("pool-file-and-concurrency", ["run", "{space}", "--lm-file", "{dir}/twice.yaml", "--concurrency", "2"],
     GOOD_SPACE, ["--concurrency sets every LM server's slots", "drop --concurrency"]),
    ("pool-file-and-lm-base", [*RUN, "--lm-file", "{dir}/twice.yaml"], GOOD_SPACE,
     ["--lm-file lists the LM servers, and so does --lm-base", "drop one"]),
    # MLflow
    ("mlflow-malformed-uri", [*RUN, "--tracking-uri", "nosuch://where"], GOOD_SPACE,
     ["nosuch://where", "--tracking-uri"]),
    # data
    ("data-broken-line", [*RUN, "--data", "{dir}/broken.jsonl"], GOOD_SPACE, ["broken.jsonl:1", "missing"]),
    ("data-missing-file", [*RUN, "--data", "{dir}/nosuch.jsonl"], GOOD_SPACE, ["nosuch.jsonl", "--data"]),
]  # fmt: skip


class _NotOpenAI(http.server.BaseHTTPRequestHandler):
    """A FAKE web server that is not an LM: every path answers with an HTML page."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = b"<html><body>a web page, not an LM</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def html_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def changed_sweep_folder(folder: Path) -> None:
    """A sweep folder whose space file was edited after the sweep started (its recorded hash is another)."""
    folder.mkdir()
    (folder / "space.yaml").write_text(GOOD_SPACE + "# edited afterwards\n")
    settings = {"options": {"trials": 2}, "seed": 0, "lm": {}, "space_name": "space", "space_sha256": "0" * 64}
    (folder / "sweep.json").write_text(json.dumps(settings))
    parent = {"run_id": "r", "experiment_id": "1", "sweep_name": "sweep_space_x", "tracking_uri": "sqlite:///x.db"}
    (folder / "parent.json").write_text(json.dumps(parent))


@pytest.mark.parametrize("case, args, space, fragments", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_exit_2_and_starts_nothing(case, args, space, fragments, fake_lm_server, html_server,
                                                         tmp_path):  # fmt: skip
    assert len(CASES) >= 25
    inputs, work, ray_dir = tmp_path / "inputs", tmp_path / "work", tmp_path / "ray"
    for directory in (inputs, work, ray_dir):
        directory.mkdir()
    fake = fake_lm_server([], ["fake-model"])  # FAKE: lists a model, and must receive no completion request
    other = fake_lm_server([], ["other-model"])  # FAKE: another model (a mixed pool)
    (inputs / "zero_slots.yaml").write_text(f"- url: {fake.base_url}\n- url: {other.base_url}\n  slots: 0\n")
    (inputs / "twice.yaml").write_text(f"- url: {fake.base_url}\n- url: {fake.base_url}\n")
    (inputs / "a_file").write_text("not a folder\n")
    (inputs / "broken.jsonl").write_text('{"id": "a"}\n')
    changed_sweep_folder(inputs / "sweep")
    if space is not None:
        (inputs / "space.yaml").write_text(space)
    values = {"space": str(inputs / "space.yaml"), "lm": fake.base_url, "dir": str(inputs), "html": html_server,
              "closed": str(free_port()), "other": other.base_url}  # fmt: skip
    argv = [arg.format(**values) for arg in args]
    env = {**os.environ, "RAY_TMPDIR": str(ray_dir), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    result = subprocess.run([sys.executable, "-m", "sweeps.cli", *argv], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment.format(**values) in lines[0], lines[0]
    assert list(work.iterdir()) == [] and list(ray_dir.iterdir()) == []  # no store, no folder, no Ray
    for server in (fake, other):
        assert not [request for request in server.requests if request["path"].endswith("completions")]
