"""Reading what a host exported with SWITCHBOARD_TELEMETRY=<file>: one JSON line per span or metric point."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Exported:
    path: Path

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def spans(self, name: str | None = None, **attributes: Any) -> list[dict[str, Any]]:
        return [
            r for r in self.records()
            if r["type"] == "span" and (name is None or r["name"] == name)
            and all(r["attributes"].get(key) == value for key, value in attributes.items())
        ]

    def span_by_id(self, span_id: str) -> dict[str, Any]:
        return next(r for r in self.records() if r["type"] == "span" and r["span_id"] == span_id)

    def children(self, parent: dict[str, Any], name: str, **attributes: Any) -> list[dict[str, Any]]:
        return [s for s in self.spans(name, **attributes) if s["parent_id"] == parent["span_id"]]

    def metric(self, name: str, **attributes: Any) -> dict[str, Any] | None:
        """The latest exported point of a metric with these attributes (points are cumulative)."""
        points = [
            r for r in self.records()
            if r["type"] == "metric" and r["name"] == name
            and all(r["attributes"].get(key) == value for key, value in attributes.items())
        ]
        return points[-1] if points else None

    def total(self, name: str, **attributes: Any) -> float:
        """A counter's (or histogram's count) latest total over every attribute set that matches."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.records():
            if r["type"] == "metric" and r["name"] == name and all(
                r["attributes"].get(key) == value for key, value in attributes.items()
            ):
                latest[json.dumps([r["service"], r["attributes"]], sort_keys=True)] = r
        return sum(r.get("count", r.get("value", 0)) for r in latest.values())
