"""Bar chart of a bench/run.py report: one subplot per case, one bar per server (median req/s).

    bench/.venv/bin/python bench/chart.py bench/results/latest.json bench/results/latest.png

Run by run.py after every run (it needs matplotlib, which run.py installs into bench/.venv).
maitre's rows are highlighted; the ceiling (no Python) and the app alone (no server) are
hatched; a row that shares both cores with wrk (maitre w2, maitre w2 reuseport) is drawn lighter; "wrk-bound" marks
rows where wrk used >= 95% of its core (the server could go faster than that bar). Big-body
cases note bytes/s and peak RSS.
"""

import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

MAITRE = "#c0392b"
MAITRE_LIGHT = "#f1a9a0"
OTHER = "#7f8c8d"
CEILING = "#d5dbdb"
REFERENCES = ("ceiling", "app alone")  # rows that are not servers under test


def short(v):
    if v >= 1e6:
        text = f"{v / 1e6:.1f}M"
    elif v >= 1e4:
        text = f"{v / 1e3:.0f}k"
    elif v >= 1e3:
        text = f"{v / 1e3:.1f}k"
    else:
        return f"{v:.0f}"
    return text.replace(".0M", "M").replace(".0k", "k")


def main(src, dst):
    with open(src) as f:
        data = json.load(f)
    info, cases, results = data["info"], data.get("cases", {}), data["results"]
    names = list(results)
    ncols = 3 if len(names) > 4 else min(len(names), 2) or 1
    nrows = (len(names) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.3 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        meta = cases.get(name, {})
        rows = results[name]
        labels, values, colors, hatches, notes = [], [], [], [], []
        for r in rows:
            label = r["server"].replace(" ", "\n", 1)
            multi_core = re.fullmatch(r"maitre w\d+( reuseport)?", r["server"])
            if multi_core:
                label += "\n(2 cores,\nshared w/ wrk)"
            labels.append(label)
            values.append(r.get("rps", 0.0))
            if multi_core:
                colors.append(MAITRE_LIGHT)
            elif r["server"].startswith("maitre"):
                colors.append(MAITRE)
            elif r["server"] in REFERENCES:
                colors.append(CEILING)
            else:
                colors.append(OTHER)
            hatches.append("//" if r["server"] in REFERENCES else None)
            note = []
            if "rps" not in r:
                note.append("failed")
            elif r.get("client_cpu", 0) >= 0.95:
                note.append("wrk-bound")
            if meta.get("bytes_per_sec") and r.get("bytes_per_sec"):
                note.append(f"{r['bytes_per_sec'] / 1e9:.2f} GB/s")
            if meta.get("upload") and "rps" in r:
                note.append(f"{r['rps'] * meta['upload'] / 1e9:.2f} GB/s up")
            if (meta.get("bytes_per_sec") or meta.get("upload")) and r.get("peak_rss"):
                note.append(f"{r['peak_rss'] / 2**20:.0f} MiB peak")
            if meta.get("idle") and "rps" in r:
                per = r.get("idle_bytes_per_conn")
                if r.get("idle_failed"):
                    note.append(f"FAILED:\nheld {r.get('idle_held', 0):,}")
                if per is not None:
                    note.append(f"{per / 1024:.1f} KiB/conn")
            notes.append("\n".join(note))
        x = range(len(rows))
        bars = ax.bar(x, values, color=colors, edgecolor="#34495e", linewidth=0.6)
        for bar, h in zip(bars, hatches):
            if h:
                bar.set_hatch(h)
        top = max(values) if values and max(values) > 0 else 1.0
        for i, (v, note) in enumerate(zip(values, notes)):
            text = short(v) if v else ""
            ax.text(i, v + top * 0.015, text, ha="center", va="bottom", fontsize=8.5,
                    fontweight="bold" if rows[i]["server"].startswith("maitre") else "normal")
            if note:
                ax.text(i, v + top * 0.085, note, ha="center", va="bottom", fontsize=7,
                        color="#2c3e50")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=8)
        for tick, r in zip(ax.get_xticklabels(), rows):
            if r["server"].startswith("maitre"):
                tick.set_color(MAITRE)
                tick.set_fontweight("bold")
        ax.set_ylim(0, top * 1.3)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: short(v)))
        ax.set_ylabel("req/s (median)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        title = name + (f" — {meta['connections']} conns" if meta.get("connections") else "")
        if name == "sleep10" and data.get("scaling_t32_t1"):
            title += f"\nmaitre t32/t1 = {data['scaling_t32_t1']:.1f}×"
        elif meta.get("title"):
            title += "\n" + meta["title"]
        ax.set_title(title, fontsize=9.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    args = data.get("args", {})
    where = (f"servers on CPU {args.get('server_cpus', '0')}, wrk on CPU "
             f"{args.get('client_cpus', '1')}" if args.get("pin", True) else "no pinning")
    fig.suptitle(f"maitre benchmark — {info['date']} — {info['cpu']}, {info['nproc']} CPUs; "
                 f"{where} (req/s, higher is better)", fontsize=10.5)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
