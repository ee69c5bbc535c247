"""A run-time estimate as the daemon sends it and the CLI and GIMP show it: seconds plus a short
summary of what was estimated ("256 px, 2 scales, 200 iterations"). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Estimate:
    seconds: float
    summary: str = ""

    @property
    def text(self) -> str:
        """e.g. "about 3 min 10 s (256 px, 2 scales, 200 iterations)"."""
        about = duration(self.seconds)
        return f"{about} ({self.summary})" if self.summary else about

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(float(self.seconds), 3), "summary": self.summary,
                "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Estimate":
        return cls(float(data.get("seconds") or 0.0), str(data.get("summary") or ""))


def duration(seconds: float) -> str:
    """A rounded duration for people: "about 40 s", "about 3 min 10 s", "about 1 h 5 min".
    Above a minute the seconds are rounded to tens: an estimate is not that exact."""
    seconds = max(0.0, float(seconds))
    if seconds < 1.0:
        return "under a second"
    if seconds < 60:
        return f"about {round(seconds)} s"
    if seconds < 3600:
        tens = int(round(seconds / 10.0)) * 10
        minutes, rest = divmod(tens, 60)
        return f"about {minutes} min" + (f" {rest} s" if rest else "")
    minutes = int(round(seconds / 60.0))
    hours, rest = divmod(minutes, 60)
    return f"about {hours} h" + (f" {rest} min" if rest else "")
