"""mkdocs hook: the benchmark result files, read at build time, so that no page quotes a stale copy of them.

A page line ``<!-- result: benchmarks/results/NAME -->`` becomes that file (path from the repository root):

- ``.md``: the leading ``#`` lines (the command that made the file and the conditions it ran under) as a text block,
  then the rest as Markdown, its headings moved below the page's own (``##`` becomes ``####``);
- ``.txt`` and ``.json``: the whole file as a code block, exactly as the benchmark wrote it.

A marker naming a file that does not exist stops the build (``PluginError``) instead of leaving a gap in the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- result: (?P<path>\S+) -->$", flags=re.M)
HEADING = re.compile(r"^(#{1,4}) ", flags=re.M)
HEADING_SHIFT = 2


def render_result(path: Path, name: str) -> str:
    """The Markdown that stands for result file ``path`` (shown as ``name``)."""
    text = path.read_text().rstrip("\n")
    caption = f"`{name}`"
    if path.suffix != ".md":
        language = "json" if path.suffix == ".json" else "text"
        return f"{caption}\n\n```{language}\n{text}\n```"
    lines = text.splitlines()
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    how = "\n".join(line[1:].removeprefix(" ").rstrip() for line in lines[:header])
    body = HEADING.sub(lambda m: "#" * (len(m.group(1)) + HEADING_SHIFT) + " ", "\n".join(lines[header:]).strip())
    parts = [caption, f"```text\n{how}\n```" if how else "", body]
    return "\n\n".join(part for part in parts if part)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).parent

    def substitute(match: re.Match[str]) -> str:
        path = root / match["path"]
        if not path.is_file():
            raise PluginError(f"{page.file.src_path}: result file {match['path']} does not exist")
        return render_result(path, match["path"])

    return MARKER.sub(substitute, markdown)
