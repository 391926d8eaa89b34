"""Guest fields of ECS documents: ``libvirt.domain.*``, ``libvirt.attribution.*``, ``libvirt.event.*``.

:func:`enrich` runs after :func:`forwarder.ecs.normalize.normalize` on every event, in emission
order, with one :class:`~forwarder.virt.guests.GuestRegistry` per stream:

* every event that concerns a guest gets ``libvirt.domain.uuid`` / ``libvirt.domain.name`` and
  ``libvirt.attribution.method`` / ``libvirt.attribution.side`` (how it was tied to the guest,
  see :mod:`forwarder.virt.guests`).  An event that concerns several guests (a guest's qemu
  denied another guest's image, shared install media) carries lists, best evidence first, the
  same position in each list describing the same guest (``libvirt.domain.name`` lists only the
  guests known by name);
* libvirt's own records (VIRT_CONTROL, VIRT_RESOURCE, VIRT_MACHINE_ID) also get their decoded
  content under ``libvirt.event.*`` and ``libvirt.domain.type``, an ``event.type`` that says
  what happened (:data:`CONTROL_EVENT_TYPES`, :data:`RESOURCE_EVENT_TYPES`) and, when the
  normalizer left it out, ``event.outcome`` from ``res=``.  ``event.action`` stays the
  normalizer's (Auditbeat's ``issued-vm-control``, ``assigned-vm-resource``, ``assigned-vm-id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from forwarder.audit import values
from forwarder.audit.record import Event, Record
from forwarder.virt.guests import Attribution, GuestRegistry

#: VIRT_CONTROL ``op=`` -> ``event.type`` (other ops keep the normalizer's).
CONTROL_EVENT_TYPES: Final[Mapping[str, list[str]]] = {
    "start": ["start"],
    "stop": ["end"],
    "init": ["start"],
}

#: VIRT_RESOURCE ``reason=`` -> ``event.type``: resources given at a start and opened devices
#: describe the guest (info); hot-plug, media changes, balloon/vcpu updates and cgroup ACL
#: changes alter it (change).
RESOURCE_EVENT_TYPES: Final[Mapping[str, list[str]]] = {
    "start": ["info"],
    "open": ["info"],
    "attach": ["change"],
    "detach": ["change"],
    "update": ["change"],
    "allow": ["change"],
    "deny": ["change"],
}

_VIRT_CONTROL: Final = 2500
_VIRT_RESOURCE: Final = 2501
_VIRT_MACHINE_ID: Final = 2502

#: VIRT_RESOURCE field -> ``libvirt.event.resource`` key, and whether its value may be encoded
#: (``docs/virt-audit.md`` §1.2).  ``old-T``/``new-T`` are handled apart (T is ``resrc``).
RESOURCE_FIELDS: Final[Mapping[str, tuple[str, bool]]] = {
    "net": ("mac", False),
    "path": ("path", True),
    "rdev": ("rdev", False),
    "cgroup": ("cgroup", True),
    "class": ("class", False),
    "item": ("class", False),  # libvirt 0.8 cgroup records
    "category": ("category", False),
    "maj": ("major", False),
    "acl": ("acl", False),
    "bus": ("bus", False),
    "type": ("bus", False),  # libvirt 0.8 host devices
    "device": ("device", True),
    "disk": ("device", True),  # capability host devices
    "chardev": ("device", True),
    "size": ("size", False),
}

#: VIRT_CONTROL numeric fields -> ``libvirt.event`` key.
CONTROL_NUMBERS: Final[Mapping[str, str]] = {"vm-pid": "vm_pid", "init-pid": "init_pid"}

#: ``res=`` -> ``event.outcome``.
_OUTCOMES: Final[Mapping[str, str]] = {"success": "success", "failed": "failure"}


def enrich(document: dict[str, Any], event: Event, registry: GuestRegistry) -> dict[str, Any]:
    """Add the guest fields of ``event`` to its normalized ``document`` (in place).

    Args:
        document: the event's document from :func:`forwarder.ecs.normalize.normalize`.
        event: the event (its records are read, never changed).
        registry: the stream's guest registry; it learns from the event first.

    Returns:
        ``document``.  Never raises for bad input.
    """
    attributions = registry.observe(event)
    records = event.records
    if records and _VIRT_CONTROL <= records[0].type_id <= _VIRT_MACHINE_ID:
        _virt_fields(document, records[0])
    if attributions:
        _attribution_fields(document, attributions)
    return document


def _libvirt(document: dict[str, Any]) -> dict[str, Any]:
    libvirt: dict[str, Any] | None = document.get("libvirt")
    if libvirt is None:
        libvirt = document["libvirt"] = {}
    return libvirt


def _attribution_fields(document: dict[str, Any], attributions: list[Attribution]) -> None:
    libvirt = _libvirt(document)
    domain: dict[str, Any] = libvirt.setdefault("domain", {})
    if len(attributions) == 1:
        one = attributions[0]
        domain["uuid"] = one.uuid
        if one.name is not None:
            domain["name"] = one.name
        libvirt["attribution"] = {"method": one.method, "side": one.side}
        return
    domain["uuid"] = [a.uuid for a in attributions]
    names = [a.name for a in attributions if a.name is not None]
    if names:
        domain["name"] = names
    libvirt["attribution"] = {"method": [a.method for a in attributions], "side": [a.side for a in attributions]}


def _virt_fields(document: dict[str, Any], record: Record) -> None:
    """``libvirt.event.*``, ``libvirt.domain.type``, ``event.type`` and ``event.outcome`` of a
    VIRT_* record."""
    fields = record.fields
    if "uuid" not in fields and "virt" not in fields:
        return  # not libvirt's (container engines write VIRT_CONTROL with vm=? and no uuid)
    details: dict[str, Any] = {}
    reason = fields.get("reason")
    if reason is not None and not values.is_unset(reason):
        details["reason"] = reason
    event_type: list[str] | None = None
    type_id = record.type_id
    if type_id == _VIRT_CONTROL:
        op = fields.get("op")
        if op is not None and not values.is_unset(op):
            details["op"] = op
            event_type = CONTROL_EVENT_TYPES.get(op)
        for key, name in CONTROL_NUMBERS.items():
            number = _integer(fields.get(key))
            if number is not None:
                details[name] = number
    elif type_id == _VIRT_RESOURCE:
        resource = _resource(fields)
        if resource:
            details["resource"] = resource
        if reason is not None:
            event_type = RESOURCE_EVENT_TYPES.get(reason)
    else:
        security = {
            name: value
            for key, name in (("model", "model"), ("vm-ctx", "vm_context"), ("img-ctx", "image_context"))
            if (value := fields.get(key)) is not None and not values.is_unset(value)
        }
        if security:
            details["security"] = security
    libvirt = _libvirt(document)
    if details:
        libvirt["event"] = details
    virt = fields.get("virt")
    if virt is not None and not values.is_unset(virt):
        libvirt.setdefault("domain", {})["type"] = virt
    ecs_event = document.get("event")
    if isinstance(ecs_event, dict):
        if event_type is not None:
            ecs_event["type"] = list(event_type)
        if "outcome" not in ecs_event:
            outcome = _OUTCOMES.get(fields.get("res", "").strip("'\""))
            if outcome is not None:
                ecs_event["outcome"] = outcome
    if not libvirt:
        del document["libvirt"]


def _resource(fields: dict[str, str]) -> dict[str, str]:
    """``libvirt.event.resource`` of a VIRT_RESOURCE record (decoded values, unset ones left out)."""
    resource: dict[str, str] = {}
    kind = fields.get("resrc")
    if kind is None or values.is_unset(kind):
        return resource
    resource["type"] = kind
    for side in ("old", "new"):
        raw = fields.get(f"{side}-{kind}")
        if raw is not None:
            text = _decoded(raw, True)
            if text is not None:
                resource[side] = text
    for key, (name, encoded) in RESOURCE_FIELDS.items():
        raw = fields.get(key)
        if raw is not None and name not in resource:
            text = _decoded(raw, encoded)
            if text is not None:
                resource[name] = text
    return resource


def _decoded(raw: str, encoded: bool) -> str | None:
    """A libvirt value as text (hex/quotes/0.8's single quotes undone), ``None`` when unset."""
    if values.is_unset(raw):
        return None
    if raw[:1] == "'":
        text = raw.strip("'")
    elif encoded:
        text = values.decode_value(raw)
    else:
        text = values.unquote(raw)
    return text if text and text != "?" else None


def _integer(raw: str | None) -> int | None:
    """A ``%d`` field as int (``-1`` included), ``None`` when absent or not a number."""
    if raw is None:
        return None
    digits = raw[1:] if raw[:1] == "-" else raw
    return int(raw) if digits.isdigit() and len(digits) <= 19 else None
