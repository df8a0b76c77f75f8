#!/usr/bin/env python3
"""Adapts a shipped Envoy configuration to the Envoy that will run it.

The duration histograms in seconds come from Envoy's stats access logger
(`envoy.access_loggers.stats`), which Envoy 1.37 added; Envoy 1.36 refuses a
configuration that names it. On an older Envoy the entries are dropped (the
filter still works; only the two duration histograms are missing), as
docs/deployment.md tells operators to do.

    scripts/envoy_compat.py ENVOY_BINARY < config.yaml > adapted.yaml
"""

from __future__ import annotations

import re
import subprocess
import sys

STATS_ACCESS_LOGGER_SINCE = (1, 37)


def envoy_version(envoy: str) -> tuple[int, int] | None:
    """(major, minor), or None when the binary does not say (then nothing is adapted)."""
    try:
        out = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"/(\d+)\.(\d+)\.\d+/", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def without_stats_access_loggers(text: str) -> str:
    """The configuration less its `envoy.access_loggers.stats` entries (each a YAML list
    item, up to the next line at its indentation or less)."""
    lines, out, drop = text.split("\n"), [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if drop is not None and line.strip() and indent <= drop:
            drop = None
        if drop is None and line.lstrip() == "- name: envoy.access_loggers.stats":
            drop = indent
        if drop is None:
            out.append(line)
    return "\n".join(out)


def adapt(text: str, version: tuple[int, int] | None) -> str:
    if version is None or version >= STATS_ACCESS_LOGGER_SINCE:
        return text
    return without_stats_access_loggers(text)


if __name__ == "__main__":
    sys.stdout.write(adapt(sys.stdin.read(), envoy_version(sys.argv[1])))
