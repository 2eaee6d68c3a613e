"""checkov on infra/, run the way a developer runs it (``scripts/checkov``), with nothing left unchecked.

checkov reports a Bicep file it cannot parse as a "parsing error" and still exits 0, so a green exit code
alone proves nothing: these tests also require zero parsing errors and compare the files checkov parsed
with the ``.bicep`` files on disk. The first run installs checkov into ``.venv-checkov`` (about 30 s).
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from typing import Any

from tests.paths import ROOT

INFRA = ROOT / "infra"
CHECKOV = ROOT / "scripts" / "checkov"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECKOV), *args], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


@cache
def _report() -> dict[str, Any]:
    proc = _run("-o", "json")
    # checkov exits 1 when a check fails; the JSON report is printed either way.
    assert proc.returncode in (0, 1), f"scripts/checkov failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework when several ran
        (report,) = [r for r in report if r.get("check_type") == "bicep"]
    assert report.get("check_type") == "bicep", report
    return dict(report)


@cache
def _parsed_files() -> dict[str, list[str]]:
    proc = _run("--parsed-files")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(json.loads(proc.stdout))


def _bicep_on_disk() -> list[str]:
    return sorted(str(p.resolve()) for p in INFRA.rglob("*.bicep"))


def test_no_failed_checks() -> None:
    report = _report()
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"].get("failed_checks", [])
    ]
    assert report["summary"]["failed"] == 0, "\n".join(failed)
    assert report["summary"]["passed"] > 0, "checkov ran no check at all"


def test_no_parsing_errors() -> None:
    report = _report()
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert not report["results"].get("parsing_errors")


def test_every_bicep_file_was_parsed() -> None:
    on_disk = _bicep_on_disk()
    assert on_disk, "no .bicep files under infra/"
    files = _parsed_files()
    assert files["scanned"] == on_disk, "checkov's Bicep runner does not pick up exactly the files on disk"
    assert files["parsed"] == on_disk, f"checkov could not parse: {files['errors']}"
    assert files["errors"] == []


def test_every_skip_carries_a_reason() -> None:
    skipped = _report()["results"].get("skipped_checks", [])
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 30, f"{check['check_id']} on {check['resource']} is skipped without a real reason"


def test_skip_comments_are_bicep_comments() -> None:
    # `#` is not a comment in Bicep: a `#checkov:skip` line would make the template fail to build.
    for path in INFRA.rglob("*.bicep"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not line.lstrip().startswith("#"), f"{path.relative_to(ROOT)}:{number} is not valid Bicep"
