#!/usr/bin/env python3
"""Lint and render a Helm chart without a helm binary (helm-python-sdk wraps the
Helm Go SDK).

  render_chart.py CHART OUT.yaml [--values FILE] [--kube-version vX.Y.Z ...]
                  [--release NAME] [--namespace NS] [--upgrade]

Lints strictly (warnings count as failures) once per --kube-version, then
renders every template (hooks included, NOTES.txt excluded) into one
multi-document OUT.yaml. Exits 1 on any lint warning or error, or when rendering
fails (a template `fail`, a schema violation).
"""

from __future__ import annotations

import argparse
import sys

import helm_python as helm
import yaml


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("out")
    p.add_argument("--values", default=None)
    p.add_argument("--kube-version", action="append", default=[])
    p.add_argument("--release", default="clawgate")
    p.add_argument("--namespace", default="clawgate")
    p.add_argument("--upgrade", action="store_true")
    args = p.parse_args()

    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}

    bad = 0
    for kube in args.kube_version or [None]:
        report = helm.lint(args.chart, values, strict=True, kube_version=kube)
        for m in report["messages"]:
            if m["severity"] >= 2:  # 2 = warning, 3 = error
                bad += 1
                print(f"lint ({kube}): {m['path']}: {m['error'].strip()}", file=sys.stderr)
        for e in report["errors"]:
            bad += 1
            print(f"lint ({kube}): {str(e).strip()}", file=sys.stderr)

    try:
        with helm.Chart.load(args.chart) as chart:
            docs = chart.render(values, name=args.release, namespace=args.namespace,
                                is_install=not args.upgrade, is_upgrade=args.upgrade)
    except helm.HelmError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1

    manifests = [v.strip() for k, v in sorted(docs.items())
                 if v.strip() and not k.endswith("NOTES.txt")]
    # Every document must parse as YAML and name a kind.
    count = 0
    for text in manifests:
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                print(f"render: a document without kind/apiVersion: {str(doc)[:200]}", file=sys.stderr)
                bad += 1
            count += 1
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n---\n".join(manifests) + "\n")
    print(f"rendered {count} objects from {args.chart}"
          f"{' with ' + args.values if args.values else ' with default values'} -> {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
