"""Self-contained static HTML pages: inline CSS/JS, data as escaped JSON, a restrictive CSP.

Every page built here opens offline from a file. Corpus text never enters the markup: it travels
in a `<script type="application/json">` block (with `<`, `>`, `&`, U+2028/9 escaped) and reaches
the page only through `textContent` in the shared JS helpers below (`QI.tokens`, `QI.el`).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write_bytes, to_jsonable

__all__ = ["json_for_script", "page", "page_data", "write_page", "BASE_CSS", "BASE_JS"]

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")

BASE_CSS = """
:root { --bg:#ffffff; --fg:#1b1b1b; --muted:#666; --card:#f5f5f7; --line:#ddd; --hi:#0072B2; --hl:0,114,178; --neg:213,94,0; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#16171a; --fg:#e6e6e6; --muted:#9a9a9a; --card:#202227; --line:#333; --hi:#56B4E9; --hl:86,180,233; --neg:230,159,0; }
}
* { box-sizing: border-box; }
body { margin:0; padding:1.2rem 1.6rem; background:var(--bg); color:var(--fg);
       font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size:1.35rem; margin:0 0 .4rem; } h2 { font-size:1.1rem; margin:1.2rem 0 .4rem; }
.muted { color:var(--muted); } .card { background:var(--card); border:1px solid var(--line); border-radius:8px;
       padding:.6rem .8rem; margin:.5rem 0; }
nav { display:flex; gap:.8rem; align-items:center; margin:.3rem 0 1rem; flex-wrap:wrap; }
nav a, nav button { color:var(--hi); background:none; border:1px solid var(--line); border-radius:6px;
       padding:.2rem .6rem; cursor:pointer; font:inherit; text-decoration:none; }
table { border-collapse:collapse; } td, th { padding:.15rem .5rem; border-bottom:1px solid var(--line); text-align:left; }
.ctx { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:13px; white-space:pre-wrap;
       word-break:break-all; line-height:1.7; }
.tok { border-radius:3px; padding:0 1px; }
.tok.target { outline:2px solid var(--hi); font-weight:600; }
.ws { color:var(--muted); }
.bar { display:inline-block; height:10px; background:var(--hi); vertical-align:middle; }
"""

BASE_JS = r"""
const QI = {
  data: JSON.parse(document.getElementById('qi-data').textContent),
  // A number with d decimals; a missing value (JSON null: NaN and ±inf are written as null) shows "n/a".
  num(v, d) { return (v === null || v === undefined || !isFinite(Number(v))) ? 'n/a' : Number(v).toFixed(d); },
  el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls; return e; },
  // Make whitespace visible without losing it: space → ·, newline → ⏎ + a real line break, tab → →.
  visible(text) { return String(text).replace(/ /g, '\u00b7').replace(/\t/g, '\u2192').replace(/\r/g, '\u240d')
    .replace(/\n/g, '\u23ce\n'); },
  // One colour scale for a page: value/max → alpha of the accent colour (negative values use the second colour).
  colour(v, max) { if (!max || !v) return ''; const a = Math.min(Math.abs(v) / max, 1) * 0.85;
    const c = getComputedStyle(document.documentElement).getPropertyValue(v < 0 ? '--neg' : '--hl');
    return `rgba(${c.trim()},${a.toFixed(3)})`; },
  // A row of tokens; values colour them; `target` (an index) gets an outline.
  tokens(toks, values, max, target) { const box = QI.el('div', undefined, 'ctx');
    toks.forEach((t, i) => { const s = QI.el('span', QI.visible(t), 'tok' + (i === target ? ' target' : ''));
      if (values) { s.style.background = QI.colour(values[i], max); s.title = QI.num(values[i], 3); }
      box.appendChild(s); });
    return box; },
  // ←/→ keys follow the page's Prev/Next links.
  keys(prev, next) { document.addEventListener('keydown', e => {
    if (e.key === 'ArrowLeft' && prev) location.href = prev; if (e.key === 'ArrowRight' && next) location.href = next; }); },
};
"""


def json_for_script(data: Any) -> str:
    """JSON that is safe inside a `<script>` element: no `</script>`, no HTML entities, no line separators.

    `data` goes through `to_jsonable` first; `<`, `>`, `&`, U+2028 and U+2029 become `\\uXXXX` escapes.

    Raises
    ------
    ValueError
        `data` holds a NaN or inf that `to_jsonable` leaves (a numpy float scalar).
    TypeError
        `data` holds something that is not JSON-able (a set, an arbitrary object).
    """
    text = json.dumps(to_jsonable(data), ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def page(title: str, *, data: Any, script: str, style: str = "", body: str = "") -> str:
    """A complete HTML document: `body` is trusted static markup (no corpus text), `data` is anything
    JSON-able and is read by `script` as `QI.data`.

    Parameters
    ----------
    title : str
        Escaped into `<title>`.
    script : str
        Trusted JavaScript run after `BASE_JS`, so the `QI` helpers are defined.
    style : str
        CSS appended to `BASE_CSS`.

    Returns
    -------
    str
        The page, with CSS, JS and data inline under the `CSP` policy: it opens offline from a file.

    Raises
    ------
    ValueError, TypeError
        As `json_for_script`, for `data`.
    """
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{BASE_CSS}{style}</style></head>\n<body>{body}\n"
        f"<script type=\"application/json\" id=\"qi-data\">{json_for_script(data)}</script>\n"
        f"<script>{BASE_JS}\n{script}</script>\n</body></html>\n"
    )


def page_data(document: str) -> Any:
    """The `data` a `page` document carries (its JSON block, parsed), to rewrite a page with more data.

    Raises
    ------
    ValueError
        `document` is not a page written by `page`.
    """
    import re

    m = re.search(r'<script type="application/json" id="qi-data">(.*?)</script>', document, re.S)
    if m is None:
        raise ValueError("not a page written by report.html.page: it has no qi-data block")
    return json.loads(m.group(1))


def write_page(path: str | os.PathLike, document: str) -> Path:
    """Write `document` (from `page`) to `path` atomically, creating its folder; returns `path`.

    Characters UTF-8 cannot encode (lone surrogates, which byte-level tokenizers produce for a token that
    is half of an emoji) are written as `\\udXXX` escapes: inside the page's JSON that is the same character
    again, elsewhere it is visible text, and the page is written either way.
    """
    return atomic_write_bytes(path, document.encode("utf-8", errors="backslashreplace"))
