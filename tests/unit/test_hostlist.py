"""Slurm hostlist expressions, expanded without scontrol."""

from __future__ import annotations

import pytest

from slurm_qpu.slurm.hostlist import expand


def test_single_host() -> None:
    assert expand("node1") == ["node1"]


def test_range_and_single_number_in_brackets() -> None:
    assert expand("node[1-3,7]") == ["node1", "node2", "node3", "node7"]


def test_zero_padding_is_kept() -> None:
    assert expand("n[01-03]") == ["n01", "n02", "n03"]


def test_zero_padding_across_a_power_of_ten() -> None:
    assert expand("n[08-10]") == ["n08", "n09", "n10"]


def test_unpadded_range_across_a_power_of_ten() -> None:
    assert expand("n[9-11]") == ["n9", "n10", "n11"]


def test_multiple_items_in_order() -> None:
    assert expand("a,b[1-2],c") == ["a", "b1", "b2", "c"]


def test_several_bracket_groups_expand_as_a_product() -> None:
    assert expand("r[1-2]-n[1-2]") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]


def test_suffix_after_brackets_is_kept() -> None:
    assert expand("gpu[1-2].lab") == ["gpu1.lab", "gpu2.lab"]


def test_whitespace_around_items_is_ignored() -> None:
    assert expand(" a , b ") == ["a", "b"]


@pytest.mark.parametrize("expr", ["", ",", None])
def test_empty_expression_has_no_hosts(expr: str | None) -> None:
    assert expand(expr) == []  # type: ignore[arg-type]


def test_unbalanced_bracket_is_an_error() -> None:
    with pytest.raises(ValueError) as excinfo:
        expand("node[1-3")
    assert str(excinfo.value) == "unbalanced '[' in hostlist 'node[1-3'"


@pytest.mark.parametrize(("expr", "chunk"), [("n[a-b]", "a-b"), ("n[]", ""), ("n[1-]", "1-"),
                                             ("n[1-2,x]", "x")])
def test_bad_range_is_an_error(expr: str, chunk: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        expand(expr)
    assert str(excinfo.value) == f"bad range {chunk!r} in hostlist {expr!r}"


def test_reversed_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        expand("n[3-1]")


def test_stray_closing_bracket_is_an_error() -> None:
    with pytest.raises(ValueError):
        expand("node1]")
