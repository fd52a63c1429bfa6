"""What every benchmark script does with its figures: print them as JSON and, with ``--out``,
write the same text to the results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_json(figures: dict[str, Any], out: str | Path | None) -> None:
    text = json.dumps(figures, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
