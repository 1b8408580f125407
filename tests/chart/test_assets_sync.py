"""The chart carries copies of the canonical CRD, dashboard and alert rules (Helm reads only files
inside the chart) and a values table generated from values.yaml: all must be in sync
(scripts/sync-chart-assets.sh refreshes them)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from .conftest import CHART, ROOT

COPIES = {
    ROOT / "crds" / "bookgenqueue.yaml": CHART / "crds" / "bookgenqueue.yaml",
    ROOT / "worker" / "bookgen_worker" / "metrics" / "assets" / "dashboard.json": CHART / "files" / "dashboard.json",
    ROOT / "worker" / "bookgen_worker" / "metrics" / "assets" / "alerts.yaml": CHART / "files" / "alerts.yaml",
    ROOT / "worker" / "bookgen_worker" / "metrics" / "assets" / "operator-alerts.yaml":
        CHART / "files" / "operator-alerts.yaml",
}
VALUES_TABLE = CHART / "hack" / "values_table.py"


@pytest.mark.parametrize("canonical", COPIES, ids=lambda p: p.name)
def test_chart_copy_is_identical_to_the_canonical_file(canonical) -> None:
    copy = COPIES[canonical]
    assert copy.read_bytes() == canonical.read_bytes(), (
        f"{copy.relative_to(ROOT)} differs from {canonical.relative_to(ROOT)}: run scripts/sync-chart-assets.sh"
    )


def test_readme_values_table_is_in_sync_with_values_yaml() -> None:
    result = subprocess.run([sys.executable, str(VALUES_TABLE), "--check", str(CHART / "README.md")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_top_level_value_is_documented_in_the_table() -> None:
    result = subprocess.run([sys.executable, str(VALUES_TABLE)], capture_output=True, text=True, check=True)
    rows = [line.split("|")[1].strip().strip("`") for line in result.stdout.splitlines()[2:]]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in values:
        assert any(row == key or row.startswith(f"{key}.") for row in rows), f"values.yaml key {key} has no `# --` doc"


def test_values_table_check_detects_a_stale_table(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text((CHART / "README.md").read_text().replace("| `logLevel` | string |", "| `logLevel` | int |"))
    result = subprocess.run([sys.executable, str(VALUES_TABLE), "--check", str(readme)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "stale" in result.stderr


def test_every_values_schema_property_has_a_default_in_values_yaml() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(values)
