#!/usr/bin/python3
"""Lints the Grafana dashboards in grafana/ and the PromQL of the alert rules.

    /usr/bin/python3 tests/alerts/lint_dashboards.py [--promtool PATH]

Dashboards (grafana/*.json):
  - every file parses as JSON and has a uid, a title and schemaVersion; uids and titles are
    unique across dashboards, panel ids unique within one;
  - the data source is the `DS_PROMETHEUS` variable everywhere (panels and targets);
  - every panel except rows has at least one target with a non-empty `expr`;
  - every `$variable` an expression uses is defined in `templating` (or is Grafana's own).
Provisioning examples (grafana/provisioning/*.yaml) parse and have `apiVersion: 1`.
Dashboards, alert rules (deploy/prometheus/keygate-rules.yaml) and the rule unit tests'
input series (tests/alerts/keygate-rules.test.yaml):
  - every keygate_* metric name is in tests/alerts/metric-names.txt (a histogram's _bucket,
    _sum and _count count as the histogram), and every label name in a matcher, a `by` /
    `without` / `on` / `ignoring` list or a `{{legend}}` is one of those metrics' labels or a
    target label (job, instance, le);
  - with --promtool: every expression is valid PromQL (Grafana variables replaced by sample
    values, then `promtool check rules` on a throwaway rules file).
Exits 1 listing every problem.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

GRAFANA_BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                        "__range_ms", "__from", "__to", "__dashboard", "__org", "__user",
                        "__name", "__all"}
TARGET_LABELS = {"job", "instance"}
# Labels PromQL itself adds or that are not series labels.
PROMQL_LABELS = {"le", "__name__"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                   "bool", "and", "or", "unless"}

METRIC_RE = re.compile(r"\bkeygate_[a-z_]+")
VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+))")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHER_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
LEGEND_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def load_metrics(path):
    metrics = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            name, kind, labels = line[0], line[1], set(line[2:])
            if kind not in ("counter", "gauge", "histogram"):
                raise SystemExit(f"{path}:{n}: unknown type {kind!r}")
            metrics[name] = (kind, labels)
    return metrics


def strip_strings(expr):
    """The expression without the contents of its string literals."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


class Linter:
    def __init__(self, metrics):
        self.metrics = metrics
        self.labels = set(TARGET_LABELS) | PROMQL_LABELS
        for _, labels in metrics.values():
            self.labels |= labels
        self.problems = []
        self.exprs = []  # (where, expr) for the PromQL syntax check

    def problem(self, where, text):
        self.problems.append(f"{where}: {text}")

    def metric_ok(self, name):
        if name in self.metrics:
            return True
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)] if name.endswith(suffix) else None
            if base and self.metrics.get(base, ("",))[0] == "histogram":
                return True
        return False

    def check_expr(self, where, expr, extra_labels=()):
        self.exprs.append((where, expr))
        for name in sorted(set(METRIC_RE.findall(expr))):
            if not self.metric_ok(name):
                self.problem(where, f"metric {name} is not in metric-names.txt")
        bare = strip_strings(expr)
        used = set(MATCHER_RE.findall(expr))
        for group in GROUPING_RE.findall(bare):
            used |= {l.strip() for l in group.split(",") if l.strip()}
        allowed = self.labels | set(extra_labels)
        for label in sorted(used - allowed - PROMQL_KEYWORDS):
            self.problem(where, f"label {label!r} is not a label of any listed metric")

    def check_legend(self, where, legend, extra_labels=()):
        for label in LEGEND_RE.findall(legend or ""):
            if label not in self.labels and label not in extra_labels:
                self.problem(where, f"legend uses label {label!r}, which no listed metric has")


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def is_ds_var(ds):
    return isinstance(ds, dict) and ds.get("uid") in ("${DS_PROMETHEUS}", "$DS_PROMETHEUS")


def lint_dashboards(linter, paths):
    uids, titles = {}, {}
    for path in paths:
        rel = os.path.relpath(path, ROOT)
        try:
            with open(path, encoding="utf-8") as f:
                dash = json.load(f)
        except (OSError, ValueError) as e:
            linter.problem(rel, f"does not parse as JSON: {e}")
            continue
        for key in ("uid", "title", "schemaVersion", "panels", "templating"):
            if key not in dash:
                linter.problem(rel, f"no {key!r}")
        uid, title = dash.get("uid"), dash.get("title")
        if uid in uids:
            linter.problem(rel, f"uid {uid!r} also used by {uids[uid]}")
        uids[uid] = rel
        if title in titles:
            linter.problem(rel, f"title {title!r} also used by {titles[title]}")
        titles[title] = rel
        if uid and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            linter.problem(rel, f"uid {uid!r}: use 1..40 letters, digits, - or _")
        if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
            linter.problem(rel, "schemaVersion must be 36 or later")

        variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        ds = variables.get("DS_PROMETHEUS")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            linter.problem(rel, "templating needs a `DS_PROMETHEUS` datasource variable of type prometheus")
        defined = set(variables) | GRAFANA_BUILTIN_VARS

        def check_vars(where, text):
            for braced, plain in VAR_RE.findall(text):
                name = braced or plain
                if name not in defined:
                    linter.problem(where, f"uses ${name}, which templating does not define")

        for name, var in variables.items():
            if var.get("type") == "query":
                where = f"{rel} variable ${name}"
                if not is_ds_var(var.get("datasource")):
                    linter.problem(where, "datasource is not ${DS_PROMETHEUS}")
                query = var.get("query")
                query = query.get("query", "") if isinstance(query, dict) else (query or "")
                check_vars(where, query)
                for name_ in sorted(set(METRIC_RE.findall(query))):
                    if not linter.metric_ok(name_):
                        linter.problem(where, f"metric {name_} is not in metric-names.txt")

        ids = set()
        for panel in walk_panels(dash.get("panels", [])):
            pid, ptitle = panel.get("id"), panel.get("title", "")
            where = f"{rel} panel {pid} {ptitle!r}"
            if pid in ids:
                linter.problem(where, "panel id used twice")
            ids.add(pid)
            if panel.get("type") == "row":
                continue
            if not ptitle:
                linter.problem(where, "no title")
            if not is_ds_var(panel.get("datasource")):
                linter.problem(where, "datasource is not ${DS_PROMETHEUS}")
            targets = [t for t in panel.get("targets", []) if str(t.get("expr", "")).strip()]
            if not targets:
                linter.problem(where, "no target with an expr")
            refs = set()
            for t in panel.get("targets", []):
                twhere = f"{where} target {t.get('refId')}"
                if t.get("refId") in refs:
                    linter.problem(twhere, "refId used twice")
                refs.add(t.get("refId"))
                if "datasource" in t and not is_ds_var(t["datasource"]):
                    linter.problem(twhere, "datasource is not ${DS_PROMETHEUS}")
                expr = str(t.get("expr", ""))
                if not expr.strip():
                    continue
                check_vars(twhere, expr)
                # count_values("le", ...) makes a label of its own.
                extra = re.findall(r'count_values[^(]*\(\s*"([A-Za-z_]+)"', expr)
                linter.check_expr(twhere, expr, extra)
                linter.check_legend(twhere, t.get("legendFormat"), extra)
    return uids


def lint_provisioning(linter, directory):
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        rel = os.path.relpath(path, ROOT)
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            linter.problem(rel, f"does not parse as YAML: {e}")
            continue
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            linter.problem(rel, "a Grafana provisioning file needs `apiVersion: 1`")
        elif not (doc.get("providers") or doc.get("datasources")):
            linter.problem(rel, "neither `providers` nor `datasources`")


def lint_rules(linter, path):
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    names = set()
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            where = f"{rel} {name}"
            if name in names:
                linter.problem(where, "defined twice")
            names.add(name)
            linter.check_expr(where, rule.get("expr", ""))
            if "alert" in rule:
                for key in ("summary", "description"):
                    if not rule.get("annotations", {}).get(key):
                        linter.problem(where, f"no {key} annotation")
                if "14." not in rule.get("annotations", {}).get("description", ""):
                    linter.problem(where, "description does not name a playbook (seed 14.x)")
                if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    linter.problem(where, "severity label must be critical, warning or info")
                if "for" not in rule:
                    linter.problem(where, "no `for:`")
    return names


def lint_rule_tests(linter, path, alerts):
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    tested = set()
    for test in doc.get("tests", []):
        where = f"{rel} test {test.get('name', '?')!r}"
        for series in test.get("input_series", []):
            linter.check_expr(where, series.get("series", "").split("{")[0] + "{}")
            for label in MATCHER_RE.findall(series.get("series", "")):
                if label not in linter.labels:
                    linter.problem(where, f"series label {label!r} is not a label of any listed metric")
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                tested.add(case.get("alertname"))
    for alert in sorted(alerts - tested):
        linter.problem(rel, f"no test case where {alert} fires")


def promql_syntax(linter, promtool):
    """Replaces Grafana variables with sample values and lets promtool parse every expression."""
    samples = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600",
               "__range_ms": "3600000", "__interval_ms": "60000"}

    def fill(expr):
        return VAR_RE.sub(lambda m: samples.get(m.group(1) or m.group(2), ".*"), expr)

    rules = [{"record": f"lint:expr_{i}", "expr": fill(expr)} for i, (_, expr) in enumerate(linter.exprs)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "lint", "rules": rules}]}, f)
        tmp = f.name
    try:
        run = subprocess.run([promtool, "check", "rules", tmp], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    finally:
        os.unlink(tmp)
    if run.returncode != 0:
        # promtool names the rule: map lint:expr_N back to where it came from.
        def where(m):
            return linter.exprs[int(m.group(1))][0]
        out = re.sub(r"lint:expr_(\d+)", lambda m: f"<{where(m)}>", run.stdout)
        linter.problem("promtool", "PromQL does not parse:\n" + out)
    return len(rules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grafana", default=os.path.join(ROOT, "grafana"))
    parser.add_argument("--rules", default=os.path.join(ROOT, "deploy", "prometheus", "keygate-rules.yaml"))
    parser.add_argument("--rule-tests", default=os.path.join(HERE, "keygate-rules.test.yaml"))
    parser.add_argument("--metrics", default=os.path.join(HERE, "metric-names.txt"))
    parser.add_argument("--promtool", help="also check every expression's PromQL syntax")
    args = parser.parse_args()

    linter = Linter(load_metrics(args.metrics))
    paths = sorted(glob.glob(os.path.join(args.grafana, "*.json")))
    if not paths:
        linter.problem(args.grafana, "no dashboards (*.json)")
    uids = lint_dashboards(linter, paths)
    lint_provisioning(linter, os.path.join(args.grafana, "provisioning"))
    n_dash_exprs = len(linter.exprs)
    alerts = lint_rules(linter, args.rules)
    lint_rule_tests(linter, args.rule_tests, alerts)
    if args.promtool:
        promql_syntax(linter, args.promtool)
    else:
        print("note: PromQL syntax not checked (no --promtool)")

    if linter.problems:
        print("\n".join(linter.problems))
        print(f"\n{len(linter.problems)} problem(s)")
        return 1
    print(f"ok: {len(paths)} dashboards ({', '.join(sorted(u for u in uids if u))}), "
          f"{n_dash_exprs} panel expressions, {len(alerts)} rules"
          + (", PromQL parsed by promtool" if args.promtool else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
