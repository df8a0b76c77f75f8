"""The sample outputs in README.md and docs/observability.md are what a real run produces
(scripts/gen-docs-samples.py --check; timings aside). After a change to what the filter or
the demo answers, regenerate them: .venv/bin/python scripts/gen-docs-samples.py"""

import subprocess
import sys

from harness import ROOT


def test_samples_match_a_real_run():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-docs-samples.py"), "--check"],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "8 samples up to date"
