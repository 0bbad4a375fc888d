"""`browser.html`: a static, self-contained page to read the quanta found by `quanta discover`.

Clusters are listed by size (or, with a model family, by N*); each shows the histogram of its ten most
common answer tokens, a heatmap of its members' gradient cosines, example contexts with the target
outlined, its one-line description with its detection AUC and, with a family, its mean loss against scale
(inline SVG, interquartile band) and N*; `link_neurons` adds each quantum's neurons with links to their pages.
Corpus text travels only in the page's JSON block and reaches the DOM through `textContent` (`QI.tokens`,
`QI.el`); the page loads nothing from the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..report.html import page, page_data, write_page

__all__ = ["write_browser", "link_neurons"]

STYLE = """
#sort { margin:.3rem 0; font-size:13px; } #sort button.on { outline:2px solid var(--hi); }
#list { display:flex; flex-wrap:wrap; gap:.3rem; margin:.4rem 0; }
#list button { border:1px solid var(--line); background:var(--card); color:var(--fg); border-radius:5px;
  padding:.1rem .45rem; cursor:pointer; font:inherit; font-size:13px; }
#list button.on { outline:2px solid var(--hi); }
.toptok { display:inline-block; margin:0 .4rem .2rem 0; font-family:ui-monospace, monospace; }
.meta { font-size:12px; color:var(--muted); margin-top:.2rem; }
.panels { display:flex; flex-wrap:wrap; gap:1rem; align-items:flex-start; }
.panels .card { margin:0; } .panels h3 { font-size:.9rem; margin:0 0 .3rem; font-weight:600; }
.hist td { padding:.05rem .4rem; border:none; font-size:13px; } .hist td:first-child { font-family:ui-monospace, monospace; }
svg text { fill:var(--fg); font-size:10px; } svg .axis { stroke:var(--muted); stroke-width:1; fill:none; }
svg .band { fill:var(--hi); opacity:.18; } svg .line { stroke:var(--hi); stroke-width:2; fill:none; }
svg .dot { fill:var(--hi); } svg .nstar { stroke:#D55E00; stroke-width:1.5; stroke-dasharray:4 3; }
.badge { display:inline-block; border-radius:4px; padding:0 .3rem; font-size:11px; margin-left:.25rem; color:#fff; }
.badge.stable { background:#0072B2; } .badge.shaky { background:#E69F00; } .badge.dissolves { background:#D55E00; }
"""

BODY = """<h1 id="title"></h1><p class="muted" id="subtitle"></p>
<nav><button id="prev">&larr; Prev</button><span id="where"></span><button id="next">Next &rarr;</button></nav>
<div id="sort"></div><div id="list"></div><div id="cluster"></div>"""

SCRIPT = r"""
const D = QI.data, F = D.family; let cur = 0, order = D.clusters.map((c, i) => i);
document.getElementById('title').textContent = D.title;
document.getElementById('subtitle').textContent = D.subtitle;
const list = document.getElementById('list'), sortBox = document.getElementById('sort');
const sci = v => (v === null || v === undefined) ? 'n/a' : (!isFinite(v) ? '∞' : Number(v).toPrecision(2));
const nStarText = c => c.censored === 'left' ? `≤ ${sci(F.x[0])} (learned by the smallest member)`
  : c.censored === 'right' ? 'not learned within the family'
  : `${sci(c.n_star)} [${sci(c.n_star_ci[0])}, ${c.n_star_ci[1] === null ? '∞' : sci(c.n_star_ci[1])}]`;  // JSON null: ∞
const starKey = c => c.n_star === null || c.n_star === undefined ? Infinity : c.n_star;
const hasStab = D.clusters.some(c => c.stability !== undefined && c.stability !== null);
const stabKind = v => v >= 0.75 ? 'stable' : v >= 0.5 ? 'shaky' : 'dissolves';  // Hennig's bands
function badge(c) { if (c.stability === undefined || c.stability === null) return null;
  const b = QI.el('span', `${stabKind(c.stability)} ${QI.num(c.stability, 2)}`, `badge ${stabKind(c.stability)}`);
  b.title = `stability: mean Jaccard of this quantum's best match over ${D.n_resamples} resamples`; return b; }
function sortBy(key) {
  order = D.clusters.map((c, i) => i);
  if (key === 'nstar') order.sort((a, b) => starKey(D.clusters[a]) - starKey(D.clusters[b]) || a - b);
  if (key === 'stability') order.sort((a, b) => (D.clusters[b].stability ?? -1) - (D.clusters[a].stability ?? -1) || a - b);
  [...sortBox.querySelectorAll('button')].forEach(b => b.classList.toggle('on', b.dataset.key === key));
  list.replaceChildren();
  order.forEach(i => { const c = D.clusters[i];
    const b = QI.el('button', `#${c.rank} (${c.size})` + (F ? ` N*=${c.censored === 'right' ? '∞' : sci(c.n_star)}` : ''));
    const g = badge(c); if (g) b.appendChild(g);
    b.dataset.index = i; b.onclick = () => show(i); list.appendChild(b); });
  show(cur);
}
sortBox.appendChild(QI.el('span', 'sort by: ', 'muted'));
[['size', 'size'], ...(hasStab ? [['stability', 'stability']] : []), ...(F ? [['nstar', 'N* (learning scale)']] : [])].forEach(([key, text]) => {
  const b = QI.el('button', text); b.dataset.key = key; b.onclick = () => sortBy(key); sortBox.appendChild(b); });
const NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, text) { const e = document.createElementNS(NS, tag);
  Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v)); if (text !== undefined) e.textContent = String(text); return e; }
function curve(c) {
  const W = 340, H = 200, L = 44, R = 10, T = 10, B = 34, lx = F.x.map(Math.log);
  const lo = Math.min(0, ...c.curve.q25), hi = Math.max(...c.curve.q75, ...c.curve.mean) * 1.05 || 1;
  const X = v => L + (v - lx[0]) / ((lx[lx.length - 1] - lx[0]) || 1) * (W - L - R), Y = v => T + (hi - v) / (hi - lo) * (H - T - B);
  const s = svg('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'curve'});
  s.appendChild(svg('title', {}, `mean loss vs ${F.axis}`));
  s.appendChild(svg('path', {class: 'axis', d: `M${L},${T} V${H - B} H${W - R}`}));
  const band = lx.map((v, i) => `${X(v)},${Y(c.curve.q75[i])}`).concat(lx.map((v, i) => `${X(v)},${Y(c.curve.q25[i])}`).reverse());
  s.appendChild(svg('polygon', {class: 'band', points: band.join(' ')}));
  s.appendChild(svg('polyline', {class: 'line', points: lx.map((v, i) => `${X(v)},${Y(c.curve.mean[i])}`).join(' ')}));
  let lastTick = -Infinity;  // tick labels closer than 44 px to the previous one are left out
  lx.forEach((v, i) => { s.appendChild(svg('circle', {class: 'dot', cx: X(v), cy: Y(c.curve.mean[i]), r: 2.5}));
    if (X(v) - lastTick >= 44) { s.appendChild(svg('text', {x: X(v), y: H - B + 12, 'text-anchor': 'middle'}, sci(F.x[i])));
      lastTick = X(v); } });
  if (c.n_star !== null && isFinite(c.n_star) && c.censored !== 'left') {
    const xs = X(Math.log(c.n_star)); s.appendChild(svg('line', {class: 'nstar', x1: xs, x2: xs, y1: T, y2: H - B}));
    s.appendChild(svg('text', {x: xs + 3, y: T + 9}, 'N*')); }
  [lo, (lo + hi) / 2, hi].forEach(v => s.appendChild(svg('text', {x: L - 4, y: Y(v) + 3, 'text-anchor': 'end'}, QI.num(v, 1))));
  s.appendChild(svg('text', {x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle'},
    F.axis === 'N' ? 'non-embedding parameters N' : 'training step'));
  return s;
}
function heatmap(cos) {
  const n = cos.length, cell = Math.max(6, Math.min(14, Math.floor(220 / n))), W = n * cell;
  const s = svg('svg', {width: W, height: W, viewBox: `0 0 ${W} ${W}`, role: 'img', class: 'heatmap'});
  s.appendChild(svg('title', {}, 'cosine similarity of the members\' gradients'));
  cos.forEach((row, i) => row.forEach((v, j) => { const r = svg('rect', {x: j * cell, y: i * cell, width: cell, height: cell,
    fill: QI.colour(v, 1) || 'transparent'}); r.appendChild(svg('title', {}, `cos = ${QI.num(v, 2)}`)); s.appendChild(r); }));
  return s;
}
function neurons(c) {
  const box = QI.el('div', undefined, 'neurons');
  if (!c.neurons) { box.appendChild(QI.el('p', 'not linked: rerun `quanta neurons link` with more --quanta', 'muted')); return box; }
  const t = QI.el('table', undefined, 'nlist');
  c.neurons.forEach(n => { const tr = QI.el('tr'), td = QI.el('td'), a = QI.el(n.href ? 'a' : 'span', `neuron ${n.neuron}`);
    if (n.href) a.href = n.href; td.appendChild(a); tr.appendChild(td); tr.appendChild(QI.el('td', `A = ${QI.num(n.attribution, 3)} nats`));
    if (n.description) tr.appendChild(QI.el('td', n.description, 'muted')); t.appendChild(tr); });
  box.appendChild(t); box.appendChild(QI.el('p', D.neurons_note, 'meta')); return box;
}
function panel(title, content) { const p = QI.el('div', undefined, 'card'); p.appendChild(QI.el('h3', title));
  p.appendChild(content); return p; }
function show(i) {
  cur = (i + D.clusters.length) % D.clusters.length; const c = D.clusters[cur];
  history.replaceState(null, '', '#' + c.rank);
  [...list.children].forEach(b => b.classList.toggle('on', Number(b.dataset.index) === cur));
  document.getElementById('where').textContent = `cluster ${order.indexOf(cur) + 1} of ${D.clusters.length}`;
  const box = document.getElementById('cluster'); box.replaceChildren();
  const h = QI.el('h2', `Cluster #${c.rank}: ${c.size} tokens (${QI.num(100 * c.size / D.n_tokens, 1)}%)`);
  const g = badge(c); if (g) h.appendChild(g); box.appendChild(h);
  if (c.description) box.appendChild(QI.el('p', `${c.description.text} · detection AUC ${c.description.auc === null ? 'n/a' : QI.num(c.description.auc, 2)}`, 'description'));
  if (F && c.curve) box.appendChild(QI.el('p', `learned at N* = ${nStarText(c)}; loss falls ${QI.num(c.drop, 2)} nats`, 'nstar-text'));
  const panels = QI.el('div', undefined, 'panels');
  if (F && c.curve) panels.appendChild(panel(`mean loss (IQR band) vs ${F.axis}`, curve(c)));
  const hist = QI.el('table', undefined, 'hist'), top = c.top_targets[0] ? c.top_targets[0][1] : 1;
  c.top_targets.forEach(([t, n]) => { const tr = QI.el('tr'); tr.appendChild(QI.el('td', QI.visible(t)));
    const bar = QI.el('td'); const span = QI.el('span', undefined, 'bar'); span.style.width = `${Math.round(120 * n / top)}px`;
    bar.appendChild(span); tr.appendChild(bar); tr.appendChild(QI.el('td', `×${n}`)); hist.appendChild(tr); });
  panels.appendChild(panel('top answer tokens', hist));
  if (c.cos && c.cos.length > 1) panels.appendChild(panel(`gradient cosine, ${c.cos.length} members`, heatmap(c.cos)));
  if (D.neurons_note !== undefined) panels.appendChild(panel(`neurons of ${D.neurons_hook} by attribution`, neurons(c)));
  box.appendChild(panels);
  c.examples.forEach(e => { const card = QI.el('div', undefined, 'card');
    card.appendChild(QI.tokens(e.tokens, null, 0, e.tokens.length - 1));
    card.appendChild(QI.el('div', `${e.doc_name} · token ${e.pos} · loss ${QI.num(e.loss, 3)} nats`, 'meta'));
    box.appendChild(card); });
}
const step = d => show(order[(order.indexOf(cur) + d + order.length) % order.length]);
document.getElementById('prev').onclick = () => step(-1);
document.getElementById('next').onclick = () => step(1);
document.addEventListener('keydown', e => { if (e.key === 'ArrowLeft') step(-1); if (e.key === 'ArrowRight') step(1); });
const wanted = D.clusters.findIndex(c => c.rank === parseInt(location.hash.slice(1)));
cur = Math.max(0, wanted); sortBy('size');
"""


def write_browser(path: str | Path, clusters: Sequence[dict], *, title: str, subtitle: str, n_tokens: int,
                  family: dict | None = None, n_resamples: int = 0, max_examples: int = 20) -> Path:
    """Write the page.

    Parameters
    ----------
    clusters : sequence of dict, largest first
        Each needs `size`, `top_targets` [(token, count)] (the first 10 are drawn as a histogram) and
        `examples` [{tokens: [str] with the target last, doc_name, pos, loss}]; optional `rank` (default its
        position), `cos` (a small square matrix of the members' gradient cosines, drawn as a heatmap) and,
        with `family`, `curve` {mean, q25, q75: loss per member}, `n_star`, `n_star_ci`, `censored`, `drop`
        (`scaling.quanta_scaling`'s per-quantum entries), `stability` (mean best-match Jaccard over resamples,
        `stability.jaccard_stability`: drawn as a badge, stable ≥ 0.75 > shaky ≥ 0.5 > dissolves; the index can
        be sorted by it), `description` (`Description.to_dict()`: its line and detection AUC, shown under the
        heading).
    family : dict or None
        `x` (each member's scale) and `axis` ("N" or "step"): draws each quantum's loss curve and N*, and
        lets the index be sorted by N*.
    n_resamples : int
        Resamples behind `stability` (shown in the badge's tooltip).
    """
    keys = ("n_star", "n_star_ci", "censored", "drop", "curve", "cos", "stability", "description")
    data = {"title": title, "subtitle": subtitle, "n_tokens": n_tokens, "n_resamples": n_resamples,
            "family": None if family is None else {"x": list(family["x"]), "axis": family["axis"]},
            "clusters": [{"rank": c.get("rank", i + 1), "size": c["size"], "top_targets": c["top_targets"][:10],
                          "examples": c["examples"][:max_examples], **{k: c[k] for k in keys if k in c}}
                         for i, c in enumerate(clusters)]}
    return write_page(path, page(title, data=data, script=SCRIPT, style=STYLE, body=BODY))


def link_neurons(source: str | Path, path: str | Path, neurons: dict[int, list[dict]], *, hook: str,
                 note: str) -> Path:
    """`source` (a `write_browser` page) rewritten to `path` with each quantum's neurons listed and linked.

    Parameters
    ----------
    neurons : dict
        Quantum rank → its neurons, most attributed first: `neuron` (index), `attribution` (nats), `href` (the
        neuron's page, relative to `path`) and optionally `description` (a line). Quanta without an entry say
        they were not linked.
    hook, note : str
        The neurons' hook, and how they were ranked (shown under each list).

    Raises
    ------
    ValueError
        `source` is not a page written by `write_browser`.
    """
    data = page_data(Path(source).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "clusters" not in data:
        raise ValueError(f"{source} is not a quanta browser page (no clusters in its data)")
    data = {**data, "neurons_hook": hook, "neurons_note": note,
            "clusters": [{**c, "neurons": neurons.get(int(c["rank"]))} for c in data["clusters"]]}
    return write_page(path, page(data["title"], data=data, script=SCRIPT, style=STYLE, body=BODY))
