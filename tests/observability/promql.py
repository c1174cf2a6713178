"""The PromQL of the committed dashboards and rules, and the metric names in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

# Grafana's own variables, by what promtool should see in their place.
DURATIONS = {"__rate_interval", "__interval", "__range"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan",
}


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    """(where, expr) for every query target of every panel, rows' panels included."""
    found = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{path.name} panel {panel.get('id')} {target.get('refId')}", target["expr"]))
            walk(panel.get("panels", []))

    walk(json.loads(path.read_text())["panels"])
    return found


def substitute(expr: str, duration: str = "5m") -> str:
    """Grafana's variables replaced: durations by `duration`, the dashboard's own by `.*`
    (they only stand inside =~ matchers)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: duration if m.group(1) in DURATIONS else ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions,
    keywords, label names (inside {} or the parentheses of by/on/...) or strings."""
    text = re.sub(r'"(\\.|[^"\\])*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name, after = m.group(0), text[m.end():].lstrip()[:1]
        if name.lower() in KEYWORDS or after == "(" or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        # a number's exponent or a duration's unit is not a name
        if m.start() > 0 and text[m.start() - 1].isdigit():
            continue
        names.add(name)
    return names
