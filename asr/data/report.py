"""Per-category lists of utterance ids with problems, shared by data preparation and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class IssueReport:
    """Utterance ids grouped by issue category, with an optional detail string per id.

    Subclasses set `CATEGORIES` (category name -> what it means and what was done), which
    fixes the order of `summary()` and `to_dict()`.
    """

    CATEGORIES: ClassVar[dict[str, str]] = {}
    SUMMARY_IDS: ClassVar[int] = 5

    ids: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, category: str, item_id: str, detail: str | None = None) -> None:
        """Record `item_id` under `category`, with an optional human-readable detail."""
        if category not in self.CATEGORIES:
            raise ValueError(
                f"Unknown report category {category!r}; expected one of {list(self.CATEGORIES)}."
            )
        self.ids.setdefault(category, []).append(item_id)
        if detail is not None:
            self.details.setdefault(category, {})[item_id] = detail

    @property
    def counts(self) -> dict[str, int]:
        """Number of ids per category, zero for categories with none."""
        return {category: len(self.ids.get(category, [])) for category in self.CATEGORIES}

    def summary(self) -> str:
        """Return one line per non-empty category: count, meaning and the first few ids."""
        lines = []
        for category, count in self.counts.items():
            if count == 0:
                continue
            listed_ids = self.ids[category][: self.SUMMARY_IDS]
            more = f" (+{count - len(listed_ids)} more)" if count > len(listed_ids) else ""
            listing = ", ".join(listed_ids)
            lines.append(f"  {category}: {count} - {self.CATEGORIES[category]}: {listing}{more}")
        if not lines:
            lines.append("  no issues found")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict with counts, ids and details of each non-empty category."""
        categories = {}
        for category, count in self.counts.items():
            if count == 0:
                continue
            entry: dict[str, Any] = {
                "description": self.CATEGORIES[category],
                "count": count,
                "ids": self.ids[category],
            }
            if category in self.details:
                entry["details"] = self.details[category]
            categories[category] = entry
        return {"counts": self.counts, "categories": categories}

    def to_json(self, path: Path) -> None:
        """Write `to_dict()` to `path` as UTF-8 JSON, creating the parent directory."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2)
        path.write_text(text + "\n", encoding="utf-8")
