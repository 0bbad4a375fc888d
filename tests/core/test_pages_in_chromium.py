"""Neuron pages in headless Chromium, driven over the DevTools protocol on a pipe (no extra dependency):
no console errors, no network requests, a non-blank screenshot, ←/→ navigation, hostile tokens stay text."""

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time

import numpy as np
import pytest

from quanta_interp.neurons import NeuronRecord, write_layer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (CI installs Debian's `chromium`; "
                                "locally: apt-get install -y chromium)")

HOSTILE = ["</script><img src=x onerror=alert(1)>", "&lt;", "\"'`", "a\u2028b\u2029c", "<|endoftext|>", "\r\n",
           "\\xe6", "\ufffd", "${QI}", "<!--"]


class Chromium:
    """Headless Chromium with `--remote-debugging-pipe`: JSON messages over fds 3 (in) and 4 (out), NUL-separated."""

    def __init__(self, user_dir):
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()
        # free fds ≥ 10, so that moving them onto 3 and 4 in the child cannot clobber each other
        hi_in, hi_out = fcntl.fcntl(to_chrome, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome, fcntl.F_DUPFD, 10)

        def child_fds():
            os.dup2(hi_in, 3)
            os.dup2(hi_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             "--window-size=1000,800", f"--user-data-dir={user_dir}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_chrome, from_chrome, hi_in, hi_out):
            os.close(fd)
        self._buf, self._id, self.events, self.session = b"", 0, [], None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable")

    def send(self, method, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._id)
        assert "error" not in reply, reply
        return reply["result"]

    def wait(self, pred, timeout=30.0):
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if pred(m):
                    return m
                self.events.append(m)
            if time.monotonic() > end:
                raise TimeoutError("no answer from Chromium")
            if select.select([self._r], [], [], 0.2)[0]:
                self._buf += os.read(self._r, 1 << 20)

    def open(self, path):
        self.events.clear()
        self.send("Page.navigate", url=path.as_uri())
        self.wait(lambda m: m.get("method") == "Page.loadEventFired")
        return self

    def eval(self, expr):
        return self.send("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def key(self, key, code):
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def problems(self, allowed_url):
        """Console errors, exceptions, CSP/log errors, dialogs, and requests other than the page itself."""
        out = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(("console", p.get("args")))
            elif method == "Runtime.exceptionThrown":
                out.append(("exception", p["exceptionDetails"].get("text")))
            elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(("log", p["entry"].get("text")))
            elif method == "Page.javascriptDialogOpening":
                out.append(("dialog", p.get("message")))
            elif method == "Network.requestWillBeSent" and p["request"]["url"] != allowed_url:
                out.append(("request", p["request"]["url"]))
        return out

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _record(i, tokens=None, name="tiny"):
    """A record with every field a neuron page reads (synthetic values; inspection itself is tested elsewhere)."""
    rng = np.random.default_rng(i)
    tokens = tokens or [f"t{j} " for j in range(12)]
    ex = [{"tokens": tokens, "values": np.round(rng.random(len(tokens)) * 3, 3).tolist(), "maxValue": 3.0,
           "maxValueTokenIndex": len(tokens) // 2, "doc": 0, "doc_name": tokens[0], "pos": 40 + k, "kind": "top"}
          for k in range(4)]
    return NeuronRecord({
        "model": name, "hook": "blocks.1.mlp.hook_post", "layer": 1, "index": i, "maxValue": 3.0, "minValue": -0.2,
        "meanValue": 0.4, "frac_nonzero": 0.6, "n_tokens": 400, "n_windows": 10, "context": 40,
        "freq_hist_data_bar_heights": [5, 40, 30, 9, 2], "freq_hist_data_bar_values": [-0.1, 0.5, 1.2, 2.0, 2.7],
        "hist_edges": [-0.2, 0.2, 0.9, 1.6, 2.3, 3.0], "hist_note": "all sampled tokens, equal-width bins",
        "activations": ex, "intervals": {"binning": "quantile", "bins": [{"lo": 0.0, "hi": 3.0, "n": 4, "examples": ex[:2]}]},
        "pos_str": tokens[:3], "pos_values": [1.0, 0.5, 0.2], "neg_str": tokens[3:6], "neg_values": [-1.0, -0.5, -0.1],
        "logit_note": "W_out · W_U", "clusters": [{"cluster": 3, "size": 9, "label": tokens[:3], "mean_activation": 1.5,
                                                 "z": 2.0}], "discover": "d"})


def test_neuron_pages_render_offline_and_keys_navigate(browser, tmp_path):
    from PIL import Image

    write_layer([_record(i) for i in range(3)], tmp_path, title="tiny · layer 1")
    first = tmp_path / "neuron_00000.html"
    browser.open(first)
    assert browser.problems(first.as_uri()) == []
    assert browser.eval("document.querySelectorAll('.ctx .tok.target').length") == 4 + 2
    assert browser.eval("document.querySelectorAll('.hist span').length") == 5
    assert browser.eval("document.querySelector('h1').textContent") == "Neuron 0 · blocks.1.mlp.hook_post"
    shot = Image.open(io.BytesIO(base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])))
    pixels = np.asarray(shot.convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.005  # text and colour, not a blank page
    browser.key("ArrowRight", 39)
    browser.wait(lambda m: m.get("method") == "Page.loadEventFired")
    assert browser.eval("location.pathname").endswith("/neuron_00001.html")
    browser.key("ArrowLeft", 37)
    browser.wait(lambda m: m.get("method") == "Page.loadEventFired")
    assert browser.eval("location.pathname").endswith("/neuron_00000.html")
    index = tmp_path / "index.html"
    browser.open(index)
    assert browser.problems(index.as_uri()) == []
    assert browser.eval("[...document.querySelectorAll('td a')].map(a => a.getAttribute('href'))") == [
        "neuron_00000.html", "neuron_00001.html", "neuron_00002.html"]
    browser.eval("document.querySelectorAll('th')[1].click(); document.querySelectorAll('th')[1].click()")
    assert browser.eval("document.querySelector('th').parentNode.parentNode.rows.length") == 4


def test_hostile_tokens_render_literally_and_run_nothing(browser, tmp_path):
    rec = _record(0, tokens=HOSTILE, name="<b>m</b>\u2028")
    write_layer([rec], tmp_path, title="</title><script>alert(1)</script>")
    page = tmp_path / "neuron_00000.html"
    assert "<img" not in page.read_text().split('id="qi-data">')[1]
    browser.open(page)
    assert browser.problems(page.as_uri()) == []
    assert browser.eval("document.querySelectorAll('img, b, iframe').length") == 0
    first_row = browser.eval("[...document.querySelector('div.ctx').children].map(s => s.textContent)")
    visible = [t.replace(" ", "\u00b7").replace("\t", "\u2192").replace("\r", "\u240d").replace("\n", "\u23ce\n")
               for t in HOSTILE]
    assert first_row == visible
    assert browser.eval("document.title") == "neuron 0 · blocks.1.mlp.hook_post · <b>m</b>\u2028"
    assert browser.eval("QI.data.record.activations[0].tokens") == HOSTILE
    index = tmp_path / "index.html"
    browser.open(index)
    assert browser.problems(index.as_uri()) == []
    assert browser.eval("document.querySelector('h1').textContent") == "</title><script>alert(1)</script>"
    assert browser.eval("document.querySelectorAll('img, b, iframe').length") == 0
    assert browser.eval("[...document.querySelectorAll('td .toks')[1].children].map(s => s.textContent)") == visible[:3]


def test_pages_with_missing_numbers_and_half_characters_render_without_errors(browser, tmp_path):
    """A NaN loss (JSON null) shows as n/a instead of throwing in the page script; a token that is half of an
    emoji (a lone surrogate) does not stop the page from being written or shown."""
    from quanta_interp.quanta.browser import write_browser

    half = "\ud83d"
    page = write_browser(tmp_path / "browser.html", [
        {"size": 2, "top_targets": [(half, 1), ("x", 1)], "examples": [
            {"tokens": ["a", half], "doc_name": "d", "pos": 1, "loss": float("nan")},
            {"tokens": ["b", "x"], "doc_name": "d", "pos": 2, "loss": 0.012}]}],
        title="nan and halves", subtitle="s", n_tokens=2)
    browser.open(page)
    assert browser.problems(page.as_uri()) == []
    metas = browser.eval("[...document.querySelectorAll('.meta')].map(e => e.textContent)")
    assert metas == ["d · token 1 · loss n/a nats", "d · token 2 · loss 0.012 nats"]
    assert browser.eval("QI.data.clusters[0].examples[0].tokens[1].charCodeAt(0)") == 0xD83D
    rec = _record(0)
    rec["meanValue"] = float("nan")
    write_layer([rec], tmp_path / "n", title="nan")
    neuron = tmp_path / "n" / "neuron_00000.html"
    browser.open(neuron)
    assert browser.problems(neuron.as_uri()) == []
    assert "n/a" in browser.eval("document.body.textContent")


def test_quanta_browser_draws_loss_curves_histograms_heatmaps_and_sorts_by_n_star(browser, tmp_path):
    """The QDG browser with a model family: per quantum an inline-SVG loss curve with its N* marker, the top-10
    answer-token histogram, the gradient-cosine heatmap; the index sorts by N*; hostile tokens stay text."""
    from PIL import Image

    from quanta_interp.quanta.browser import write_browser

    x = [1e3, 1e4, 1e5, 1e6]
    rng = np.random.default_rng(0)
    clusters = []
    for rank, (n_star, censored) in enumerate([(3e4, None), (2e3, None), (float("inf"), "right"), (1e3, "left")], 1):
        top = [(HOSTILE[j % len(HOSTILE)] + str(j), 12 - j) for j in range(12)]
        cos = rng.uniform(-1, 1, (5, 5))
        clusters.append({"rank": rank, "size": 20 - rank, "top_targets": top, "n_star": n_star,
                         "n_star_ci": [n_star / 2, n_star * 2], "censored": censored, "drop": 2.0,
                         "curve": {"mean": [3, 2.5, 1, 0.1], "q25": [2.5, 2, 0.5, 0.05], "q75": [3.5, 3, 1.5, 0.2]},
                         "cos": ((cos + cos.T) / 2).round(2).tolist(),
                         "examples": [{"tokens": HOSTILE[:4], "doc_name": "<b>d</b>", "pos": 3, "loss": 0.01}]})
    page = write_browser(tmp_path / "browser.html", clusters, title="<i>family</i>", subtitle="s", n_tokens=80,
                         family={"x": x, "axis": "N"})
    browser.open(page)
    assert browser.problems(page.as_uri()) == []
    assert browser.eval("document.querySelectorAll('img, b, i, iframe').length") == 0
    assert browser.eval("document.querySelectorAll('svg.curve polyline').length") == 1
    assert browser.eval("document.querySelector('svg.curve polyline').getAttribute('points').split(' ').length") == 4
    assert browser.eval("document.querySelectorAll('svg.curve line.nstar').length") == 1
    assert browser.eval("document.querySelectorAll('svg.heatmap rect').length") == 25
    assert browser.eval("document.querySelectorAll('table.hist tr').length") == 10
    assert browser.eval("document.querySelector('table.hist td').textContent") == HOSTILE[0].replace(" ", "\u00b7") + "0"
    assert browser.eval("document.querySelector('.nstar-text').textContent").startswith("learned at N* = 3.0e+4 [1.5e+4")
    shot = Image.open(io.BytesIO(base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])))
    assert np.asarray(shot.convert("L"), dtype=float).std() > 10
    labels = "[...document.querySelectorAll('#list button')].map(b => b.textContent)"
    assert browser.eval(labels) == ["#1 (19) N*=3.0e+4", "#2 (18) N*=2.0e+3", "#3 (17) N*=∞", "#4 (16) N*=1.0e+3"]
    browser.eval("[...document.querySelectorAll('#sort button')].find(b => b.dataset.key === 'nstar').click()")
    assert browser.eval(labels) == ["#4 (16) N*=1.0e+3", "#2 (18) N*=2.0e+3", "#1 (19) N*=3.0e+4", "#3 (17) N*=∞"]
    browser.key("ArrowRight", 39)  # next in N* order after cluster #1 is #3
    assert browser.eval("document.querySelector('h2').textContent").startswith("Cluster #3:")
    assert browser.eval("document.querySelector('.nstar-text').textContent").startswith(
        "learned at N* = not learned within the family")
    assert browser.eval("document.querySelectorAll('svg.curve line.nstar').length") == 0
    assert browser.problems(page.as_uri()) == []


def test_neuron_pages_list_their_quanta_and_the_index_searches_by_token(browser, tmp_path):
    recs = [_record(i) for i in range(3)]
    recs[1]["quanta"] = [{"quantum": 1, "size": 1126, "targets": ["\n"], "place": 3, "attribution": 0.42}]
    recs[1]["description"] = {"text": "'c' (after ' ')", "auc": 0.95}
    rows = [{"index": i, "href": f"neuron_{i:05d}.html" if i < 3 else None, "maxValue": float(i), "frac_nonzero": 0.1,
             "top_token": tok, "promotes": ["x"], "cluster": "Q1" if i == 1 else "",
             "description": "'c' (after ' ')" if i == 2 else "", "auc": 0.95 if i == 2 else None}
            for i, tok in enumerate([" the", " cat", "\n", " thee"])]
    write_layer(recs, tmp_path, title="t", rows=rows)
    page = tmp_path / "neuron_00001.html"
    browser.open(page)
    assert browser.problems(page.as_uri()) == []
    assert browser.eval("[...document.querySelectorAll('p')].some(p => p.textContent.startsWith(\"description: 'c' "
                        "(after ' ') · detection AUC 0.950\"))")
    last = "[...document.querySelectorAll('table')].pop()"
    assert browser.eval(f"[...{last}.rows[1].cells].map(c => c.textContent)") == ["Q1", "1126", "\u23ce\n", "3", "0.420"]
    index = tmp_path / "index.html"
    browser.open(index)
    assert browser.problems(index.as_uri()) == []
    count = "document.querySelector('table').rows.length - 1"
    assert browser.eval(count) == 4
    browser.eval("const s = document.getElementById('search'); s.value = 'the'; s.dispatchEvent(new Event('input'))")
    assert browser.eval(count) == 2  # " the" and " thee"
    browser.eval("const t = document.getElementById('search'); t.value = 'q1'; t.dispatchEvent(new Event('input'))")
    assert browser.eval("[...document.querySelectorAll('td a')].map(a => a.textContent)") == ["1"]
    browser.eval("const u = document.getElementById('search'); u.value = 'after'; u.dispatchEvent(new Event('input'))")
    assert browser.eval("[...document.querySelector('table').rows[1].cells].slice(-2).map(c => c.textContent)") == [
        "'c' (after ' ')", "0.950"]


def test_quanta_page_lists_each_quantums_neurons_with_links_and_its_description(browser, tmp_path):
    """`link_neurons` rewrites a discover browser with each quantum's neurons (linked where a page exists) and keeps
    its description line; quanta without links say so; hostile text stays text."""
    from quanta_interp.quanta.browser import link_neurons, write_browser

    clusters = [{"rank": r, "size": 10 - r, "top_targets": [("x", 3)],
                 "description": {"text": HOSTILE[0], "tokens": [], "after": [], "auc": 0.875, "n_fit": 3, "n_heldout": 3},
                 "examples": [{"tokens": ["a", "x"], "doc_name": "d", "pos": 1, "loss": 0.01}]} for r in (1, 2)]
    src = write_browser(tmp_path / "run" / "browser.html", clusters, title="t", subtitle="s", n_tokens=20)
    page = link_neurons(src, tmp_path / "quanta.html", {1: [
        {"neuron": 31, "attribution": 0.5, "href": "neuron_00031.html", "description": HOSTILE[1]},
        {"neuron": 7, "attribution": 0.25, "href": None}]}, hook="blocks.1.mlp.hook_post", note="by attribution")
    browser.open(page)
    assert browser.problems(page.as_uri()) == []
    assert browser.eval("document.querySelector('.description').textContent") == f"{HOSTILE[0]} · detection AUC 0.88"
    assert browser.eval("[...document.querySelectorAll('table.nlist a')].map(a => a.getAttribute('href'))") == [
        "neuron_00031.html"]
    assert browser.eval("document.querySelectorAll('table.nlist tr').length") == 2
    assert HOSTILE[1] in browser.eval("document.querySelector('table.nlist').textContent")
    browser.eval("document.querySelector('#next').click()")
    assert "not linked" in browser.eval("document.querySelector('.neurons').textContent")
    with pytest.raises(ValueError, match="not a page written"):
        link_neurons(_plain(tmp_path), tmp_path / "q.html", {}, hook="h", note="n")


def _plain(tmp_path):
    path = tmp_path / "plain.html"
    path.write_text("<html><body>no data</body></html>")
    return path
