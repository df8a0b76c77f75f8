"""The benchmark's plot, written as SVG by hand (no plotting library needed):
left, each fusion run's end-to-end latency against its critical path (the
diagonal is zero overhead); right, each run's overhead over its critical path."""

from __future__ import annotations

from html import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _ticks(lo: float, hi: float) -> list[float]:
    step = _nice_step(hi - lo)
    start = (lo // step) * step
    out = []
    v = start
    while v <= hi + 1e-9:
        if v >= lo - 1e-9:
            out.append(round(v, 6))
        v += step
    return out


class _Axes:
    def __init__(self, x0: float, y0: float, w: float, h: float, xr: tuple[float, float], yr: tuple[float, float]):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xr, self.yr = xr, yr

    def x(self, v: float) -> float:
        return self.x0 + (v - self.xr[0]) / (self.xr[1] - self.xr[0]) * self.w

    def y(self, v: float) -> float:
        return self.y0 + self.h - (v - self.yr[0]) / (self.yr[1] - self.yr[0]) * self.h

    def frame(self, title: str, xlabel: str, ylabel: str, xticks: bool = True) -> list[str]:
        out = [f'<rect x="{self.x0}" y="{self.y0}" width="{self.w}" height="{self.h}" fill="white" stroke="#444"/>']
        for t in _ticks(*self.xr) if xticks else []:
            x = self.x(t)
            out.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + self.h}" stroke="#eee"/>')
            out.append(f'<text x="{x:.1f}" y="{self.y0 + self.h + 16}" text-anchor="middle">{t:g}</text>')
        for t in _ticks(*self.yr):
            y = self.y(t)
            out.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + self.w}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
        out.append(f'<text x="{self.x0 + self.w / 2}" y="{self.y0 - 10}" text-anchor="middle" font-weight="bold">{escape(title)}</text>')
        out.append(f'<text x="{self.x0 + self.w / 2}" y="{self.y0 + self.h + 36}" text-anchor="middle">{escape(xlabel)}</text>')
        cx, cy = self.x0 - 46, self.y0 + self.h / 2
        out.append(f'<text x="{cx}" y="{cy}" text-anchor="middle" transform="rotate(-90 {cx} {cy})">{escape(ylabel)}</text>')
        return out


def _range(values: list[float], pad: float = 0.05, floor: float | None = None) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    span = (hi - lo) or max(abs(hi), 1.0)
    lo, hi = lo - span * pad, hi + span * pad
    if floor is not None:
        lo = max(lo, floor)
    return lo, hi


def write(path, series: list[tuple[str, list[tuple[float, float]]]], subtitle: str = "") -> None:
    """series: (label, [(critical_path_ms, end_to_end_ms), ...]) per mode."""
    series = [(label, pts) for label, pts in series if pts]
    width, height = 980, 470
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#fafafa"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        "Fusion end-to-end latency against its critical path, per run</text>",
    ]
    if subtitle:
        out.append(f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{escape(subtitle)}</text>')
    if not series:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no fusion runs measured</text></svg>')
        path.write_text("\n".join(out) + "\n")
        return
    allpts = [p for _, pts in series for p in pts]
    lo, hi = _range([v for p in allpts for v in p], floor=0)
    left = _Axes(80, 70, 360, 320, (lo, hi), (lo, hi))
    out += left.frame("end-to-end vs critical path", "critical path (ms, from the mock's call log)", "end-to-end (ms, client)")
    out.append(f'<line x1="{left.x(lo):.1f}" y1="{left.y(lo):.1f}" x2="{left.x(hi):.1f}" y2="{left.y(hi):.1f}" '
               'stroke="#888" stroke-dasharray="5,4"/>')
    out.append(f'<text x="{left.x(hi) - 6:.1f}" y="{left.y(lo) - 8:.1f}" text-anchor="end" fill="#888">dashed: y = x (zero overhead)</text>')
    for i, (_, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        for cp, e2e in pts:
            out.append(f'<circle cx="{left.x(cp):.1f}" cy="{left.y(e2e):.1f}" r="2.6" fill="{c}" fill-opacity="0.6"/>')
    # Right: overhead per run, one strip per series, jittered by run index.
    overheads = [e2e - cp for _, pts in series for cp, e2e in pts]
    olo, ohi = _range(overheads + [0.0], pad=0.1)
    right = _Axes(560, 70, 380, 320, (0, len(series)), (olo, ohi))
    out += right.frame("overhead = end-to-end - critical path", "", "overhead (ms)", xticks=False)
    out.append(f'<line x1="{right.x0}" y1="{right.y(0):.1f}" x2="{right.x0 + right.w}" y2="{right.y(0):.1f}" stroke="#888"/>')
    for i, (label, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        n = len(pts)
        for j, (cp, e2e) in enumerate(pts):
            x = right.x(i + 0.2 + 0.6 * (j / max(n - 1, 1)))
            out.append(f'<circle cx="{x:.1f}" cy="{right.y(e2e - cp):.1f}" r="2.6" fill="{c}" fill-opacity="0.6"/>')
        ovs = sorted(e2e - cp for cp, e2e in pts)
        med = ovs[len(ovs) // 2]
        out.append(f'<line x1="{right.x(i + 0.15):.1f}" y1="{right.y(med):.1f}" x2="{right.x(i + 0.85):.1f}" '
                   f'y2="{right.y(med):.1f}" stroke="black" stroke-width="2"/>')
        out.append(f'<text x="{right.x(i + 0.5):.1f}" y="{right.y0 + right.h + 16}" text-anchor="middle">{escape(label)}</text>')
        out.append(f'<text x="{right.x(i + 0.5):.1f}" y="{right.y0 + right.h + 30}" text-anchor="middle" fill="#555">'
                   f'median {med:.1f} ms</text>')
    # Legend.
    for i, (label, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        y = 80 + 18 * i
        out.append(f'<circle cx="{left.x0 + 14}" cy="{y}" r="4" fill="{c}"/>')
        out.append(f'<text x="{left.x0 + 24}" y="{y + 4}">{escape(label)} ({len(pts)} runs)</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
