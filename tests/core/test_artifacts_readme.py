"""artifacts/README.md quotes only numbers that its committed JSON holds (issue 27, item 5).

The convention, checked unit by unit — a table row, a heading, a list item, or a prose paragraph with
its hard-wrapped lines joined (code fences and HTML comments are skipped):

* A unit that quotes a number names, in backticks, the JSON file(s) it comes from, relative to
  `artifacts/` (e.g. `passuntil/summary.json`); `name.{json,png}` counts as `name.json`.
* Every number in the unit must equal, at its printed rounding, some numeric leaf of one of those
  files: a number printed with d decimals matches a leaf v when |v − x| ≤ ½·10^−d (`1.8k` and `2.1M`
  scale that by 10³ / 10⁶, `9.2e-3` by its exponent; `15,996` is 15996). The sign is not checked
  (prose quotes magnitudes: "falls 26 %" for −0.26); a number followed by `%` may be a percentage of a
  fraction (97.2 % ↔ 0.972). Unicode minus (−) is a sign; an ASCII hyphen glued to a word is not
  (`BPE-1024`, `L3-d64`, `2-digit` carry no number), nor are dates, `2^k`, superscripts or citations
  ("et al. 2023", "arXiv 2310.03262").
* Not checked, and visible as such in the text: anything in backticks (paths, commands, code); table
  cells under a column whose header starts with "paper" or "target" (the papers' and the issues'
  numbers); and a parenthesis that opens with "paper:" or "setting:" — "(paper: 0.083)",
  "(setting: 80k steps)" — for the papers' numbers and for parameters no JSON records.

Units owned by other sessions that do not pass yet are listed in `PENDING` with their owner; the test
fails if one of them starts passing (so the list only shrinks) or if any other unit fails.
"""

from __future__ import annotations

import json
import math
import re
import time
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "artifacts"

_NUM = re.compile(
    r"(?<![\w.^\-−])(?P<sign>[−\-+]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?"
    r"(?:[eE](?P<exp>[−\-+]?\d+))?(?P<suf>[kMB](?![A-Za-z])|)(?![\w^]|-[A-Za-z])(?P<pct>\s?%)?")
_DROP = [
    re.compile(r"```.*?```", re.S),  # (fences are also skipped line by line)
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"`[^`]*`"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(r"(?:et al\.?|Tegmark|ICLR|ICML|NeurIPS|arXiv)\s*,?\s*\d{4}(?:\.\d+)?"),
]
_ESCAPE = re.compile(r"\((?:paper|setting):")
_SCALE = {"": 0, "k": 3, "M": 6, "B": 9}
_EXEMPT_HEADER = ("paper", "target")


def json_names(line: str) -> list[str]:
    """The JSON files a line names: backticked paths ending in .json (or name.{json,…})."""
    out = []
    for span in re.findall(r"`([^`]+)`", line):
        span = re.sub(r"\{([^}]*)\}", lambda m: "json" if "json" in m.group(1).split(",") else m.group(0), span)
        if span.endswith(".json"):
            out.append(span)
    return out


def _strip_escapes(text: str) -> str:
    """Remove every "(paper: …)" / "(setting: …)" parenthesis, nested parentheses included."""
    while (m := _ESCAPE.search(text)) is not None:
        depth, i = 0, m.start()
        for i in range(m.start(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
        text = text[: m.start()] + text[i + 1:]
    return text


def numbers(text: str) -> list[tuple[str, float, float, bool]]:
    """(as printed, value, half-width of its rounding, followed by %) for every number in `text`."""
    text = _strip_escapes(text)
    for pattern in _DROP:
        text = pattern.sub(" ", text)
    out = []
    for m in _NUM.finditer(text):
        frac = m.group("frac") or ""
        exp = int((m.group("exp") or "0").replace("−", "-")) + _SCALE[m.group("suf")]
        value = float(m.group("int").replace(",", "") + frac) * 10.0**exp
        half = 0.5 * 10.0 ** (exp - max(len(frac) - 1, 0))
        out.append((m.group(0).strip(), value, half, bool(m.group("pct"))))
    return out


@cache
def leaves(path: Path) -> tuple[float, ...]:
    """Every finite numeric leaf of a JSON file (booleans excluded)."""
    found: list[float] = []

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node):
            found.append(abs(float(node)))

    walk(json.loads(path.read_text()))
    return tuple(sorted(found))


def _found(value: float, half: float, pct: bool, pool: tuple[float, ...]) -> bool:
    from bisect import bisect_left

    tol = half * (1 + 1e-9) + 1e-12
    targets = [value] + ([value / 100] if pct else [])
    tols = [tol] + ([tol / 100] if pct else [])
    for t, h in zip(targets, tols, strict=True):
        i = bisect_left(pool, t - h)
        if i < len(pool) and pool[i] <= t + h:
            return True
    return False


def _cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)\|", line.strip().strip("|"))


def units(readme: Path) -> list[tuple[int, str, bool]]:
    """(first line number, text, is a table row) of every unit: a table row, a heading, a list item or a
    prose paragraph (its hard-wrapped lines joined); code fences are left out."""
    out: list[list] = []
    in_fence, joinable = False, False
    for no, line in enumerate(readme.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence, joinable = not in_fence, False
            continue
        if in_fence or not stripped:
            joinable = False
            continue
        row, head = stripped.startswith("|"), stripped.startswith("#")
        if joinable and not (row or head or stripped.startswith(("- ", "* "))):
            out[-1][1] += " " + stripped
            continue
        out.append([no, stripped, row])
        joinable = not (row or head)
    return [tuple(u) for u in out]


def check(readme: Path, root: Path) -> list[str]:
    """Every failing unit of `readme` as "LINE_NO: reason :: text", JSON paths relative to `root`."""
    failures = []
    exempt: set[int] = set()
    table = units(readme)
    for k, (no, line, row) in enumerate(table):
        text = line
        if row:
            cells = _cells(line)
            nxt = table[k + 1][1] if k + 1 < len(table) else ""
            if re.fullmatch(r"\|[\s|:\-]+\|", nxt):  # a header row: which columns are exempt
                exempt = {i for i, c in enumerate(cells) if c.strip().lower().startswith(_EXEMPT_HEADER)}
            text = " | ".join(c for i, c in enumerate(cells) if i not in exempt)
        else:
            exempt = set()
        found = numbers(text)
        if not found:
            continue
        names = json_names(line)
        if not names:
            failures.append(f"{no}: quotes {found[0][0]} but names no JSON :: {line}")
            continue
        missing = [n for n in names if not (root / n).is_file()]
        if missing:
            failures.append(f"{no}: names {missing[0]}, which is not a file under artifacts/ :: {line}")
            continue
        pool = tuple(sorted(set().union(*(leaves(root / n) for n in names))))
        bad = [s for s, v, h, pct in found if not _found(v, h, pct, pool)]
        if bad:
            failures.append(f"{no}: {', '.join(bad)} not in {', '.join(names)} :: {line}")
    return failures


# Units of other sessions' sections that did not pass on 2026-12-06 (their sections are being rewritten):
# the unit's start → who fixes it. The list may only shrink: a unit here that passes fails the test.
PENDING: dict[str, str] = {
}


def _pending(failure: str) -> str | None:
    line = failure.split(" :: ", 1)[1]
    return next((k for k in PENDING if line.startswith(k)), None)


def test_committed_readme_quotes_its_json():
    t0 = time.perf_counter()
    failures = check(ROOT / "README.md", ROOT)
    assert time.perf_counter() - t0 < 5
    unexpected = [f for f in failures if _pending(f) is None]
    assert not unexpected, "\n".join(unexpected)
    still = {_pending(f) for f in failures}
    fixed = [k for k in PENDING if k not in still]
    assert not fixed, f"these PENDING lines pass now; drop them from PENDING: {fixed}"


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "s.json").write_text(json.dumps(
        {"alpha": 0.41837, "ci": [0.3502, 0.58], "rate": 0.9721, "N": 15996, "steps": 80000, "slope": -1.237,
         "small": 0.00923, "flag": True}))
    return tmp_path


def _write(tmp, text):
    (tmp / "README.md").write_text(text)
    return check(tmp / "README.md", tmp)


def test_numbers_found_at_their_printed_rounding(tiny):
    text = ("α 0.42 [0.35, 0.58] from `a/s.json`; 97.2 % covered; N 15,996 of 16k; 80k steps; slope −1.24, "
            "-1.237, 9.2e-3; BPE-1024, L3-d64, 2-digit, 2^k, et al. 2023, 2026-11-29 are not numbers\n")
    assert _write(tiny, text) == []


def test_a_planted_wrong_number_fails(tiny):
    assert _write(tiny, "α 0.42 [0.35, 0.59] (`a/s.json`)\n") == [
        "1: 0.59 not in a/s.json :: α 0.42 [0.35, 0.59] (`a/s.json`)"]
    # one decimal more than the JSON supports at that rounding is wrong too: 0.4184 ≠ 0.41837 → 0.4184 ok, 0.4183 not
    assert _write(tiny, "α 0.4183 (`a/s.json`)\n")[0].startswith("1: 0.4183 not in")
    assert _write(tiny, "a true flag is not the number 1; nothing rounds to 2 (`a/s.json`)\n")[0].startswith(
        "1: 2 not in")


def test_a_line_without_its_json_fails(tiny):
    assert _write(tiny, "α is 0.42\n") == ["1: quotes 0.42 but names no JSON :: α is 0.42"]
    assert _write(tiny, "α is 0.42 (`a/t.json`)\n")[0].startswith("1: names a/t.json, which is not a file")


def test_escapes_are_narrow(tiny):
    table = "| quantity | ours | paper |\n|---|---|---|\n| α (`a/s.json`) | 0.42 | 0.083 |\n"
    assert _write(tiny, table) == []
    assert _write(tiny, table.replace("| 0.42 |", "| 0.43 |"))[0].startswith("3: 0.43 not in")
    assert _write(tiny, "α 0.42 (paper: 0.083 (Pythia 2.7B)) with `a/s.json`\n") == []
    assert _write(tiny, "α 0.42 (setting: 7 widths) with `a/s.json`\n") == []
    # the escape covers its parenthesis only
    assert _write(tiny, "α 0.42 (paper: 0.083) and 0.5 with `a/s.json`\n")[0].startswith("1: 0.5 not in")
    assert _write(tiny, "```\nα 0.5\n```\n<!-- 0.7 -->\n") == []
