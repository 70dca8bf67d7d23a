"""The job_submit.lua `slurm-qpu slurm-conf --job-submit` prints, run by a real Lua 5.1 (the
Lua Debian's slurmctld links) against job_desc tables shaped like slurmctld's: --qpu
brings its license, the policy refuses at submit with a message for the user, and later
changes cannot drop the license or move the job where the QPU is not allowed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from slurm_qpu.cli import main

LUA = shutil.which("lua5.1")
pytestmark = pytest.mark.skipif(LUA is None and not os.environ.get("CI"),
                                reason="lua5.1 not installed (tools/install-deps.sh)")

RESOURCES = [
    {"name": "ibm_manila", "type": "local-simulator", "slurm": {"max_jobs": 4}},
    {"name": "ibm_kawasaki", "type": "local-simulator",
     "slurm": {"partitions": ["quantum"]}},
    {"name": "ibm_brisbane", "type": "local-simulator", "slurm": {"accounts": ["physics"]}},
    {"name": "ibm_torino", "type": "local-simulator", "slurm": {"qos": ["high"]}},
]
PARTS = {"normal": {"flag_default": 1}, "quantum": {"flag_default": 0}}
OPTION = "_SLURM_SPANK_OPTION_qpu_qpu="


def lua_literal(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of ASCII text is a Lua string
    if isinstance(value, list):  # slurmctld's string arrays are indexed from 0
        return "{" + ", ".join(f"[{i}] = {lua_literal(v)}" for i, v in enumerate(value)) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lua")
    config = folder / "qrmi_config.json"
    config.write_text(json.dumps({"resources": RESOURCES}))
    out = folder / "job_submit.lua"
    with out.open("w") as f, redirect_stdout(f):
        assert main(["slurm-conf", "--job-submit", str(config)]) == 0
    return out


def run_lua(script: Path, call: str) -> tuple[int, dict[str, Any], list[str]]:
    driver = f"""
local said = {{}}
slurm = {{SUCCESS = 0, ERROR = -1, ESLURM_INVALID_LICENSES = 2020, ESLURM_ACCESS_DENIED = 2002,
  log_user = function(fmt, ...) table.insert(said, string.format(fmt, ...)) end,
  log_info = function(fmt, ...) end}}
dofile({json.dumps(str(script))})
{call}
io.write(tostring(rc), "\\n", job_desc.licenses or "", "\\n", table.concat(said, "\\n"))
"""
    proc = subprocess.run([LUA or "lua5.1", "-"], input=driver, text=True,
                          capture_output=True, check=True)
    rc, licenses, *said = proc.stdout.split("\n")
    return int(rc), {"licenses": licenses}, [s for s in said if s]


def submit(script: Path, qpu: str | None, **desc: Any) -> tuple[int, str, list[str]]:
    if qpu is not None:
        desc["spank_job_env"] = ["OTHER=1", OPTION + qpu]
    desc.setdefault("default_account", "quantum")
    rc, job, said = run_lua(script, f"job_desc = {lua_literal(desc)}\n"
                                    f"rc = slurm_job_submit(job_desc, {lua_literal(PARTS)}, 2001)")
    return rc, job["licenses"], said


def modify(script: Path, qpu: str, record: dict[str, Any], uid: int = 2001,
           **desc: Any) -> tuple[int, list[str]]:
    record = {"spank_job_env": [OPTION + qpu], **record}
    rc, _, said = run_lua(script, f"job_desc = {lua_literal(desc)}\n"
                                  f"rc = slurm_job_modify(job_desc, {lua_literal(record)}, "
                                  f"{lua_literal(PARTS)}, {uid})")
    return rc, said


def test_qpu_brings_its_license_when_the_user_asks_for_none(script: Path) -> None:
    assert submit(script, "ibm_manila") == (0, "qpu_ibm_manila:1", [])


def test_qpu_keeps_other_licenses_and_replaces_a_count_given_for_the_qpu_license(
        script: Path) -> None:
    rc, licenses, _ = submit(script, "ibm_manila", licenses="matlab:2,qpu_ibm_manila:0")
    assert (rc, licenses) == (0, "matlab:2,qpu_ibm_manila:1")


def test_two_qpus_bring_two_licenses(script: Path) -> None:
    rc, licenses, _ = submit(script, " ibm_manila , ibm_kawasaki", partition="quantum")
    assert (rc, licenses) == (0, "qpu_ibm_kawasaki:1,qpu_ibm_manila:1")


def test_a_job_without_qpu_is_left_alone(script: Path) -> None:
    assert submit(script, None, licenses="matlab:1") == (0, "matlab:1", [])


def test_a_partition_policy_refuses_the_default_partition_with_a_message(script: Path) -> None:
    rc, licenses, said = submit(script, "ibm_kawasaki")
    assert rc == -1 and licenses == ""
    assert said == ["--qpu=ibm_kawasaki refused: QPU ibm_kawasaki may not be used from "
                    "partition normal; allowed: quantum"]


def test_a_partition_policy_refuses_any_partition_of_a_list_not_allowed(script: Path) -> None:
    rc, _, said = submit(script, "ibm_kawasaki", partition="quantum,normal")
    assert rc == -1 and "partition normal" in said[0]


def test_a_partition_policy_accepts_its_partition(script: Path) -> None:
    assert submit(script, "ibm_kawasaki", partition="quantum")[:2] == (0, "qpu_ibm_kawasaki:1")


def test_an_account_policy_checks_the_default_account_and_the_given_one(script: Path) -> None:
    rc, _, said = submit(script, "ibm_brisbane")
    assert rc == -1
    assert said == ["--qpu=ibm_brisbane refused: QPU ibm_brisbane may not be used by account "
                    "quantum; allowed: physics"]
    assert submit(script, "ibm_brisbane", account="physics")[0] == 0


def test_a_qos_policy_takes_normal_when_the_user_has_no_default_qos(script: Path) -> None:
    rc, _, said = submit(script, "ibm_torino")
    assert rc == -1
    assert said == ["--qpu=ibm_torino refused: QPU ibm_torino may not be used with QOS normal; "
                    "allowed: high"]
    assert submit(script, "ibm_torino", qos="high")[0] == 0
    assert submit(script, "ibm_torino", default_qos="high")[0] == 0


def test_an_unknown_qpu_is_refused_at_submit_even_past_the_client_check(script: Path) -> None:
    rc, _, said = submit(script, "ibm_manila,nope")
    assert rc == -1
    assert said == ["--qpu: unknown QPU name(s) nope; see: slurm-qpu list"]


def test_an_any_selection_brings_no_license_and_skips_qpus_it_may_not_use(script: Path) -> None:
    # the plugin picks among the matching QPUs at start and honours max_jobs and the
    # partition/account/QOS policy there
    assert submit(script, "any:ibm_*")[:2] == (0, "")
    assert submit(script, "any:name=ibm_torino&min_qubits=100")[:2] == (0, "")
    assert submit(script, "min_qubits=100,ibm_manila")[:2] == (0, "qpu_ibm_manila:1")


def submit_env(script: Path, env: list[str], **desc: Any) -> tuple[int, str, list[str]]:
    """A submission whose spank_job_env is ``env`` as given (what a client that talks to
    libslurm directly can send)."""
    desc.setdefault("default_account", "quantum")
    desc["spank_job_env"] = env
    rc, job, said = run_lua(script, f"job_desc = {lua_literal(desc)}\n"
                                    f"rc = slurm_job_submit(job_desc, {lua_literal(PARTS)}, 2001)")
    return rc, job["licenses"], said


DUPLICATE_REFUSAL = ("--qpu: refused: the job carries 2 --qpu values ({}), and which one "
                     "its prolog would use is not certain; submit it with a single --qpu")


@pytest.mark.parametrize("order", [("ibm_manila", "ibm_kawasaki"),
                                   ("ibm_kawasaki", "ibm_manila")])
def test_a_job_with_two_qpu_values_is_refused_whichever_comes_first(
        script: Path, order: tuple[str, str]) -> None:
    # one allowed from the default partition, one that is not: the check must not see one
    # while the prolog reads the other
    rc, licenses, said = submit_env(script, ["OTHER=1", *(OPTION + q for q in order)])
    assert (rc, licenses) == (-1, "")
    assert len(said) == 1
    assert said[0].startswith("--qpu: refused: the job carries 2 --qpu values (")
    assert sorted(said[0].split("(")[1].split(")")[0].split()) == sorted(order)
    assert said[0].endswith("its prolog would use is not certain; submit it with a single "
                            "--qpu")


def test_two_equal_qpu_values_are_refused_too(script: Path) -> None:
    rc, _, said = submit_env(script, [OPTION + "ibm_manila", OPTION + "ibm_manila"])
    assert rc == -1 and said == [DUPLICATE_REFUSAL.format("ibm_manila ibm_manila")]


def test_the_prolog_form_of_the_option_counts_as_qpu(script: Path) -> None:
    # slurmd passes an entry that already starts with SPANK_ to the prolog as it is, where
    # the plugin reads it as the job's --qpu: it is checked like one
    rc, _, said = submit_env(script, ["SPANK_" + OPTION + "ibm_kawasaki"])
    assert rc == -1
    assert said == ["--qpu=ibm_kawasaki refused: QPU ibm_kawasaki may not be used from "
                    "partition normal; allowed: quantum"]
    assert submit_env(script, ["SPANK_" + OPTION + "ibm_manila"])[:2] == \
        (0, "qpu_ibm_manila:1")
    rc, _, said = submit_env(script, [OPTION + "ibm_manila", "SPANK_" + OPTION + "ibm_kawasaki"])
    assert rc == -1 and said == [DUPLICATE_REFUSAL.format("ibm_manila ibm_kawasaki")]


def test_a_queued_job_with_two_qpu_values_cannot_be_changed_but_by_root(script: Path) -> None:
    record = {"spank_job_env": [OPTION + "ibm_manila", OPTION + "ibm_kawasaki"],
              "licenses": "qpu_ibm_manila:1", "partition": "normal"}
    rc, said = run_modify(script, record, partition="quantum")
    assert rc == 2002
    assert said == ["--qpu: change refused: the job carries 2 --qpu values; cancel it and "
                    "submit it with a single --qpu"]
    assert run_modify(script, record, uid=0, partition="quantum")[0] == 0


def run_modify(script: Path, record: dict[str, Any], uid: int = 2001,
               **desc: Any) -> tuple[int, list[str]]:
    rc, _, said = run_lua(script, f"job_desc = {lua_literal(desc)}\n"
                                  f"rc = slurm_job_modify(job_desc, {lua_literal(record)}, "
                                  f"{lua_literal(PARTS)}, {uid})")
    return rc, said


def test_removing_the_qpu_license_later_is_refused(script: Path) -> None:
    rc, said = modify(script, "ibm_manila", {"licenses": "qpu_ibm_manila:1"}, licenses="")
    assert rc == 2020  # scontrol prints "Invalid license specification"
    assert said == ["--qpu=ibm_manila: the job's QPU licenses come with --qpu and stay "
                    "(qpu_ibm_manila:1)"]


def test_changing_other_licenses_while_keeping_the_qpu_one_is_allowed(script: Path) -> None:
    rc, _ = modify(script, "ibm_manila", {"licenses": "qpu_ibm_manila:1"},
                   licenses="matlab:1,qpu_ibm_manila:1")
    assert rc == 0


def test_moving_a_job_to_a_partition_the_qpu_refuses_is_refused(script: Path) -> None:
    rc, said = modify(script, "ibm_kawasaki", {"partition": "quantum", "account": "quantum"},
                      partition="normal")
    assert rc == 2002  # "Access/permission denied"
    assert said == ["--qpu=ibm_kawasaki: change refused: QPU ibm_kawasaki may not be used "
                    "from partition normal; allowed: quantum"]


def test_an_administrator_may_change_anything(script: Path) -> None:
    assert modify(script, "ibm_manila", {"licenses": "qpu_ibm_manila:1"}, uid=0,
                  licenses="")[0] == 0


def test_job_submit_functions_leaves_the_entry_points_to_the_site(tmp_path: Path,
                                                                  capsys: Any) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"resources": RESOURCES[:1]}))
    assert main(["slurm-conf", "--job-submit-functions", str(config)]) == 0
    text = capsys.readouterr().out
    assert "function slurm_qpu_submit" in text and "function slurm_job_submit" not in text
    assert '["ibm_manila"] = {license = "qpu_ibm_manila", partitions = nil' in text
