"""`kubectl get -o jsonpath=TEMPLATE`, emulated for the templates the chart's notes print: an emulation of
client-go's util/jsonpath, not kubectl. Supported: `{.field.field}` (a missing field prints nothing, as with
kubectl's default --allow-missing-template-keys), `[*]` over a list (the values joined by a space),
`{range PATH}...{end}`, and quoted literals such as `{"\\n"}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

TOKEN = re.compile(r"\{((?:\"(?:[^\"\\]|\\.)*\")|[^}]*)\}")


def values(path: str, context: Any) -> list[Any]:
    """The values PATH (`.a.b[*].c`) selects in CONTEXT."""
    found = [context]
    for part in re.findall(r"\.([\w-]+)(\[\*\])?", path):
        name, every = part
        step: list[Any] = []
        for value in found:
            if isinstance(value, dict) and name in value:
                selected = value[name]
                step += selected if every and isinstance(selected, list) else [selected]
        found = step
    return found


def render(template: str, document: Any) -> str:
    tokens = TOKEN.findall(template)
    out, _ = render_tokens(tokens, 0, document)
    return out


def render_tokens(tokens: list[str], start: int, context: Any) -> tuple[str, int]:
    """Render TOKENS from START in CONTEXT up to the matching `end` (or the last): (text, index after)."""
    out = ""
    i = start
    while i < len(tokens):
        token = tokens[i].strip()
        if token == "end":
            return out, i + 1
        if token.startswith("range "):
            items = values(token.removeprefix("range ").strip(), context)
            end = i + 1
            for item in items:
                text, end = render_tokens(tokens, i + 1, item)
                out += text
            if not items:
                _, end = render_tokens(tokens, i + 1, None)
            i = end
            continue
        if token.startswith('"'):
            out += json.loads(token)
        else:
            out += " ".join(str(v) for v in values(token, context))
        i += 1
    return out, i
