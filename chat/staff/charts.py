"""Small server-rendered SVG bar charts: no script, no external files.

Each chart names itself (``<title>``, ``<desc>``, ``role="img"``) and each bar carries its
value in a ``<title>`` for pointer users; the page puts the same numbers in a table next to it.
"""

from collections.abc import Callable, Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 640
HEIGHT = 220
LEFT = 56
RIGHT = 12
TOP = 16
BOTTOM = 36


def _number(value: float) -> str:
    return f"{value:g}"


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    points: Sequence[tuple[str, float]],
    label: Callable[[float], str] = _number,
    max_value: float | None = None,
) -> SafeString:
    """A vertical bar chart of ``points`` (label, value); x labels thinned to fit."""
    top = max([value for _, value in points] + [max_value or 0.0, 0.0])
    scale = top if top > 0 else 1.0
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.7, 1.0)
    every = max(1, round(len(points) / 8))

    bars = []
    ticks = []
    for index, (name, value) in enumerate(points):
        height = plot_h * (value / scale)
        x = LEFT + index * slot + (slot - bar_w) / 2
        bars.append(
            (
                f"{x:.1f}",
                f"{TOP + plot_h - height:.1f}",
                f"{bar_w:.1f}",
                f"{height:.1f}",
                f"{name}: {label(value)}",
            )
        )
        if index % every == 0 or len(points) <= 8:
            ticks.append((f"{LEFT + index * slot + slot / 2:.1f}", f"{HEIGHT - BOTTOM + 16}", name))

    return format_html(
        '<svg class="chart" role="img" viewBox="0 0 {w} {h}" '
        'aria-labelledby="{id}-title {id}-desc" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>'
        '<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}"/>'
        '<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}"/>'
        '<text class="tick" x="{ylabel_x}" y="{top_label_y}" text-anchor="end">{top_label}</text>'
        '<text class="tick" x="{ylabel_x}" y="{base}" text-anchor="end">0</text>'
        "{bars}{ticks}</svg>",
        w=WIDTH,
        h=HEIGHT,
        id=chart_id,
        title=title,
        desc=description,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        base=TOP + plot_h,
        ylabel_x=LEFT - 6,
        top_label_y=TOP + 4,
        top_label=label(top),
        bars=format_html_join(
            "",
            '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
            bars,
        ),
        ticks=format_html_join(
            "", '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>', ticks
        ),
    )
