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

from collections.abc import Mapping, Sequence
from typing import Any, Final

from forwarder.audit import values
from forwarder.audit.record import Event, Record
from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS
from forwarder.audit.values import UNSET_VALUES
from forwarder.virt.guests import Attribution, GuestRegistry
from forwarder.virt.index_keys import UNSEEN
from forwarder.virt.memo import BoundedMemo

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
#: The VIRT_* type numbers, the parser's own objects (a set lookup then matches by identity).
_VIRT_TYPES: Final = frozenset(
    number for number in RECORD_TYPE_NUMBERS.values() if number in (_VIRT_CONTROL, _VIRT_RESOURCE, _VIRT_MACHINE_ID)
)

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
    if records and records[0].type_id in _VIRT_TYPES:
        _virt_fields(document, records[0])
    if attributions:
        _attribution_fields(document, attributions)
    return document


def _libvirt(document: dict[str, Any]) -> dict[str, Any]:
    libvirt: dict[str, Any] | None = document.get("libvirt")
    if libvirt is None:
        libvirt = document["libvirt"] = {}
    return libvirt


def _attribution_fields(document: dict[str, Any], attributions: Sequence[Attribution]) -> None:
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
    if reason is not None and reason not in UNSET_VALUES:
        details["reason"] = reason
    event_type: list[str] | None = None
    type_id = record.type_id
    if type_id == _VIRT_RESOURCE:
        resource = _resource(fields)
        if resource:
            details["resource"] = resource
        if reason is not None:
            event_type = RESOURCE_EVENT_TYPES.get(reason)
    elif type_id == _VIRT_CONTROL:
        op = fields.get("op")
        if op is not None and op not in UNSET_VALUES:
            details["op"] = op
            event_type = CONTROL_EVENT_TYPES.get(op)
        for key, name in CONTROL_NUMBERS.items():
            number = _integer(fields.get(key))
            if number is not None:
                details[name] = number
    else:
        security = {
            name: value
            for key, name in (("model", "model"), ("vm-ctx", "vm_context"), ("img-ctx", "image_context"))
            if (value := fields.get(key)) is not None and value not in UNSET_VALUES
        }
        if security:
            details["security"] = security
    libvirt = document.get("libvirt")
    if libvirt is None:
        libvirt = document["libvirt"] = {}
    if details:
        libvirt["event"] = details
    virt = fields.get("virt")
    if virt is not None and virt not in UNSET_VALUES:
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
    if kind is None or kind in UNSET_VALUES:
        return resource
    resource["type"] = kind
    old_key, new_key = _SIDE_KEYS.get(kind) or _side_keys(kind)
    raw = fields.get(old_key)
    if raw is not None and (text := _decoded(raw, True)) is not None:
        resource["old"] = text
    raw = fields.get(new_key)
    if raw is not None and (text := _decoded(raw, True)) is not None:
        resource["new"] = text
    present = _RESOURCE_KEYS.intersection(fields)
    for key in sorted(present, key=_RESOURCE_ORDER.__getitem__) if len(present) > 1 else present:
        name, encoded = RESOURCE_FIELDS[key]
        if name not in resource:
            text = _decoded(fields[key], encoded)
            if text is not None:
                resource[name] = text
    return resource


#: The keys of :data:`RESOURCE_FIELDS` and their places in it: a record has a few of them, taken
#: in the table's order (the first of ``class``/``item``, ``bus``/``type``, ``device``/``disk``/
#: ``chardev`` wins).
_RESOURCE_KEYS: Final = frozenset(RESOURCE_FIELDS)
_RESOURCE_ORDER: Final = {key: place for place, key in enumerate(RESOURCE_FIELDS)}


def _side_keys(kind: str) -> tuple[str, str]:
    """The keys of the old and new value of a resource of type ``kind`` (``old-disk``, ``new-disk``)."""
    return _SIDE_KEYS_MEMO.remember(kind, (f"old-{kind}", f"new-{kind}"), 2 * len(kind))


#: :func:`_side_keys` by resource type (libvirt has a dozen; the bound is for odd input).
_SIDE_KEYS_MEMO: Final[BoundedMemo[str, tuple[str, str]]] = BoundedMemo(256, 1 << 14)
_SIDE_KEYS: Final = _SIDE_KEYS_MEMO.entries


def _decoded(raw: str, encoded: bool) -> str | None:
    """A libvirt value as text (hex/quotes/0.8's single quotes undone), ``None`` when unset."""
    memo = _ENCODED_TEXTS if encoded else _PLAIN_TEXTS
    text = memo.entries.get(raw, UNSEEN)
    if text is UNSEEN:
        text = memo.remember(raw, _decoded_text(raw, encoded), 2 * len(raw))
    return text


def _decoded_text(raw: str, encoded: bool) -> str | None:
    """:func:`_decoded`, not remembered."""
    if raw in UNSET_VALUES:
        return None
    if raw[:1] == "'":
        text = raw.strip("'")
    elif encoded:
        text = values.decode_value(raw)
    else:
        text = values.unquote(raw)
    return text if text and text != "?" else None


#: :func:`_decoded` by raw value (:data:`~forwarder.virt.index_keys.UNSEEN`: not remembered), of
#: fields that may be encoded and of the others: a guest's paths, cgroup, devices and MACs recur
#: in its records at every start.  Bounded for hosts with thousands of transient guests.
_ENCODED_TEXTS: Final[BoundedMemo[str, str | None]] = BoundedMemo(4096, 1 << 20)
_PLAIN_TEXTS: Final[BoundedMemo[str, str | None]] = BoundedMemo(4096, 1 << 20)


def _integer(raw: str | None) -> int | None:
    """A ``%d`` field as int (``-1`` included), ``None`` when absent or not a number."""
    if raw is None:
        return None
    digits = raw[1:] if raw[:1] == "-" else raw
    return int(raw) if digits.isdigit() and len(digits) <= 19 else None
