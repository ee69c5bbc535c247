"""What the benchmark scripts share: the load average line and writing the Markdown report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def load() -> str:
    """1/5/15-minute load average (the shared machines are noisy: print it with results)."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def finish(lines: list[str], out: Optional[Path]) -> int:
    """Close a report with the load average at the end; write it to `out` when given."""
    lines += ["", f"- load average at the end (1/5/15 min): {load()}"]
    print(lines[-1])
    if out:
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0
