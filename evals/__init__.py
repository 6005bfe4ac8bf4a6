"""The evaluation suite: customer journeys written as data, run through the real stack
(a `python -m local` per journey) or, with `--fast`, the conversation core in-process, and scored.

`python -m evals` runs them (docs/evals.md). Journeys live in evals/journeys/<scenario>/*.yaml; the stacks that run them
are live.py (the default) and rig.py (`--fast`), the model's customer and judge in model.py, the scoring in runner.py, the table in report.py. Tests are elsewhere: tests/evals/test_gate.py runs a
fixed subset as a CI gate.
"""
