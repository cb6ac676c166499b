"""Deterministic review policy: the repository's ``.auto_review.yaml`` (``repo_config.py``),
its bounded ignore patterns (``ignore_patterns.py``) and triage of files and whole PRs
(``triage.py``).
"""
