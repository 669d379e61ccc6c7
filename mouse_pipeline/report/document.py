"""One report built once and rendered twice: self-contained HTML and Markdown with
PNG figures beside it."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np


@dataclass(frozen=True)
class Cell:
    """A table cell given as HTML (already escaped) and as Markdown, with an optional CSS class."""

    html: str
    md: str
    cls: str = ""


@dataclass(frozen=True)
class Group:
    """A table row that titles the rows below it."""

    title: str


class Document:
    """The report built twice at once: as HTML and as Markdown."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []
        self.figures: list[tuple[str, bytes]] = []

    def heading(self, level: int, text: str, anchor: str = "") -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {_md_text(text)}\n")

    def para(self, text: str, cls: str = "", md_text: str | None = None) -> None:
        """A paragraph of plain text (escaped); ``md_text`` replaces it in Markdown."""
        body = html.escape(text)
        self.html.append(f'<p class="{cls}">{body}</p>' if cls else f"<p>{body}</p>")
        md = md_text if md_text is not None else _md_text(text)
        self.md.append(f"\n> {md}\n" if cls == "note" else f"\n{md}\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any] | Group], caption: str = "",
              digits: int = 3) -> None:
        """A table; plain values are formatted (``digits`` decimals, NaN as "–") and escaped."""
        body, md_rows = [], []
        text_columns = {0}
        for row in rows:
            if isinstance(row, Group):
                body.append(f'<tr class="group"><td colspan="{len(header)}">{html.escape(row.title)}</td></tr>')
                md_rows.append(f"| *{_md_cell(_md_text(row.title))}* |" + " |" * (len(header) - 1))
                continue
            cells = [c if isinstance(c, Cell) else
                     Cell(html.escape(_fmt(c, digits)), _md_text(_fmt(c, digits)), "text" if isinstance(c, str) else "")
                     for c in row]
            text_columns |= {i for i, c in enumerate(cells) if c.cls}
            body.append("<tr>" + "".join(f'<td class="{c.cls}">{c.html}</td>' if c.cls else f"<td>{c.html}</td>"
                                         for c in cells) + "</tr>")
            md_rows.append("| " + " | ".join(_md_cell(c.md) for c in cells) + " |")
        h = ["<table><thead><tr>",
             *(f'<th class="text">{html.escape(str(c))}</th>' if i in text_columns else f"<th>{html.escape(str(c))}</th>"
               for i, c in enumerate(header)),
             "</tr></thead><tbody>", *body, "</tbody></table>"]
        md = ["| " + " | ".join(_md_cell(_md_text(str(c))) for c in header) + " |",
              "|" + "|".join(":---" if i in text_columns else "---:" for i in range(len(header))) + "|", *md_rows]
        self.html.append("".join(h))
        self.md.append("\n" + "\n".join(md) + "\n")
        if caption:
            self.para(caption, cls="caption", md_text=f"*{_md_text(caption)}*")

    def figure(self, png: bytes, file_name: str, caption: str) -> None:
        """An embedded PNG (data URI) with its caption; also written to ``figures/`` for Markdown."""
        data = base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.md.append(f"\n![{_md_text(caption)}](figures/{quote(file_name)})\n\n*{_md_text(caption)}*\n")
        self.figures.append((file_name, png))

    def render_html(self, title: str) -> str:
        return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>"
                f"{html.escape(title)}</title><style>{CSS}</style></head><body><main>\n"
                + "\n".join(self.html) + "\n</main></body></html>\n")

    def render_md(self) -> str:
        return "\n".join(self.md).lstrip() + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;background:#fff;
line-height:1.45;margin:0}main{max-width:1180px;margin:0 auto;padding:1.5em 1.5em 4em}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:2px solid #e3e3e3;
padding-bottom:.2em;margin-top:2.2em}h3{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.5em 0 .3em;font-size:.86em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d4d4d4;padding:.28em .6em;text-align:right;vertical-align:top}
th{background:#f2f4f7;font-weight:600}td:first-child,th:first-child,td.text,th.text,td.names{text-align:left}
tr.group td{background:#fafafa;font-weight:600;text-align:left;color:#555}
td.names{text-align:left;max-width:38em}.sd{display:block;color:#777;font-size:.85em}
.best{font-weight:700}figure{margin:1em 0 1.6em}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{color:#555;font-size:.88em;margin:.3em 0 1.2em;max-width:60em}
.note{background:#fff8e1;padding:.6em .9em;border-left:4px solid #f0b400;max-width:60em}
.meta{color:#666;margin-top:0}dl.summary{display:grid;grid-template-columns:max-content 1fr;
gap:.25em 1em;margin:1em 0}dl.summary dt{font-weight:600}dl.summary dd{margin:0}
nav ol{columns:2;font-size:.92em}code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
""".strip()


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.{digits}f}" if math.isfinite(v) else "–"
    return str(v)


def _md_text(text: str) -> str:
    """Text safe in Markdown that renderers turn into HTML: no raw tags."""
    return html.escape(str(text), quote=False)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


