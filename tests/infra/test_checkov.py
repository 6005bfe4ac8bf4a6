"""checkov over infra/: no failed check, every template parsed, every skip justified where it is made.

checkov pins many packages, so `make test` installs it into its own venv (.venv-tools) rather than the app's. When
that venv could not be made this test skips with the reason; with CI=true it fails instead, so CI always scans.
Run `pytest tests/infra/test_checkov.py -s` to see the summary and each skip with its reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.peers import unavailable

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
#: The Bicep checks, plus the secrets scan: no key or token may sit in infra/ (the hook scripts included).
FRAMEWORKS = ("bicep", "secrets")


def run_checkov() -> list[dict]:
    if not CHECKOV.exists():
        unavailable(f"checkov is not installed in {CHECKOV.parent.parent.name}: `make setup` installs it (needs PyPI)")
    result = subprocess.run(
        # --skip-download: no calls to the Prisma Cloud API for guidelines; everything runs offline.
        [str(CHECKOV), "--directory", "infra", "--framework", *FRAMEWORKS, "--skip-download", "--output", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    # checkov exits 1 when a check fails; anything else non-zero is checkov itself failing.
    assert result.returncode in (0, 1), f"checkov crashed ({result.returncode}):\n{result.stderr[-4000:]}"
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_passes_infra_with_every_skip_justified() -> None:
    reports = {report["check_type"]: report for report in run_checkov()}
    assert "bicep" in reports, f"checkov produced no Bicep report (reports: {sorted(reports)})"
    bicep = reports["bicep"]
    summary = bicep["summary"]
    results = bicep["results"]

    print(f"\ncheckov {summary['checkov_version']} over infra/: passed {summary['passed']}, "
          f"failed {summary['failed']}, skipped {summary['skipped']}, "
          f"resources {summary['resource_count']}, parsing errors {summary['parsing_errors']}")
    for check in sorted(results.get("skipped_checks", []), key=lambda c: (c["file_path"], c["check_id"])):
        print(f"  skip {check['check_id']} {check['resource']} ({check['file_path']}): "
              f"{check['check_result'].get('suppress_comment', '')}")
    for check in results.get("failed_checks", []):
        print(f"  FAILED {check['check_id']} {check['check_name']}: {check['resource']} "
              f"{check['file_path']}:{check['file_line_range']}")

    # A file checkov cannot parse is silently not checked: that must fail here, not pass.
    assert summary["parsing_errors"] == 0, f"checkov could not parse: {results.get('parsing_errors')}"
    assert summary["resource_count"] > 0 and summary["passed"] > 0
    assert summary["failed"] == 0, "checkov failed checks over infra/ (listed above, run with -s)"
    for check in results.get("skipped_checks", []):
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= 40, f"{check['check_id']} on {check['resource']} is skipped without a reason"

    for name, report in reports.items():
        if name != "bicep":
            assert report["summary"]["failed"] == 0, f"checkov {name}: {report['results'].get('failed_checks')}"
