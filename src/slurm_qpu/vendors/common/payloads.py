"""Payload files for ``slurm-qpu run``: the payload kinds (QRMI's payload schema 0.4.0), how a
file of each is read and checked, and which kind a QPU runs (its vendor's record names it).
Standard library only."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slurm_qpu.vendors import iqm_server
from slurm_qpu.vendors.common.base import (
    FelisProgram,
    IqmJob,
    PasqalSequence,
    Payload,
    QiskitPrimitive,
    ResourceSpec,
    TypeNotAvailable,
)


class PayloadError(ValueError):
    """A payload file that cannot be run; the message names the file and the field."""


# ---- payload files --------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    name: str  # what a vendor's record names (Vendor.payload)
    label: str
    required: tuple[str, ...]
    cls: type


KINDS = (
    Kind("qiskit-primitive", "an IBM Qiskit primitive", ("program_id", "parameters"),
         QiskitPrimitive),
    Kind("pasqal-sequence", "a Pasqal sequence", ("sequence", "job_runs"), PasqalSequence),
    Kind("felis-program", "an Alice & Bob Felis program", ("human_qir", "input_params"),
         FelisProgram),
    Kind("iqm-job", "an IQM job", ("iqmjson", "job_type"), IqmJob),
)


def _kind_of(cls: type) -> Kind:
    return next(k for k in KINDS if k.cls is cls)


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return json.dumps(value)  # numbers, true/false, null: show the value itself


def _field(data: dict[str, Any], source: str, name: str, what: str, ok: bool) -> None:
    if not ok:
        raise PayloadError(f"{source}: field {name!r} must be {what}, not "
                           f"{_describe(data[name])}")


def _json_text(data: dict[str, Any], source: str, name: str, what: str) -> str:
    """A field that is JSON for the vendor: an object is encoded; a string is taken as it
    is (already encoded, e.g. Pulser's to_abstract_repr() output)."""
    value = data[name]
    _field(data, source, name, what,
           isinstance(value, dict) or (isinstance(value, str) and bool(value.strip())))
    return value if isinstance(value, str) else json.dumps(value)


def _ibm(data: dict[str, Any], source: str) -> QiskitPrimitive:
    program = data["program_id"]
    _field(data, source, "program_id", 'a program name such as "sampler" or "estimator"',
           isinstance(program, str) and bool(program))
    _field(data, source, "parameters", "an object (the SamplerV2/EstimatorV2 input)",
           isinstance(data["parameters"], dict))
    return QiskitPrimitive(json.dumps(data["parameters"]), program)


def _json_object(data: dict[str, Any], source: str, name: str, what: str) -> str:
    """Like _json_text, for a field whose text must decode to a JSON object."""
    text = _json_text(data, source, name, what)
    if isinstance(data[name], str):
        try:
            ok = isinstance(json.loads(text), dict)
        except json.JSONDecodeError:
            ok = False
        _field(data, source, name, what, ok)
    return text


def _pasqal(data: dict[str, Any], source: str) -> PasqalSequence:
    sequence = _json_object(data, source, "sequence",
                            "a Pulser abstract representation (object)")
    runs = data["job_runs"]
    _field(data, source, "job_runs", "an integer >= 1",
           isinstance(runs, int) and not isinstance(runs, bool) and runs >= 1)
    return PasqalSequence(sequence, runs)


def _felis(data: dict[str, Any], source: str) -> FelisProgram:
    qir = data["human_qir"]
    _field(data, source, "human_qir", "a string of human-readable QIR",
           isinstance(qir, str) and bool(qir.strip()))
    return FelisProgram(qir, _json_text(data, source, "input_params", "an object"))


def _iqm(data: dict[str, Any], source: str) -> IqmJob:
    iqmjson = _json_object(data, source, "iqmjson", "an IQM JSON object (or its JSON text)")
    job_type = data["job_type"]
    _field(data, source, "job_type", "one of " + ", ".join(iqm_server.JOB_TYPES),
           job_type in iqm_server.JOB_TYPES)
    timeslot, tag = data.get("use_timeslot"), data.get("tag")
    if timeslot is not None:
        _field(data, source, "use_timeslot", "true or false", isinstance(timeslot, bool))
    if tag is not None:
        _field(data, source, "tag", f"a string of at most {iqm_server.MAX_TAG} characters",
               isinstance(tag, str) and len(tag) <= iqm_server.MAX_TAG)
    return IqmJob(iqmjson, job_type, timeslot, tag)


BUILDERS: dict[type, Callable[[dict[str, Any], str], Payload]] = {
    QiskitPrimitive: _ibm, PasqalSequence: _pasqal, FelisProgram: _felis, IqmJob: _iqm}


def decode_payload(data: object, source: str) -> Payload:
    """The payload a decoded file describes; PayloadError naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise PayloadError(f"{source}: a payload is a JSON object, not {_describe(data)}")
    complete = [k for k in KINDS if all(f in data for f in k.required)]
    if len(complete) > 1:
        both = " and of ".join(k.label for k in complete)
        raise PayloadError(f"{source}: has the fields of {both} payload; keep one")
    if not complete:
        partial = [k for k in KINDS if any(f in data for f in k.required)]
        if len(partial) == 1:
            kind = partial[0]
            missing = [f for f in kind.required if f not in data]
            raise PayloadError(f"{source}: field {missing[0]!r} is missing ({kind.label} "
                               f"payload needs {' and '.join(kind.required)})")
        shapes = "; ".join(f"{' + '.join(k.required)} ({k.label})" for k in KINDS)
        found = ", ".join(sorted(data)) or "none"
        raise PayloadError(f"{source}: not a QRMI payload: expected the fields {shapes}; "
                           f"found: {found}")
    return BUILDERS[complete[0].cls](data, source)


def read_payload(path: str) -> Payload:
    """Read and check a payload file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PayloadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PayloadError(f"{path}: is a directory, not a payload file") from None
    except UnicodeDecodeError:
        raise PayloadError(f"{path}: not a JSON file (not UTF-8 text)") from None
    except OSError as exc:
        raise PayloadError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{path}: not JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None
    return decode_payload(data, path)


def check_supported(payload: Payload, spec: ResourceSpec, source: str) -> None:
    """PayloadError unless the QPU's vendor runs this kind of payload (a vendor whose
    record names no kind is left to its own task_start)."""
    from slurm_qpu.vendors.registry import vendor

    try:
        kind = vendor(spec.type).payload
    except TypeNotAvailable:
        return
    want = next((k for k in KINDS if k.name == kind), None)
    if want is None or isinstance(payload, want.cls):
        return
    raise PayloadError(f"{source}: {_kind_of(type(payload)).label} payload cannot run on "
                       f"{spec.name}, a {spec.type} QPU: it runs {want.label} payload "
                       f"({' + '.join(want.required)})")
