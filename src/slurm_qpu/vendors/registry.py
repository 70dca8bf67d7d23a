"""Which vendors exist, built in or a site's own, and their implementations.

Built-in vendors are listed in ``slurm_qpu.vendors.builtin``, one folder each. A site adds
its own vendor without forking slurm-qpu by publishing a ``Vendor`` record
(``slurm_qpu.vendors.record``) as an entry point in the group ``slurm_qpu.vendors``; the name
is the type name as written in qrmi_config.json::

    [project.entry-points."slurm_qpu.vendors"]
    acme-qpu = "acme_qpu.slurm:VENDOR"

It then gets what a built-in vendor gets: its resource type, its users' overrides, its
payload kind for ``slurm-qpu run``, and in broker mode its proxy view. The entry point group
of earlier releases, ``slurm_qpu.resource_types`` (a ResourceType object, no record), still
works for this release, with a deprecation warning: such a type has no view, so its jobs
cannot reach it through the broker.
"""

from __future__ import annotations

import logging
import warnings
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from slurm_qpu.vendors.builtin import vendors
from slurm_qpu.vendors.common.base import ResourceSpec, ResourceType, TypeNotAvailable
from slurm_qpu.vendors.common.view import View
from slurm_qpu.vendors.record import Vendor
from slurm_qpu.vendors.type_names import CURRENT_TYPES, LEGACY_TYPES, current_type

ENTRY_POINT_GROUP = "slurm_qpu.vendors"
OLD_ENTRY_POINT_GROUP = "slurm_qpu.resource_types"  # until the next release
log = logging.getLogger(__name__)


@cache
def _plugins() -> dict[str, object]:
    """The sites' entry points by type name (loaded when used)."""
    found: dict[str, object] = {}
    for ep in entry_points(group=OLD_ENTRY_POINT_GROUP):
        found[ep.name] = ep
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep
    return found


def forget() -> None:
    """Forget what was read of the entry points (a test installs a site's vendor)."""
    _plugins.cache_clear()
    site_vendor.cache_clear()
    view_for.cache_clear()


def known_type_names() -> set[str]:
    """Every type name a config may use: current, legacy and site-registered."""
    return set(CURRENT_TYPES) | set(LEGACY_TYPES) | set(_plugins())


@cache
def site_vendor(name: str) -> Vendor | None:
    """A site's vendor record for a type name, or None when no site registers it
    (TypeNotAvailable for an entry point that cannot be loaded)."""
    ep = _plugins().get(name)
    if ep is None:
        return None
    if ep.group == OLD_ENTRY_POINT_GROUP:  # type: ignore[attr-defined]
        warnings.warn(f"resource type {name!r}: the entry point group "
                      f"{OLD_ENTRY_POINT_GROUP} is deprecated; register a Vendor record in "
                      f"{ENTRY_POINT_GROUP} instead (slurm_qpu.vendors.Vendor)",
                      DeprecationWarning, stacklevel=2)
        return Vendor(type_name=name, resource=ep.value)  # type: ignore[attr-defined]
    try:
        record = ep.load()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken site plugin must not look like our bug
        raise TypeNotAvailable(f"resource type {name!r}: cannot load its entry point {ep}: "
                               f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(record, Vendor):
        raise TypeNotAvailable(f"resource type {name!r}: its entry point {ep} is not a "
                               "slurm_qpu.vendors.Vendor record")
    return record


def vendor(name: str) -> Vendor:
    """The record of a type (a legacy name gives its successor's; a site's registration
    wins over a built-in vendor of the same name)."""
    wanted = current_type(name)
    found = site_vendor(wanted) or site_vendor(name) or vendors().get(wanted)
    if found is not None:
        return found
    if wanted in CURRENT_TYPES:
        raise TypeNotAvailable(f"resource type {wanted!r} is not implemented by this "
                               "version of slurm-qpu")
    raise TypeNotAvailable(f"unknown resource type {name!r}")


def _load(target: str, name: str) -> object:
    module, _, attr = target.partition(":")
    try:
        return getattr(import_module(module), attr)
    except Exception as exc:
        raise TypeNotAvailable(f"resource type {name!r}: cannot load its entry point "
                               f"{target}: {type(exc).__name__}: {exc}") from exc


def _instantiate(obj: object, name: str) -> ResourceType:
    if isinstance(obj, type):
        obj = obj()
    if not callable(getattr(obj, "create", None)):
        raise TypeNotAvailable(f"resource type {name!r}: {obj!r} has no create(spec) method")
    return obj  # type: ignore[return-value]


def get_type(name: str) -> ResourceType:
    """The implementation of a type (legacy names give their successor's)."""
    record = vendor(name)
    return _instantiate(_load(record.resource, record.type_name), record.type_name)


def create(spec: ResourceSpec) -> object:
    """Build the resource described by ``spec`` (``spec.type`` may be a legacy name)."""
    return get_type(spec.type).create(spec)


@cache
def view_for(type_name: str) -> View:
    """What a job of this type may do through the broker (a type without a view: nothing,
    and its job gets its settings minus anything that looks like a credential)."""
    try:
        record = vendor(type_name)
    except TypeNotAvailable:
        return View()
    if record.view is None:
        return View()
    view = _load(record.view, record.type_name)
    view = view() if isinstance(view, type) else view
    if not isinstance(view, View):
        raise TypeNotAvailable(f"resource type {record.type_name!r}: its view "
                               f"{record.view} is not a slurm_qpu.vendors.View")
    return view
