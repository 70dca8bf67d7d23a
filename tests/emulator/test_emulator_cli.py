"""`slurm-qpu-emulator`: its options and their error messages; `slurm-qpu emulator`, the
old spelling, still runs it and says it is deprecated, and production help omits it."""

from __future__ import annotations

import json
import socket

import pytest

from slurm_qpu import cli
from slurm_qpu_emulator.cli import main


def test_print_config_describes_every_emulated_qpu_at_the_public_url(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-config", "--public-url", "http://10.0.0.1:8290"]) == 0
    config = json.loads(capsys.readouterr().out)
    types = {r["name"]: r["type"] for r in config["resources"]}
    assert types["ibm_manila"] == "ibm-quantum-compute-service"
    assert types["ibm_lagos"] == "ibm-quantum-system"
    assert types["FRESNEL"] == "pasqal-cloud"
    manila = next(r for r in config["resources"] if r["name"] == "ibm_manila")
    assert manila["environment"]["QRMI_IBM_QCS_ENDPOINT"] == "http://10.0.0.1:8290/api/v1"


def test_a_malformed_fail_option_is_refused_with_an_example(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--fail", "/jobs=oops"]) == 2
    assert capsys.readouterr().err == (
        "slurm-qpu-emulator: --fail '/jobs=oops': expected REGEX=STATUS or REGEX=STATUSxCOUNT, "
        "e.g. '/jobs$=503x2'\n")


def test_maintenance_of_an_unknown_qpu_lists_the_emulated_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--maintenance", "ibm_nowhere", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slurm-qpu-emulator: --maintenance ibm_nowhere: no such QPU; "
                          "emulated QPUs: ")
    assert "ibm_manila" in err and "FRESNEL" in err


def test_help_explains_the_runtime_control_api(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "POST   /_emulator/faults" in out and "--maintenance QPU" in out


def test_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert capsys.readouterr().err == (f"slurm-qpu-emulator: cannot listen on 127.0.0.1:{port}: "
                                       "Address already in use\n")


def test_the_old_spelling_still_serves_and_says_it_is_deprecated(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["emulator", "--print-config"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["resources"]
    assert captured.err == ("slurm-qpu: 'slurm-qpu emulator' is deprecated and goes in 0.3; "
                            "run 'slurm-qpu-emulator'\n")


def test_the_products_help_does_not_offer_the_emulator(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "emulator" not in out and "broker" in out
