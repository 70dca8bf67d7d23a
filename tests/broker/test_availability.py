"""The broker's availability watcher: vendor status per QPU, and the Slurm reservation that
holds new jobs while a vendor reports a QPU unavailable (a fake scontrol records calls)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from slurm_qpu.broker.availability import Availability, Reservations
from slurm_qpu.cli.jobs import explain, parse_squeue
from slurm_qpu.cli.status import broker_url, plugstack_value, render_status
from slurm_qpu.config import parse_config
from slurm_qpu.vendors.common.base import ResourceSpec

CONFIG = parse_config({"resources": [
    {"name": "qa", "type": "local-simulator", "slurm": {"max_jobs": 3}},
    {"name": "qb", "type": "local-simulator"},
]}, "c.json")


class Vendor:
    """Says what each QPU's status is; raises for names in ``broken``."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}
        self.broken: set[str] = set()
        self.depth = 4

    def __call__(self, spec: ResourceSpec) -> Any:
        vendor = self

        class Resource:
            status_reason: str | None = None
            queue_depth = vendor.depth

            def is_accessible(self) -> bool:
                if spec.name in vendor.broken:
                    raise ConnectionError("vendor unreachable")
                self.status_reason = vendor.down.get(spec.name)
                return self.status_reason is None

        return Resource()


class FakeScontrol:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.reservations: set[str] = set()
        self.refuse: str | None = None

    def __call__(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv[1:])
        out, rc = "", 0
        if argv[1:] == ["-o", "show", "reservation"]:
            out = "\n".join(f"ReservationName={r} StartTime=now Licenses=x"
                            for r in sorted(self.reservations)) or "No reservations in the system"
        elif argv[1] == "create":
            if self.refuse:
                return subprocess.CompletedProcess(argv, 1, "", self.refuse)
            self.reservations.add(argv[3].split("=", 1)[1])
        elif argv[1] == "delete":
            self.reservations.discard(argv[2].split("=", 1)[1])
        return subprocess.CompletedProcess(argv, rc, out, "")


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()


@pytest.fixture
def scontrol() -> FakeScontrol:
    return FakeScontrol()


def watcher(vendor: Vendor, scontrol: FakeScontrol | None) -> Availability:
    reservations = Reservations("scontrol", run=scontrol) if scontrol else None
    return Availability(lambda: CONFIG, vendor, reservations, clock=lambda: 1000.0)


def test_every_qpu_shows_the_vendors_status_and_queue(vendor: Vendor) -> None:
    vendor.down["qb"] = "paused for maintenance"
    qa, qb = watcher(vendor, None).check()
    assert (qa.name, qa.state, qa.reason, qa.queue_depth, qa.checked_at) == \
        ("qa", "online", None, 4, 1000.0)
    assert (qb.state, qb.reason, qb.held) == ("unavailable", "paused for maintenance", False)


def test_an_unavailable_qpu_gets_a_reservation_of_all_its_licenses(
        vendor: Vendor, scontrol: FakeScontrol, caplog: pytest.LogCaptureFixture) -> None:
    vendor.down["qa"] = "maintenance"
    w = watcher(vendor, scontrol)
    qa, qb = w.check()
    assert (qa.held, qb.held) == (True, False)
    assert ["create", "reservation", "ReservationName=qpu_maint_qa", "StartTime=now",
            "Duration=infinite", "Users=root", "Licenses=qpu_qa:3",
            "Flags=IGNORE_JOBS,ANY_NODES"] in scontrol.calls
    assert caplog.messages[-1] == ("availability: qa is unavailable (maintenance); new jobs "
                                   "for it wait (reservation qpu_maint_qa)")
    w.check()  # still down: no second reservation
    assert sum(c[0] == "create" for c in scontrol.calls) == 1


def test_a_broker_not_leading_the_watcher_knows_the_status_but_holds_nothing(
        vendor: Vendor, scontrol: FakeScontrol) -> None:
    # several brokers on one journal: each answers /v1/status, one holds jobs in Slurm
    vendor.down["qa"] = "maintenance"
    qa, _ = watcher(vendor, scontrol).check(follow=False)
    assert (qa.state, qa.reason, qa.held) == ("unavailable", "maintenance", False)
    assert not [c for c in scontrol.calls if c[0] in ("create", "delete")]
    scontrol.reservations.add("qpu_maint_qa")  # the leading broker's hold
    qa, _ = watcher(vendor, scontrol).check(follow=False)
    assert qa.held  # seen, not made


def test_the_reservation_goes_when_the_qpu_is_back(vendor: Vendor,
                                                   scontrol: FakeScontrol) -> None:
    vendor.down["qa"] = "maintenance"
    w = watcher(vendor, scontrol)
    w.check()
    del vendor.down["qa"]
    qa, _ = w.check()
    assert not qa.held and scontrol.reservations == set()
    assert ["delete", "ReservationName=qpu_maint_qa"] in scontrol.calls


def test_a_vendor_that_cannot_be_reached_holds_nothing(vendor: Vendor,
                                                      scontrol: FakeScontrol) -> None:
    vendor.broken.add("qa")
    qa, _ = watcher(vendor, scontrol).check()
    assert (qa.state, qa.reason, qa.held) == ("unknown", "ConnectionError: vendor unreachable",
                                              False)
    assert not any(c[0] == "create" for c in scontrol.calls)


def test_a_reservation_slurm_refuses_is_logged_and_tried_again(
        vendor: Vendor, scontrol: FakeScontrol, caplog: pytest.LogCaptureFixture) -> None:
    vendor.down["qa"] = "maintenance"
    scontrol.refuse = "Error creating the reservation: Invalid license specification"
    w = watcher(vendor, scontrol)
    assert not w.check()[0].held
    assert caplog.messages[-1] == (
        "availability: qa is unavailable (maintenance) but Slurm would not hold its jobs: "
        "Error creating the reservation: Invalid license specification")
    scontrol.refuse = None
    assert w.check()[0].held


def test_a_reservation_left_from_before_a_restart_is_found_and_lifted(
        vendor: Vendor, scontrol: FakeScontrol) -> None:
    scontrol.reservations.add("qpu_maint_qb")
    assert watcher(vendor, scontrol).check()[1].held is False
    assert scontrol.reservations == set()


def test_status_table_shows_holds_queue_jobs_and_last_error() -> None:
    rows = [{"name": "qa", "type": "local-simulator", "state": "unavailable", "held": True,
             "reason": "maintenance", "queue_depth": 2, "jobs": [7, 9], "checked_at": None,
             "last_error": "cannot acquire QPU qa: 403", "last_error_at": None}]
    lines = render_status(rows).splitlines()
    assert lines[0].split() == ["QPU", "TYPE", "STATUS", "QUEUE", "JOBS", "CHECKED", "NOTE"]
    assert lines[1].split("  ")[0] == "qa"
    assert "unavailable (held)" in lines[1] and " 2 " in lines[1] and "7,9" in lines[1]
    assert lines[1].endswith("maintenance; last error -: cannot acquire QPU qa: 403")


def test_jobs_lists_qpu_jobs_and_says_why_they_wait() -> None:
    jobs = parse_squeue("\n".join([
        "11|alice|quantum|quantum|PENDING|Licenses|qpu_qa:1|0:00|",
        "12|bob|physics|normal|PENDING|Licenses|matlab:1,qpu_qb:1|0:00|",
        "13|bob|physics|normal|RUNNING|None|qpu_qb:1|1:02|c1",
        "14|bob|physics|normal|RUNNING|None|(null)|1:02|c2",
    ]))
    assert [(j.job_id, j.qpus) for j in jobs] == [("11", ("qa",)), ("12", ("qb",)),
                                                  ("13", ("qb",))]
    assert explain(jobs[0], {"qa"}) == ("waiting: QPU qa unavailable at the vendor (held by "
                                        "reservation qpu_maint_qa); starts when it is back")
    assert explain(jobs[1], {"qa"}) == "waiting: QPU qb in use by its maximum number of jobs"
    assert explain(jobs[2], set()) == "c1"


def test_status_finds_the_broker_on_the_plugstack_line(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_QPU_BROKER", raising=False)
    conf = tmp_path / "plugstack.conf"
    conf.write_text("# required /x/spank_qpu.so broker=http://old:1\n"
                    "optional /usr/lib/other.so broker=http://no:1\n")
    assert broker_url(str(conf)) is None
    (tmp_path / "plugstack.conf.d").mkdir()
    (tmp_path / "plugstack.conf.d" / "qpu.conf").write_text(
        "required /usr/lib/slurm/spank_qpu.so config=/c broker=http://broker:8291\n")
    assert broker_url(str(conf)) == "http://broker:8291"
    (tmp_path / "plugstack.conf.d" / "qpu.conf").write_text(
        "required /usr/lib/slurm/spank_qpu.so broker=https://broker:8291 "
        "broker_ca=/etc/ssl/certs/site.pem\n")
    assert plugstack_value("broker_ca", str(conf)) == "/etc/ssl/certs/site.pem"
    assert plugstack_value("log_json", str(conf)) is None


def test_status_without_a_broker_says_how_to_point_at_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from slurm_qpu.cli import main
    from slurm_qpu.cli import status as status_cli

    monkeypatch.delenv("SLURM_QPU_BROKER", raising=False)
    monkeypatch.setattr(status_cli, "PLUGSTACK", str(tmp_path / "none.conf"))
    monkeypatch.setattr(status_cli, "broker_url", lambda: None)
    assert main(["status"]) == 1
    assert "slurm-qpu status: no broker: give --broker URL" in capsys.readouterr().err


def test_the_broker_serves_the_status_of_every_qpu(emulator: Any, start_broker: Any) -> None:
    b = start_broker(emulator.qrmi_config()["resources"])
    assert b.acquire(7, "ibm_manila")["state"] == "acquired"
    rows = {r["name"]: r for r in b.node(uid=1000).call("GET", "/v1/status")}
    assert set(rows) == {r["name"] for r in emulator.qrmi_config()["resources"]}
    assert rows["ibm_manila"]["jobs"] == [7] and rows["ibm_brisbane"]["jobs"] == []
    assert rows["ibm_manila"]["state"] == "unchecked"  # no watcher in this broker
    b.service.availability = Availability(b.service.config.get, b.service.factory)
    b.service.availability.check()
    rows = {r["name"]: r for r in b.node(uid=1000).call("GET", "/v1/status")}
    assert rows["ibm_manila"]["state"] == "online"
    assert isinstance(rows["ibm_manila"]["queue_depth"], int)
