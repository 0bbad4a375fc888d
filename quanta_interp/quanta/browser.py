"""`browser.html`: a static, self-contained page to read the quanta found by `quanta discover`.

Clusters are listed by size; each shows its most common target tokens and example contexts with
the target outlined. Corpus text travels only in the page's JSON block and reaches the DOM through
`textContent` (`QI.tokens`, `QI.el`); the page loads nothing from the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..report.html import page, write_page

__all__ = ["write_browser"]

STYLE = """
#list { display:flex; flex-wrap:wrap; gap:.3rem; margin:.4rem 0; }
#list button { border:1px solid var(--line); background:var(--card); color:var(--fg); border-radius:5px;
  padding:.1rem .45rem; cursor:pointer; font:inherit; font-size:13px; }
#list button.on { outline:2px solid var(--hi); }
.toptok { display:inline-block; margin:0 .4rem .2rem 0; font-family:ui-monospace, monospace; }
.meta { font-size:12px; color:var(--muted); margin-top:.2rem; }
"""

BODY = """<h1 id="title"></h1><p class="muted" id="subtitle"></p>
<nav><button id="prev">&larr; Prev</button><span id="where"></span><button id="next">Next &rarr;</button></nav>
<div id="list"></div><div id="cluster"></div>"""

SCRIPT = r"""
const D = QI.data; let cur = 0;
document.getElementById('title').textContent = D.title;
document.getElementById('subtitle').textContent = D.subtitle;
const list = document.getElementById('list');
D.clusters.forEach((c, i) => { const b = QI.el('button', `#${i + 1} (${c.size})`); b.onclick = () => show(i);
  list.appendChild(b); });
function show(i) {
  cur = (i + D.clusters.length) % D.clusters.length; const c = D.clusters[cur];
  history.replaceState(null, '', '#' + (cur + 1));
  [...list.children].forEach((b, j) => b.classList.toggle('on', j === cur));
  document.getElementById('where').textContent = `cluster ${cur + 1} of ${D.clusters.length}`;
  const box = document.getElementById('cluster'); box.replaceChildren();
  box.appendChild(QI.el('h2', `Cluster #${cur + 1}: ${c.size} tokens (${QI.num(100 * c.size / D.n_tokens, 1)}%)`));
  const top = QI.el('div', 'top targets: ', 'muted');
  c.top_targets.forEach(([t, n]) => top.appendChild(QI.el('span', `${QI.visible(t)} ×${n}`, 'toptok')));
  box.appendChild(top);
  c.examples.forEach(e => { const card = QI.el('div', undefined, 'card');
    card.appendChild(QI.tokens(e.tokens, null, 0, e.tokens.length - 1));
    card.appendChild(QI.el('div', `${e.doc_name} · token ${e.pos} · loss ${QI.num(e.loss, 3)} nats`, 'meta'));
    box.appendChild(card); });
}
document.getElementById('prev').onclick = () => show(cur - 1);
document.getElementById('next').onclick = () => show(cur + 1);
document.addEventListener('keydown', e => { if (e.key === 'ArrowLeft') show(cur - 1); if (e.key === 'ArrowRight') show(cur + 1); });
show(Math.max(0, (parseInt(location.hash.slice(1)) || 1) - 1));
"""


def write_browser(path: str | Path, clusters: Sequence[dict], *, title: str, subtitle: str, n_tokens: int,
                  max_examples: int = 20) -> Path:
    """Write the page. Each cluster dict needs `size`, `top_targets` [(token, count)] and `examples`
    [{tokens: [str] with the target last, doc_name, pos, loss}] (largest cluster first)."""
    data = {"title": title, "subtitle": subtitle, "n_tokens": n_tokens,
            "clusters": [{"size": c["size"], "top_targets": c["top_targets"][:8],
                          "examples": c["examples"][:max_examples]} for c in clusters]}
    return write_page(path, page(title, data=data, script=SCRIPT, style=STYLE, body=BODY))
