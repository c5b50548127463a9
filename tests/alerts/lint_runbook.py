#!/usr/bin/python3
"""Lints docs/runbook.md against what keygate really exports, alerts on and accepts.

    /usr/bin/python3 tests/alerts/lint_runbook.py [--promtool PATH] [--keygate PATH]

(both default to $PROMTOOL / promtool on PATH and $KEYGATE_BIN; a missing one is a problem,
not a skipped check.)

  - ```promql blocks: at least 30; each holds exactly one query (no blank line, no comment,
    no Grafana `$variable`; promtool parses it as one expression), uses at least one keygate_*
    metric, and only metric and label names listed in tests/alerts/metric-names.txt (the same
    rules as lint_dashboards.py);
  - alerts: every alert of deploy/prometheus/keygate-rules.yaml is named in the runbook, and
    every `Keygate...` alert name the runbook uses exists;
  - Grafana references written as `dashboard-uid › Panel title` name a real panel of that
    dashboard in grafana/;
  - structure: sections 14.1-14.5 exist, each with the subsections Symptoms, First 5 minutes,
    Diagnosis, Mitigation, Fixed when (in that order), at least one ```promql block and one
    ```yaml snippet; the keygate's-own-failures section has its four subsections;
  - ```yaml blocks are registry snippets: a mapping of `patterns:` and/or `endpoints:`. Each is
    applied on its own to config/examples/cpq-registry.yaml (an entry whose `pattern` / `name`
    exists there updates that entry's fields; any other is appended as a new entry), must
    change something, and the result must pass `keygate check`.
Exits 1 listing every problem.
"""

import argparse
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import check_dashboard_queries as dq  # noqa: E402
import lint_dashboards as ld  # noqa: E402

INCIDENTS = ["14.1", "14.2", "14.3", "14.4", "14.5"]
INCIDENT_PARTS = ["Symptoms", "First 5 minutes", "Diagnosis", "Mitigation", "Fixed when"]
OWN_FAILURES = ["Registry reload failing", "Keyspace notifications off", "Breaker open",
                "Upstream unreachable"]
MIN_QUERIES = 30
ALERT_RE = re.compile(r"\bKeygate[A-Z][A-Za-z]+\b")
PANEL_REF_RE = re.compile(r"`(keygate-[a-z0-9-]+) › ([^`]+)`")
SNIPPET_KEYS = {"patterns", "endpoints"}


def sections(path):
    """[(level, title, first line, last line)] of the Markdown headings outside code blocks."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    in_code = False
    for n, line in enumerate(lines, 1):
        if re.match(r"^\s*```", line):
            in_code = not in_code
            continue
        m = None if in_code else dq.HEADING_RE.match(line)
        if m:
            out.append([len(m.group(1)), m.group(2), n, len(lines)])
    for i, s in enumerate(out):
        for t in out[i + 1:]:
            if t[0] <= s[0]:
                s[3] = t[2] - 1
                break
    return [tuple(s) for s in out]


def lint_structure(linter, path, rel, promql, yamls):
    heads = sections(path)
    for number in INCIDENTS:
        found = [h for h in heads if h[0] == 2 and h[1].startswith(number + " ")]
        if not found:
            linter.problem(rel, f"no section `## {number} ...`")
            continue
        _, title, first, last = found[0]
        parts = [h[1] for h in heads if h[0] == 3 and first < h[2] <= last]
        if parts != INCIDENT_PARTS:
            linter.problem(rel, f"section {title!r}: subsections {parts}, expected "
                                f"{INCIDENT_PARTS}")
        if not any(first < b["line"] <= last for b in promql):
            linter.problem(rel, f"section {title!r}: no ```promql block")
        if not any(first < b["line"] <= last for b in yamls):
            linter.problem(rel, f"section {title!r}: no ```yaml registry snippet in Mitigation")
    own = [h for h in heads if h[0] == 2 and "own failures" in h[1]]
    if not own:
        linter.problem(rel, "no section about keygate's own failures")
    else:
        _, _, first, last = own[0]
        parts = [h[1] for h in heads if h[0] == 3 and first < h[2] <= last]
        for want in OWN_FAILURES:
            if not any(p.startswith(want) for p in parts):
                linter.problem(rel, f"keygate's own failures: no subsection {want!r}")


def lint_promql(linter, path, rel):
    blocks = list(dq.fenced_blocks(path, "promql"))
    for b in blocks:
        where = f"{rel}:{b['line']} ({b['section']})"
        text = b["text"].strip()
        if not text:
            linter.problem(where, "empty ```promql block")
            continue
        lines = text.split("\n")
        if any(not l.strip() for l in lines):
            linter.problem(where, "blank line in a ```promql block: one query per block")
        if any(l.strip().startswith("#") for l in lines):
            linter.problem(where, "comment in a ```promql block: explain it in the text")
        if "$" in text:
            linter.problem(where, "a Grafana variable in a runbook query: write the query as "
                                  "an operator pastes it")
        if not ld.METRIC_RE.search(text):
            linter.problem(where, "no keygate_* metric in the query")
        linter.check_expr(where, text)
    if len(blocks) < MIN_QUERIES:
        linter.problem(rel, f"only {len(blocks)} ```promql blocks (expected at least "
                            f"{MIN_QUERIES}: is the fence info string `promql`?)")
    return blocks


def lint_alerts(linter, text, rel, rules_path):
    with open(rules_path, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    alerts = {r["alert"] for g in rules.get("groups", []) for r in g.get("rules", [])
              if "alert" in r}
    used = set(ALERT_RE.findall(text))
    for name in sorted(alerts - used):
        linter.problem(rel, f"alert {name} (deploy/prometheus/keygate-rules.yaml) is not in "
                            f"the runbook")
    for name in sorted(used - alerts):
        linter.problem(rel, f"alert {name} is named in the runbook but not defined in "
                            f"deploy/prometheus/keygate-rules.yaml")
    return alerts


def lint_panel_refs(linter, text, rel, grafana):
    titles = {}
    for p in sorted(glob.glob(os.path.join(grafana, "*.json"))):
        with open(p, encoding="utf-8") as f:
            dash = json.load(f)
        panels = dq.walk(dash.get("panels", []))
        titles[dash.get("uid")] = {panel.get("title") for panel in panels}
    refs = PANEL_REF_RE.findall(text)
    for uid, title in refs:
        if uid not in titles:
            linter.problem(rel, f"panel reference `{uid} › {title}`: no dashboard with uid "
                                f"{uid!r}")
        elif title not in titles[uid]:
            linter.problem(rel, f"panel reference `{uid} › {title}`: dashboard {uid} has no "
                                f"panel titled {title!r}")
    if not refs:
        linter.problem(rel, "no `dashboard-uid › Panel title` references")
    return len(refs)


def apply_snippet(base, snippet):
    """The registry `base` with `snippet` applied (see the module docstring). Returns
    (registry, problems)."""
    reg = copy.deepcopy(base)
    problems = []
    for key in ("patterns", "endpoints"):
        ident = "pattern" if key == "patterns" else "name"
        entries = snippet.get(key) or []
        if not isinstance(entries, list):
            problems.append(f"`{key}:` must be a list")
            continue
        for entry in entries:
            if not isinstance(entry, dict) or ident not in entry:
                problems.append(f"an entry of `{key}:` without `{ident}:`")
                continue
            existing = [e for e in reg.setdefault(key, []) if e.get(ident) == entry[ident]]
            if existing:
                existing[0].update(copy.deepcopy(entry))
            else:
                reg[key].append(copy.deepcopy(entry))
    return reg, problems


def lint_yaml(linter, path, rel, registry_path, keygate):
    blocks = list(dq.fenced_blocks(path, "yaml"))
    with open(registry_path, encoding="utf-8") as f:
        base = yaml.safe_load(f)
    if not keygate or not os.access(keygate, os.X_OK):
        linter.problem(rel, f"cannot check the {len(blocks)} YAML snippets: no keygate binary "
                            f"(--keygate PATH or KEYGATE_BIN; got {keygate!r})")
        return blocks
    workdir = tempfile.mkdtemp(prefix="keygate-runbook-lint-")
    try:
        for b in blocks:
            where = f"{rel}:{b['line']} ({b['section']})"
            try:
                snippet = yaml.safe_load(b["text"])
            except yaml.YAMLError as e:
                linter.problem(where, f"YAML does not parse: {e}")
                continue
            if not isinstance(snippet, dict) or not snippet or set(snippet) - SNIPPET_KEYS:
                got = (sorted(snippet) if isinstance(snippet, dict)
                       else type(snippet).__name__)
                linter.problem(where, f"a registry snippet is a mapping of "
                                      f"{sorted(SNIPPET_KEYS)} only; got {got}")
                continue
            merged, problems = apply_snippet(base, snippet)
            for p in problems:
                linter.problem(where, p)
            if merged == base:
                linter.problem(where, "the snippet changes nothing in the example registry")
            out = os.path.join(workdir, f"registry-line-{b['line']}.yaml")
            with open(out, "w", encoding="utf-8") as f:
                yaml.safe_dump(merged, f, sort_keys=False, allow_unicode=True)
            run = subprocess.run([keygate, "check", out], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=60)
            if run.returncode != 0:
                linter.problem(where, f"`keygate check` on the example registry with this "
                                      f"snippet applied exits {run.returncode}:\n"
                                      + "\n".join("    " + l for l in run.stdout.splitlines()[:20]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return blocks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runbook", default=dq.RUNBOOK)
    parser.add_argument("--metrics", default=os.path.join(HERE, "metric-names.txt"))
    parser.add_argument("--rules",
                        default=os.path.join(ROOT, "deploy", "prometheus", "keygate-rules.yaml"))
    parser.add_argument("--grafana", default=os.path.join(ROOT, "grafana"))
    parser.add_argument("--registry",
                        default=os.path.join(ROOT, "config", "examples", "cpq-registry.yaml"))
    parser.add_argument("--promtool",
                        default=os.environ.get("PROMTOOL") or shutil.which("promtool"))
    parser.add_argument("--keygate", default=os.environ.get("KEYGATE_BIN"))
    args = parser.parse_args()

    rel = os.path.relpath(args.runbook, ROOT)
    with open(args.runbook, encoding="utf-8") as f:
        text = f.read()
    linter = ld.Linter(ld.load_metrics(args.metrics))
    promql = lint_promql(linter, args.runbook, rel)
    yamls = lint_yaml(linter, args.runbook, rel, args.registry, args.keygate)
    lint_structure(linter, args.runbook, rel, promql, yamls)
    alerts = lint_alerts(linter, text, rel, args.rules)
    refs = lint_panel_refs(linter, text, rel, args.grafana)
    if args.promtool and os.access(args.promtool, os.X_OK):
        ld.promql_syntax(linter, args.promtool)
    else:
        linter.problem(rel, f"PromQL not parsed: no promtool (--promtool PATH; apt-get install "
                            f"prometheus); got {args.promtool!r}")

    if linter.problems:
        print("\n".join(linter.problems))
        print(f"\n{len(linter.problems)} problem(s)")
        return 1
    print(f"ok: {rel}: {len(promql)} PromQL queries (metric names checked, parsed by promtool), "
          f"{len(alerts)} alerts all named, {refs} panel references, {len(yamls)} registry "
          f"snippets pass `keygate check`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
