#!/usr/bin/env python3
"""Every value in a chart's values.yaml is documented in its README.md.

  check_values_doc.py CHART_DIR

A value counts as documented when its path, or a parent of it, is the first
column of a README table row (`| \\`key\\` | ...`). Component sections share
one table, so a path under edge/auth/runner/session/cron/channel also matches
the same path with `<component>` in its place. Exits 1 and names every
undocumented value otherwise.
"""

import re
import sys
from pathlib import Path

import yaml

COMPONENTS = {"edge", "auth", "runner", "session", "cron", "channel"}


def leaves(node, prefix=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, prefix + (str(key),))
    else:
        yield prefix


def main(chart: str) -> int:
    values = yaml.safe_load(Path(chart, "values.yaml").read_text(encoding="utf-8")) or {}
    readme = Path(chart, "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", readme, flags=re.M))
    missing = []
    total = 0
    for path in leaves(values):
        total += 1
        candidates = [path]
        if path[0] in COMPONENTS:
            candidates.append(("<component>",) + path[1:])
        if not any(".".join(c[:n]) in documented for c in candidates for n in range(1, len(c) + 1)):
            missing.append(".".join(path))
    for m in missing:
        print(f"undocumented value: {m}")
    print(f"{total - len(missing)} of {total} values documented in {chart}/README.md")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
