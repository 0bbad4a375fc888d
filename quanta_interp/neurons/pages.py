"""Static HTML for neurons: one page per neuron, a layer index, and `_repr_html_` for notebooks.

Built on `quanta_interp.report.html.page`: records travel as escaped JSON and all token text reaches
the DOM through `textContent`. Links are checked to be plain relative file names before use.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from ..report.html import page, write_page

__all__ = ["NeuronRecord", "LayerPages", "neuron_filename", "neuron_page", "index_page", "write_neuron", "write_layer"]

STYLE = """
.hist { display:flex; align-items:flex-end; gap:1px; height:80px; max-width:640px; border-bottom:1px solid var(--line); }
.hist span { flex:1; background:var(--hi); min-height:1px; } .hist span.neg { background:rgb(var(--neg)); }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(280px, 1fr)); gap:.8rem; }
.ex-head { font-size:12px; margin-bottom:.2rem; }
a { color:var(--hi); } .toks .tok { border:1px solid var(--line); margin-right:.25rem; }
th.sort { cursor:pointer; } td.num { text-align:right; font-variant-numeric:tabular-nums; }
"""

_COMMON_JS = r"""
const safe = h => (typeof h === 'string' && /^[\w.-]+\.html$/.test(h)) ? h : null;
const app = document.getElementById('app');
function link(text, href, id) { const a = QI.el('a', text); a.href = href; if (id) a.id = id; return a; }
function table(head, rows) { const t = QI.el('table'), tr = QI.el('tr');
  head.forEach(h => tr.appendChild(QI.el('th', h))); t.appendChild(tr);
  rows.forEach(r => { const row = QI.el('tr');
    r.forEach(c => { const td = c instanceof Node ? QI.el('td') : QI.el('td', c, typeof c === 'number' ? 'num' : '');
      if (c instanceof Node) td.appendChild(c); row.appendChild(td); }); t.appendChild(row); });
  return t; }
function toks(list) { const box = QI.el('span', undefined, 'ctx toks');
  list.forEach(t => box.appendChild(QI.el('span', QI.visible(t), 'tok'))); return box; }
const fmt = v => QI.num(v, 3);
"""

NEURON_JS = _COMMON_JS + r"""
const r = QI.data.record, prev = safe(QI.data.prev), next = safe(QI.data.next), index = safe(QI.data.index);
const nav = QI.el('nav');
if (prev) nav.appendChild(link('\u2190 Prev', prev, 'prev'));
if (index) nav.appendChild(link('Index', index, 'index'));
if (next) nav.appendChild(link('Next \u2192', next, 'next'));
nav.appendChild(QI.el('span', '\u2190/\u2192 keys move between neurons', 'muted'));
app.appendChild(nav);
app.appendChild(QI.el('h1', `Neuron ${r.index} \u00b7 ${r.hook}`));
app.appendChild(QI.el('p', `${r.model} \u00b7 ${r.n_tokens} tokens sampled in ${r.n_windows} windows of ${r.context}`, 'muted'));
if (r.description) app.appendChild(QI.el('p', `description: ${r.description.text}` +
  (r.description.auc === null ? '' : ` \u00b7 detection AUC ${fmt(r.description.auc)} (held-out top activations vs random tokens)`)));
app.appendChild(table(['max', 'min', 'mean', 'density (fraction > 0)'],
  [[fmt(r.maxValue), fmt(r.minValue), fmt(r.meanValue), QI.num(r.frac_nonzero, 4)]]));
app.appendChild(QI.el('h2', 'Activation histogram'));
const hist = QI.el('div', undefined, 'hist'), hmax = Math.max(1, ...r.freq_hist_data_bar_heights);
r.freq_hist_data_bar_heights.forEach((h, i) => { const s = QI.el('span', undefined, r.freq_hist_data_bar_values[i] < 0 ? 'neg' : '');
  s.style.height = `${(100 * Math.sqrt(h / hmax)).toFixed(1)}%`;
  s.title = `${fmt(r.hist_edges[i])} to ${fmt(r.hist_edges[i + 1])}: ${h} tokens`; hist.appendChild(s); });
app.appendChild(hist);
app.appendChild(QI.el('p', `${fmt(r.hist_edges[0])} \u2026 ${fmt(r.hist_edges[r.hist_edges.length - 1])}; ${r.hist_note}; bar height \u221d \u221acount`, 'muted'));
if (r.pos_str.length) {
  app.appendChild(QI.el('h2', 'Direct logit effect'));
  const g = QI.el('div', undefined, 'grid');
  [['promotes', r.pos_str, r.pos_values], ['suppresses', r.neg_str, r.neg_values]].forEach(([name, ts, vals]) => {
    const box = QI.el('div', undefined, 'card'); box.appendChild(QI.el('strong', name));
    box.appendChild(table(['token', 'effect'], ts.map((t, i) => [QI.el('span', QI.visible(t), 'ctx'), fmt(vals[i])])));
    g.appendChild(box); });
  app.appendChild(g); app.appendChild(QI.el('p', r.logit_note, 'muted'));
}
function example(ex) { const box = QI.el('div', undefined, 'card');
  box.appendChild(QI.el('div', `${fmt(ex.maxValue)} \u00b7 ${ex.doc_name} @ token ${ex.pos}`, 'ex-head muted'));
  box.appendChild(QI.tokens(ex.tokens, ex.values, r.maxValue, ex.maxValueTokenIndex)); return box; }
app.appendChild(QI.el('h2', `Top ${r.activations.length} activations`));
r.activations.forEach(ex => app.appendChild(example(ex)));
app.appendChild(QI.el('h2', `Examples by activation interval (${r.intervals.binning} bins over positive activations)`));
r.intervals.bins.forEach(b => { app.appendChild(QI.el('h3', `${fmt(b.lo)} \u2013 ${fmt(b.hi)} \u00b7 ${b.n} tokens`));
  b.examples.forEach(ex => app.appendChild(example(ex))); });
if (r.clusters.length) {
  app.appendChild(QI.el('h2', 'Quanta clusters that activate this neuron most'));
  app.appendChild(table(['cluster', 'size', 'top targets', 'mean activation', 'z'],
    r.clusters.map(c => [String(c.cluster), c.size, toks(c.label), fmt(c.mean_activation), fmt(c.z)])));
  app.appendChild(QI.el('p', `from ${r.discover}; activation at the last context token before each member target`, 'muted'));
}
if (r.quanta && r.quanta.length) {
  app.appendChild(QI.el('h2', 'Quanta this neuron serves (by attribution)'));
  app.appendChild(table(['quantum', 'size', 'top targets', 'place in its top list', 'attribution (nats)'],
    r.quanta.map(q => [safe(r.quanta_page) ? link(`Q${q.quantum}`, `${safe(r.quanta_page)}#${q.quantum}`) : `Q${q.quantum}`,
                       q.size, toks(q.targets), q.place, fmt(q.attribution)])));
  app.appendChild(QI.el('p', `from ${r.discover}; attribution = \u03a3 (mean \u2212 activation) \u00d7 \u2202loss/\u2202activation over the quantum's sampled members, all positions`, 'muted'));
}
QI.keys(prev, next);
"""

INDEX_JS = _COMMON_JS + r"""
const d = QI.data;
app.appendChild(QI.el('h1', d.title));
app.appendChild(QI.el('p', `${d.rows.length} neurons \u00b7 click a column to sort`, 'muted'));
const cols = [['neuron', 'index'], ['max', 'maxValue'], ['density', 'frac_nonzero'], ['top token', 'top_token'],
              ['promotes', 'promotes'], ['top cluster', 'cluster']];
if (d.rows.some(r => r.description)) cols.push(['description', 'description'], ['AUC', 'auc']);
let rows = d.rows.slice(), key = 'index', dir = 1;
const search = QI.el('input'); search.id = 'search'; search.placeholder = 'search top token / promoted token / quantum';
search.addEventListener('input', render); app.appendChild(search);
const holder = QI.el('div'); app.appendChild(holder);
function render() {
  const q = search.value.toLowerCase();
  const shown = rows.filter(r => !q || [r.top_token, ...r.promotes, r.cluster, r.description || ''].some(t => String(t).toLowerCase().includes(q)));
  const t = table([], shown.map(r => { const href = safe(r.href);
    return [href ? link(String(r.index), href) : String(r.index), fmt(r.maxValue), QI.num(r.frac_nonzero, 4),
            toks([r.top_token]), toks(r.promotes), r.cluster,
            ...(cols.length > 6 ? [r.description || '', r.auc === null || r.auc === undefined ? 'n/a' : fmt(r.auc)] : [])]; }));
  const tr = QI.el('tr');
  cols.forEach(([name, k]) => { const th = QI.el('th', name + (k === key ? (dir > 0 ? ' \u25b2' : ' \u25bc') : ''), 'sort');
    th.addEventListener('click', () => { dir = k === key ? -dir : 1; key = k;
      rows.sort((a, b) => (a[k] > b[k] ? 1 : a[k] < b[k] ? -1 : 0) * dir); render(); }); tr.appendChild(th); });
  t.replaceChild(tr, t.firstChild); holder.replaceChildren(t); }
render();
"""


def neuron_filename(index: int) -> str:
    """The page's file name for neuron `index`: `neuron_XXXXX.html`, zero-padded to 5 digits."""
    return f"neuron_{int(index):05d}.html"


class NeuronRecord(dict):
    """One neuron's record (a plain dict of JSON fields) that renders itself in notebooks.

    The fields are those `LayerInspector.record` fills; in a notebook it shows `neuron_page` in a sandboxed
    iframe.
    """

    def _repr_html_(self) -> str:
        doc = neuron_page(self)
        return (f'<iframe sandbox="allow-scripts" style="width:100%;height:640px;border:0" '
                f'srcdoc="{html.escape(doc, quote=True)}"></iframe>')


def neuron_page(record: dict, *, prev: str | None = None, next: str | None = None, index: str | None = None) -> str:
    """A self-contained page for one neuron record; `prev`/`next`/`index` are relative file names.

    Links that are not plain `NAME.html` file names are dropped by the page's script. Returns the HTML.
    """
    title = f"neuron {record['index']} · {record['hook']} · {record['model']}"
    data = {"record": dict(record), "prev": prev, "next": next, "index": index}
    return page(title, data=data, script=NEURON_JS, style=STYLE, body='<main id="app"></main>')


def index_page(rows: Sequence[dict], title: str) -> str:
    """A sortable table of neurons linking to their pages; returns the HTML.

    Each row holds `index`, `href` (the page's file name), `maxValue`, `frac_nonzero`, `top_token`,
    `promotes` (up to 3 token strings) and `cluster`, as `write_layer` builds them.
    """
    return page(title, data={"title": title, "rows": list(rows)}, script=INDEX_JS, style=STYLE,
                body='<main id="app"></main>')


def write_neuron(record: dict, out: str | Path, *, prev: str | None = None, next: str | None = None,
                 index: str | None = None) -> Path:
    """Write `neuron_XXXXX.json` and `.html` into `out`; returns the page path."""
    path = Path(out) / neuron_filename(record["index"])
    atomic_write_text(path.with_suffix(".json"), json.dumps(record, ensure_ascii=False))  # plain types already
    return write_page(path, neuron_page(record, prev=prev, next=next, index=index))


def _index_row(rec: dict) -> dict:
    top = rec["activations"][0] if rec["activations"] else None
    return {"index": rec["index"], "href": neuron_filename(rec["index"]), "maxValue": rec["maxValue"],
            "frac_nonzero": rec["frac_nonzero"],
            "top_token": top["tokens"][top["maxValueTokenIndex"]] if top else "",
            "promotes": rec["pos_str"][:3],
            "cluster": str(rec["clusters"][0]["cluster"]) if rec.get("clusters") else ""}


@dataclass(frozen=True)
class LayerPages:
    """What `write_layer` (and `dashboard.write_scan_pages`) wrote.

    Attributes
    ----------
    index : Path
        index.html.
    pages : int
        Neuron pages written.
    seconds, pages_per_s : float
        Wall time of the writing, and pages per second.
    neurons : list of int
        The neurons with pages (filled by `write_scan_pages`).
    quanta : Path or None
        quanta.html, the discover run's browser with each quantum's neurons linked (`write_scan_pages` with links).
    """

    index: Path
    pages: int
    seconds: float
    pages_per_s: float
    neurons: list = field(default_factory=list)
    quanta: Path | None = None


def write_layer(records: Sequence[dict], out: str | Path, *, title: str,
                rows: Sequence[dict] | None = None) -> LayerPages:
    """Pages for every record with Prev/Next/index links, plus `index.json` and `index.html`.

    `rows` (as `index_page` takes them) list more neurons than have pages; default one row per record.
    """
    start = time.perf_counter()
    names = [neuron_filename(r["index"]) for r in records]
    for i, rec in enumerate(records):
        write_neuron(rec, out, prev=names[i - 1] if i else None,
                     next=names[i + 1] if i + 1 < len(names) else None, index="index.html")
    rows = [_index_row(r) for r in records] if rows is None else list(rows)
    atomic_write_json(Path(out) / "index.json", {"title": title, "neurons": rows})
    path = write_page(Path(out) / "index.html", index_page(rows, title))
    seconds = time.perf_counter() - start
    return LayerPages(index=path, pages=len(records), seconds=seconds, pages_per_s=len(records) / max(seconds, 1e-9))
