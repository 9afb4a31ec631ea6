"""The self-contained HTML page of ``evdet-report compare``: inline CSS, images as ``data:image/png;base64`` URIs,
no script and no request for anything outside the file (it opens the same from a laptop, a bucket or the Kubeflow
UI).

Every string that reaches the page (experiment names, run ids, locations, notes) is escaped with
:func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from evdet.eval.report.comparison_table import ComparisonTable

__all__ = ["PageFigure", "RunSource", "render_comparison_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2rem;
       color: #1b1f24; background: #ffffff; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; }
p.meta { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.55rem; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
tr.baseline td { background: #fff8c5; }
span.run-id { color: #57606a; font-size: 0.8em; }
div.scroll { overflow-x: auto; }
ul.notes { font-size: 0.85rem; color: #3d444d; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { font-size: 0.85rem; color: #57606a; }
table#runs th, table#runs td { text-align: left; }
td.location { font-family: ui-monospace, monospace; font-size: 0.8rem; }
"""


@dataclass(frozen=True)
class PageFigure:
    """One figure of the page.

    Attributes:
        title: the section heading.
        png: the PNG file's bytes (embedded as a data URI).
        alt: the image's alternative text.
        caption: what the figure shows (units, source).
    """

    title: str
    png: bytes
    alt: str
    caption: str


@dataclass(frozen=True)
class RunSource:
    """Where one compared run came from, for the page's list of runs.

    Attributes:
        label: the run's name in the figures.
        run_id: the run's id.
        location: the folder or store URI it was read from.
        evaluated_utc: ``experiment_results.json`` ``created_utc`` (ISO 8601), or ``""``.
        protocol: the evaluation protocol and headline, e.g. ``etram (class_agnostic)``, or ``""``.
    """

    label: str
    run_id: str
    location: str
    evaluated_utc: str
    protocol: str


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(table: ComparisonTable) -> str:
    head = "".join(f'<th scope="col">{_e(c)}</th>' for c in table.columns)
    body = []
    for row in table.rows:
        name = (f'{_e(row.experiment)}<br><span class="run-id">{_e(row.run_id)}'
                f'{" (baseline)" if row.is_baseline else ""}</span>')
        cells = "".join(f"<td>{_e(c)}</td>" for c in row.cells)
        attrs = ' class="baseline"' if row.is_baseline else ""
        body.append(f'<tr{attrs}><th scope="row">{name}</th>{cells}</tr>')
    return (f'<div class="scroll"><table id="comparison"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _sources(sources: Sequence[RunSource]) -> str:
    head = "".join(f'<th scope="col">{h}</th>' for h in ("run", "run id", "location", "evaluated (UTC)", "protocol"))
    rows = "".join(
        f"<tr><td>{_e(s.label)}</td><td>{_e(s.run_id)}</td><td class=\"location\">{_e(s.location)}</td>"
        f"<td>{_e(s.evaluated_utc or 'n/a')}</td><td>{_e(s.protocol or 'n/a')}</td></tr>"
        for s in sources)
    return f'<div class="scroll"><table id="runs"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def render_comparison_html(title: str, generated_utc: str, table: ComparisonTable, figures: Sequence[PageFigure],
                           sources: Sequence[RunSource], missing_figures: Sequence[str] = ()) -> str:
    """The comparison report as one self-contained HTML document.

    Layout: title and generation time; the comparison table (``table#comparison``, the baseline row highlighted)
    with its notes; one section per figure (``<figure>`` with ``<img>`` and caption); sentences naming figures
    that could not be drawn; the runs' sources (``table#runs``).

    Args:
        title: the page title.
        generated_utc: when the report was made (ISO 8601, UTC).
        table: the comparison table.
        figures: the figures, in page order.
        sources: one per run, in table order.
        missing_figures: one sentence per figure left out (e.g. no run logged a validation).

    Returns:
        The HTML text (UTF-8, ``<!DOCTYPE html>``).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{len(table.rows)} runs; generated {_e(generated_utc)} by evdet-report compare</p>',
        "<h2>Comparison</h2>",
        _table(table),
        '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in table.notes) + "</ul>",
    ]
    for figure in figures:
        data = base64.b64encode(figure.png).decode("ascii")
        parts += [f"<h2>{_e(figure.title)}</h2>",
                  f'<figure><img src="data:image/png;base64,{data}" alt="{_e(figure.alt)}">'
                  f"<figcaption>{_e(figure.caption)}</figcaption></figure>"]
    if missing_figures:
        parts += ["<h2>Figures not drawn</h2>",
                  '<ul class="notes">' + "".join(f"<li>{_e(m)}</li>" for m in missing_figures) + "</ul>"]
    parts += ["<h2>Runs</h2>", _sources(sources), "</body></html>"]
    return "\n".join(parts) + "\n"
