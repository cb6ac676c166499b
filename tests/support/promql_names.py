"""The metric names a PromQL expression reads, found roughly but strictly enough.

Not a PromQL parser: it drops what is not a metric name (strings, label matchers, grouping
label lists, ranges, numbers, Grafana variables, functions and keywords) and returns the
identifiers left. A misspelt metric name stays among them, so a test comparing them with
what the gateway exports catches it.
"""

from __future__ import annotations

import re

_FUNCTION_WORDS = """
    abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min
    count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor
    histogram_quantile holt_winters hour idelta increase irate label_join label_replace ln
    log10 log2 last_over_time max_over_time min_over_time minute month predict_linear
    present_over_time quantile_over_time rate resets round scalar sgn sort sort_desc sqrt
    stddev_over_time stdvar_over_time sum_over_time time timestamp vector year
    sum min max avg group stddev stdvar count count_values bottomk topk quantile
    and or unless bool offset by without on ignoring group_left group_right
    label_values query_result
"""
FUNCTIONS = frozenset(_FUNCTION_WORDS.split())

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expression: str) -> set[str]:
    """The metric names ``expression`` selects (PromQL, or Grafana's ``label_values``)."""
    text = _STRINGS.sub(" ", expression)
    text = _VARIABLES.sub(" ", text)
    # Matchers before groupings: `by (x)` never holds braces, but matchers may hold parens
    # only inside strings, which are gone already.
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGES.sub(" ", text)
    # label_values(metric, label): the second argument is a label name.
    text = re.sub(r"label_values\s*\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)", r" \1 ", text)
    names = set(_IDENTIFIER.findall(text))
    return {name for name in names if name not in FUNCTIONS and not _is_number_word(name)}


def _is_number_word(word: str) -> bool:
    return word.lower() in ("inf", "nan")
