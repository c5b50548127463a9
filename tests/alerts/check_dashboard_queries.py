#!/usr/bin/python3
"""Runs every query of the Grafana dashboards in grafana/ (and, with --runbook, every ```promql
block of docs/runbook.md) against a live Prometheus and reports the ones that return no data (or
only NaN): the acceptance check "every panel's query returns data from a real Prometheus that
scraped keygate under load" (SPEC section 6).

    /usr/bin/python3 tests/alerts/check_dashboard_queries.py --prometheus http://127.0.0.1:9090 \
        [--var job=keygate] [--rate-interval 1m] [--skip-offset] [--runbook [PATH]]

Grafana variables become regexes matching everything (`.+`) unless set with --var; constants
keep their value; $__rate_interval becomes --rate-interval (at least 4 scrape intervals).
Queries with `offset` (comparisons with an hour ago) need that much history: --skip-offset
leaves them out. Template variable queries (label_values) are checked too. Exits 1 if any
query fails, returns nothing or returns only NaN. Standard library only.

Runbook queries are plain PromQL (no variables), run as written. A runbook query that filters on
a failure state (`... == 0`) legitimately returns nothing on a healthy system: this script
reports it like any other; tests/integration/test_observability.py keeps the explicit list of
those it accepts.

Importable: dashboard_queries() / runbook_queries() list the queries, check_query() /
check_dashboards() run them (tests/integration/test_observability.py uses them against a
Prometheus it starts itself; tests/alerts/lint_runbook.py lints the runbook's blocks).
"""

import argparse
import glob
import json
import os
import re
import sys
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GRAFANA = os.path.normpath(os.path.join(HERE, "..", "..", "grafana"))
RUNBOOK = os.path.normpath(os.path.join(HERE, "..", "..", "docs", "runbook.md"))
VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+))")


def get(base, path, params):
    url = f"{base.rstrip('/')}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))


def dashboard_queries(grafana=GRAFANA, overrides=None, rate_interval="1m"):
    """Every query of every dashboard in `grafana`, with its Grafana variables filled in (see the
    module docstring). Yields dicts: `kind` ("variable": a label_values() template variable, or
    "panel"), `where` (file, and the variable or [panel title] refId), `expr` (as written),
    `query` (filled in), `offset` (True when the expression uses `offset`); variables also have
    `label` (the label whose values are listed) and `match` (the series selector)."""
    overrides = dict(overrides or {})
    for path in sorted(glob.glob(os.path.join(grafana, "*.json"))):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        name = os.path.basename(path)
        values = {"__rate_interval": rate_interval, "__interval": rate_interval,
                  "__range": "1h"}
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "constant":
                values[v["name"]] = v.get("query", "")
            elif v.get("type") == "query":
                values[v["name"]] = ".+"
        values.update(overrides)

        def fill(expr, values=values):
            return VAR_RE.sub(lambda m: values.get(m.group(1) or m.group(2), ".+"), expr)

        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") != "query":
                continue
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
            if not m:
                continue
            yield {"kind": "variable", "where": f"{name} variable ${v['name']}", "expr": query,
                   "query": query, "label": m.group(2), "match": fill(m.group(1)),
                   "offset": False}
        for panel in walk(dash.get("panels", [])):
            for t in panel.get("targets", []):
                expr = t.get("expr", "")
                if not expr.strip():
                    continue
                yield {"kind": "panel",
                       "where": f"{name} [{panel.get('title')}] {t.get('refId')}",
                       "expr": expr, "query": fill(expr),
                       "offset": bool(re.search(r"\boffset\b", expr))}


FENCE_OPEN_RE = re.compile(r"^(\s*)```([A-Za-z0-9_+-]*)\s*$")
FENCE_CLOSE_RE = re.compile(r"^\s*```\s*$")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def fenced_blocks(path, lang):
    """Every fenced code block of Markdown file `path` whose info string is `lang` (e.g.
    "promql", "yaml"). Yields dicts: `line` (1-based line of the opening fence), `section`
    (the nearest heading above it, "14.1 Redis memory near limit > First 5 minutes" for a
    level-3 heading under a level-2 one), `text` (the block's lines, its fence's indentation
    removed). An unclosed fence raises ValueError."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    headings = {}
    i = 0
    while i < len(lines):
        m = FENCE_OPEN_RE.match(lines[i])
        if m:
            indent, info = len(m.group(1)), m.group(2)
            start = i
            body = []
            i += 1
            while i < len(lines) and not FENCE_CLOSE_RE.match(lines[i]):
                line = lines[i]
                body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
                i += 1
            if i >= len(lines):
                raise ValueError(f"{path}:{start + 1}: code block never closed")
            if info == lang:
                levels = sorted(headings)
                section = " > ".join(headings[k] for k in levels if k >= 2) or \
                    headings.get(1, "")
                yield {"line": start + 1, "section": section, "text": "\n".join(body)}
            i += 1
            continue
        h = HEADING_RE.match(lines[i])
        if h:
            level = len(h.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = h.group(2)
        i += 1


def runbook_queries(path=RUNBOOK):
    """Every ```promql block of the runbook, one query each, in the shape of
    dashboard_queries(): `kind` "runbook", `where` ("docs/runbook.md:LINE section"), `expr`
    (the block), `query` (the same, stripped), `offset`."""
    rel = os.path.relpath(path, os.path.normpath(os.path.join(HERE, "..", "..")))
    for block in fenced_blocks(path, "promql"):
        expr = block["text"].strip()
        yield {"kind": "runbook", "where": f"{rel}:{block['line']} ({block['section']})",
               "expr": expr, "query": expr, "offset": bool(re.search(r"\boffset\b", expr))}


def check_query(base, q):
    """Runs one query of dashboard_queries() against Prometheus at `base`. Returns None when it
    returned data, else a line saying why not ("NO DATA ...", "ERROR ...", "NaN ...")."""
    if q["kind"] == "variable":
        r = get(base, f"label/{q['label']}/values", {"match[]": q["match"]})
        if r.get("status") != "success" or not r.get("data"):
            return f"NO DATA  {q['where']}: {q['expr']}"
        return None
    r = get(base, "query", {"query": q["query"]})
    if r.get("status") != "success":
        return f"ERROR    {q['where']}: {r.get('error')}"
    result = r["data"]["result"]
    if not result:
        return f"NO DATA  {q['where']}: {q['expr']!r}"
    if all(s["value"][1] in ("NaN", "+Inf", "-Inf") for s in result):
        return f"NaN      {q['where']}: {q['expr']!r}"
    return None


def check_dashboards(base, overrides=None, rate_interval="1m", skip_offset=False,
                     grafana=GRAFANA):
    """Runs every dashboard query against Prometheus at `base`. Returns (queries run, lines of
    the queries without data, queries skipped for their `offset`)."""
    total = 0
    problems = []
    skipped = []
    for q in dashboard_queries(grafana, overrides, rate_interval):
        if skip_offset and q["offset"]:
            skipped.append(q)
            continue
        total += 1
        line = check_query(base, q)
        if line:
            problems.append(line)
    return total, problems, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--rate-interval", default="1m")
    ap.add_argument("--skip-offset", action="store_true")
    ap.add_argument("--grafana", default=GRAFANA)
    ap.add_argument("--runbook", nargs="?", const=RUNBOOK, metavar="PATH",
                    help=f"also run the ```promql blocks of PATH (default {RUNBOOK})")
    args = ap.parse_args()
    overrides = dict(v.split("=", 1) for v in args.var)

    total, problems, skipped = check_dashboards(args.prometheus, overrides, args.rate_interval,
                                                args.skip_offset, args.grafana)
    if args.runbook:
        for q in runbook_queries(args.runbook):
            if args.skip_offset and q["offset"]:
                skipped.append(q)
                continue
            total += 1
            line = check_query(args.prometheus, q)
            if line:
                problems.append(line)
    for line in problems:
        print(line)
    bad = len(problems)
    print(f"{total} queries, {bad} without data"
          + (f", {len(skipped)} with offset skipped" if skipped else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
