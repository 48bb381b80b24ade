"""Inline SVG plots for reports: calibration and decision curves, no JavaScript, no network.

Only numbers and fixed labels go into the markup, so the output is safe to embed as is.
"""

from __future__ import annotations

from collections.abc import Sequence

_SIZE = 320
_MARGIN = 40
_PLOT = _SIZE - 2 * _MARGIN


def _x(value: float, low: float, high: float) -> float:
    return _MARGIN + (value - low) / (high - low) * _PLOT


def _y(value: float, low: float, high: float) -> float:
    return _SIZE - _MARGIN - (value - low) / (high - low) * _PLOT


def _frame(x_label: str, y_label: str, x_range: tuple[float, float], y_range: tuple[float, float]) -> list[str]:
    bottom = _SIZE - _MARGIN
    parts = [
        f'<rect x="{_MARGIN}" y="{_MARGIN}" width="{_PLOT}" height="{_PLOT}" fill="none" stroke="#888"/>',
        f'<text x="{_SIZE / 2}" y="{_SIZE - 6}" text-anchor="middle" font-size="11">{x_label}</text>',
        f'<text x="12" y="{_SIZE / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 12 {_SIZE / 2})">{y_label}</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        x_value = x_range[0] + fraction * (x_range[1] - x_range[0])
        y_value = y_range[0] + fraction * (y_range[1] - y_range[0])
        x_pos = _MARGIN + fraction * _PLOT
        y_pos = bottom - fraction * _PLOT
        parts.append(f'<text x="{x_pos:.1f}" y="{bottom + 14}" text-anchor="middle" font-size="9">{x_value:.2f}</text>')
        parts.append(
            f'<text x="{_MARGIN - 4}" y="{y_pos + 3:.1f}" text-anchor="end" font-size="9">{y_value:.2f}</text>'
        )
    return parts


def _svg(parts: list[str], label: str) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_SIZE} {_SIZE}" width="{_SIZE}" '
        f'height="{_SIZE}" role="img" aria-label="{label}">{body}</svg>'
    )


def calibration_svg(bins: Sequence[tuple[float, float]]) -> str:
    """Observed rate against mean predicted risk per bin, with the line of perfect calibration."""
    high = max([0.05] + [max(predicted, observed) for predicted, observed in bins])
    high = min(1.0, high * 1.05)
    parts = _frame("mean predicted risk", "observed rate", (0.0, high), (0.0, high))
    parts.append(
        f'<line x1="{_x(0, 0, high):.1f}" y1="{_y(0, 0, high):.1f}" x2="{_x(high, 0, high):.1f}" '
        f'y2="{_y(high, 0, high):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>'
    )
    points = " ".join(f"{_x(p, 0, high):.1f},{_y(o, 0, high):.1f}" for p, o in bins)
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>')
    for predicted, observed in bins:
        parts.append(
            f'<circle cx="{_x(predicted, 0, high):.1f}" cy="{_y(observed, 0, high):.1f}" r="3" fill="#1f5fa8"/>'
        )
    return _svg(parts, "calibration curve")


def decision_curve_svg(points: Sequence[tuple[float, float, float]]) -> str:
    """Net benefit of the model, of treating all, and of treating none, by threshold probability.

    ``points`` are ``(threshold, model, treat_all)``; the y range starts a little below zero.
    """
    if not points:
        return _svg(_frame("threshold probability", "net benefit", (0, 1), (0, 1)), "decision curve")
    x_low, x_high = points[0][0], points[-1][0]
    if x_high <= x_low:
        x_high = x_low + 0.01
    y_high = max([0.01] + [max(model, all_) for _, model, all_ in points]) * 1.05
    y_low = -0.1 * y_high
    parts = _frame("threshold probability", "net benefit", (x_low, x_high), (y_low, y_high))

    def line(values: Sequence[tuple[float, float]], colour: str, dash: str = "") -> str:
        clipped = " ".join(
            f"{_x(t, x_low, x_high):.1f},{_y(min(max(v, y_low), y_high), y_low, y_high):.1f}" for t, v in values
        )
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline points="{clipped}" fill="none" stroke="{colour}" stroke-width="1.5"{extra}/>'

    parts.append(line([(t, 0.0) for t, _, _ in points], "#888", "2 2"))
    parts.append(line([(t, all_) for t, _, all_ in points], "#c0392b", "5 3"))
    parts.append(line([(t, model) for t, model, _ in points], "#1f5fa8"))
    legend = (("model", "#1f5fa8"), ("treat all", "#c0392b"), ("treat none", "#888"))
    for index, (name, colour) in enumerate(legend):
        y_pos = _MARGIN + 12 + 12 * index
        parts.append(
            f'<text x="{_SIZE - _MARGIN - 4}" y="{y_pos}" text-anchor="end" font-size="9" fill="{colour}">{name}</text>'
        )
    return _svg(parts, "decision curve")
