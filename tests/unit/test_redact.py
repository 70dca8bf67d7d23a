"""Secrets never reach a log line: configured values, bearer tokens, job tokens."""

from __future__ import annotations

import logging

import pytest

from slurm_qpu.redact import MASK, RedactingFilter, Redactor, install, is_secret_key, secrets_of

JOB_TOKEN = "sqpu_7_1_" + "A" * 43


@pytest.mark.parametrize("key", [
    "QRMI_IBM_QCS_IAM_APIKEY", "QRMI_IBM_QS_IAM_APIKEY", "QRMI_IBM_QCS_SERVICE_CRN",
    "QRMI_IBM_QS_AWS_ACCESS_KEY_ID", "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY",
    "QRMI_PASQAL_CLOUD_CLIENT_SECRET", "QRMI_PASQAL_CLOUD_PASSWORD",
    "QRMI_PASQAL_CLOUD_AUTH_TOKEN", "QRMI_IQM_ISA_TOKEN", "QRMI_AB_FELIS_API_KEY",
    "QRMI_FELIS_API_KEY", "QRMI_IBM_QRS_IAM_APIKEY"])
def test_credential_keys_of_every_vendor_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "QRMI_IBM_QCS_ENDPOINT", "QRMI_IBM_QS_S3_BUCKET", "QRMI_IBM_QS_S3_REGION",
    "QRMI_PASQAL_CLOUD_PROJECT_ID", "QRMI_PASQAL_CLOUD_USERNAME", "QRMI_IBM_QCS_SESSION_MODE",
    "QRMI_LOCAL_SIM_NUM_QUBITS"])
def test_settings_that_are_not_credentials_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_the_secrets_of_a_resource_are_its_credential_values() -> None:
    assert secrets_of({"QRMI_IBM_QS_IAM_APIKEY": "the-api-key",
                       "QRMI_IBM_QS_AWS_SECRET_ACCESS_KEY": "the-s3-secret",
                       "QRMI_IBM_QS_ENDPOINT": "https://qs.example",
                       "QRMI_IQM_ISA_TOKEN": "abc"}) == {"the-api-key", "the-s3-secret"}


def test_configured_secrets_are_masked_longest_first() -> None:
    redact = Redactor(["secret", "secret-and-more"])
    assert redact("key=secret-and-more; other=secret.") == f"key={MASK}; other={MASK}."
    redact.add(["", "late-one"])
    assert redact("a late-one") == f"a {MASK}"


class Secrets:
    """A secret source, as the broker's ConfigSource is one: a new set on each change."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = frozenset(secrets)


def test_a_redactor_follows_the_secrets_its_source_knows_now() -> None:
    source = Secrets("first-key")
    redact = Redactor(["own-secret"], source=source)
    assert redact("first-key own-secret added-key") == f"{MASK} {MASK} added-key"
    source.secrets = source.secrets | {"added-key"}  # a config reload brought a QPU
    assert redact("first-key own-secret added-key") == f"{MASK} {MASK} {MASK}"


def test_a_redactor_rebuilds_its_list_only_when_the_source_changes() -> None:
    source = Secrets("key-one", "key-two")
    redact = Redactor(source=source)
    redact("x")
    built = redact.secrets
    for _ in range(3):
        redact("a line")
    assert redact.secrets is built  # the same set: nothing sorted again
    source.secrets = frozenset({"key-one", "key-two", "key-three"})
    redact("x")
    assert redact.secrets is not built and "key-three" in redact.secrets


@pytest.mark.parametrize("line,expected", [
    ("Authorization: Bearer eyJhbGciOi.abc.def", f"Authorization: Bearer {MASK}"),
    ("authorization: basic dXNlcjpwYXNz", f"authorization: basic {MASK}"),
    (f"token {JOB_TOKEN} refused", f"token {MASK} refused"),
    ("apikey=abcdef&grant_type=x", f"apikey={MASK}&grant_type=x"),
    ('{"access_token": "eyJ.x.y", "refresh_token": "r1"}',
     f'{{"access_token": "{MASK}", "refresh_token": "{MASK}"}}'),
    ("client_secret: s3cr3t, password='pw'", f"client_secret: {MASK}, password='{MASK}'"),
    ("Bearer short", "Bearer short"),  # not a token: under 8 characters
], ids=["bearer", "basic", "job-token", "form", "json", "yaml-ish", "short"])
def test_token_shapes_are_masked_without_being_configured(line: str, expected: str) -> None:
    assert Redactor()(line) == expected


def logger_with_filter(redactor: Redactor) -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    install(handler, redactor)
    install(handler, redactor)  # once is enough
    logger = logging.getLogger("test_redact.isolated")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, lines


def test_the_filter_masks_arguments_and_is_installed_once() -> None:
    logger, lines = logger_with_filter(Redactor(["site-api-key"]))
    logger.info("settings %s", {"QRMI_IBM_QCS_IAM_APIKEY": "site-api-key"})
    assert lines == [f"settings {{'QRMI_IBM_QCS_IAM_APIKEY': '{MASK}'}}"]
    assert len(logger.handlers[0].filters) == 1


def test_the_filter_masks_tracebacks() -> None:
    logger, lines = logger_with_filter(Redactor(["site-api-key"]))
    try:
        raise RuntimeError("vendor refused site-api-key")
    except RuntimeError:
        logger.exception("failed with %s", JOB_TOKEN)
    (line,) = lines
    assert line.startswith(f"failed with {MASK}\nTraceback")
    assert f"RuntimeError: vendor refused {MASK}" in line
    assert "site-api-key" not in line and JOB_TOKEN not in line


def test_a_broken_format_string_still_logs_masked() -> None:
    logger, lines = logger_with_filter(Redactor(["site-api-key"]))
    logger.info("site-api-key %s %s", "only one")
    assert lines == [f"{MASK} %s %s"]


def test_the_filter_keeps_every_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    assert RedactingFilter(Redactor()).filter(record) is True
    assert record.getMessage() == "plain"
