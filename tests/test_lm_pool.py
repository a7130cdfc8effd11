"""bibleqa.lm_pool: the endpoints file, the pool's rules (no URL twice, every endpoint healthy, one model
unless allowed), and the pool's MLflow params.  The servers are FAKE scripted LM servers."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

import pytest

from bibleqa.errors import LMUnavailableError, UserError
from bibleqa.lm import lm_studio
from bibleqa.lm_pool import check_pool, endpoints_tag, pool_params, read_lm_file
from bibleqa.local_lm import free_port


def test_the_endpoints_file_gives_each_server_its_url_model_and_slots(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "- url: http://10.0.0.5:1234/v1\n  model: nemo\n  slots: 2\n"
        "- url: http://10.0.0.6:1234/v1\n"  # LM Studio's defaults: its first model, 4 slots
    )
    pool = read_lm_file(path, model_format="completion", max_tokens=50)
    assert [(e.lm_base, e.lm_model, e.slots) for e in pool] == [
        ("http://10.0.0.5:1234/v1", "nemo", 2),
        ("http://10.0.0.6:1234/v1", None, 4),
    ]
    assert {(e.model_format, e.max_tokens, e.server) for e in pool} == {("completion", 50, "lmstudio")}


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("- url: http://a/v1\n- url: http://a/v1/\n", ["http://a/v1 is in the LM pool twice", "list each"]),
        ("- url: http://a/v1\n  slots: 0\n", ["endpoint 1: slots must be an integer of at least 1", "0"]),
        ("- url: http://a/v1\n  slots: many\n", ["endpoint 1: slots", "'many'"]),
        ("- url: http://a/v1\n- model: m\n", ["endpoint 2 has no url", "- url: http://host:1234/v1"]),
        ("- url: http://a/v1\n  colour: red\n", ["endpoint 1: unknown key 'colour'", "allowed: url, model, slots"]),
        ("url: http://a/v1\n", ["expected a list of endpoints"]),
        ("- url: [unclosed\n", ["not valid YAML"]),
        ("- url: a:1234\n", ["lm_base 'a:1234' is not an http(s) URL"]),
    ],
)
def test_a_bad_endpoints_file_is_one_line_naming_the_file(tmp_path, text, fragments):
    path = tmp_path / "endpoints.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as raised:
        read_lm_file(path)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_missing_endpoints_file_is_named(tmp_path):
    with pytest.raises(UserError, match=f"--lm-file {tmp_path}/nosuch.yaml: cannot read the file"):
        read_lm_file(tmp_path / "nosuch.yaml")


def test_the_pool_is_health_checked_endpoint_by_endpoint_and_gets_the_slots(fake_lm_server):
    a, b = fake_lm_server([], ["m"]), fake_lm_server([], ["m", "other"])
    pool = check_pool([lm_studio(None, a.base_url), lm_studio(None, b.base_url, slots=1)], slots=None)
    assert [(e.lm_base, e.lm_model, e.slots) for e in pool] == [(a.base_url, "m", 4), (b.base_url, "m", 1)]
    assert len(a.model_requests) == 1 and len(b.model_requests) == 1
    pool = check_pool([lm_studio(None, a.base_url), lm_studio(None, b.base_url, slots=1)], slots=2)
    assert [e.slots for e in pool] == [2, 2]  # --concurrency is per endpoint


def test_a_pool_of_different_models_is_refused_unless_allowed(fake_lm_server):
    a, b = fake_lm_server([], ["nemo"]), fake_lm_server([], ["qwen"])
    endpoints = [lm_studio(None, a.base_url), lm_studio(None, b.base_url)]
    with pytest.raises(UserError) as raised:
        check_pool(endpoints)
    message = str(raised.value)
    assert f"{a.base_url} 'nemo'" in message and f"{b.base_url} 'qwen'" in message
    assert "--allow-mixed-models" in message and "\n" not in message
    pool = check_pool(endpoints, allow_mixed_models=True)
    assert [e.lm_model for e in pool] == ["nemo", "qwen"]
    params = pool_params(pool)
    assert params["model"] == params["lm_studio_model"] == "nemo,qwen"


def test_one_endpoint_down_or_without_the_model_refuses_the_pool(fake_lm_server):
    up = fake_lm_server([], ["m"])
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LMUnavailableError, match=f"not reachable at {down}"):
        check_pool([lm_studio("m", up.base_url), lm_studio("m", down)])
    lacking = fake_lm_server([], ["other"])
    with pytest.raises(LMUnavailableError, match=f"model 'm' is not loaded at {lacking.base_url}"):
        check_pool([lm_studio("m", up.base_url), lm_studio("m", lacking.base_url)])


def test_a_duplicate_url_is_refused_before_any_server_is_asked(fake_lm_server):
    a = fake_lm_server([], ["m"])
    with pytest.raises(UserError, match="is in the LM pool twice"):
        check_pool([lm_studio(None, a.base_url), lm_studio(None, a.base_url + "/")])
    assert a.model_requests == []


def test_pool_params_join_the_urls_in_order_and_the_tag_is_json():
    pool = [lm_studio("m", "http://b:1/v1", slots=1), lm_studio("m", "http://a:1/v1", slots=1)]
    assert pool_params(pool)["lm_studio_api_url"] == "http://b:1/v1,http://a:1/v1"
    assert pool_params(pool)["model"] == "m"
    assert pool_params(pool[:1])["lm_studio_api_url"] == "http://b:1/v1"  # one endpoint: as before
    assert json.loads(endpoints_tag({"http://a:1/v1": 3, "http://b:1/v1": 0})) == {"http://a:1/v1": 3}


def test_the_flags_make_the_pool_and_refuse_what_contradicts_it(tmp_path):
    import argparse

    from bibleqa.cli import add_lm_flags, lm_from_flags, lm_pool_from_flags

    parser = argparse.ArgumentParser()
    add_lm_flags(parser, pool=True)
    args = parser.parse_args(["--lm-base", "http://a:1/v1", "--lm-base", "http://b:1/v1", "--lm-model", "m"])
    with lm_pool_from_flags(args) as pool:
        assert [(e.lm_base, e.lm_model, e.slots) for e in pool] == [
            ("http://a:1/v1", "m", 4),
            ("http://b:1/v1", "m", 4),
        ]
    with (
        pytest.raises(UserError, match="--lm-base is given 2 times, but this command calls one LM server"),
        lm_from_flags(args),
    ):
        pass
    path = tmp_path / "endpoints.yaml"
    path.write_text("- url: http://a:1/v1\n  slots: 1\n- url: http://b:1/v1\n  model: other\n")
    with lm_pool_from_flags(parser.parse_args(["--lm-file", str(path), "--lm-model", "m"])) as pool:
        assert [(e.lm_model, e.slots) for e in pool] == [("m", 1), ("other", 4)]  # the file's model wins
    for argv, message in ((["--lm-file", str(path), "--lm-base", "http://c:1/v1"], "drop one of them"),
                          (["--lm-file", str(path), "--lm", "local"], "--lm local starts its own")):  # fmt: skip
        with pytest.raises(UserError, match=message), lm_pool_from_flags(parser.parse_args(argv)):
            pass


def test_the_endpoint_watch_logs_each_change_once(caplog):
    from sweeps.pool_watch import EndpointWatch

    watch = EndpointWatch(pool_size=2)
    with caplog.at_level(logging.WARNING, logger="sweeps.pool_watch"):
        for down in (["http://b/v1"], ["http://b/v1"], [], []):
            watch.look_at({"lm_down": down})
    assert [record.getMessage().split(":")[0:2] for record in caplog.records] == [
        ["LM endpoint http", "//b/v1 is DOWN"],
        ["LM endpoint http", "//b/v1 answers again"],
    ]
    alone = EndpointWatch(pool_size=1)  # a pool of one: the outage watch speaks
    caplog.clear()
    alone.look_at({"lm_down": ["http://a/v1"]})
    assert caplog.records == []


def test_a_resume_uses_the_recorded_pool(tmp_path):
    from sweeps.resume import SavedSweep, _sweep_lm

    pool = [lm_studio("m", "http://a:1/v1", slots=1), lm_studio("m", "http://b:1/v1", slots=2)]
    saved = SavedSweep(tmp_path, None, 0, asdict(pool[0]), "s", "0", None, "sqlite:///x.db",
                       pool=[asdict(e) for e in pool])  # fmt: skip
    with _sweep_lm(saved, None) as endpoints:
        assert endpoints == pool
    legacy = replace(saved, pool=[])  # a sweep folder from before the pool: its one LM
    with _sweep_lm(legacy, None) as endpoints:
        assert endpoints == pool[:1]
