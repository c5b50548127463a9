#!/usr/bin/python3
"""Generates keygate-prometheusrule.yaml (a PrometheusRule for the Prometheus Operator) from
keygate-rules.yaml (a plain Prometheus rules file, the one promtool checks and unit-tests).

    /usr/bin/python3 deploy/prometheus/gen-prometheusrule.py           # rewrite the file
    /usr/bin/python3 deploy/prometheus/gen-prometheusrule.py --check   # exit 1 if out of date

The rules are copied as text (indented under `spec:`), so comments and the layout of each
expression stay as written; the result is then parsed back with PyYAML (python3-yaml) to make
sure `spec.groups` is exactly the plain file's `groups`. Edit keygate-rules.yaml, never the
generated file; `ctest -L alerts` fails while they differ.
"""

import argparse
import difflib
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "keygate-rules.yaml")
TARGET = os.path.join(HERE, "keygate-prometheusrule.yaml")

HEADER = """\
# GENERATED from keygate-rules.yaml by gen-prometheusrule.py: do not edit by hand.
#   /usr/bin/python3 deploy/prometheus/gen-prometheusrule.py
#
# The same alert rules as keygate-rules.yaml, as a Prometheus Operator resource. Add the labels
# your Prometheus's ruleSelector matches (kube-prometheus-stack selects `release: <its release
# name>` by default), for example with a kustomize patch, rather than editing this file.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: keygate
  labels:
    app.kubernetes.io/name: keygate
    app.kubernetes.io/component: alert-rules
spec:
"""


def generate(source_text):
    lines = source_text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    except StopIteration:
        raise SystemExit(f"{SOURCE}: no top-level `groups:` line")
    body = [("  " + line) if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body) + "\n"


def check_structure(source_text, generated_text):
    plain = yaml.safe_load(source_text)
    wrapped = yaml.safe_load(generated_text)
    if set(plain) != {"groups"}:
        raise SystemExit(f"{SOURCE}: top level must hold only `groups` (has {sorted(plain)})")
    if wrapped["spec"] != plain:
        raise SystemExit("generated PrometheusRule's spec differs from the plain rules file "
                         "(after parsing): gen-prometheusrule.py is wrong")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when the PrometheusRule is out of date")
    args = parser.parse_args()

    with open(SOURCE, encoding="utf-8") as f:
        source_text = f.read()
    generated = generate(source_text)
    check_structure(source_text, generated)

    if args.check:
        try:
            with open(TARGET, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != generated:
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(True), generated.splitlines(True),
                os.path.relpath(TARGET), "generated from " + os.path.relpath(SOURCE)))
            print(f"\n{os.path.relpath(TARGET)} is out of date: run "
                  "/usr/bin/python3 deploy/prometheus/gen-prometheusrule.py", file=sys.stderr)
            return 1
        print(f"{os.path.relpath(TARGET)} is in sync with {os.path.relpath(SOURCE)}")
        return 0

    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(generated)
    print(f"wrote {os.path.relpath(TARGET)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
