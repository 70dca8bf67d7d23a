"""docs/vendors.md cannot drift from the code: every JSON example in it is a config the code
accepts, every setting it names is one the type's code reads, and every type has one.

For each ```json block of docs/vendors.md (a whole config, or one resource):

* ``slurm-qpu config check`` passes on it (the file's schema: names, types, fields);
* the type's implementation builds the resource from it, as a prolog or the broker would,
  so every required setting is there and well formed; the placeholder credentials
  (``<...>``) pass, except where a type checks a credential's format before any call
  (Alice & Bob's base64 ``user:password`` key), for which only that credential-format
  error is accepted (``EXPECTED_CREDENTIAL_ERRORS``);
* each ``environment`` key is read by the code of its type: a string constant of the
  type's module (``"QRMI_WARDEN_URL"``) or a prefix constant joined to a literal
  (``P + "SESSION_MODE"``, ``f"{P}SESSION_MODE..."``, ``self._setting("NUM_QUBITS")``
  where ``_setting`` returns ``PREFIX + key``), legacy keys read under their current
  prefix. A misspelt key would be accepted by ``config check`` (QRMI's format
  allows any key) and silently ignored: this test is what catches it.

configuration.md's qrmi_config.json examples are checked with ``config check`` too.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from slurm_qpu.cli import main
from slurm_qpu.config import ResourceDef, parse_config
from slurm_qpu.vendors.builtin import BUILTIN, vendors
from slurm_qpu.vendors.common.base import JobContext, MissingSetting, ResourceSpec
from slurm_qpu.vendors.registry import get_type
from slurm_qpu.vendors.type_names import CURRENT_TYPES, LEGACY_TYPES, current_type

REPO = Path(__file__).resolve().parents[2]
VENDORS = REPO / "docs" / "vendors.md"
CONFIGURATION = REPO / "docs" / "configuration.md"
FENCE = re.compile(r"^```json\n(.*?)^```", re.M | re.S)
SETTING = re.compile(r"^[A-Z][A-Z0-9_]*$")
# (type, text of the only error its placeholder credentials may cause)
EXPECTED_CREDENTIAL_ERRORS = {
    "alice-bob-felis": "QRMI_AB_FELIS_API_KEY is not a Felis API key",
}
JOB = JobContext(job_id=4242, uid=1000, user="alice", timeout_seconds=3600)


def json_blocks(path: Path) -> list[Any]:
    return [json.loads(block) for block in FENCE.findall(path.read_text(encoding="utf-8"))]


def as_config(block: Any) -> dict[str, Any]:
    return block if isinstance(block, dict) and "resources" in block else {"resources": [block]}


def example_resources() -> list[ResourceDef]:
    return [r for block in json_blocks(VENDORS)
            for r in parse_config(as_config(block), str(VENDORS)).resources]


def _module_source(type_name: str) -> Path:
    module = vendors()[current_type(type_name)].resource.partition(":")[0]
    return REPO / "src" / Path(*module.split(".")).with_suffix(".py")


def settings_read_by(type_name: str) -> set[str]:
    """The setting names the type's module spells out: constants, prefix + literal, and
    literals passed to a helper that prefixes its argument."""
    tree = ast.parse(_module_source(type_name).read_text(encoding="utf-8"))
    prefixes = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                for t in node.targets if isinstance(t, ast.Name)}
    # helpers that join a prefix to their argument: def _setting(self, key): P + key
    helpers = {f.name: prefixes[b.left.id] for f in ast.walk(tree)
               if isinstance(f, ast.FunctionDef)
               for b in ast.walk(f) if isinstance(b, ast.BinOp) and isinstance(b.op, ast.Add)
               and isinstance(b.left, ast.Name) and b.left.id in prefixes
               and isinstance(b.right, ast.Name) and b.right.id in {a.arg for a in f.args.args}}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", "")
            first = node.args[0]
            if func in helpers and isinstance(first, ast.Constant) and \
                    isinstance(first.value, str):
                found.add(helpers[func] + first.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and \
                isinstance(node.left, ast.Name) and node.left.id in prefixes and \
                isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
            found.add(prefixes[node.left.id] + node.right.value)
        elif isinstance(node, ast.JoinedStr):
            for first, second in itertools.pairwise(node.values):
                if isinstance(first, ast.FormattedValue) and isinstance(first.value, ast.Name) \
                        and first.value.id in prefixes and isinstance(second, ast.Constant):
                    word = re.match(r"[A-Z0-9_]+", str(second.value))
                    if word:
                        found.add(prefixes[first.value.id] + word.group())
    return {s for s in found if SETTING.match(s)}


def unknown_settings(resource: ResourceDef) -> list[str]:
    """The keys of ``resource``'s environment its type's code never reads."""
    known = settings_read_by(resource.type)
    legacy = LEGACY_TYPES.get(resource.type)
    out = []
    for key in resource.environment:
        current = key
        if legacy is not None and key.startswith(legacy.legacy_prefix):
            current = legacy.current_prefix + key.removeprefix(legacy.legacy_prefix)
        if current not in known:
            out.append(key)
    return out


def build(resource: ResourceDef) -> str | None:
    """Build the resource as whoever acquires would; None, or the error's text."""
    spec = ResourceSpec(resource.name, resource.current_type, resource.effective_environment(),
                        JOB)
    try:
        get_type(resource.type).create(spec)
    except MissingSetting as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------ the docs

def test_every_type_has_an_example() -> None:
    types = {r.type for r in example_resources()}
    assert set(CURRENT_TYPES) | set(LEGACY_TYPES) <= types


@pytest.mark.parametrize("block", json_blocks(VENDORS), ids=lambda b: ",".join(
    r["name"] for r in as_config(b)["resources"]))
def test_config_check_accepts_the_example(block: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "qrmi_config.json"
    path.write_text(json.dumps(as_config(block)))
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("resource", example_resources(), ids=lambda r: r.name)
def test_the_type_builds_the_example_and_reads_every_setting(resource: ResourceDef) -> None:
    assert unknown_settings(resource) == [], f"{resource.name}: settings no code reads"
    error = build(resource)
    expected = EXPECTED_CREDENTIAL_ERRORS.get(resource.current_type)
    if error is not None:
        assert expected is not None and expected in error, error


@pytest.mark.parametrize("block", [b for b in json_blocks(CONFIGURATION)
                                   if isinstance(b, dict) and "resources" in b])
def test_configuration_examples_pass_config_check(block: dict[str, Any], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "qrmi_config.json"
    path.write_text(json.dumps(block))
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    for resource in parse_config(block).resources:
        assert unknown_settings(resource) == []


def test_every_setting_named_in_the_tables_is_read() -> None:
    """The settings tables name the same keys as the examples: each backquoted
    ``QRMI_...`` of a table row is read by some type's code."""
    known = set().union(*(settings_read_by(t) for t in BUILTIN))
    named = set(re.findall(r"^\| `(QRMI_[A-Z0-9_]+)`", VENDORS.read_text(), re.M))
    named |= {m for row in re.findall(r"^\| `QRMI_[^|]*\|", VENDORS.read_text(), re.M)
              for m in re.findall(r"`(QRMI_[A-Z0-9_]+)`", row)}
    assert named, "no settings table found"
    assert sorted(named - known) == []


# ------------------------------------------------------------------------------ the checks

def test_a_misspelt_setting_is_reported() -> None:
    resource = ResourceDef(name="ibm_x", type="ibm-quantum-compute-service", environment={
        "QRMI_IBM_QCS_ENDPOINT": "https://e", "QRMI_IBM_QCS_SESION_MODE": "batch"})
    assert unknown_settings(resource) == ["QRMI_IBM_QCS_SESION_MODE"]
    legacy = ResourceDef(name="ibm_y", type="direct-access", environment={
        "QRMI_IBM_DA_S3_ENDPOINT_FOR_DAAPI": "http://s3", "QRMI_IBM_DA_S3_BUCKET": "b"})
    assert unknown_settings(legacy) == ["QRMI_IBM_DA_S3_ENDPOINT_FOR_DAAPI"]


def test_a_missing_required_setting_is_reported() -> None:
    resource = ResourceDef(name="garnet", type="iqm-server", environment={
        "QRMI_IQM_ISA_ENDPOINT": "https://resonance.iqm.tech"})
    assert "QRMI_IQM_ISA_TOKEN is missing" in (build(resource) or "")


def test_settings_read_by_knows_each_style() -> None:
    assert {"QRMI_IBM_QCS_SESSION_MODE", "QRMI_IBM_QCS_SESSION_ID"} <= \
        settings_read_by("ibm-quantum-compute-service")  # P + "...", env.get(P + "...")
    assert {"QRMI_WARDEN_URL", "QRMI_URL"} <= settings_read_by("pasqal-local")  # constants
    assert {"QRMI_PASQAL_CLOUD_USERNAME", "PASQAL_USERNAME"} <= settings_read_by("pasqal-cloud")
    assert "QRMI_LOCAL_SIM_LEDGER" in settings_read_by("local-simulator")
