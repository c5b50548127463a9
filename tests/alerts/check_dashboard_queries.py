#!/usr/bin/python3
"""Runs every query of the Grafana dashboards in grafana/ against a live Prometheus and reports
the ones that return no data (or only NaN): the acceptance check "every panel's query returns
data from a real Prometheus that scraped keygate under load" (SPEC section 6).

    /usr/bin/python3 tests/alerts/check_dashboard_queries.py --prometheus http://127.0.0.1:9090 \
        [--var job=keygate] [--rate-interval 1m] [--skip-offset]

Grafana variables become regexes matching everything (`.+`) unless set with --var; constants
keep their value; $__rate_interval becomes --rate-interval (at least 4 scrape intervals).
Queries with `offset` (comparisons with an hour ago) need that much history: --skip-offset
leaves them out. Template variable queries (label_values) are checked too. Exits 1 if any
query fails, returns nothing or returns only NaN. Standard library only.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--rate-interval", default="1m")
    ap.add_argument("--skip-offset", action="store_true")
    ap.add_argument("--grafana", default=GRAFANA)
    args = ap.parse_args()
    overrides = dict(v.split("=", 1) for v in args.var)

    bad = total = skipped = 0
    for path in sorted(glob.glob(os.path.join(args.grafana, "*.json"))):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        name = os.path.basename(path)
        values = {"__rate_interval": args.rate_interval, "__interval": args.rate_interval,
                  "__range": "1h"}
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "constant":
                values[v["name"]] = v.get("query", "")
            elif v.get("type") == "query":
                values[v["name"]] = ".+"
        values.update(overrides)

        def fill(expr):
            return VAR_RE.sub(lambda m: values.get(m.group(1) or m.group(2), ".+"), expr)

        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") != "query":
                continue
            query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
            if not m:
                continue
            total += 1
            r = get(args.prometheus, f"label/{m.group(2)}/values", {"match[]": fill(m.group(1))})
            if r.get("status") != "success" or not r.get("data"):
                bad += 1
                print(f"NO DATA  {name} variable ${v['name']}: {query}")
        for panel in walk(dash.get("panels", [])):
            for t in panel.get("targets", []):
                expr = t.get("expr", "")
                if not expr.strip():
                    continue
                if args.skip_offset and re.search(r"\boffset\b", expr):
                    skipped += 1
                    continue
                total += 1
                where = f"{name} [{panel.get('title')}] {t.get('refId')}"
                r = get(args.prometheus, "query", {"query": fill(expr)})
                if r.get("status") != "success":
                    bad += 1
                    print(f"ERROR    {where}: {r.get('error')}")
                    continue
                result = r["data"]["result"]
                if not result:
                    bad += 1
                    print(f"NO DATA  {where}: {expr!r}")
                elif all(s["value"][1] in ("NaN", "+Inf", "-Inf") for s in result):
                    bad += 1
                    print(f"NaN      {where}: {expr!r}")
    print(f"{total} queries, {bad} without data" + (f", {skipped} with offset skipped" if skipped else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
