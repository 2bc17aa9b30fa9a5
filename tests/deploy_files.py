"""What the deploy files say, read the way Docker and Fly read them: the Dockerfile's instructions and fly.toml."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def dockerfile() -> list[tuple[str, str]]:
    """The image's instructions (the Dockerfile's last stage) as (KEYWORD, arguments), lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    # An earlier stage only builds files for the image (htmx from npm); the image is the last one.
    last = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last:]


def docker_env() -> dict[str, str]:
    """The image's ENV."""
    env: dict[str, str] = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def exec_form(keyword: str) -> list[str]:
    """The one CMD or ENTRYPOINT, which must be in exec (JSON) form so that signals reach the process."""
    found = [json.loads(rest) for k, rest in dockerfile() if k == keyword]
    assert len(found) == 1, f"one {keyword}, in exec (JSON) form"
    return list(found[0])


def workdir() -> str:
    (found,) = [rest for keyword, rest in dockerfile() if keyword == "WORKDIR"]
    return found


def in_checkout(image_path: str) -> Path:
    """Where a path under the image's WORKDIR (the copied context) is in this checkout."""
    prefix = workdir().rstrip("/") + "/"
    assert image_path.startswith(prefix), f"{image_path} is not under {prefix}"
    return ROOT / image_path[len(prefix):]


def fly() -> dict[str, Any]:
    return tomllib.loads((ROOT / "fly.toml").read_text())
