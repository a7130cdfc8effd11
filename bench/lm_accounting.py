"""LM accounting against the real bundled LM: what ``bibleqa.usage`` counts, against what the server received.

BootstrapFewShot with ``max_rounds: 2`` compiles on the first train examples (round 2 runs on a copy of the
LM, whose calls an LM-history count missed), then the program answers the dev split.  A counting
pass-through proxy between DSPy and the server counts the requests the server receives.  It runs twice: from
an empty DSPy cache, then again from the warm cache.

    .venv/bin/python -m bench.lm_accounting                  # train_size 16, dev split of the bundled data
    .venv/bin/python -m bench.lm_accounting --train-size 8

Prints one line per run: ``lm_calls``, ``lm_cache_hits``, the server's count and the tokens.
"""

from __future__ import annotations

import argparse
import logging
import tempfile

import dspy

from bibleqa.dataset import load_dataset
from bibleqa.dspy_lm import build_adapter, build_lm
from bibleqa.lm import LMSettings
from bibleqa.local_lm import bundled_lm
from bibleqa.train import TrainConfig, compile_and_evaluate
from tests.fakes import CountingProxy  # no fake: it passes every request on to the real server

logger = logging.getLogger("bench.lm_accounting")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=16)
    parser.add_argument("--data", default=None, help="QA JSONL file (default: the bundled data set)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=tempfile.mkdtemp())
    dataset = load_dataset(args.data)
    # Every train example may be bootstrapped, and accuracy 1.0 is rarely met by a 270M model: most examples
    # go on to round 2.
    config = TrainConfig(optimizer="BootstrapFewShot", train_size=args.train_size,
                         max_bootstrapped_demos=args.train_size, max_labeled_demos=0, max_rounds=2, retrieval_k=0,
                         related_passages=0, bootstrap_metric="accuracy", bootstrap_threshold=1.0)  # fmt: skip
    with bundled_lm() as server_lm:
        proxy = CountingProxy(server_lm.lm_base)
        settings = LMSettings(lm_base=proxy.base_url, lm_model=server_lm.lm_model, model_format="completion")
        try:
            for cache in ("empty", "warm"):
                received = proxy.posts
                _, _, figures = compile_and_evaluate(config, dataset, build_lm(settings), build_adapter("completion"))
                logger.info(
                    "%s DSPy cache: lm_calls %d, lm_cache_hits %d, lm_calls - lm_cache_hits %d, server received %d;"
                    " prompt_tokens %d, completion_tokens %d (train %d with max_rounds 2, then dev %d)",
                    cache, figures["lm_calls"], figures["lm_cache_hits"],
                    figures["lm_calls"] - figures["lm_cache_hits"], proxy.posts - received,
                    figures["prompt_tokens"], figures["completion_tokens"], args.train_size, len(dataset.dev),
                )  # fmt: skip
        finally:
            proxy.close()


if __name__ == "__main__":
    main()
