"""--qpu values: which names are valid and how a value becomes a list of names."""

from __future__ import annotations

import pytest

from slurm_qpu.request.names import RequestError, check_known, is_valid_name, parse_request

EMPTY_MESSAGE = "no QPU name given; use --qpu=NAME[,NAME...] (names: slurm-qpu list)"


def test_parse_request_trims_whitespace_around_names() -> None:
    assert parse_request("  sim_a ,\tsim_b  ") == ["sim_a", "sim_b"]


def test_parse_request_drops_empty_items() -> None:
    assert parse_request("sim_a,,sim_b,") == ["sim_a", "sim_b"]


def test_parse_request_removes_duplicates_keeping_first_occurrence_order() -> None:
    assert parse_request("sim_b,sim_a,sim_b, sim_a") == ["sim_b", "sim_a"]


def test_parse_request_of_single_name() -> None:
    assert parse_request("ibm_fez") == ["ibm_fez"]


@pytest.mark.parametrize("value", ["", ",", " , ,", None])
def test_parse_request_without_any_name_raises_request_error(value: str | None) -> None:
    with pytest.raises(RequestError) as excinfo:
        parse_request(value)
    assert str(excinfo.value) == EMPTY_MESSAGE


def test_request_error_is_a_value_error() -> None:
    assert issubclass(RequestError, ValueError)


def test_check_known_error_names_unknown_and_lists_known_sorted() -> None:
    with pytest.raises(RequestError) as excinfo:
        check_known(["a", "typo"], ["b", "a"])
    assert str(excinfo.value) == "unknown QPU name(s) typo; known: a,b"


def test_check_known_error_names_every_unknown_name_in_request_order() -> None:
    with pytest.raises(RequestError) as excinfo:
        check_known(["zz", "a", "yy"], ["a"])
    assert str(excinfo.value) == "unknown QPU name(s) zz,yy; known: a"


def test_check_known_error_when_nothing_is_configured() -> None:
    with pytest.raises(RequestError) as excinfo:
        check_known(["a"], [])
    assert str(excinfo.value) == "unknown QPU name(s) a; known: (none configured)"


def test_check_known_accepts_known_names() -> None:
    assert check_known(["a", "b"], ["b", "a", "c"]) is None


@pytest.mark.parametrize("name", ["ibm_fez", "_private", "A1", "sim_a", "x"])
def test_is_valid_name_accepts_environment_variable_prefixes(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "1abc", "ibm-fez", "a b", "a.b", "é", "a\n"])
def test_is_valid_name_rejects_what_cannot_prefix_an_environment_variable(name: str) -> None:
    assert not is_valid_name(name)
