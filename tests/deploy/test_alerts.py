"""Alert rules: promtool check and unit tests, with a firing and a silent case for every alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.conftest import ALERTS, RULE_TESTS

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str, cwd: Path = RULE_TESTS.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_rule_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_promised_alerts_exist_with_severity_summary_and_runbook() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == {
        "VisionLoopServiceDown",
        "VisionLoopHighErrorRatio",
        "VisionLoopOutOfSpace",
        "VisionLoopDetectorLatencyHigh",
        "VisionLoopOutboxGrowing",
        "VisionLoopTrainingStuck",
        "VisionLoopTrainerWorkerCrashing",
        "VisionLoopTritonQueueTimeHigh",
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert len(rule["annotations"]["runbook"]) > 80, name
        assert rule.get("for"), f"{name} fires on a single evaluation"


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert firing == names
    assert silent == names


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The rule tests can fail: expecting silence where an alert fires is caught."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(ALERTS)]
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            check["exp_alerts"] = []
    (tmp_path / "broken_test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "broken_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "VisionLoopServiceDown" in result.stdout + result.stderr
