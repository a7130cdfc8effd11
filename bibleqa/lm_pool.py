"""A pool of LM endpoints: several servers (LM Studio on a few workstations, or several llama.cpp servers on
one GPU box) that serve the same model, shared by a sweep's trials.  Each endpoint is an ``LMSettings``
with its own ``lm_base`` and ``slots``; this module reads the endpoints file, checks a pool, and names it
in MLflow.  (Which endpoint each call goes to is the slot layer's business: ``sweeps.slots``.)

The endpoints file (``bibleqa-sweep run --lm-file FILE``) is YAML, a list with one entry per endpoint::

    # endpoints.yaml: two workstations with LM Studio, one GPU box with a one-slot llama.cpp server
    - url: http://10.0.0.5:1234/v1      # required: the server's base URL, ending in /v1
      model: mistral-nemo-instruct-2407 # optional: the model (default: the server's first model)
      slots: 4                          # optional: requests it serves at once (default 4, LM Studio's)
    - url: http://10.0.0.6:1234/v1
    - url: http://10.0.0.7:8080/v1
      slots: 1

The pool's rules (``check_pool``; each broken rule is a ``UserError`` of one line, raised before anything
starts): no URL twice; every endpoint answers its health check and serves the model asked for; and every
endpoint serves the same model, unless ``allow_mixed_models``.  That last rule is what keeps a trial's
score independent of where its calls went, and what makes DSPy's response cache right for a pool: its key
is the request (model name, prompt, settings), never the endpoint, so an answer cached from one endpoint
is served for the same request to any other.

Example::

    >>> from bibleqa.lm import lm_studio
    >>> from bibleqa.lm_pool import pool_params
    >>> pool = [lm_studio("m", "http://a:1234/v1", slots=1), lm_studio("m", "http://b:1234/v1", slots=1)]
    >>> pool_params(pool)["lm_studio_api_url"]
    'http://a:1234/v1,http://b:1234/v1'
    >>> check_pool(pool)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from bibleqa.errors import UserError
from bibleqa.lm import LMSettings, health_check, lm_studio

logger = logging.getLogger(__name__)

ENTRY_KEYS = ("url", "model", "slots")
"""The keys of one entry of the endpoints file."""
ALLOW_MIXED_FLAG = "--allow-mixed-models"


def read_lm_file(path: str | Path, **call: Any) -> list[LMSettings]:
    """The endpoints an endpoints file lists (see the module docstring), as LM Studio ``LMSettings`` with
    ``call``'s settings (``model_format``, ``temperature``, ...); nothing is contacted.  Raises ``UserError``
    naming the file and the entry for an unreadable file, a bad entry or a duplicate URL."""
    try:
        entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"--lm-file {path}: cannot read the file ({error.strerror}); pass an endpoints file") from None
    except yaml.YAMLError as error:
        raise UserError(f"--lm-file {path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(entries, list) or not entries:
        raise UserError(
            f"--lm-file {path}: expected a list of endpoints, one '- url: http://host:1234/v1' (with optional "
            "model and slots) each"
        )
    endpoints = [_entry(path, number, entry, call) for number, entry in enumerate(entries, start=1)]
    check_unique(endpoints, f"--lm-file {path}")
    return endpoints


def _entry(path: str | Path, number: int, entry: Any, call: dict[str, Any]) -> LMSettings:
    where = f"--lm-file {path}: endpoint {number}"
    if not isinstance(entry, Mapping) or "url" not in entry:
        raise UserError(f"{where} has no url; write it as '- url: http://host:1234/v1'")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(ENTRY_KEYS)}")
    slots = entry.get("slots", lm_studio().slots)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise UserError(f"{where}: slots must be an integer of at least 1, but got {slots!r}")
    model = entry.get("model")
    if model is not None and not isinstance(model, str):
        raise UserError(f"{where}: model must be a model name, but got {model!r}")
    url = entry["url"]
    if not isinstance(url, str):
        raise UserError(f"{where}: url must be a URL such as http://host:1234/v1, but got {url!r}")
    return lm_studio(model, url, slots=slots, **call)


def check_unique(endpoints: Sequence[LMSettings], source: str = "--lm-base") -> None:
    """Raise ``UserError`` when two endpoints have the same URL (a trailing slash aside)."""
    seen: set[str] = set()
    for endpoint in endpoints:
        url = endpoint.lm_base.rstrip("/")
        if url in seen:
            raise UserError(f"{source}: {url} is in the LM pool twice; list each LM server once")
        seen.add(url)


def check_pool(
    endpoints: Sequence[LMSettings], *, slots: int | None = None, allow_mixed_models: bool = False
) -> tuple[LMSettings, ...]:
    """Health-check every endpoint and return the pool as the sweep uses it: each endpoint with its model
    set, and with ``slots`` when given (``--concurrency``, per endpoint).  Raises ``UserError`` (one line)
    for an empty pool, a duplicate URL, an endpoint that does not answer or lacks the model, and for
    endpoints that serve different models unless ``allow_mixed_models``."""
    if not endpoints:
        raise UserError("the LM pool is empty: pass --lm-base URL (repeat it for several) or --lm-file FILE")
    check_unique(endpoints)
    checked = tuple(health_check(replace(endpoint, slots=slots or endpoint.slots)) for endpoint in endpoints)
    models = {endpoint.lm_model for endpoint in checked}
    if len(models) > 1 and not allow_mixed_models:
        served = ", ".join(f"{endpoint.lm_base} {endpoint.lm_model!r}" for endpoint in checked)
        raise UserError(
            f"the LM pool serves different models ({served}); load the same model on every server or pass "
            f"--lm-model, or pass {ALLOW_MIXED_FLAG} if scores may depend on which server answered"
        )
    if len(models) > 1:
        logger.warning("the LM pool serves different models (%s): a trial's score depends on where its calls "
                       "went, and DSPy's cache mixes their answers", ", ".join(sorted(map(str, models))))  # fmt: skip
    return checked


def pool_params(endpoints: Sequence[LMSettings]) -> dict[str, Any]:
    """The MLflow params of a pool: the first endpoint's (``LMSettings.as_params``), with the URLs
    comma-joined in ``lm_studio_api_url`` and, in a mixed pool, the models comma-joined in ``model`` and
    ``lm_studio_model``."""
    params = endpoints[0].as_params()
    params["lm_studio_api_url"] = ",".join(endpoint.lm_base for endpoint in endpoints)
    models = list(dict.fromkeys(endpoint.lm_model for endpoint in endpoints))
    if len(models) > 1:
        params["model"] = params["lm_studio_model"] = ",".join(map(str, models))
    return params


def endpoints_tag(calls_by_endpoint: Mapping[str, int]) -> str:
    """The ``lm_endpoints`` tag of a trial run: the requests each endpoint served, as JSON (endpoints that
    served none left out).

    >>> endpoints_tag({"http://b/v1": 3, "http://a/v1": 5, "http://c/v1": 0})
    '{"http://a/v1": 5, "http://b/v1": 3}'
    """
    return json.dumps({url: int(calls) for url, calls in sorted(calls_by_endpoint.items()) if calls})
