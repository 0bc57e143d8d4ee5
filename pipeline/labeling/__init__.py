"""Labeling with an LLM teacher: `python -m pipeline.label` is its command line.

Layers, each importing only those above it in this list (tests/label/test_label_imports.py
walks the imports): `records` (reply, sample, outcome, the one result-row builder), `config`,
`journal` (append-only results, resume), `replies` (what a reply means), `retry` (the one
backoff), `providers` (services only), the executors `interactive` and `batch`, `report`
(merge, cost, the per-lexicon-class report) and `fallback` (a second teacher for refusals).
"""
