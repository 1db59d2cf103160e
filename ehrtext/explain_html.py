"""HTML view of an explanation: the note with the spans that drove a prediction highlighted.

Self-contained (inline CSS, no script, nothing fetched), safe (every character of the note is
HTML-escaped, so a note containing ``<script>`` shows it as text), and faithful to the note:
newlines and spaces are kept (``white-space: pre-wrap``) and spans are offsets into the
original note, as :meth:`RiskModel.explain` returns them.

Colour: positive weights in red, negative ones (integrated gradients can give them) in blue;
the intensity is ``|weight| / max |weight|``, where overlapping spans add up. Each highlighted
run is a ``<mark class="ehr-hl">`` with ``data-weight`` and a ``title`` (tooltip) giving the
weight.

Example:
    >>> from ehrtext.explain_html import render_explanation
    >>> page = render_explanation("胸痛3天，伴大汗。", [(0, 2, 0.9), (6, 8, 0.4)],
    ...                           probabilities={"心肌梗死": 0.82})
    >>> page.count('class="ehr-hl"')
    2
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ehrtext.errors import InputError, describe_type

__all__ = ["highlight_color", "render_explanation"]

_WHITE = (255, 255, 255)
_POSITIVE = (214, 39, 40)  # red
_NEGATIVE = (31, 119, 180)  # blue
_FONT = (
    "system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Noto Sans SC', "
    "'WenQuanYi Micro Hei', 'Microsoft YaHei', 'PingFang SC', sans-serif"
)


def highlight_color(intensity: float, negative: bool = False) -> tuple[int, int, int]:
    """The opaque RGB colour of a highlight: white mixed with red (blue when ``negative``) in
    proportion ``intensity`` (clipped to [0, 1]).

    Example:
        >>> highlight_color(1.0), highlight_color(0.0)
        ((214, 39, 40), (255, 255, 255))
    """
    t = min(max(float(intensity), 0.0), 1.0)
    hi = _NEGATIVE if negative else _POSITIVE
    return tuple(round(w + (h - w) * t) for w, h in zip(_WHITE, hi))  # type: ignore[return-value]


def _check_spans(text: str, spans: Iterable[Any]) -> list[tuple[int, int, float]]:
    out = []
    for i, span in enumerate(spans):
        try:
            start, end, weight = span
        except (TypeError, ValueError):
            raise InputError(
                f"span {i}: expected (start, end, weight), got a {describe_type(span)}"
            ) from None
        try:
            start_i, end_i, w = int(start), int(end), float(weight)
        except (TypeError, ValueError):
            raise InputError(
                f"span {i}: start and end must be integers and weight a number"
            ) from None
        if start_i != start or end_i != end:
            raise InputError(f"span {i}: start and end must be integers")
        if not 0 <= start_i <= end_i <= len(text):
            raise InputError(
                f"span {i}: ({start_i}, {end_i}) is outside the note (length {len(text)})"
            )
        if not math.isfinite(w):
            raise InputError(f"span {i}: weight is not finite")
        if end_i > start_i and w != 0.0:
            out.append((start_i, end_i, w))
    return out


def _segments(text: str, spans: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    """The note cut at every span boundary, each piece with the sum of the weights over it."""
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    delta: dict[int, float] = {}
    for s, e, w in spans:
        delta[s] = delta.get(s, 0.0) + w
        delta[e] = delta.get(e, 0.0) - w
    out, running = [], 0.0
    for a, b in zip(cuts, cuts[1:]):
        running += delta.get(a, 0.0)
        out.append((a, b, 0.0 if abs(running) < 1e-12 else running))
    return out


def _probability_rows(probabilities: Any) -> list[tuple[str, float]]:
    if probabilities is None:
        return []
    items = probabilities.items() if isinstance(probabilities, Mapping) else probabilities
    rows = []
    for i, item in enumerate(items):
        try:
            label, p = item
            p = float(p)
        except (TypeError, ValueError):
            raise InputError(f"probabilities entry {i}: expected (label, probability)") from None
        if not math.isfinite(p):
            raise InputError(f"probabilities entry {i}: probability is not finite")
        rows.append((str(label), p))
    return sorted(rows, key=lambda r: -r[1])


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_PAGE_CSS = f"""
body {{ font-family: {_FONT}; color: #1a1a1a; margin: 24px auto; max-width: 960px;
  padding: 0 16px; }}
"""
# scoped to the fragment, so that embedding it restyles nothing else on the host page
_CSS = f"""
.ehr-explanation {{ font-family: {_FONT}; line-height: 1.6; }}
.ehr-explanation h1 {{ font-size: 1.4em; }}
.ehr-note {{ white-space: pre-wrap; overflow-wrap: anywhere; border: 1px solid #ddd;
  border-radius: 6px; padding: 14px 16px; font-size: 1.05em; background: #fff; }}
mark.ehr-hl {{ color: #111; border-radius: 2px; padding: 0; }}
.ehr-legend {{ display: flex; align-items: center; gap: 8px; font-size: 0.85em; color: #555;
  margin: 8px 0 16px; }}
.ehr-scale {{ width: 160px; height: 12px; border: 1px solid #ccc;
  background: linear-gradient(to right, rgb(255,255,255), rgb{_POSITIVE}); }}
.ehr-scale.neg {{ background: linear-gradient(to right, rgb{_NEGATIVE}, rgb(255,255,255),
  rgb{_POSITIVE}); }}
table.ehr-probs {{ border-collapse: collapse; font-size: 0.9em; margin-bottom: 16px; }}
table.ehr-probs th, table.ehr-probs td {{ border: 1px solid #ddd; padding: 3px 8px; }}
table.ehr-probs td.p {{ text-align: right; font-variant-numeric: tabular-nums; }}
.ehr-bar {{ display: inline-block; height: 10px; background: #6b8fc7; vertical-align: middle; }}
"""


def render_explanation(
    text: Any,
    spans: Iterable[tuple[int, int, float]] | None = None,
    *,
    title: str | None = None,
    probabilities: Mapping[str, float] | Iterable[tuple[str, float]] | None = None,
    full_page: bool = True,
) -> str:
    """HTML of ``text`` with ``spans`` highlighted.

    Args:
        text: the note exactly as given (the spans index into it), or the
            :class:`~ehrtext.predict.Explanation` that :meth:`RiskModel.explain` returns —
            then its note, its token spans (unless ``spans`` is given), its probabilities
            (unless ``probabilities`` is given) and a title naming the label and method
            (unless ``title`` is given) are used.
        spans: ``(start, end, weight)`` character offsets into ``text``; overlapping spans add
            up; zero-length or zero-weight spans are ignored.
        title: heading (escaped).
        probabilities: ``{label: probability}`` or ``(label, probability)`` pairs, shown as a
            small table sorted by probability.
        full_page: a whole ``<!DOCTYPE html>`` page (default) or only the ``<div>`` to embed
            (a notebook cell, another page); the fragment carries its own ``<style>``.

    Raises :class:`~ehrtext.errors.InputError` for a span outside the note or a non-numeric
    weight (naming the span by index, never quoting the note).

    Example:
        >>> html_page = render_explanation("否认胸痛。\\n咳嗽3天", [(6, 8, 1.0)], title="Note 17")
        >>> "white-space: pre-wrap" in html_page
        True
    """
    if not isinstance(text, str) and hasattr(text, "offsets") and hasattr(text, "spans"):
        explanation = text
        text = explanation.text
        if spans is None:
            spans = explanation.spans()
        if probabilities is None:
            probabilities = explanation.probabilities
        if title is None:
            title = f"Why {explanation.label}? ({explanation.method})"
    if not isinstance(text, str):
        raise InputError(f"text must be a str or an Explanation, got {describe_type(text)}")
    if spans is None:
        raise InputError("spans are needed with a plain text (or pass an Explanation)")
    checked = _check_spans(text, spans)
    segments = _segments(text, checked)
    scale = max((abs(w) for _, _, w in segments), default=0.0)
    has_negative = any(w < 0 for _, _, w in segments)

    pieces = []
    for start, end, weight in segments:
        chunk = _e(text[start:end])
        if weight == 0.0 or scale == 0.0:
            pieces.append(chunk)
            continue
        r, g, b = highlight_color(abs(weight) / scale, negative=weight < 0)
        pieces.append(
            f'<mark class="ehr-hl" data-start="{start}" data-end="{end}" '
            f'data-weight="{weight:.6g}" title="weight {weight:.4g}" '
            f'style="background-color: rgb({r}, {g}, {b})">{chunk}</mark>'
        )

    body = ['<div class="ehr-explanation">', f"<style>{_CSS}</style>"]
    if title is not None:
        body.append(f"<h1>{_e(title)}</h1>")
    rows = _probability_rows(probabilities)
    if rows:
        body.append('<table class="ehr-probs"><tr><th>Label</th><th>Probability</th><th></th></tr>')
        for label, p in rows:
            width = round(max(0.0, min(p, 1.0)) * 120)
            body.append(
                f'<tr><td>{_e(label)}</td><td class="p">{p:.3f}</td>'
                f'<td><span class="ehr-bar" style="width: {width}px"></span></td></tr>'
            )
        body.append("</table>")
    legend = "negative ← weight → positive" if has_negative else "low → high weight"
    scale_note = f"max |weight| = {scale:.4g}" if scale else "no highlighted span"
    body.append(
        f'<div class="ehr-legend"><span class="ehr-scale{" neg" if has_negative else ""}"></span>'
        f"<span>{legend}; intensity = |weight| / max |weight| ({scale_note})</span></div>"
    )
    body.append(f'<div class="ehr-note">{"".join(pieces)}</div>')
    body.append("</div>")
    fragment = "\n".join(body)
    if not full_page:
        return fragment
    page_title = _e(title) if title is not None else "ehrtext explanation"
    return (
        '<!DOCTYPE html>\n<html lang="zh"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{page_title}</title><style>{_PAGE_CSS}</style></head>"
        f"<body>\n{fragment}\n</body></html>"
    )
