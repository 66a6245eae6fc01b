"""What both HTML reports (evaluate's and the experiment readout) share: figures embedded as PNG.

A report is one self-contained file an MLflow artifact view or a browser opens offline, so every figure is
inlined as a base64 ``data:`` URI instead of being linked.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_png(figure: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes, cropped to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def embedded_image(figure: Figure | None, *, alt: str, dpi: int = 100) -> str:
    """An ``<img>`` tag carrying the figure inline ("" for no figure)."""
    if figure is None:
        return ""
    encoded = base64.b64encode(figure_png(figure, dpi=dpi)).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
