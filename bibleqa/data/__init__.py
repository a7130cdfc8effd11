"""Bundled data: the QA set, the concept lexicon and the TSK-derived cross references (see README.md here)."""
