"""Render report blocks as Markdown (figures beside it) and as one self-contained HTML page (PNGs inlined)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

from brats_llm.report.tables import Table


@dataclass(frozen=True)
class Figure:
    """A PNG from an evaluation stage: ``name`` under figures/, its caption and bytes."""

    name: str
    caption: str
    png: bytes


Block = tuple  # ("h1" | "h2" | "h3" | "p" | "banner", text) | ("list", [text]) | ("details", (summary, [text]))
#               | ("table", Table) | ("figures", [Figure])


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures are referenced as ``figures/<name>``."""
    out: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + content)
        elif kind == "p":
            out.append(content)
        elif kind == "banner":
            out.append("> **" + content + "**")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in content))
        elif kind == "details":  # GitHub renders a collapsed block; the list inside stays Markdown
            summary, items = content
            out.append(f"<details><summary>{summary}</summary>\n\n" + "\n".join(f"- {item}" for item in items) + "\n\n</details>")
        elif kind == "table":
            table: Table = content
            lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |",
                     "|" + "|".join("---" for _ in table.header) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
            out.append("\n".join(lines))
        elif kind == "figures":
            out.append("\n\n".join(f"![{f.caption}](figures/{f.name})\n*{f.caption}*" for f in content))
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 2em; max-width: 75em; color: #222; line-height: 1.4; }
.scroll { overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: right; }
td { white-space: nowrap; } td:first-child { white-space: normal; min-width: 8em; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef; }
.banner { background: #fff3cd; border: 2px solid #e0a800; padding: 0.8em 1em; font-weight: bold; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.8em; max-width: 30em; }
details { margin: 0.5em 0 1em; } summary { cursor: pointer; font-weight: bold; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def html_page(blocks: list[Block], title: str) -> str:
    """One HTML page with inline CSS and base64 PNGs: opens offline, no external request."""
    body: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(content)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(content)}</p>")
        elif kind == "banner":
            body.append(f'<div class="banner">{_inline(content)}</div>')
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in content) + "</ul>")
        elif kind == "details":
            summary, items = content
            body.append(f"<details><summary>{_inline(summary)}</summary><ul>"
                        + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul></details>")
        elif kind == "table":
            table: Table = content
            head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>')
        elif kind == "figures":
            for figure in content:
                data = base64.b64encode(figure.png).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(figure.caption)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(figure.caption)}</figcaption></figure>")
        else:
            raise ValueError(f"unknown block {kind!r}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
