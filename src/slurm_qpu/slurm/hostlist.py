"""Expand Slurm hostlist expressions (``node[1-3,7],login[01-02]``) without calling scontrol."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top(expr: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in expr:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in hostlist {expr!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (s.strip() for s in parts) if p]


def _expand_one(item: str) -> list[str]:
    start = item.find("[")
    if start < 0:
        return [item]
    end = item.find("]", start)
    if end < 0:
        raise ValueError(f"unbalanced '[' in hostlist {item!r}")
    prefix, body, rest = item[:start], item[start + 1:end], item[end + 1:]
    out: list[str] = []
    for chunk in body.split(","):
        m = _RANGE.match(chunk.strip())
        if not m:
            raise ValueError(f"bad range {chunk!r} in hostlist {item!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo):
            raise ValueError(f"descending range {chunk!r} in hostlist {item!r}")
        width = len(lo) if lo.startswith("0") else 0
        for n in range(int(lo), int(hi) + 1):
            for tail in _expand_one(rest):
                out.append(f"{prefix}{str(n).zfill(width)}{tail}")
    return out


def expand(expr: str) -> list[str]:
    """All host names of a hostlist expression, in order."""
    hosts: list[str] = []
    for item in _split_top(expr or ""):
        hosts.extend(_expand_one(item))
    return hosts
