"""One self-contained HTML report (figures embedded as base64 PNG) plus a JSON file with every number behind it.

    data = build_report(col, eval_result=json.load(open("eval.json")), log="queries.jsonl")
    write_report(data, "report.html")          # also writes report.json

Figures: score histograms per modality pair, a 2-D map (PCA) coloured by modality or cluster, the hubness chart,
recall@k curves (when an evaluation result is given) and drift over time (when a query log or a time column is given).
Each figure carries one sentence saying how to read it and what would be a warning sign.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from . import diagnostics as dg
from . import drift as dr

CAPTIONS = {
    "scores": "Each panel shows, for one query modality and one target modality, the scores of random pairs (grey) "
              "and of each item's best match (colour), with the random pairs' 99th percentile dashed: choose a search "
              "threshold to the right of the grey mass; heavy overlap of the two is a warning sign, because then a "
              "best match scores no better than chance.",
    "map": "Each dot is an item placed by the two directions along which the vectors vary most (PCA) and coloured by "
           "{colour_by}; separate islands per modality show the modality gap, and a small tight group far from the "
           "rest is a warning sign of duplicates, a broken batch or outliers.",
    "hubness": "Bars count items by how many other items' {k} nearest-neighbour lists they appear in (k-occurrence), "
               "with the top hubs named; a long right tail (skewness well above 1) is a warning sign that a few hub "
               "items show up for almost every query and crowd out better matches.",
    "recall": "Each line is the share of queries whose relevant item is among the top k results, as k grows; a line "
              "that stays low even at large k, or a wide gap between the two directions, is a warning sign that the "
              "space does not separate these items well or embeds one modality worse.",
    "drift": "Each point compares one time window with the first window (MMD², filled red where the permutation "
             "p-value is under 0.05; the grey band is as far as chance alone reaches){bars}; points rising above the "
             "band{bars_warning} are a warning sign that new data or queries have moved away from what the "
             "collection was built and tuned on.",
}

TITLES = {"scores": "Score distributions per modality pair", "map": "2-D map of the collection",
          "hubness": "Hubness", "recall": "Recall@k", "drift": "Drift over time"}

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd"]


@dataclass
class Figure:
    id: str
    title: str
    caption: str
    png: bytes

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "caption": self.caption}


# ---- numbers --------------------------------------------------------------------------------------------------------
def build_report(col, *, eval_result: dict | None = None, log: str | Path | None = None,
                 drift_by: str | None = None, windows: int = 4, threshold: float | None = None, k: int = 10,
                 max_items: int = 5000, colour_by: str = "auto", permutations: int = 300, seed: int = 0) -> dict:
    """Every number of the report, plus (under "_figures") the figures themselves."""
    vs = dg.load_vectors(col, max_items=max_items, seed=seed)
    data = {"collection": col.name, "space": col.pinned, "created": time.time(),
            "diagnostics": dg.diagnose(col, k=k, seed=seed, vectors=vs)}
    data["map"], coords, labels = map_2d(vs, colour_by, seed)
    if eval_result is not None:
        data["recall_curves"] = [{"label": lab, "k": ks, "recall": vals}
                                 for lab, ks, vals in recall_curves(eval_result)]
        if not data["recall_curves"]:
            raise ConfigError("the evaluation result holds no recall@k numbers")
    drift_skipped = "no query log (--log) or time column (--drift-by) given"
    if log is not None:
        qlog = dr.read_query_log(log, space=lambda: col.space)
        dr.fill_best_scores(qlog, col)
        source = "given" if threshold is not None else None
        if threshold is None and qlog.vectors is not None:
            threshold, source = dr.calibrated_threshold(qlog, col, seed=seed), "calibrated"
        data["drift"] = {"source": "query log", "threshold_source": source,
                         **dr.log_drift(qlog, windows=windows, threshold=threshold, permutations=permutations,
                                        seed=seed)}
    elif drift_by is not None:
        tv = dg.load_vectors(col, max_items=max_items, seed=seed, time_column=drift_by)
        tv = tv.subset(~np.isnan(tv.times))
        try:
            data["drift"] = {"source": f"collection by {drift_by}",
                             "windows": dr.drift_over_time(tv, windows, permutations=permutations, seed=seed)}
        except ConfigError as e:   # no spread in time: the figure is not drawn, and the report says why
            drift_skipped = f"by {drift_by}: {e}"
    data["_figures"] = figures(data, coords, labels)
    data["figures"] = [f.to_dict() for f in data["_figures"]]
    data["figures_skipped"] = {fid: why for fid, why in (
        ("recall", "no evaluation result given (--eval)"),
        ("drift", drift_skipped)) if fid not in
        {f.id for f in data["_figures"]}}
    return data


def map_2d(vs: dg.VectorSet, colour_by: str = "auto", seed: int = 0) -> tuple[dict, np.ndarray, list[str]]:
    """PCA to two dimensions; labels are modalities, or k-means clusters when asked or when there is one modality."""
    from sklearn.decomposition import PCA

    if colour_by not in ("auto", "modality", "cluster"):
        raise ConfigError(f"colour by {colour_by!r}: choose modality, cluster or auto")
    pca = PCA(n_components=2, random_state=seed).fit(vs.vectors)
    coords = pca.transform(vs.vectors)
    mods = sorted(set(vs.modalities.tolist()))
    by = colour_by if colour_by != "auto" else ("modality" if len(mods) > 1 else "cluster")
    info = {"colour_by": by, "explained_variance_ratio": pca.explained_variance_ratio_.tolist()}
    if by == "modality":
        labels = vs.modalities.tolist()
    else:
        assign = clusters(vs.vectors, seed)
        n_clusters = int(assign.max()) + 1
        labels = [f"cluster {c}" for c in assign]
        info["clusters"] = [{"label": f"cluster {c}", "size": int((assign == c).sum()),
                             "examples": [vs.paths[i] or vs.ids[i] for i in np.flatnonzero(assign == c)[:5]]}
                            for c in range(n_clusters)]
    return info, coords, labels


def clusters(vectors: np.ndarray, seed: int = 0, most: int = 8, sample: int = 1000) -> np.ndarray:
    """k-means labels, with k from 2 to `most` chosen by the best silhouette (cosine). k is chosen on a sample of
    at most `sample` vectors; every vector then gets the nearest centre of the chosen model."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    fit_on = vectors if len(vectors) <= sample else vectors[rng.choice(len(vectors), sample, replace=False)]
    best, best_score = None, -np.inf
    for k in range(2, min(most, len(fit_on) - 1) + 1):
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(fit_on)
        score = silhouette_score(fit_on, model.labels_, metric="cosine")
        if score > best_score:
            best, best_score = model, score
    return best.predict(vectors) if best is not None else np.zeros(len(vectors), int)


GROUPING_KEYS = {"results", "directions", "metrics"}   # containers whose names add nothing to a curve's label


def recall_curves(result, label: str = "") -> list[tuple[str, list[int], list[float]]]:
    """Every mapping in an evaluation result that holds recall@K numbers, as (label, ks, values); the label is the
    path of keys and space names leading to it (e.g. "clip-vit-b-32 / text->image"), so any nesting of spaces and
    directions works, including `omnivec eval retrieval --json`'s {"results": [{"space", "directions"}]}."""
    curves = []
    if isinstance(result, dict):
        points = sorted((int(m.group(1)), float(v)) for key, v in result.items()
                        if (m := re.fullmatch(r"recall@(\d+)", str(key))) and isinstance(v, (int, float))
                        and not isinstance(v, bool) and np.isfinite(v))
        if points:
            name = label or str(result.get("direction") or result.get("space") or result.get("name") or "recall")
            curves.append((name, [p[0] for p in points], [p[1] for p in points]))
        for key, v in result.items():
            if isinstance(v, (dict, list)):
                name = label if key in GROUPING_KEYS else (f"{label} / {key}" if label else str(key))
                curves += recall_curves(v, name)
    elif isinstance(result, list):
        for i, v in enumerate(result):
            name = str(v.get("space") or v.get("name") or v.get("direction") or i) if isinstance(v, dict) else str(i)
            curves += recall_curves(v, f"{label} / {name}" if label else name)
    return curves


# ---- figures --------------------------------------------------------------------------------------------------------
def figures(data: dict, coords: np.ndarray, labels: list[str]) -> list[Figure]:
    d = data["diagnostics"]
    out = [Figure("scores", TITLES["scores"], CAPTIONS["scores"], _png(_scores_figure(d["scores"]))),
           Figure("map", TITLES["map"], CAPTIONS["map"].format(colour_by=data["map"]["colour_by"]),
                  _png(_map_figure(coords, labels, data["map"]))),
           Figure("hubness", TITLES["hubness"], CAPTIONS["hubness"].format(k=d["hubness"]["overall"]["k"]),
                  _png(_hubness_figure(d["hubness"])))]
    if data.get("recall_curves"):
        out.append(Figure("recall", TITLES["recall"], CAPTIONS["recall"], _png(_recall_figure(data["recall_curves"]))))
    drift = data.get("drift")
    if drift and len(drift["windows"]) >= 2:
        has_rate = any(w.get("no_match_rate") is not None for w in drift["windows"])
        caption = CAPTIONS["drift"].format(
            bars=", and the bars show the share of queries whose best score falls under the no-match threshold"
            if has_rate else "", bars_warning=", or a rising no-match share," if has_rate else "")
        out.append(Figure("drift", TITLES["drift"], caption, _png(_drift_figure(drift))))
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return buf.getvalue()


def _new_figure(width: float, height: float):
    # A bare Figure (no pyplot): no global state and no display backend, safe in servers and threads.
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def _scores_figure(scores: dict):
    pairs = scores["pairs"]
    cols = min(3, len(pairs))
    rows = int(np.ceil(len(pairs) / cols))
    fig = _new_figure(4.2 * cols, 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, p, colour in zip(axes, pairs, PALETTE * 4):
        edges = np.asarray(p["edges"])
        width = np.diff(edges)
        for part, c, name in (("random_pairs", "#9a9a9a", "random pairs"), ("best_match", colour, "best match")):
            counts = np.asarray(p[part]["histogram"], float)
            ax.bar(edges[:-1], counts / max(counts.sum(), 1) / width, width=width, align="edge", color=c, alpha=0.6,
                   label=name)
        ax.axvline(p["noise_floor_p99"], color="black", linestyle="--", linewidth=1, label="random p99")
        ax.set_title(f"{p['query']} → {p['target']}", fontsize=10)
        ax.set_xlabel("cosine score")
        ax.legend(fontsize=7)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    axes[0].set_ylabel("density")
    return fig


def _map_figure(coords: np.ndarray, labels: list[str], info: dict):
    fig = _new_figure(6.5, 5.0)
    ax = fig.add_subplot()
    names = sorted(set(labels), key=lambda s: (len(s), s))
    lab = np.asarray(labels)
    for name, colour in zip(names, PALETTE * 10):
        pts = coords[lab == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=10, alpha=0.7, color=colour, label=f"{name} ({len(pts)})")
    ev = info["explained_variance_ratio"]
    ax.set_xlabel(f"PC 1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({ev[1]:.0%} of variance)" if len(ev) > 1 else "PC 2")
    ax.legend(fontsize=8, markerscale=1.5)
    return fig


def _hubness_figure(hub: dict):
    """Top row: the k-occurrence histogram of all items and the top hubs by name; below, one histogram per
    (query modality -> target modality) pair."""
    from matplotlib.ticker import MaxNLocator

    pairs = hub["pairs"][:4]
    fig = _new_figure(11.0, 3.6 * (1 + bool(pairs)))
    grid = fig.add_gridspec(1 + bool(pairs), max(2, len(pairs)))
    overall = hub["overall"]
    panels = [(fig.add_subplot(grid[0, :1]), "all items", overall)]
    panels += [(fig.add_subplot(grid[1, i]), f"{p['query']} → {p['target']}", p) for i, p in enumerate(pairs)]
    for ax, name, h in panels:
        counts = np.asarray(h["histogram"])
        ax.bar(np.arange(len(counts)), counts, width=0.9, color=PALETTE[0])
        if counts.max() > 50 * max(counts[counts > 0].min(), 1):   # a long tail would be invisible on a linear axis
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"k-occurrence (in how many {h['k']}-NN lists)")
        ax.set_ylabel("items")
        ax.set_title(f"{name}: skewness {h['skewness']:.2f}", fontsize=10)
    hubs = overall.get("hubs", [])[:10][::-1]
    ax = fig.add_subplot(grid[0, 1:])
    ax.barh(np.arange(len(hubs)), [x["occurrence"] for x in hubs], color=PALETTE[3])
    ax.set_yticks(np.arange(len(hubs)), [f"{_short(x['path'] or x['id'])} ({x['modality']})" for x in hubs],
                  fontsize=8)
    ax.axvline(overall["k"], color="black", linestyle="--", linewidth=1, label=f"average ({overall['k']})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k-occurrence")
    ax.set_title("top hubs", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _short(s: str, n: int = 28) -> str:
    s = Path(s).name if "/" in s else s
    return s if len(s) <= n else "…" + s[-(n - 1):]


def _recall_figure(curves: list[dict]):
    fig = _new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for c, colour in zip(curves, PALETTE * 4):
        ax.plot(c["k"], c["recall"], marker="o", color=colour, label=c["label"])
    ax.set_xscale("log")
    ks = sorted({k for c in curves for k in c["k"]})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _drift_figure(drift: dict):
    rows = drift["windows"]
    fig = _new_figure(7.0, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    mmd = [r.get("mmd2", 0.0 if r["window"] == 0 else np.nan) for r in rows]
    null = [r.get("null_p95", np.nan) for r in rows]
    # What chance alone reaches (95% of permutations stay under it); the unbiased MMD² may dip below zero.
    floor = min(0.0, float(np.nanmin(mmd)))
    ax.fill_between(x, floor, null, color="#bbbbbb", alpha=0.4, label="chance level (95% of permutations)")
    ax.plot(x, mmd, color=PALETTE[0], marker="o", markerfacecolor="white", label="MMD² vs first window")
    low = [i for i, r in enumerate(rows) if r.get("p_value") is not None and r["p_value"] < 0.05]
    ax.scatter(x[low], np.asarray(mmd)[low], color="#c44e52", zorder=3, label="p < 0.05")
    ax.set_ylabel("MMD²")
    ax.set_xticks(x, [time.strftime("%Y-%m-%d\n%H:%M", time.gmtime(r["start"])) if r["start"] > 1e8
                      else f"{r['start']:g}" for r in rows], fontsize=7)
    ax.set_xlabel("window start (UTC)")
    handles, names = ax.get_legend_handles_labels()
    if any(r.get("no_match_rate") is not None for r in rows):
        ax2 = ax.twinx()
        ax2.bar(x, [r.get("no_match_rate") or 0 for r in rows], width=0.4, color=PALETTE[1], alpha=0.35,
                label="no-match share", zorder=0)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("share of queries with no good match")
        ax.set_zorder(ax2.get_zorder() + 1)   # the MMD line in front of the bars
        ax.patch.set_visible(False)
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    # below the plot, where it cannot hide a point
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, fontsize=8, frameon=False)
    return fig


# ---- writing --------------------------------------------------------------------------------------------------------
def summary_rows(d: dict, drift: dict | None = None) -> list[tuple[str, str]]:
    """The headline numbers of a diagnostics result (and a query log's no-match rate), as (name, text) rows."""
    rows = [("items", f"{d['items']}" + (f" ({d['measured']} sampled)" if d["sampled"] else "")),
            ("modalities", ", ".join(f"{m}: {n}" for m, n in d["modalities"].items())),
            ("dimensions", str(d["dim"]))]
    for p in d["gap"]["pairs"]:
        a, b = p["modalities"]
        ms = p["mean_score"]
        rows.append((f"modality gap {a}–{b}", f"centroid distance {_num(p['centroid_distance'])}; mean score cross "
                     f"{_num(ms['cross'])} vs within {a} {_num(ms[f'within_{a}'])}, within {b} "
                     f"{_num(ms[f'within_{b}'])}"))
    h = d["hubness"]["overall"]
    rows.append(("hubness", f"skewness {h['skewness']:.2f} (k={h['k']}); antihubs {h['antihub_rate']:.1%}"))
    e = d["dimensionality"]["overall"]
    if e["participation_ratio"] is not None:
        rows.append(("effective dimensionality", f"participation ratio {e['participation_ratio']:.1f}; "
                     f"{e['components_90']} components for 90% of variance"))
    rows.append(("outliers", f"{d['outliers']['count']} ({d['outliers']['rate']:.1%})"))
    rows.append(("near-duplicates", f"{d['duplicates']['rate']:.1%} redundant at cosine ≥ "
                 f"{d['duplicates']['threshold']}"))
    f = d["failures"]
    rows.append(("failed files", f"{f['status'].get('failed', 0)} of {f['files']} ({f['failure_rate']:.1%})"
                 + "".join(f"; {s}: {n}" for s, n in f["failed_by_stage"].items())))
    if drift and drift.get("no_match_rate") is not None:
        rows.append(("no good match", f"{drift['no_match_rate']:.1%} of queries under {drift['threshold']:.3f}"))
    return rows


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def render_html(data: dict) -> str:
    esc = html.escape
    parts = [f"<section class='figure' id='fig-{esc(f.id)}'><h2>{esc(f.title)}</h2><figure>"
             f"<img alt='{esc(f.title)}' src='data:image/png;base64,{base64.b64encode(f.png).decode()}'>"
             f"<figcaption>{esc(f.caption)}</figcaption></figure></section>" for f in data["_figures"]]
    skipped = "".join(f"<li>{esc(TITLES[k])}: {esc(v)}</li>" for k, v in data["figures_skipped"].items())
    summary = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                      for k, v in summary_rows(data["diagnostics"], data.get("drift")))
    space = data["space"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>omnivec report: {esc(data['collection'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ text-align: left; padding: 4px 12px;
border-bottom: 1px solid #e4e4e4; vertical-align: top; }} th {{ font-weight: 600; white-space: nowrap; }}
figure {{ margin: 0; }} img {{ max-width: 100%; }} figcaption {{ color: #444; margin-top: 0.4em; max-width: 800px; }}
section.figure {{ margin: 2.5em 0; }}
</style></head><body>
<h1>Collection {esc(data['collection'])}</h1>
<p>Space {esc(str(space.get('name')))} (version {esc(str(space.get('version')))}, {esc(str(space.get('dim')))}-d),
report written {esc(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(data['created'])))}. Every number is also in the
JSON file written beside this one.</p>
<table>{summary}</table>
{''.join(parts)}
{f'<p>Not drawn:</p><ul>{skipped}</ul>' if skipped else ''}
</body></html>
"""


def write_report(data: dict, out_html: str | Path, out_json: str | Path | None = None) -> tuple[Path, Path]:
    """Write the HTML file and its JSON twin (default: the HTML path with .json); returns both paths."""
    out_html = Path(out_html)
    out_json = Path(out_json) if out_json else out_html.with_suffix(".json")
    if out_json == out_html:
        raise ConfigError(f"the JSON file would overwrite the HTML file {out_html}; give another --json-out")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(render_html(data), encoding="utf-8")
    plain = dg.json_ready({k: v for k, v in data.items() if not k.startswith("_")})
    out_json.write_text(json.dumps(plain, indent=2, allow_nan=False), encoding="utf-8")
    return out_html, out_json
