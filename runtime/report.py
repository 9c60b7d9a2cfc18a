"""``spikewire replay --report DIR``: ``summary.json`` and figures a person would rather look at.

Figures (PNG, 110 dpi), each drawn only when the replay has what it needs:

* ``confusion.png``: counts and row-normalised confusion matrices (files, beats, or radar windows);
* ``per_class.png``: sensitivity and PPV per class (all, and held out when the model says what it never saw);
* ``latency.png``: host latency histogram with p50/p95/p99 marked;
* ``timeline.png``: chip power and output spike rate over stream time, files shaded in turn.

matplotlib is an optional extra (``pip install spikewire[report]``). Only its object API and
the Agg canvas are used: no pyplot state, never a display.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.config import ConfigError
from runtime.replay_record import ReplayTrace

DPI = 110


def require_matplotlib() -> None:
    """Fail before a long replay, not after it, when the report extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        msg = "replay --report draws figures with matplotlib: pip install 'spikewire[report]'"
        raise ConfigError(msg) from exc


def write_report(out_dir: Path, summary: Mapping[str, Any], trace: ReplayTrace) -> list[Path]:
    """``summary.json`` (the summary plus the trace) and the figures; returns the files written."""
    require_matplotlib()
    out_dir.mkdir(parents=True, exist_ok=True)
    scoring = _scoring(summary)
    data = trace.to_json()
    figures: list[Path] = []
    if scoring is not None and scoring[1].get("confusion"):
        figures.append(_confusion(out_dir / "confusion.png", *scoring))
    if scoring is not None and scoring[1].get("per_class"):
        figures.append(_per_class(out_dir / "per_class.png", *scoring))
    if sum(data["latency_hist"]["counts"]):
        figures.append(_latency(out_dir / "latency.png", summary, data["latency_hist"]))
    if data["timeline"]["energy_uj"]:
        figures.append(_timeline(out_dir / "timeline.png", summary, data))
    doc = {**summary, "report": {"figures": [f.name for f in figures], **data}}
    path = out_dir / "summary.json"
    path.write_text(json.dumps(doc, indent=1, allow_nan=False, default=_jsonable) + "\n", encoding="utf-8")
    return [path, *figures]


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    msg = f"not JSON serialisable: {type(x).__name__}"
    raise TypeError(msg)


def _scoring(s: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """What the figures score: radar windows against pseudo-labels, ECG beats, else files/windows by label."""
    windows = s.get("windows")
    if isinstance(windows, Mapping) and windows.get("confusion"):
        return "radar windows (pseudo-labels)", windows
    if s.get("beats") is not None:
        return f"beats (±{s.get('tolerance_ms', 150):g} ms)", s
    if s.get("confusion"):
        return "decisions vs file labels", s
    return None


def _figure(w_in: float, h_in: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in), dpi=DPI, layout="constrained")


def _title(s: Mapping[str, Any]) -> str:
    return f"{s.get('model')} on {s.get('chip')} (mismatch {'on' if s.get('mismatch') else 'off'})"


def _matrix(confusion: Mapping[str, int], labels: Sequence[str]) -> tuple[list[str], list[str], np.ndarray]:
    pairs = [(k.split("->", 1)[0], k.split("->", 1)[1], int(n)) for k, n in confusion.items()]
    truths = [lab for lab in labels if any(t == lab for t, _, _ in pairs)]
    truths += sorted({t for t, _, _ in pairs} - set(truths))
    preds = list(labels) + sorted({p for _, p, _ in pairs} - set(labels))
    m = np.zeros((len(truths), len(preds)), np.int64)
    for t, p, n in pairs:
        m[truths.index(t), preds.index(p)] += n
    return truths, preds, m


def _labels_of(s: Mapping[str, Any]) -> list[str]:
    per = s.get("per_class") or {}
    return list(per)


def _confusion(path: Path, what: str, s: Mapping[str, Any]) -> Path:
    truths, preds, m = _matrix(s["confusion"], _labels_of(s))
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    cell = 0.42 if len(preds) <= 14 else max(0.12, 6.0 / len(preds))
    fig = _figure(2 * (cell * len(preds) + 1.8) + 1.4, max(3.0, cell * len(truths) + 2.2))
    axes = fig.subplots(1, 2)
    scored = int(m.sum())
    acc = s.get("accuracy")
    acc_txt = f", accuracy {acc:.1%}" if isinstance(acc, float) else ""
    fig.suptitle(f"Confusion matrix: {what}, {scored} scored{acc_txt}", fontsize=12)
    small = len(preds) <= 14
    for ax, data, name in ((axes[0], m, "counts"), (axes[1], norm, "row-normalised (recall per true class)")):
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="equal")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(range(len(preds)), preds, rotation=45 if max(map(len, preds)) > 3 else 0, ha="right")
        ax.set_yticks(range(len(truths)), truths)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        if small:
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    if m[i, j] or data is m:
                        txt = f"{m[i, j]}" if data is m else f"{norm[i, j]:.2f}"
                        colour = "white" if norm[i, j] > 0.6 else "black"
                        ax.text(j, i, txt, ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="fraction of the true class")
    fig.savefig(path)
    return path


def _per_class(path: Path, what: str, s: Mapping[str, Any]) -> Path:
    panels = [("all", s["per_class"])]
    held = s.get("held_out")
    if isinstance(held, Mapping) and held.get("per_class"):
        panels.append(("held out", held["per_class"]))
    labels = list(s["per_class"])
    fig = _figure(max(5.5, 0.55 * len(labels) * len(panels) + 2.5), 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    fig.suptitle(f"Per-class figures: {what}", fontsize=12)
    x = np.arange(len(labels))
    for ax, (name, per) in zip(axes, panels, strict=True):
        for k, (key, colour) in enumerate((("sensitivity", "tab:blue"), ("ppv", "tab:orange"))):
            vals = [per.get(lab, {}).get(key) for lab in labels]
            ys = [v if v is not None else 0.0 for v in vals]
            bars = ax.bar(x + (k - 0.5) * 0.38, ys, 0.38, color=colour, label="PPV" if key == "ppv" else key)
            for b, v in zip(bars, vals, strict=True):
                # n/a: no reference beat/file of the class, or no decision naming it; not a zero.
                text = "n/a" if v is None else f"{v:.2f}"
                ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.01, text, ha="center", va="bottom",
                        fontsize=7, rotation=90 if len(labels) > 4 else 0)  # fmt: skip
        ticks = [f"{lab}\nn={per.get(lab, {}).get('n', 0)}" for lab in labels]
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_ylim(0, 1.3)  # room for the values and the legend above the bars
        ax.set_yticks(np.linspace(0.0, 1.0, 6))
        ax.set_ylabel("fraction")
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper center", fontsize=8, ncols=2)
    fig.savefig(path)
    return path


def _latency(path: Path, s: Mapping[str, Any], hist: Mapping[str, Any]) -> Path:
    edges = np.asarray(hist["edges_ms"])
    counts = np.asarray(hist["counts"])
    nz = np.nonzero(counts)[0]
    lo, hi = edges[max(nz[0] - 2, 0)], edges[min(nz[-1] + 3, len(edges) - 1)]
    fig = _figure(7.0, 3.8)
    ax = fig.subplots()
    ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.6)
    lat = s.get("latency_ms") or {}
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        v = lat.get(key)
        if v is not None:
            ax.axvline(v, color="black", linestyle=style, label=f"{key} {v:.3g} ms")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("host latency (ms, log scale): block captured -> decision published")
    ax.set_ylabel("decisions")
    ax.set_title(f"Host latency, {int(counts.sum())} decisions ({_title(s)})", fontsize=11)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def _timeline(path: Path, s: Mapping[str, Any], data: Mapping[str, Any]) -> Path:
    tl = data["timeline"]
    width = float(tl["bin_s"])
    energy = np.asarray(tl["energy_uj"], float)
    static = np.asarray(tl["static_energy_uj"], float)
    spikes = np.asarray(tl["spikes"], float)
    dur = np.asarray(tl["stream_s"], float)
    edges = np.arange(len(energy) + 1) * width
    total_s = float(s.get("stream_s") or edges[-1])
    scale, unit = (1.0, "s") if total_s < 600 else (60.0, "min") if total_s < 36_000 else (3600.0, "h")
    ok = dur > 0
    power_mw = np.divide(energy, dur, out=np.full(energy.shape, np.nan), where=ok) * 1e-3
    dynamic_mw = np.divide(energy - static, dur, out=np.full(energy.shape, np.nan), where=ok) * 1e-3
    rate = np.divide(spikes, dur, out=np.full(spikes.shape, np.nan), where=ok)
    fig = _figure(9.0, 5.2)
    ax_p, ax_r = fig.subplots(2, 1, sharex=True)
    ax_p.stairs(power_mw, edges / scale, baseline=None, color="tab:red", lw=1.2, label="total (mW, left)")
    top = np.nanmax(power_mw) if ok.any() else 1.0
    ax_p.set_ylim(0, top * 1.25 if top > 0 else 1.0)
    # Static power often dwarfs the dynamic part: the dynamic part gets its own axis, in µW.
    ax_d = ax_p.twinx()
    ax_d.stairs(dynamic_mw * 1e3, edges / scale, baseline=None, color="tab:orange", lw=1, label="dynamic (µW, right)")
    ax_d.set_ylim(bottom=0)
    ax_d.set_ylabel("dynamic power (µW)", color="tab:orange")
    handles = ax_p.get_legend_handles_labels()[0] + ax_d.get_legend_handles_labels()[0]
    ax_p.legend(handles=handles, fontsize=8, loc="upper left", ncols=2)
    ax_r.stairs(rate, edges / scale, baseline=None, color="tab:purple", lw=1)
    ax_p.set_ylabel("chip power (mW)")
    ax_r.set_ylabel("chip spikes per s\n(of stream time)")
    ax_r.set_ylim(bottom=0)
    ax_r.set_xlabel(f"stream time ({unit}), files one after another; bins of {width:g} s")
    seg = data["segments"]
    starts = [x / scale for x in seg["start_s"]]
    ends = [*starts[1:], total_s / scale]
    names = [data["files"][f] if f is not None else "" for f in seg["file"]]
    for ax in (ax_p, ax_r):
        ax.grid(alpha=0.3)
        if len(starts) <= 60:  # every other file shaded
            spans = [(a, b - a) for a, b in zip(starts[::2], ends[::2], strict=False)]
            ax.broken_barh(spans, (0, 1), transform=ax.get_xaxis_transform(), color="0.9", zorder=0)
    if len(starts) <= 12:
        for a, b, name in zip(starts, ends, names, strict=True):
            ax_p.axvline(a, color="0.5", lw=0.6)
            label = Path(name).name
            if (b - a) / (total_s / scale) >= 0.008 * len(label):  # names that fit their file's span only
                ax_p.text((a + b) / 2, 1.01, label, transform=ax_p.get_xaxis_transform(), ha="center",
                          va="bottom", fontsize=7, clip_on=False)  # fmt: skip
    shown = f"{seg['total']} files" + (" (too many to shade)" if len(starts) > 60 else "")
    mean = s.get("power_mw_mean")
    mean_txt = f", mean {mean:.3g} mW" if isinstance(mean, float) and math.isfinite(mean) else ""
    fig.suptitle(f"Chip power and spike rate over {total_s:.1f} s of input, {shown}{mean_txt}", fontsize=11)
    fig.savefig(path)
    return path
