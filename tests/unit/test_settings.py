"""plugstack.conf arguments -> PluginSettings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from slurm_qpu.settings import PluginSettings, SettingsError, parse_args


def test_defaults_without_arguments() -> None:
    s = parse_args([])
    assert s == PluginSettings()
    assert s.config == Path("/etc/slurm/qrmi_config.json")
    assert s.state_dir == "/var/lib/slurm-qpu"
    assert s.log_level == logging.INFO
    assert s.peer_timeout == 120.0
    assert s.scontrol == "scontrol"
    assert s.extra_env == {}
    assert s.warnings == ()


def test_bare_first_argument_is_the_config_path_like_spank_qrmi() -> None:
    assert parse_args(["/etc/slurm/qrmi.json"]).config == Path("/etc/slurm/qrmi.json")


def test_bare_argument_after_the_first_is_ignored_with_a_warning() -> None:
    s = parse_args(["config=/a.json", "/b.json"])
    assert s.config == Path("/a.json")
    assert s.warnings == ("ignoring plugstack argument '/b.json'",)


def test_config_key_sets_the_config_path() -> None:
    assert parse_args(["config=/x/qrmi.json"]).config == Path("/x/qrmi.json")


def test_default_catalog_is_qpu_names_json_beside_the_config() -> None:
    assert parse_args(["config=/x/qrmi.json"]).catalog == Path("/x/qpu_names.json")


def test_names_key_sets_the_catalog_path() -> None:
    s = parse_args(["config=/x/qrmi.json", "names=/pub/names.json"])
    assert s.names == Path("/pub/names.json")
    assert s.catalog == Path("/pub/names.json")


def test_state_dir_expands_percent_n_to_the_node_name() -> None:
    s = parse_args(["state_dir=/var/spool/%n/qpu"])
    assert s.state_dir == "/var/spool/%n/qpu"
    assert s.state_path("node7") == Path("/var/spool/node7/qpu")


def test_state_dir_without_node_name_uses_the_short_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(
        ("Linux", "cn042.cluster.example", "6.1", "#1", "x86_64")))
    assert parse_args(["state_dir=/s/%n"]).state_path() == Path("/s/cn042")
    assert parse_args(["state_dir=/s/%n"]).state_path(None) == Path("/s/cn042")


def test_state_dir_without_percent_n_is_the_same_on_every_node() -> None:
    assert parse_args(["state_dir=/s"]).state_path("node7") == Path("/s")


def test_scontrol_key_sets_the_scontrol_path() -> None:
    assert parse_args(["scontrol=/opt/slurm/bin/scontrol"]).scontrol == "/opt/slurm/bin/scontrol"


@pytest.mark.parametrize(("value", "level"), [
    ("error", logging.ERROR), ("warning", logging.WARNING), ("info", logging.INFO),
    ("verbose", 15), ("debug", logging.DEBUG), ("DEBUG", logging.DEBUG),
])
def test_log_level_values(value: str, level: int) -> None:
    assert parse_args([f"log_level={value}"]).log_level == level


def test_bad_log_level_lists_the_allowed_values() -> None:
    with pytest.raises(SettingsError) as excinfo:
        parse_args(["log_level=loud"])
    assert str(excinfo.value) == ("plugstack argument log_level=loud: use one of error, "
                                  "warning, info, verbose, debug")


def test_peer_timeout_is_seconds() -> None:
    assert parse_args(["peer_timeout=2.5"]).peer_timeout == 2.5


def test_bad_peer_timeout_is_an_error() -> None:
    with pytest.raises(SettingsError) as excinfo:
        parse_args(["peer_timeout=soon"])
    assert str(excinfo.value) == ("plugstack argument peer_timeout=soon: expected a positive "
                                  "number of seconds")


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_peer_timeout_must_be_positive_and_finite(value: str) -> None:
    with pytest.raises(SettingsError, match="expected a positive number of seconds"):
        parse_args([f"peer_timeout={value}"])


def test_env_arguments_give_extra_environment() -> None:
    s = parse_args(["--env:https_proxy=http://proxy:3128", "--env:EMPTY=", "--env:A=b=c"])
    assert s.extra_env == {"https_proxy": "http://proxy:3128", "EMPTY": "", "A": "b=c"}


@pytest.mark.parametrize("arg", ["--env:bad", "--env:=value"])
def test_env_argument_without_name_and_value_is_an_error(arg: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        parse_args([arg])
    assert str(excinfo.value) == f"plugstack argument {arg!r}: expected --env:NAME=VALUE"


def test_env_argument_first_is_not_taken_as_config_path() -> None:
    s = parse_args(["--env:A=1", "/etc/other.json"])
    assert s.config == Path("/etc/slurm/qrmi_config.json")
    assert s.warnings == ("ignoring plugstack argument '/etc/other.json'",)


def test_shim_only_keys_are_ignored_without_warning() -> None:
    s = parse_args(["/etc/q.json", "venv=/opt/v", "pyhome=/usr", "pythonpath=/a:/b",
                    "pytrace=/tmp/t", "module=x.y"])
    assert s == PluginSettings(config=Path("/etc/q.json"))
    assert s.warnings == ()


def test_unknown_key_gives_a_warning_not_an_error() -> None:
    s = parse_args(["colour=blue", "config=/c.json"])
    assert s.config == Path("/c.json")
    assert s.warnings == ("ignoring unknown plugstack argument 'colour=blue'",)


def test_spank_qrmi_plugstack_line_works_unchanged() -> None:
    s = parse_args(["/etc/slurm/qrmi_config.json", "--env:QRMI_IBM_QRS_TIMEOUT=60"])
    assert s.config == Path("/etc/slurm/qrmi_config.json")
    assert s.extra_env == {"QRMI_IBM_QRS_TIMEOUT": "60"}
    assert s.warnings == ()


def test_broker_argument_selects_broker_mode() -> None:
    settings = parse_args(["/etc/q.json", "broker=http://ctl:8291/", "broker_timeout=5"])
    assert settings.broker == "http://ctl:8291"
    assert settings.broker_timeout == 5.0
    assert parse_args(["/etc/q.json"]).broker is None  # direct mode


def test_broker_argument_must_be_a_url() -> None:
    with pytest.raises(SettingsError, match=r"^plugstack argument broker=ctl:8291: expected "
                                            r"the broker's URL, e.g. broker=http://slurmctl:8291, "
                                            r"or several separated by commas \(no spaces\)$"):
        parse_args(["broker=ctl:8291"])


def test_broker_timeout_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="broker_timeout=0: expected a positive number"):
        parse_args(["broker_timeout=0"])


def test_broker_ca_is_an_absolute_path() -> None:
    settings = parse_args(["broker=https://ctl:8291", "broker_ca=/etc/ssl/certs/site.pem"])
    assert settings.broker_ca == "/etc/ssl/certs/site.pem"
    assert parse_args([]).broker_ca is None
    with pytest.raises(SettingsError, match=r"^plugstack argument broker_ca=site.pem: expected "
                                            r"an absolute path, e.g. broker_ca=/etc/ssl/certs/"
                                            r"ca-certificates.crt$"):
        parse_args(["broker_ca=site.pem"])
