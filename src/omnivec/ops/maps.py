"""2-D maps of vectors: a projection (PCA or UMAP) drawn as a PNG (matplotlib) and as a self-contained HTML page.

    coords, used = project(vectors, "umap")
    save_map("map.html", coords, groups, {0: "red", 1: "blue"}, hover=["red-0.jpg", ...])

The HTML page needs no network and no plotting library: the points are inline SVG circles (each with a <title>,
so even without JavaScript the browser shows the label on hover), plus a few lines of JavaScript for a styled
tooltip and for highlighting a group from the legend. The points are also embedded as JSON
(`<script type="application/json" id="omnivec-points">`) so other tools can read the map back."""
from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError

PROJECTIONS = ("pca", "umap")
FORMATS = (".png", ".html")
NOISE_COLOUR = "#b0b0b0"


def project(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) coordinates scaled to [0, 1], and the method used. UMAP (cosine metric) needs at least 4 points;
    fewer are projected with PCA and the method returned says so."""
    if method not in PROJECTIONS:
        raise ConfigError(f"unknown projection {method!r}; use one of {', '.join(PROJECTIONS)}")
    v = np.asarray(vectors, np.float32)
    n = len(v)
    if n == 0:
        return np.zeros((0, 2), np.float32), method
    if method == "umap" and n >= 4:
        try:
            import umap  # optional and slow to import (numba): only loaded for UMAP maps
        except ImportError as e:
            raise ConfigError(f"the UMAP projection needs umap-learn ({e}); install it or use --projection pca") \
                from None
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed,
                            init="random" if n < 10 else "spectral", n_jobs=1)
        with warnings.catch_warnings():   # a fixed seed makes UMAP single-threaded, and it warns about that
            warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
            coords = reducer.fit_transform(v)
    else:
        method = "pca"
        coords = _pca(v)
    return _unit_box(np.asarray(coords, np.float64)), method


def _pca(v: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    out = np.zeros((len(v), 2))
    if len(v) >= 2:
        comps = min(2, len(v), v.shape[1])
        out[:, :comps] = PCA(n_components=comps, random_state=0).fit_transform(v)
    return out


def _unit_box(coords: np.ndarray) -> np.ndarray:
    lo, hi = coords.min(0), coords.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return ((coords - lo) / span).astype(np.float32)


def group_colours(groups: Sequence[int]) -> dict[int, str]:
    """A distinct colour per group id (tab10, then tab20 for more groups); noise (-1) is grey."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    ids = sorted({int(g) for g in groups if g >= 0})
    cmap = colormaps["tab10" if len(ids) <= 10 else "tab20"]
    colours = {g: to_hex(cmap(i % cmap.N)) for i, g in enumerate(ids)}
    colours[-1] = NOISE_COLOUR
    return colours


def save_map(path: str | Path, coords: np.ndarray, groups: Sequence[int], names: Mapping[int, str],
             hover: Sequence[str], title: str = "omnivec map") -> Path:
    """Write a map as PNG or HTML, chosen by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"map file {path}: use a .png or .html name")
    if not (len(coords) == len(groups) == len(hover)):
        raise ValueError(f"{len(coords)} points, {len(groups)} groups and {len(hover)} hover labels differ")
    path.parent.mkdir(parents=True, exist_ok=True)
    (save_png if suffix == ".png" else save_html)(path, coords, groups, names, hover, title)
    return path


def save_png(path: Path, coords: np.ndarray, groups: Sequence[int], names: Mapping[int, str],
             hover: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    groups = np.asarray(groups, int)
    colours = group_colours(groups)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    try:
        for g in sorted(set(groups.tolist())):
            sel = groups == g
            ax.scatter(coords[sel, 0], coords[sel, 1], s=24, c=colours[g], alpha=0.85, edgecolors="none",
                       label=f"{names.get(g, g)} ({int(sel.sum())})")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(set(groups.tolist())) <= 20:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)


SIDE = 640      # the SVG plot's side in pixels
PAD = 16


def save_html(path: Path, coords: np.ndarray, groups: Sequence[int], names: Mapping[int, str],
              hover: Sequence[str], title: str) -> None:
    groups = [int(g) for g in groups]
    colours = group_colours(groups)
    span = SIDE - 2 * PAD
    points = [{"x": round(float(x), 5), "y": round(float(y), 5), "group": g, "name": names.get(g, str(g)),
               "label": str(h)} for (x, y), g, h in zip(np.asarray(coords, float), groups, hover)]
    circles = "\n".join(
        f'<circle cx="{PAD + p["x"] * span:.1f}" cy="{PAD + (1 - p["y"]) * span:.1f}" r="5" '
        f'fill="{colours[p["group"]]}" data-group="{p["group"]}"><title>{html.escape(p["label"])} '
        f'[{html.escape(p["name"])}]</title></circle>' for p in points)
    sizes = {g: groups.count(g) for g in set(groups)}
    legend = "\n".join(
        f'<li data-group="{g}"><span style="background:{colours[g]}"></span>{html.escape(names.get(g, str(g)))} '
        f'({sizes[g]})</li>' for g in sorted(sizes))
    # "</" cannot appear inside a <script> element; escaping the slash keeps the JSON valid
    data = json.dumps(points).replace("</", "<\\/")
    path.write_text(_PAGE.format(title=html.escape(title), side=SIDE, circles=circles, legend=legend, data=data,
                                 n=len(points)), encoding="utf-8")


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; display: flex; gap: 24px; align-items: flex-start; }}
svg {{ border: 1px solid #ddd; background: #fff; }}
circle {{ stroke: #fff; stroke-width: 0.5; cursor: pointer; }}
circle.dim {{ opacity: 0.12; }}
ul {{ list-style: none; padding: 0; margin: 0; }}
li {{ cursor: pointer; margin: 3px 0; }}
li span {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px; border-radius: 6px; }}
#tip {{ position: fixed; pointer-events: none; background: #222; color: #fff; padding: 4px 8px; border-radius: 4px;
        font-size: 12px; display: none; max-width: 420px; word-break: break-all; }}
</style></head>
<body>
<div><h3>{title}</h3><p>{n} points. Hover a point for its item; click a legend entry to highlight its group.</p>
<svg id="map" width="{side}" height="{side}" viewBox="0 0 {side} {side}">
{circles}
</svg></div>
<div><h3>Groups</h3><ul id="legend">
{legend}
</ul></div>
<div id="tip"></div>
<script type="application/json" id="omnivec-points">{data}</script>
<script>
(function () {{
  var tip = document.getElementById("tip"), circles = document.querySelectorAll("#map circle"), active = null;
  circles.forEach(function (c) {{
    var title = c.querySelector("title"), text = title.textContent;
    title.remove();  // the styled tooltip replaces the browser's own
    c.addEventListener("mousemove", function (e) {{
      tip.textContent = text; tip.style.display = "block";
      tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
    }});
    c.addEventListener("mouseleave", function () {{ tip.style.display = "none"; }});
  }});
  document.querySelectorAll("#legend li").forEach(function (li) {{
    li.addEventListener("click", function () {{
      active = active === li.dataset.group ? null : li.dataset.group;
      circles.forEach(function (c) {{ c.classList.toggle("dim", active !== null && c.dataset.group !== active); }});
    }});
  }});
}})();
</script>
</body></html>
"""
