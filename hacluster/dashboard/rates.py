"""Writes per second and the answers clients got, per master, from the masters' Prometheus counters.

Pure functions used by the dashboard's collector: `write_answers(text)` sums one master's
`apiserver_request_total` over the write verbs by answer class (ok = 2xx, 503, 504, other), and
`AnswerRates` turns two readings of those cumulative counters into per-second rates. A master that
restarted has its counters back at zero; a counter that went down is read as "restarted", so the new
value itself is the increase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
ANSWER_CLASSES = ("ok", "503", "504", "other")


def answer_class(code: str) -> str:
    """ok for 2xx, "503" and "504" as themselves, other for the rest (4xx, 500, 429 …)."""
    if code.startswith("2"):
        return "ok"
    return code if code in ("503", "504") else "other"


def write_answers(metrics_text: str) -> dict[str, float]:
    """Cumulative write answers of one master by class, from its `/metrics` text."""
    out = dict.fromkeys(ANSWER_CLASSES, 0.0)
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":  # the parser drops the counter's `_total` suffix
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels.get("verb") not in WRITE_VERBS:
                continue
            out[answer_class(sample.labels.get("code", ""))] += sample.value
    return out


@dataclass
class AnswerRates:
    """Per-second rates of one master's write answers between its last two readings."""

    last: dict[str, float] | None = None
    last_t: float = 0.0
    rates: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ANSWER_CLASSES, 0.0))

    def update(self, counts: dict[str, float], t: float) -> dict[str, float]:
        """Take a reading at monotonic time `t`; returns the rates since the previous one."""
        if self.last is not None and t > self.last_t:
            dt = t - self.last_t
            self.rates = {k: max(0.0, (counts[k] - self.last[k]) if counts[k] >= self.last[k] else counts[k]) / dt
                          for k in ANSWER_CLASSES}
        self.last, self.last_t = dict(counts), t
        return self.rates

    def stale(self) -> None:
        """The master did not answer: no rate is known (its next reading starts a new interval)."""
        self.rates = dict.fromkeys(ANSWER_CLASSES, 0.0)
