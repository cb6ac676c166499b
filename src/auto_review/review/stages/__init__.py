"""The LLM stages: prompt and context building (``context.py``), the findings schema and
its parsing (``findings.py``), the cheap-tier verification of each finding
(``verify.py``), and per-stage token metering (``metered_model.py``).
"""
