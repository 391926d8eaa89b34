"""Which libvirt guest an audit event concerns: a registry of guests learned from the log itself.

:class:`GuestRegistry` is a pure state machine fed with every assembled event in emission order
(:meth:`GuestRegistry.observe`).  It learns the host's guests from libvirt's records
(``docs/virt-audit.md`` §1): VIRT_MACHINE_ID (security labels), VIRT_RESOURCE (disks,
filesystems, nets, host devices, cgroup scope), VIRT_CONTROL (lifecycle, qemu pid), plus qemu's
own ``execve`` (its ``-uuid`` argument names the guest before libvirt writes the start record), and
forgets what a host reboot invalidates (SYSTEM_BOOT, or DAEMON_START without a clean DAEMON_END /
after SYSTEM_SHUTDOWN: pids, taps, labels and scopes are reused after a reboot).

For every event it answers which guests the event concerns and how (:class:`Attribution`):

==========  =========================================================================  ======
method      evidence                                                                   side
==========  =========================================================================  ======
``uuid``    a VIRT_* record of the guest; qemu's execve naming it with ``-uuid``       target
``pid``     ``pid=`` of a running guest's qemu (source), ``opid=`` of a kill/ptrace    both
            of it (target)
``parent``  ``ppid=`` is a running guest's qemu pid (a helper qemu spawned); not       source
            followed further down the process tree (child pids are not tracked, so a
            reused pid can never be attributed)
``label``   SELinux: ``subj=``/``scontext=`` (source) or ``tcontext=``/``obj=``        both
            (target) carries the MCS level of a guest that is starting or running;
            AppArmor: profile ``libvirt-UUID`` (``subj=``/``profile=`` source,
            ``peer=`` target)
``image``   a PATH record (or AppArmor ``name=``) naming one of the guest's disk        target
            images or filesystem sources (the guest owns them while it is defined;
            shared media such as an install ISO concern every guest holding it)
``cgroup``  a path inside the guest's ``machine.slice`` scope (PATH, CWD, ``unit=``)   target
``device``  a PATH record (or AppArmor ``name=``) naming a host device node passed     target
            through to the guest (:func:`hostdev_path`): ``/dev/vfio/N`` of a PCI or
            mdev device, ``/dev/bus/usb/BBB/DDD`` of a USB device, ``/dev/sgN`` of a
            SCSI device, the node of a capability hostdev (``disk=``/``chardev=``)
``mac``     NETFILTER_PKT ``smac=`` (source) / ``dmac=`` (target) is the guest's MAC   both
``tap``     ANOM_PROMISCUOUS of the guest's tap device (learned from the promiscuous   target
            switch libvirt makes right after it opened the guest's tap)
==========  =========================================================================  ======

Labels, pids, taps and scopes attribute only while the guest is starting or running: a label
reused by a later guest attributes to that guest, never to a stale one.  Host device nodes are
learned from the records that hand them to the guest (a ``resrc=cgroup reason=allow
class=path`` ACL of a device node of a host-device form, a ``resrc=dev bus=usb device=BBB.DDD``
record, a ``resrc=hostdev disk=``/``chardev=`` record) and forgotten when libvirt takes them
back (``reason=deny`` of that path, ``reason=detach`` of the device), when the guest stops or
fails to start, and when the host goes down: the same node is passed to another guest later.  Every lookup is a dict
lookup per record field; nothing scans the guests per event.

The registry is a plain value: :meth:`GuestRegistry.to_state` / :meth:`GuestRegistry.from_state`
give a versioned, JSON-safe, bounded form to persist with the forwarder's checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from forwarder.audit import values
from forwarder.audit.execve import execve_args_from_records
from forwarder.audit.record import Event, Record
from forwarder.audit.tables.record_types import RECORD_TYPE_NUMBERS
from forwarder.virt.index_keys import (
    LABEL_KEYS,
    PATH_KEYS,
    PROFILE_PREFIX,
    SCOPE_PATH_KEYS,
    SELINUX_PARTS_BEFORE_LEVEL,
    UNSEEN,
    UUID_LENGTH,
    UUID_PATTERN,
    label_keys,
    path_keys,
    scope_path_key,
)
from forwarder.virt.index_keys import scope_of as scope_of
from forwarder.virt.memo import BoundedMemo

#: Version of :meth:`GuestRegistry.to_state`'s layout; other versions are not loaded.
STATE_VERSION: Final = 1

#: A stopped guest is forgotten this long (log time) after it was last seen.  A restarted guest is
#: learned again from its start records, so only the image/MAC ownership of long-stopped guests
#: is lost; a month covers guests powered on for month-end jobs.
FORGET_STOPPED_AFTER_SECONDS: Final = 30 * 24 * 3600

#: Log-time interval between two sweeps for forgotten guests (a sweep visits every guest).
PRUNE_INTERVAL_SECONDS: Final = 3600

#: Guests kept per host.  Busy cloud hypervisors start thousands of transient guests (a new uuid
#: each); beyond this the guests that stopped longest ago go first.
MAX_GUESTS_PER_HOST: Final = 4096

#: Hosts (``node=`` names) kept; an aggregated log of a large fleet stays well below this.
MAX_HOSTS: Final = 4096

#: Entries kept per resource list of a guest (disks, nets, host devices, taps, pids): real
#: guests have a handful; the cap only bounds a log that attaches forever without detaching.
MAX_ITEMS_PER_GUEST: Final = 64

#: Distinct guests reported for one event (the actor's and the object's, and shared media).
MAX_GUESTS_PER_EVENT: Final = 4

#: Seconds after libvirt opened a tap (or began a start) during which a promiscuous switch by the
#: daemon names that guest's tap.  libvirt switches the tap right after creating it; a start
#: rarely takes more than a few seconds from labelling to the tap.
TAP_HINT_SECONDS: Final = 10

#: libvirt daemon pids remembered per host boot (libvirtd, virtqemud, virtlxcd ... restarts).
MAX_DAEMON_PIDS: Final = 16

# Lifecycle states of a guest.
STARTING: Final = "starting"
RUNNING: Final = "running"
STOPPED: Final = "stopped"
FAILED: Final = "failed"
CRASHED: Final = "crashed"
MIGRATED: Final = "migrated"
START_FAILED: Final = "start-failed"
#: The host went down (reboot or crash) while the guest ran; no stop record was written.
DOWN: Final = "down"
#: Known from its records but never seen starting (the log began while it ran, or it was defined).
KNOWN: Final = "known"

#: States in which pids, labels, taps and the scope attribute events to the guest.
ACTIVE_STATES: Final = frozenset({STARTING, RUNNING})

#: ``op=stop reason=`` -> state; other reasons (shutdown, destroyed, saved, ...) -> stopped.
STOP_STATES: Final[Mapping[str, str]] = {"failed": FAILED, "crashed": CRASHED, "migrated": MIGRATED}

# Attribution methods (``libvirt.attribution.method``) and sides (``libvirt.attribution.side``).
BY_UUID: Final = "uuid"
BY_PID: Final = "pid"
BY_PARENT: Final = "parent"
BY_LABEL: Final = "label"
BY_IMAGE: Final = "image"
BY_CGROUP: Final = "cgroup"
BY_MAC: Final = "mac"
BY_TAP: Final = "tap"
BY_DEVICE: Final = "device"
SOURCE: Final = "source"
TARGET: Final = "target"

# Record type numbers (linux/audit.h).
_SYSTEM_BOOT: Final = 1127
_SYSTEM_SHUTDOWN: Final = 1128
_DAEMON_START: Final = 1200
_DAEMON_END: Final = 1201
_SYSCALL: Final = 1300
_PATH_RECORD: Final = 1302
_CWD_RECORD: Final = 1307
_EXECVE: Final = 1309
_PROCTITLE_RECORD: Final = 1327
_VIRT_CONTROL: Final = 2500
_VIRT_RESOURCE: Final = 2501
_VIRT_MACHINE_ID: Final = 2502


#: Device nodes libvirt opens for a tap that are not the tap itself.
_NOT_TAP_OPENS: Final = frozenset({"/dev/vhost-net", "/dev/vhost-vsock"})

#: Generic VIRT_RESOURCE kinds whose ``old-T``/``new-T`` name something the guest owns, and the
#: guest list it goes to (``docs/virt-audit.md`` §1.5).
_OWNED_RESOURCES: Final[Mapping[str, str]] = {"disk": "disks", "fs": "filesystems", "net": "nets"}
#: Host-device resource kinds (``bus=``/``type=`` + ``device=``, or capability ``disk=``/``chardev=``).
_HOSTDEV_RESOURCES: Final = frozenset({"dev", "hostdev"})

#: Device nodes libvirt grants a guest's cgroup for a passed-through host device (the guest alone
#: uses them): VFIO groups of PCI/mdev devices, USB device nodes, SCSI generic nodes.  Shared
#: nodes (``/dev/null``, ``/dev/kvm``, ``/dev/vfio/vfio``, ptys ...) are not of these forms.
_HOSTDEV_NODE: Final = re.compile(r"/dev/vfio/[0-9]+|/dev/bus/usb/[0-9]{3}/[0-9]{3}|/dev/sg[0-9]+")
#: A USB address of ``resrc=dev bus=usb device=BBB.DDD`` (bus and device numbers).
_USB_ADDRESS: Final = re.compile(r"([0-9]{3})\.([0-9]{3})")
#: cgroup ACL reasons that grant and revoke a device node.
_CGROUP_GRANT: Final = "allow"
_CGROUP_REVOKE: Final = "deny"


@dataclass(slots=True)
class Guest:
    """One libvirt domain on one host, as its records describe it.

    Attributes:
        uuid: the domain uuid (lower case).
        name: the decoded domain name (names are not unique: two guests may share one).
        virt: domain type of ``virt=`` (kvm, qemu, lxc ...), when written.
        state: lifecycle state (:data:`RUNNING`, :data:`STOPPED` ...).
        start_reason, stop_reason: ``reason=`` of the last start / stop.
        started, stopped: event times (epoch seconds, millisecond precision) of the last start
            and stop (a failed start and a host going down count as stops).
        last_seen: epoch second of the last record naming the guest.
        pids: qemu pid (LXC: controller and init pids) while starting/running.
        level: SELinux MCS level of the current labels (``s0:c12,c345``) while starting/running.
        labels: security model -> ``[vm-ctx, img-ctx]`` of the last start.
        disks, filesystems: host paths of the guest's disks and filesystem sources.
        nets: MAC addresses (lower case).
        taps: host tap devices while running.
        hostdevs: passed-through host devices (``pci 0000:3b:00.1``).
        devices: device nodes of those host devices (``/dev/vfio/42``) while starting/running.
        scope: systemd scope of its cgroup (``machine-qemu\\x2d1\\x2dweb01.scope``) while active.
    """

    uuid: str
    name: str | None = None
    virt: str | None = None
    state: str = KNOWN
    start_reason: str | None = None
    stop_reason: str | None = None
    started: float | None = None
    stopped: float | None = None
    last_seen: int = 0
    pids: list[str] = field(default_factory=list)
    level: str | None = None
    labels: dict[str, list[str]] = field(default_factory=dict)
    disks: list[str] = field(default_factory=list)
    filesystems: list[str] = field(default_factory=list)
    nets: list[str] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)
    hostdevs: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    scope: str | None = None

    @property
    def active(self) -> bool:
        """Whether the guest is starting or running."""
        return self.state in ACTIVE_STATES


@dataclass(frozen=True, slots=True)
class Attribution:
    """One guest an event concerns.

    Attributes:
        uuid: the guest's uuid.
        name: its name, when known.
        method: how the event was tied to it (:data:`BY_UUID`, :data:`BY_PID` ...).
        side: :data:`SOURCE` when the acting process is the guest's, :data:`TARGET` when the
            object acted upon is.
    """

    uuid: str
    name: str | None
    method: str
    side: str


# Kinds of evidence a record field gives, with their priority (lower wins when one guest is found
# by several), method and side.
_BY_UUID: Final = 0
_PID_SOURCE: Final = 1
_LABEL_SOURCE: Final = 2
_PARENT: Final = 3
_PID_TARGET: Final = 4
_LABEL_TARGET: Final = 5
_PATH: Final = 6
_SCOPE_PATH: Final = 7
_MAC_SOURCE: Final = 8
_MAC_TARGET: Final = 9
_TAP: Final = 10
_DEVICE_PATH: Final = 11

#: Evidence kind -> (method, side).  Paths give image, device or cgroup evidence.
_KINDS: Final[Mapping[int, tuple[str, str]]] = {
    _BY_UUID: (BY_UUID, TARGET),
    _PID_SOURCE: (BY_PID, SOURCE),
    _LABEL_SOURCE: (BY_LABEL, SOURCE),
    _PARENT: (BY_PARENT, SOURCE),
    _PID_TARGET: (BY_PID, TARGET),
    _LABEL_TARGET: (BY_LABEL, TARGET),
    _PATH: (BY_IMAGE, TARGET),
    _SCOPE_PATH: (BY_CGROUP, TARGET),
    _MAC_SOURCE: (BY_MAC, SOURCE),
    _MAC_TARGET: (BY_MAC, TARGET),
    _TAP: (BY_TAP, TARGET),
    _DEVICE_PATH: (BY_DEVICE, TARGET),
}

#: Record type number -> the fields to look at and what each is evidence of.  SYSCALL, PATH, CWD,
#: PROCTITLE and the default plan run as dedicated code (:meth:`GuestRegistry._attribute`), held
#: to these plans by ``tests/test_guests_fast_paths.py``.
_PLANS: Final[Mapping[int, tuple[tuple[str, int], ...]]] = {
    _SYSCALL: (("pid", _PID_SOURCE), ("ppid", _PARENT), ("subj", _LABEL_SOURCE)),
    _PATH_RECORD: (("name", _PATH), ("obj", _LABEL_TARGET)),
    _CWD_RECORD: (("cwd", _SCOPE_PATH),),
    1318: (("opid", _PID_TARGET), ("obj", _LABEL_TARGET)),  # OBJ_PID
    1324: (("smac", _MAC_SOURCE), ("dmac", _MAC_TARGET)),  # NETFILTER_PKT
    1400: (  # AVC: SELinux (scontext/tcontext) or AppArmor (profile/peer, full path in name)
        ("pid", _PID_SOURCE),
        ("scontext", _LABEL_SOURCE),
        ("tcontext", _LABEL_TARGET),
        ("profile", _LABEL_SOURCE),
        ("peer", _LABEL_TARGET),
        ("name", _PATH),
    ),
    1107: (  # USER_AVC
        ("pid", _PID_SOURCE),
        ("scontext", _LABEL_SOURCE),
        ("tcontext", _LABEL_TARGET),
    ),
    1700: (("dev", _TAP),),  # ANOM_PROMISCUOUS
    _EXECVE: (),
    1320: (),  # EOE
    _PROCTITLE_RECORD: (),
    1306: (),  # SOCKADDR
    _VIRT_CONTROL: (),
    _VIRT_RESOURCE: (),
    _VIRT_MACHINE_ID: (),
}
#: Any other record: its sender or subject process.
_DEFAULT_PLAN: Final = (("pid", _PID_SOURCE), ("ppid", _PARENT), ("subj", _LABEL_SOURCE), ("unit", _SCOPE_PATH))

# How a field's value is looked up (:data:`_LOOKUPS`).
_IN_PIDS: Final = 0  # the value is a pid: ``by_pid``
_AS_LABEL: Final = 1  # a security label: its MCS level in ``by_level``, or its AppArmor profile
_AS_PATH: Final = 2  # a file: ``by_image``, ``by_device``, and the scope it lies in in ``by_scope``
_AS_SCOPE_PATH: Final = 3  # a cgroup path or unit: its scope in ``by_scope``
_AS_MAC: Final = 4  # a MAC address: ``by_mac``
_AS_TAP: Final = 5  # a network device: ``by_tap`` (and learning a tap, :func:`_tap_guest`)

#: Evidence kind -> how its field is looked up.
_LOOKUP_OF_KIND: Final[Mapping[int, int]] = {
    _PID_SOURCE: _IN_PIDS,
    _PID_TARGET: _IN_PIDS,
    _PARENT: _IN_PIDS,
    _LABEL_SOURCE: _AS_LABEL,
    _LABEL_TARGET: _AS_LABEL,
    _PATH: _AS_PATH,
    _SCOPE_PATH: _AS_SCOPE_PATH,
    _MAC_SOURCE: _AS_MAC,
    _MAC_TARGET: _AS_MAC,
    _TAP: _AS_TAP,
}

#: One field to look at: ``(key, how it is looked up, evidence kind)``.
_Lookup = tuple[str, int, int]


def _lookups(plan: tuple[tuple[str, int], ...]) -> tuple[_Lookup, ...] | None:
    """A plan as the attribution loop runs it (``None``: nothing to look at).

    The order of the plan is kept: it decides which of two guests found by the same kind of
    evidence comes first.
    """
    return tuple((key, _LOOKUP_OF_KIND[kind], kind) for key, kind in plan) or None


#: Record type numbers as the parser gives them (the objects of its table): dicts keyed by record
#: type take their keys from here, so that a lookup matches the key by identity (an equal int
#: that is another object costs a rich comparison per lookup).
_TYPE_NUMBERS: Final = {number: number for number in RECORD_TYPE_NUMBERS.values()}

_LOOKUPS: Final[Mapping[int, tuple[_Lookup, ...] | None]] = {
    _TYPE_NUMBERS.get(type_id, type_id): _lookups(plan) for type_id, plan in _PLANS.items()
}
_DEFAULT_LOOKUPS: Final = _lookups(_DEFAULT_PLAN)

#: The answer for an event that concerns no guest (shared: callers only read answers).
_NOTHING: Final[Sequence[Attribution]] = ()


class _Host:
    """The guests of one host (one ``node=`` name) and the indexes that find them."""

    __slots__ = (
        "by_device",
        "by_image",
        "by_level",
        "by_mac",
        "by_pid",
        "by_scope",
        "by_tap",
        "daemon_ended",
        "daemons",
        "guests",
        "last_prune",
        "last_seen",
        "shutting_down",
        "tap_hints",
    )

    def __init__(self) -> None:
        self.guests: dict[str, Guest] = {}
        self.by_pid: dict[str, Guest] = {}
        self.by_level: dict[str, Guest] = {}
        self.by_image: dict[str, list[Guest]] = {}
        self.by_mac: dict[str, Guest] = {}
        self.by_tap: dict[str, Guest] = {}
        self.by_scope: dict[str, Guest] = {}
        #: host device node -> the guest it is passed through to.
        self.by_device: dict[str, Guest] = {}
        #: uuid -> epoch second of a tap open or start step (see :data:`TAP_HINT_SECONDS`).
        self.tap_hints: dict[str, int] = {}
        #: pids of the libvirt daemon (senders of VIRT_* records) since the host booted.
        self.daemons: set[str] = set()
        self.daemon_ended = False
        self.shutting_down = False
        self.last_prune = 0
        self.last_seen = 0


class GuestRegistry:
    """The guests of every host in the stream, learned from the events in emission order.

    Use :meth:`observe` on every event (it learns, then answers), or :func:`enrich` in
    :mod:`forwarder.virt.enrich` to write the answer into the event's document.

    Args:
        max_guests_per_host: guests kept per host (:data:`MAX_GUESTS_PER_HOST`); beyond it the
            guests that stopped longest ago are forgotten.
    """

    __slots__ = ("_hosts", "max_guests_per_host")

    def __init__(self, max_guests_per_host: int = MAX_GUESTS_PER_HOST) -> None:
        self._hosts: dict[str | None, _Host] = {}
        self.max_guests_per_host = max_guests_per_host

    # ------------------------------------------------------------------ queries

    def guests(self, node: str | None = None) -> list[Guest]:
        """The guests known on host ``node`` (``None``: records without ``node=``)."""
        host = self._hosts.get(node)
        return list(host.guests.values()) if host is not None else []

    def guest(self, uuid: str, node: str | None = None) -> Guest | None:
        """The guest with ``uuid`` on host ``node``, if known."""
        host = self._hosts.get(node)
        return host.guests.get(uuid.lower()) if host is not None else None

    def nodes(self) -> list[str | None]:
        """The hosts (``node=`` names) the registry knows."""
        return list(self._hosts)

    # ------------------------------------------------------------------ the per-event entry point

    def observe(self, event: Event) -> Sequence[Attribution]:
        """Learn from ``event`` and return the guests it concerns (best evidence first).

        Args:
            event: the next assembled event, in emission order.

        Returns:
            At most :data:`MAX_GUESTS_PER_EVENT` attributions, one per guest; empty when the
            event concerns no known guest (an empty answer is shared: read answers, do not
            change them).  Never raises for bad input.
        """
        records = event.records
        if not records:
            return _NOTHING
        first = records[0].type_id
        learner = _LEARNERS.get(first)
        if learner is not None:
            return learner(self, self._host(event.node, event.sec), event)
        found = self._attribute(self._hosts.get(event.node, _NO_HOST), records, first == _SYSCALL)
        return found if found is not None else self._syscall_event(event)

    def _syscall_event(self, event: Event) -> Sequence[Attribution]:
        """A SYSCALL event that may be qemu's execve: learn the guest it starts, then answer."""
        execve = _qemu_execve(event.records)
        if execve is None:
            return self._attribute(self._hosts.get(event.node, _NO_HOST), event.records, False) or _NOTHING
        uuid, name, pid = execve
        host = self._host(event.node, event.sec)
        guest = self._learn_guest(host, uuid, name, None, event.sec)
        if not guest.active:
            guest.state = STARTING
        _set_pids(host, guest, [pid])
        found = self._attribute(host, event.records, False)
        return found if found else [_attribution(guest.uuid, guest.name, _BY_UUID)]

    # ------------------------------------------------------------------ learning

    def _host(self, node: str | None, now: int) -> _Host:
        host = self._hosts.get(node)
        if host is None:
            if len(self._hosts) >= MAX_HOSTS:
                oldest = min(self._hosts, key=lambda key: self._hosts[key].last_seen)
                del self._hosts[oldest]
            host = self._hosts[node] = _Host()
        host.last_seen = now
        return host

    def _learn_guest(self, host: _Host, uuid: str, name: str | None, virt: str | None, now: int) -> Guest:
        guest = host.guests.get(uuid)
        if guest is None:
            guest = host.guests[uuid] = Guest(uuid, last_seen=now)
            if len(host.guests) > self.max_guests_per_host:
                _prune(host, now, self.max_guests_per_host)
        if name is not None:
            guest.name = name
        if virt is not None:
            guest.virt = virt
        guest.last_seen = now
        if now - host.last_prune >= PRUNE_INTERVAL_SECONDS:
            _prune(host, now, None)
        return guest

    def _virt_record(self, host: _Host, event: Event) -> Sequence[Attribution]:
        """VIRT_CONTROL / VIRT_RESOURCE / VIRT_MACHINE_ID: learn, and attribute by uuid."""
        record = event.records[0]
        fields = record.fields
        uuid = _guest_uuid(fields.get("uuid"))
        if uuid is None:
            return _NOTHING  # e.g. container engines' VIRT_CONTROL with vm=? and no uuid
        sender = fields.get("pid")
        if sender is not None and len(host.daemons) < MAX_DAEMON_PIDS:
            host.daemons.add(sender)
        now = event.sec
        virt = fields.get("virt")
        vm = fields.get("vm")
        guest = self._learn_guest(host, uuid, _text(vm) if vm is not None else None, virt, now)
        success = fields.get("res", "success").strip("'\"") == "success"
        type_id = record.type_id
        if type_id == _VIRT_CONTROL:
            _learn_control(host, guest, fields, success, event.sec + event.msec / 1000)
        elif type_id == _VIRT_RESOURCE:
            _learn_resource(host, guest, fields, success, now)
        else:
            _learn_machine_id(host, guest, fields, success, now)
        return [_attribution(guest.uuid, guest.name, _BY_UUID)]

    def _host_event(self, host: _Host, event: Event) -> Sequence[Attribution]:
        """SYSTEM_BOOT / SYSTEM_SHUTDOWN / DAEMON_START / DAEMON_END: notice host reboots."""
        type_id = event.records[0].type_id
        if type_id == _SYSTEM_SHUTDOWN:
            host.shutting_down = True
        elif type_id == _DAEMON_END:
            host.daemon_ended = True
        elif type_id == _SYSTEM_BOOT or not host.daemon_ended or host.shutting_down:
            # SYSTEM_BOOT, or auditd starting after a crash (no DAEMON_END) or after a shutdown.
            _host_down(host, event.sec + event.msec / 1000)
        else:  # auditd restarted on a running host: the guests keep running
            host.daemon_ended = False
        return _NOTHING

    # ------------------------------------------------------------------ attribution

    def _attribute(self, host: _Host, records: list[Record], qemu_possible: bool) -> Sequence[Attribution] | None:
        """The guests ``records`` concern on ``host``: one dict lookup per field of the record's
        plan (:data:`_PLANS`), keys derived from the raw value once (:mod:`index_keys`).

        PATH, SYSCALL, PROCTITLE and CWD, the records of nearly every syscall event, and the
        records of the default plan (user messages) are looked at by dedicated code doing what
        their plans say (the generic loop costs about twice as much per field); other records go
        through the loop.  ``tests/test_guests_fast_paths.py`` holds both to a plain reading of
        the plans.

        With ``qemu_possible`` (a SYSCALL event not checked for qemu's execve yet) it gives
        ``None`` at an EXECVE record that may name a guest uuid or at a tap to look up (which
        may be learned), before anything changed: the caller learns from the event first
        (:meth:`_syscall_event`).  Ordinary syscall events are thus read once.
        """
        by_pid = host.by_pid
        found: list[tuple[int, Guest, str]] | None = None
        guest: Guest | None
        for record in records:
            type_id = record.type_id
            if type_id == _PATH_RECORD:  # name, obj
                fields = record.fields
                raw = fields.get("name")
                if raw is not None:
                    found = _image_evidence(host, raw, found)
                raw = fields.get("obj")
                if raw is not None and (guest := _label_guest(host, raw)) is not None:
                    found = _found(found, _LABEL_TARGET, guest)
                continue
            if type_id == _SYSCALL:  # pid, ppid, subj
                found = _process_evidence(host, by_pid, record.fields, found)
                continue
            if type_id == _PROCTITLE_RECORD:  # nothing to look at
                continue
            if type_id == _CWD_RECORD:  # cwd
                raw = record.fields.get("cwd")
                if raw is not None and (guest := _scope_guest(host, raw)) is not None:
                    found = _found(found, _SCOPE_PATH, guest)
                continue
            lookups = _LOOKUPS.get(type_id, _DEFAULT_LOOKUPS)
            if lookups is None:
                if type_id == _EXECVE and qemu_possible and _may_name_uuid(record):
                    return None
                continue
            fields = record.fields
            if lookups is _DEFAULT_LOOKUPS:  # pid, ppid, subj, unit (user messages and the like)
                found = _process_evidence(host, by_pid, fields, found)
                raw = fields.get("unit")
                if raw is not None and (guest := _scope_guest(host, raw)) is not None:
                    found = _found(found, _SCOPE_PATH, guest)
                continue
            for key, how, kind in lookups:
                raw = fields.get(key)
                if raw is None:
                    continue
                if how == _IN_PIDS:
                    guest = by_pid.get(raw)
                elif how == _AS_LABEL:
                    guest = _label_guest(host, raw)
                elif how == _AS_PATH:
                    found = _image_evidence(host, raw, found)
                    continue
                elif how == _AS_SCOPE_PATH:
                    guest = _scope_guest(host, raw)
                elif how == _AS_TAP:
                    if qemu_possible:
                        return None
                    guest = _tap_guest(host, raw, record, records)
                elif host.by_mac:
                    guest = host.by_mac.get(values.unquote(raw).lower())
                else:
                    continue
                if guest is not None:
                    found = _found(found, kind, guest)
        return _answer(found) if found is not None else _NOTHING

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """The registry as a JSON-safe value (see :meth:`from_state`)."""
        return {
            "version": STATE_VERSION,
            "hosts": [
                {
                    "node": node,
                    "daemon_ended": host.daemon_ended,
                    "shutting_down": host.shutting_down,
                    "last_prune": host.last_prune,
                    "last_seen": host.last_seen,
                    "daemons": sorted(host.daemons),
                    "tap_hints": dict(host.tap_hints),
                    "guests": [_guest_state(guest) for guest in host.guests.values()],
                }
                for node, host in self._hosts.items()
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> GuestRegistry:
        """A registry from :meth:`to_state`'s value; the indexes are rebuilt from the guests.

        Args:
            state: a value :meth:`to_state` returned (possibly through JSON), or ``None``.

        Returns:
            The registry.  Another version, or a value of the wrong shape, gives an empty
            registry; a malformed guest entry is skipped.  Never raises.
        """
        registry = cls()
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            return registry
        hosts = state.get("hosts")
        if not isinstance(hosts, list):
            return registry
        for entry in hosts[:MAX_HOSTS]:
            if not isinstance(entry, Mapping):
                continue
            node = entry.get("node")
            if node is not None and not isinstance(node, str):
                continue
            host = registry._hosts[node] = _Host()
            host.daemon_ended = entry.get("daemon_ended") is True
            host.shutting_down = entry.get("shutting_down") is True
            host.last_prune = _int(entry.get("last_prune"))
            host.last_seen = _int(entry.get("last_seen"))
            host.daemons = set(_strings(entry.get("daemons"))[:MAX_DAEMON_PIDS])
            hints = entry.get("tap_hints")
            if isinstance(hints, Mapping):
                kept = list(hints.items())[: registry.max_guests_per_host]
                host.tap_hints = {str(key): _int(value) for key, value in kept}
            guests = entry.get("guests")
            loaded = [_guest_from_state(item) for item in guests] if isinstance(guests, list) else []
            ordered = sorted((g for g in loaded if g is not None), key=lambda g: g.started or 0.0)
            for guest in ordered[-registry.max_guests_per_host :]:
                host.guests[guest.uuid] = guest
                _index(host, guest)
        return registry


# ---------------------------------------------------------------------- learning helpers


def _text(raw: str) -> str | None:
    """A libvirt value decoded (quoted, hex, or libvirt 0.8's single quotes); ``None`` when unset."""
    text = _TEXT_OF.get(raw, UNSEEN)
    if text is UNSEEN:
        text = _TEXTS.remember(raw, _decoded_text(raw), 2 * len(raw))
    return text


def _decoded_text(raw: str) -> str | None:
    """:func:`_text`, not remembered."""
    if values.is_unset(raw):
        return None
    if raw[:1] == "'":
        text = raw.strip("'")
        return text if text and text != "?" else None
    text = values.decode_value(raw)
    return text if text and text != "?" else None


def _guest_uuid(raw: str | None) -> str | None:
    """The lower-case guest uuid of a ``uuid=`` value, ``None`` when it is none."""
    if raw is None:
        return None
    uuid = _GUEST_UUIDS.entries.get(raw, UNSEEN)
    if uuid is UNSEEN:
        valid = len(raw) == UUID_LENGTH and UUID_PATTERN.fullmatch(raw) is not None
        uuid = _GUEST_UUIDS.remember(raw, raw.lower() if valid else None, len(raw))
    return uuid


def _cgroup_scope(raw: str) -> str | None:
    """The machine scope of a ``cgroup=`` value (:func:`scope_of` of its text), ``None`` when
    it names none."""
    scope = _SCOPE_OF_CGROUP.get(raw, UNSEEN)
    if scope is UNSEEN:
        cgroup = _text(raw)
        scope = _CGROUP_SCOPES.remember(raw, scope_of(cgroup) if cgroup is not None else None, 2 * len(raw))
    return scope


def _is_hostdev_node(path: str) -> bool:
    """Whether ``path`` is a device node of a host-device form (:data:`_HOSTDEV_NODE`)."""
    answer = _HOSTDEV_NODES.entries.get(path)
    if answer is None:
        answer = _HOSTDEV_NODES.remember(path, _HOSTDEV_NODE.fullmatch(path) is not None, len(path))
    return answer


#: Decoded libvirt values (names, paths, cgroups), guest uuids and device-node answers by raw
#: value: the same guests' values recur with every start, attach and cgroup ACL record.  A host
#: has some hundred of them per guest; the bounds only matter for hosts with thousands of
#: transient guests.
_TEXTS: Final[BoundedMemo[str, str | None]] = BoundedMemo(4096, 1 << 20)
_GUEST_UUIDS: Final[BoundedMemo[str, str | None]] = BoundedMemo(4096, 1 << 20)
_HOSTDEV_NODES: Final[BoundedMemo[str, bool]] = BoundedMemo(4096, 1 << 20)
_CGROUP_SCOPES: Final[BoundedMemo[str, str | None]] = BoundedMemo(4096, 1 << 20)
_TEXT_OF: Final = _TEXTS.entries
_SCOPE_OF_CGROUP: Final = _CGROUP_SCOPES.entries


def _learn_control(host: _Host, guest: Guest, fields: dict[str, str], success: bool, at: float) -> None:
    op = fields.get("op")
    reason = fields.get("reason")
    if op == "start":
        host.tap_hints.pop(guest.uuid, None)
        guest.start_reason = reason
        if not success:
            _deactivate(host, guest, START_FAILED, at)
            return
        guest.state = RUNNING
        guest.started = at
        guest.stopped = None
        guest.stop_reason = None
        pid = fields.get("vm-pid")
        if pid is not None and pid.isdigit() and pid != "0":
            _set_pids(host, guest, [pid])
    elif op == "stop":
        guest.stop_reason = reason
        _deactivate(host, guest, STOP_STATES.get(reason or "", STOPPED), at)
    elif op == "init":  # LXC: the controller and the container's init
        pids = [fields.get("vm-pid", ""), fields.get("init-pid", "")]
        _set_pids(host, guest, [pid for pid in pids if pid.isdigit() and pid != "0"])
        if not guest.active:
            guest.state = RUNNING
            guest.started = at


def _learn_resource(host: _Host, guest: Guest, fields: dict[str, str], success: bool, now: int) -> None:
    resource = fields.get("resrc", "")
    reason = fields.get("reason", "")
    if reason == "start" and not guest.active:
        guest.state = STARTING
    if not success:
        return
    owned = _OWNED_RESOURCES.get(resource)
    if owned is not None:
        if reason == "open" and resource == "net":
            mac = fields.get("net")
            if mac is not None and not values.is_unset(mac):
                _own(host, guest, "nets", mac.strip("'\"").lower())
            path = _text(fields.get("path", "?"))
            if path not in _NOT_TAP_OPENS:
                host.tap_hints[guest.uuid] = now
            return
        old = _text(fields.get(f"old-{resource}", "?"))
        new = _text(fields.get(f"new-{resource}", "?"))
        if resource == "net":
            old = old.lower() if old is not None else None
            new = new.lower() if new is not None else None
        if old is not None and old != new and reason != "start":
            _disown(host, guest, owned, old)
        if new is not None:
            _own(host, guest, owned, new)
    elif resource in _HOSTDEV_RESOURCES:
        device = _text(fields.get("device") or fields.get("disk") or fields.get("chardev") or "?")
        if device is not None:
            bus = fields.get("bus") or fields.get("type") or resource
            entry = f"{bus} {device}"
            node = hostdev_path(bus, device)
            if reason == "detach":
                if entry in guest.hostdevs:
                    guest.hostdevs.remove(entry)
                if node is not None:
                    _release_device(host, guest, node)
            else:
                if entry not in guest.hostdevs and len(guest.hostdevs) < MAX_ITEMS_PER_GUEST:
                    guest.hostdevs.append(entry)
                if node is not None:
                    _grant_device(host, guest, node)
    elif resource == "cgroup":
        if (fields.get("class") or fields.get("item")) == "path":  # item= of libvirt 0.8
            path = _text(fields.get("path", "?"))
            if path is not None and _is_hostdev_node(path):
                if reason == _CGROUP_GRANT:
                    _grant_device(host, guest, path)
                elif reason == _CGROUP_REVOKE:
                    _release_device(host, guest, path)
        if not guest.active:
            host.tap_hints[guest.uuid] = now  # a start in progress (libvirt 0.8 writes no net opens)
        scope = _cgroup_scope(fields.get("cgroup", "?"))
        if scope is not None and scope != guest.scope:
            if guest.scope is not None and host.by_scope.get(guest.scope) is guest:
                del host.by_scope[guest.scope]
            guest.scope = scope
            host.by_scope[scope] = guest


def hostdev_path(bus: str, device: str) -> str | None:
    """The device node of a host device record's ``bus``/``device``, ``None`` when it has none.

    Args:
        bus: ``bus=`` (``type=`` of libvirt 0.8), or the resource type for capability hostdevs.
        device: the decoded ``device=`` (``disk=``/``chardev=`` of capability hostdevs).

    Returns:
        ``/dev/bus/usb/BBB/DDD`` for a USB address ``BBB.DDD``; the value itself when it is a
        device node (capability hostdevs name ``/dev/sdb``, ``/dev/ttyS0``); else ``None``: a PCI
        or mdev device's node (``/dev/vfio/N``) comes from its cgroup ACL record instead.
    """
    if bus == "usb":
        match = _USB_ADDRESS.fullmatch(device)
        return f"/dev/bus/usb/{match.group(1)}/{match.group(2)}" if match is not None else None
    return device if device.startswith("/dev/") else None


def _grant_device(host: _Host, guest: Guest, path: str) -> None:
    """The guest is given the device node ``path`` (another guest that held it lost it)."""
    previous = host.by_device.get(path)
    if previous is not None and previous is not guest and path in previous.devices:
        previous.devices.remove(path)
    if path not in guest.devices:
        if len(guest.devices) >= MAX_ITEMS_PER_GUEST:
            _release_device(host, guest, guest.devices[0])
        guest.devices.append(path)
    host.by_device[path] = guest


def _release_device(host: _Host, guest: Guest, path: str) -> None:
    """The guest gives the device node ``path`` back."""
    if path in guest.devices:
        guest.devices.remove(path)
    if host.by_device.get(path) is guest:
        del host.by_device[path]


def _learn_machine_id(host: _Host, guest: Guest, fields: dict[str, str], success: bool, now: int) -> None:
    if not guest.active:
        guest.state = STARTING
        host.tap_hints[guest.uuid] = now
    if not success:
        return
    vm_context = fields.get("vm-ctx", "?")
    image_context = fields.get("img-ctx", "?")
    model = fields.get("model") or _model_of(vm_context)
    guest.labels[model] = [vm_context, image_context]
    if model == "selinux":
        level = _level(vm_context)
        if level is not None:
            _set_level(host, guest, level)


def _model_of(context: str) -> str:
    """The security model of a label without ``model=`` (libvirt 0.8)."""
    if context.startswith(PROFILE_PREFIX):
        return "apparmor"
    if context.startswith("+"):
        return "dac"
    return "selinux" if context.count(":") >= SELINUX_PARTS_BEFORE_LEVEL else "unknown"


def _level(context: str) -> str | None:
    """The MLS/MCS level of an SELinux context (everything after the third colon)."""
    parts = context.split(":", SELINUX_PARTS_BEFORE_LEVEL)
    return parts[SELINUX_PARTS_BEFORE_LEVEL] if len(parts) > SELINUX_PARTS_BEFORE_LEVEL else None


def _own(host: _Host, guest: Guest, kind: str, value: str) -> None:
    """Add a disk/filesystem/MAC to the guest and its index."""
    items: list[str] = getattr(guest, kind)
    if value not in items:
        if len(items) >= MAX_ITEMS_PER_GUEST:
            _disown(host, guest, kind, items[0])
        items.append(value)
    if kind == "nets":
        host.by_mac[value] = guest
        return
    holders = host.by_image.setdefault(value, [])
    if guest in holders:
        holders.remove(guest)
    holders.insert(0, guest)  # the latest holder first
    del holders[MAX_GUESTS_PER_EVENT:]


def _disown(host: _Host, guest: Guest, kind: str, value: str) -> None:
    """Remove a disk/filesystem/MAC from the guest and its index."""
    items: list[str] = getattr(guest, kind)
    if value in items:
        items.remove(value)
    if kind == "nets":
        if host.by_mac.get(value) is guest:
            del host.by_mac[value]
        return
    holders = host.by_image.get(value)
    if holders is not None and guest in holders:
        holders.remove(guest)
        if not holders:
            del host.by_image[value]


def _set_pids(host: _Host, guest: Guest, pids: list[str]) -> None:
    for old in guest.pids:
        if host.by_pid.get(old) is guest:
            del host.by_pid[old]
    guest.pids = pids[:MAX_ITEMS_PER_GUEST]
    for pid in guest.pids:
        previous = host.by_pid.get(pid)
        if previous is not None and previous is not guest and pid in previous.pids:
            previous.pids.remove(pid)  # the pid was reused: the other guest's process is gone
        host.by_pid[pid] = guest


def _set_level(host: _Host, guest: Guest, level: str) -> None:
    if guest.level is not None and guest.level != level and host.by_level.get(guest.level) is guest:
        del host.by_level[guest.level]
    previous = host.by_level.get(level)
    if previous is not None and previous is not guest:
        previous.level = None  # reused by this start: the other guest no longer carries it
    guest.level = level
    host.by_level[level] = guest


def _deactivate(host: _Host, guest: Guest, state: str, at: float) -> None:
    """The guest's qemu is gone: end its pid, label, tap and scope attributions."""
    guest.state = state
    guest.stopped = at
    _set_pids(host, guest, [])
    if guest.level is not None:
        if host.by_level.get(guest.level) is guest:
            del host.by_level[guest.level]
        guest.level = None
    for tap in guest.taps:
        if host.by_tap.get(tap) is guest:
            del host.by_tap[tap]
    guest.taps = []
    if guest.scope is not None:
        if host.by_scope.get(guest.scope) is guest:
            del host.by_scope[guest.scope]
        guest.scope = None
    for device in list(guest.devices):
        _release_device(host, guest, device)
    host.tap_hints.pop(guest.uuid, None)


def _host_down(host: _Host, at: float) -> None:
    """The host rebooted: running guests went down with it; pids, taps, labels, scopes are void."""
    for guest in host.guests.values():
        if guest.active:
            _deactivate(host, guest, DOWN, at)
    host.by_pid.clear()
    host.by_level.clear()
    host.by_tap.clear()
    host.by_scope.clear()
    host.by_device.clear()
    host.tap_hints.clear()
    host.daemons.clear()
    host.daemon_ended = False
    host.shutting_down = False


def _prune(host: _Host, now: int, cap: int | None) -> None:
    """Forget guests stopped long ago; with a ``cap`` (guests kept at most) also the oldest
    until well under it."""
    host.last_prune = now
    limit = now - FORGET_STOPPED_AFTER_SECONDS
    stale = [g for g in host.guests.values() if not g.active and g.last_seen < limit]
    if cap is not None and len(host.guests) - len(stale) > cap:
        keep = cap * 9 // 10  # room so the next forced sweep is far away
        by_age = sorted(host.guests.values(), key=lambda g: (g.active, g.last_seen))
        stale = by_age[: len(host.guests) - keep]
    for guest in stale:
        _forget(host, guest)


def _forget(host: _Host, guest: Guest) -> None:
    _deactivate(host, guest, guest.state, guest.stopped or 0.0)
    for kind in ("disks", "filesystems", "nets"):
        for value in list(getattr(guest, kind)):
            _disown(host, guest, kind, value)
    host.guests.pop(guest.uuid, None)


def _index(host: _Host, guest: Guest) -> None:
    """Put a loaded guest into the host's indexes."""
    for kind in ("disks", "filesystems", "nets"):
        items: list[str] = getattr(guest, kind)
        setattr(guest, kind, [])
        for value in items[:MAX_ITEMS_PER_GUEST]:
            _own(host, guest, kind, value)
    if not guest.active:
        guest.pids, guest.level, guest.taps, guest.scope, guest.devices = [], None, [], None, []
        return
    _set_pids(host, guest, guest.pids)
    if guest.level is not None:
        _set_level(host, guest, guest.level)
    for tap in guest.taps:
        host.by_tap[tap] = guest
    if guest.scope is not None:
        host.by_scope[guest.scope] = guest
    devices, guest.devices = guest.devices, []
    for device in devices:
        _grant_device(host, guest, device)


def _qemu_execve(records: list[Record]) -> tuple[str, str | None, str] | None:
    """``(uuid, name, pid)`` when the event is qemu's execve with ``-uuid``, else ``None``."""
    for record in records:
        if record.type_id == _EXECVE and _may_name_uuid(record):
            break
    else:
        return None
    execve = [record.fields for record in records if record.type_id == _EXECVE]
    pid = records[0].fields.get("pid")
    if pid is None or not pid.isdigit():
        return None
    args, _ = execve_args_from_records(execve)
    if not args or "qemu" not in args[0].rsplit("/", 1)[-1]:
        return None
    try:
        uuid = args[args.index("-uuid") + 1]
    except (ValueError, IndexError):
        return None
    if not UUID_PATTERN.fullmatch(uuid):
        return None
    name: str | None = None
    if "-name" in args[:-1]:
        # -name guest=NAME,debug-threads=on (current) or -name NAME (old); qemu doubles commas.
        value = args[args.index("-name") + 1]
        value = value[6:] if value.startswith("guest=") else value
        name = re.split(r"(?<!,),(?!,)", value, maxsplit=1)[0].replace(",,", ",") or None
    return uuid.lower(), name, pid


def _may_name_uuid(record: Record) -> bool:
    """Whether an EXECVE record's line holds ``"-uuid"`` (qemu's option naming its guest).

    The answer for a body is remembered by the identity of its shared fields (one dict per body
    text, :attr:`Record.shared`): long argument lists (archives of a thousand files, compiler
    runs) recur, and searching their text again costs more than the lookup.  The header cannot
    hold the quoted word unless the ``node=`` name has a quote, so the body decides for lines
    without one.
    """
    text = record.text
    shared = record.shared
    node = record.node
    if len(text) <= _SEARCHED_EXECVE_CHARS or shared is None or (node is not None and '"' in node):
        return '"-uuid"' in text
    key = id(shared)
    if _PLAIN_EXECVES.entries.get(key) is shared:
        return False
    if '"-uuid"' in text:
        return True
    _PLAIN_EXECVES.remember(key, shared, len(text))
    return False


#: EXECVE lines up to this long are searched each time: that costs less than the memo lookup.
_SEARCHED_EXECVE_CHARS: Final = 512


#: Shared fields of EXECVE bodies without ``"-uuid"``, by identity (an entry keeps its dict alive,
#: so no other dict can take its address while it is here).  Bounded by the characters of their
#: lines, as the parser's memo of long bodies: half a million characters of argument lists.
_PLAIN_EXECVES: Final[BoundedMemo[int, dict[str, str]]] = BoundedMemo(1024, 512 << 10)


# ---------------------------------------------------------------------- attribution helpers


def _process_evidence(
    host: _Host, by_pid: dict[str, Guest], fields: dict[str, str], found: list[tuple[int, Guest, str]] | None
) -> list[tuple[int, Guest, str]] | None:
    """``found`` with what a record's process fields say (``pid``, ``ppid``, ``subj``): the plan
    of SYSCALL records, and the start of the default plan."""
    raw = fields.get("pid")
    if raw is not None and (guest := by_pid.get(raw)) is not None:
        found = _found(found, _PID_SOURCE, guest)
    raw = fields.get("ppid")
    if raw is not None and (guest := by_pid.get(raw)) is not None:
        found = _found(found, _PARENT, guest)
    raw = fields.get("subj")
    if raw is not None and (guest := _label_guest(host, raw)) is not None:
        found = _found(found, _LABEL_SOURCE, guest)
    return found


def _found(found: list[tuple[int, Guest, str]] | None, kind: int, guest: Guest) -> list[tuple[int, Guest, str]]:
    """``found`` (a new list when ``None``) with ``guest`` found by evidence ``kind``."""
    if found is None:
        return [(kind, guest, guest.uuid)]
    found.append((kind, guest, guest.uuid))
    return found


def _label_guest(host: _Host, raw: str) -> Guest | None:
    """The guest a security label names: the SELinux MCS level of an active guest, or an
    AppArmor profile ``libvirt-UUID`` (a guest the host has not seen is reported too, without a
    name: the uuid names it for sure)."""
    level, uuid = LABEL_KEYS.get(raw) or label_keys(raw)
    if level is not None and host.by_level:
        return host.by_level.get(level)
    if uuid is not None:
        return host.guests.get(uuid) or Guest(uuid)
    return None


def _image_evidence(
    host: _Host, raw: str, found: list[tuple[int, Guest, str]] | None
) -> list[tuple[int, Guest, str]] | None:
    """``found`` with the guests a file path names: holders of the disk image or filesystem
    source, the guest a device node is passed through to, the guest whose scope holds it."""
    path, scope = PATH_KEYS.get(raw) or path_keys(raw)
    if path is None:
        return found
    holders = host.by_image.get(path)
    if holders is not None:
        for holder in holders:
            found = _found(found, _PATH, holder)
    guest = host.by_device.get(path)
    if guest is not None:
        found = _found(found, _DEVICE_PATH, guest)
    if scope is not None and (guest := host.by_scope.get(scope)) is not None:
        found = _found(found, _SCOPE_PATH, guest)
    return found


def _scope_guest(host: _Host, raw: str) -> Guest | None:
    """The guest whose machine scope a cgroup path or unit names."""
    scope = SCOPE_PATH_KEYS.get(raw, UNSEEN)
    if scope is UNSEEN:
        scope = scope_path_key(raw)
    return host.by_scope.get(scope) if scope is not None else None


def _answer(found: list[tuple[int, Guest, str]]) -> list[Attribution]:
    """One attribution per guest, with its best evidence, best first."""
    if len(found) > 1:
        found.sort(key=_evidence_kind)
    answer: list[Attribution] = []
    seen: set[str] = set()
    for kind, guest, uuid in found:
        if uuid in seen:
            continue
        seen.add(uuid)
        answer.append(_attribution(uuid, guest.name, kind))
        if len(answer) == MAX_GUESTS_PER_EVENT:
            break
    return answer


def _evidence_kind(item: tuple[int, Guest, str]) -> int:
    return item[0]


#: Attributions by ``(uuid, name, evidence kind)``: they are immutable, and the same few guests
#: are reported again and again.
_ATTRIBUTIONS: Final[BoundedMemo[tuple[str, str | None, int], Attribution]] = BoundedMemo(4096, 1 << 20)


def _attribution(uuid: str, name: str | None, kind: int) -> Attribution:
    """The attribution of guest ``uuid`` (named ``name``) by evidence ``kind`` (shared)."""
    key = (uuid, name, kind)
    attribution = _ATTRIBUTIONS.entries.get(key)
    if attribution is None:
        method, side = _KINDS[kind]
        size = len(uuid) + len(name or "")
        attribution = _ATTRIBUTIONS.remember(key, Attribution(uuid, name, method, side), size)
    return attribution


def _tap_guest(host: _Host, raw: str, record: Record, records: list[Record]) -> Guest | None:
    """The guest of tap ``raw`` in an ANOM_PROMISCUOUS record; learns the tap when the libvirt
    daemon switched it while exactly one guest had a tap opened or a start under way."""
    guest = host.by_tap.get(raw)
    if guest is not None or not host.tap_hints or record.fields.get("prom") == "0":
        return guest
    actor = next((r.fields.get("pid") for r in records if r.type_id == _SYSCALL), None)
    if actor is None or actor not in host.daemons:
        return None
    now = record.sec
    recent = [uuid for uuid, at in host.tap_hints.items() if now - at <= TAP_HINT_SECONDS]
    if len(recent) != len(host.tap_hints):
        host.tap_hints = {uuid: host.tap_hints[uuid] for uuid in recent}
    if len(recent) != 1:
        return None  # none, or concurrent starts: which tap is whose cannot be told
    guest = host.guests.get(recent[0])
    if guest is None:
        return None
    if guest.state == RUNNING:
        del host.tap_hints[guest.uuid]  # a hot-plugged nic: one open, one tap
    if raw not in guest.taps and len(guest.taps) < MAX_ITEMS_PER_GUEST:
        guest.taps.append(raw)
    host.by_tap[raw] = guest
    return guest


# ---------------------------------------------------------------------- state helpers

_GUEST_TEXT_FIELDS: Final = ("name", "virt", "start_reason", "stop_reason", "level", "scope")
_GUEST_LIST_FIELDS: Final = ("pids", "disks", "filesystems", "nets", "taps", "hostdevs", "devices")


def _guest_state(guest: Guest) -> dict[str, Any]:
    return {
        "uuid": guest.uuid,
        "state": guest.state,
        "started": guest.started,
        "stopped": guest.stopped,
        "last_seen": guest.last_seen,
        "labels": {model: list(pair) for model, pair in guest.labels.items()},
        **{key: getattr(guest, key) for key in _GUEST_TEXT_FIELDS},
        **{key: list(getattr(guest, key)) for key in _GUEST_LIST_FIELDS},
    }


def _guest_from_state(item: Any) -> Guest | None:
    if not isinstance(item, Mapping):
        return None
    uuid = item.get("uuid")
    state = item.get("state")
    if not isinstance(uuid, str) or not UUID_PATTERN.fullmatch(uuid) or not isinstance(state, str):
        return None
    guest = Guest(uuid.lower(), state=state, last_seen=_int(item.get("last_seen")))
    for key in _GUEST_TEXT_FIELDS:
        value = item.get(key)
        setattr(guest, key, value if isinstance(value, str) else None)
    for key in _GUEST_LIST_FIELDS:
        setattr(guest, key, _strings(item.get(key))[:MAX_ITEMS_PER_GUEST])
    for key in ("started", "stopped"):
        value = item.get(key)
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        setattr(guest, key, number)
    labels = item.get("labels")
    if isinstance(labels, Mapping):
        guest.labels = {str(model): _strings(pair)[:2] for model, pair in labels.items()}
    return guest


def _strings(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


#: The host of events whose ``node=`` the registry has no entry for: it knows no guest, so only
#: a profile ``libvirt-UUID`` names one.  Attribution never changes it (a tap is learned only
#: with a tap hint, and it has none); learning creates a real host (:meth:`GuestRegistry._host`).
_NO_HOST: Final = _Host()

# First record type -> learner.  SYSCALL events are looked at for qemu's execve separately.
_LEARNERS: Final = {
    _TYPE_NUMBERS.get(type_id, type_id): learner
    for type_id, learner in {
        _VIRT_CONTROL: GuestRegistry._virt_record,
        _VIRT_RESOURCE: GuestRegistry._virt_record,
        _VIRT_MACHINE_ID: GuestRegistry._virt_record,
        _SYSTEM_BOOT: GuestRegistry._host_event,
        _SYSTEM_SHUTDOWN: GuestRegistry._host_event,
        _DAEMON_START: GuestRegistry._host_event,
        _DAEMON_END: GuestRegistry._host_event,
    }.items()
}
