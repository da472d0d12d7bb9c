"""Label selectors as text: `label_selector_string` is apimachinery's `LabelSelectorAsSelector(s).String()`
(the query-string form: a Scale's `status.selector`, a `labelSelector` query), `format_label_selector` is
`metav1.FormatLabelSelector` (what kubectl prints as SELECTOR: "<none>" when empty, "<error>" when
unconvertible). Requirements are sorted by key and the values of each sorted, as the Go selector prints them.

Used by the table printers (`hacluster.format.workloads`), the API server's Scale view
(`hacluster.apiserver.scale`) and the CLI's describers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hacluster.format.accessors import as_list, as_map, as_str

_OPERATORS = {"In": " in ", "NotIn": " notin ", "Exists": "", "DoesNotExist": ""}


def label_selector_string(selector: Mapping[str, Any] | None) -> str | None:
    """The selector's query-string form ("app=web,tier in (a,b),!legacy"); "" for nil or empty (nothing is
    required); None when it cannot be converted (an unknown operator, values where none may be, or none
    where some must be)."""
    if selector is None:
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in as_map(selector.get("matchLabels")).items():
        requirements.append((key, f"{key}={as_str(value)}"))
    for expression in as_list(selector.get("matchExpressions")):
        expression = as_map(expression)
        key = as_str(expression.get("key"))
        operator = as_str(expression.get("operator"))
        values = [as_str(v) for v in as_list(expression.get("values"))]
        if operator not in _OPERATORS:
            return None
        if operator in ("In", "NotIn"):
            if not values:
                return None
            shown = values[0] if len(values) == 1 else ",".join(sorted(values))
            requirements.append((key, f"{key}{_OPERATORS[operator]}({shown})"))
        else:
            if values:
                return None
            requirements.append((key, ("!" if operator == "DoesNotExist" else "") + key))
    requirements.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in requirements)


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """`metav1.FormatLabelSelector`: "app=web,tier in (a,b),!legacy"; "<none>" for nil or empty;
    "<error>" for an unconvertible selector."""
    text = label_selector_string(selector)
    if text is None:
        return "<error>"
    return text if text else "<none>"
