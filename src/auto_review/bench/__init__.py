"""Bench scoring: load the labelled corpus, score a run's findings against it, and compare
with a baseline (``evaluation.py``). ``auto-review bench run`` drives it.
"""
