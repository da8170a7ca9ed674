"""Self-contained HTML reports with matplotlib figures and tables."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports render without a display; set once here, before any pyplot import
import matplotlib.pyplot as plt  # noqa: E402

from stages.common.atomic import write_text  # noqa: E402

__all__ = ["HtmlReport", "plt"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1rem 0; } figcaption { font-size: 0.9rem; color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 1rem; }
"""


class HtmlReport:
    """Build a report section by section, then :meth:`write` it atomically."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, note: bool = False) -> None:
        css = ' class="note"' if note else ""
        self._parts.append(f"<p{css}>{html.escape(text)}</p>")

    def table(self, rows, caption: str = "", float_format: str = "{:.4g}") -> None:
        """A table from a DataFrame or a list of dicts (columns from the first row)."""
        records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
        if not records:
            self._parts.append(f"<p><em>{html.escape(caption)}: no rows</em></p>")
            return
        columns = list(records[0].keys())

        def cell(value: Any) -> str:
            if isinstance(value, float):
                return html.escape(float_format.format(value))
            return html.escape(str(value))

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in records)
        caption_html = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._parts.append(f"<table>{caption_html}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, figure, caption: str = "") -> None:
        """Embed a matplotlib figure as PNG (no timestamp metadata, so equal figures give equal bytes) and close it."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(figure)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        self._parts.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        """The page; no time stamp, so a rerun on the same inputs writes the same bytes (MLflow keeps the time)."""
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f"{''.join(self._parts)}</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        return write_text(path, self.render())
