"""`slurm-qpu slurm-conf`: the Slurm lines a qrmi_config.json implies, and the per-QPU
`slurm` settings they come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slurm_qpu.cli import main
from slurm_qpu.config import ConfigError, parse_config


def write(tmp_path: Path, resources: list[dict[str, object]]) -> str:
    path = tmp_path / "qrmi_config.json"
    path.write_text(json.dumps({"resources": resources}))
    return str(path)


RESOURCES: list[dict[str, object]] = [
    {"name": "ibm_fez", "type": "ibm-quantum-compute-service", "environment": {}},
    {"name": "FRESNEL", "type": "pasqal-cloud", "environment": {},
     "slurm": {"max_jobs": 3, "partitions": ["quantum"], "accounts": ["qlab", "physics"]}},
]


def test_slurm_conf_prints_licenses_gres_and_gres_conf_lines(tmp_path, capsys):
    assert main(["slurm-conf", write(tmp_path, RESOURCES), "--nodes", "q1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Licenses=qpu_ibm_fez:1,qpu_FRESNEL:3" in out
    assert "GresTypes=qpu" in out
    assert "# NodeName=q1 ... Gres=qpu:ibm_fez:1,qpu:FRESNEL:3" in out
    assert "NodeName=q1 Name=qpu Type=ibm_fez Count=1" in out
    assert "NodeName=q1 Name=qpu Type=FRESNEL Count=3" in out
    assert "# FRESNEL: partitions=quantum accounts=qlab,physics" in out


def test_slurm_conf_on_a_bad_config_prints_every_problem_and_exits_1(tmp_path, capsys):
    bad = write(tmp_path, [{"name": "x", "type": "pasqal-cloud", "slurm": {"max_jobs": 0}}])
    assert main(["slurm-conf", bad]) == 1
    err = capsys.readouterr().err
    assert "resource 'x': field 'slurm.max_jobs': Input should be greater than or equal to 1" \
        in err
    assert f"{bad}: 1 problem" in err


def test_an_unknown_slurm_setting_names_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        parse_config({"resources": [{"name": "x", "type": "pasqal-cloud",
                                     "slurm": {"max_job": 2}}]}, "c.json")
    assert str(err.value) == ("c.json: resource 'x': field 'slurm.max_job': unknown field "
                              "(allowed in slurm: max_jobs, partitions, accounts, qos, "
                              "num_qubits, is_simulator)")


def test_a_qpu_without_slurm_settings_allows_one_job_and_everyone():
    config = parse_config({"resources": [{"name": "x", "type": "pasqal-cloud"}]})
    policy = config.resources[0].slurm
    assert (policy.max_jobs, policy.partitions, policy.accounts, policy.qos) == \
        (1, None, None, None)
