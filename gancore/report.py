"""A comparison as one static HTML file: its charts (interactive, plotly.js inline), tables and sample grids, which
opens in any browser without the dashboard, a server or a network.

    html = comparison_html("Compare: ring", figures, {"Config differences": diff}, {"run-a step 600": png_path})
"""
import base64
import html
from datetime import datetime
from pathlib import Path


def comparison_html(title: str, figures: list, tables: dict, images: dict, runs: list[str] | None = None) -> str:
    """figures: plotly figures; tables: {heading: DataFrame}; images: {caption: PNG path or bytes}; runs: the
    runs compared (listed at the top)."""
    from plotly.offline import get_plotlyjs

    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>gancore comparison, made {datetime.now():%Y-%m-%d %H:%M}"
             + (f" · {len(runs)} runs: {html.escape(', '.join(runs))}" if runs else "") + "</p>"]
    if figures:
        parts.append("<h2>Charts</h2><div class='charts'>")
        parts += [f"<div class='chart'>{fig.to_html(full_html=False, include_plotlyjs=False)}</div>" for fig in figures]
        parts.append("</div>")
    for heading, table in tables.items():
        if table is not None and len(table):
            body = table.to_html(border=0, na_rep="", float_format="{:.4g}".format)
            parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
    if images:
        parts.append("<h2>Samples</h2><div class='grids'>")
        for caption, image in images.items():
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            parts.append(f"<figure><img src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</div>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}.meta{color:#666}"
             ".charts{display:grid;grid-template-columns:1fr 1fr;gap:1em}table{border-collapse:collapse}"
             "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}"
             ".grids{display:flex;flex-wrap:wrap;gap:1em}figure img{max-width:320px;image-rendering:pixelated}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<script>{get_plotlyjs()}</script><style>{style}</style></head><body>{''.join(parts)}</body></html>")
