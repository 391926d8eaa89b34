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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from forwarder.audit import values
from forwarder.audit.execve import execve_args_from_records
from forwarder.audit.record import Event, Record

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
_EXECVE: Final = 1309
_VIRT_CONTROL: Final = 2500
_VIRT_RESOURCE: Final = 2501
_VIRT_MACHINE_ID: Final = 2502

_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_UUID_LENGTH: Final = 36
#: AppArmor profile of a guest: ``libvirt-`` + uuid (``docs/virt-audit.md`` §1.4).
_PROFILE_PREFIX: Final = "libvirt-"
_PROFILE_UUID_END: Final = len(_PROFILE_PREFIX) + _UUID_LENGTH
#: Colon-separated parts of an SELinux context before its MLS/MCS level.
_SELINUX_PARTS_BEFORE_LEVEL: Final = 3
#: Directory of systemd's machine scopes in a cgroup path.
_MACHINE_SLICE: Final = "/machine.slice/"
_SCOPE_SUFFIX: Final = ".scope"

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

#: Evidence kind -> (method, side).  Paths give image or cgroup evidence (:func:`_path_guests`).
_KINDS: Final[Mapping[int, tuple[str, str]]] = {
    0: (BY_UUID, TARGET),
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

#: Record type number -> the fields to look at and what each is evidence of.
_PLANS: Final[Mapping[int, tuple[tuple[str, int], ...]]] = {
    _SYSCALL: (("pid", _PID_SOURCE), ("ppid", _PARENT), ("subj", _LABEL_SOURCE)),
    1302: (("name", _PATH), ("obj", _LABEL_TARGET)),  # PATH
    1307: (("cwd", _SCOPE_PATH),),  # CWD
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
    1327: (),  # PROCTITLE
    1306: (),  # SOCKADDR
    _VIRT_CONTROL: (),
    _VIRT_RESOURCE: (),
    _VIRT_MACHINE_ID: (),
}
#: Any other record: its sender or subject process.
_DEFAULT_PLAN: Final = (("pid", _PID_SOURCE), ("ppid", _PARENT), ("subj", _LABEL_SOURCE), ("unit", _SCOPE_PATH))

#: A plan split by the index each field is looked up in: (pid fields, label fields, path fields,
#: other fields), so that the per-record loop does no dispatch.  ``None``: nothing to look at.
_SplitPlan = tuple[
    tuple[tuple[str, int], ...], tuple[tuple[str, int], ...], tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]
]


def _split_plan(plan: tuple[tuple[str, int], ...]) -> _SplitPlan | None:
    groups: tuple[list[tuple[str, int]], ...] = ([], [], [], [])
    for key, kind in plan:
        if kind in (_PID_SOURCE, _PID_TARGET, _PARENT):
            groups[0].append((key, kind))
        elif kind in (_LABEL_SOURCE, _LABEL_TARGET):
            groups[1].append((key, kind))
        elif kind in (_PATH, _SCOPE_PATH):
            groups[2].append((key, kind))
        else:
            groups[3].append((key, kind))
    return (tuple(groups[0]), tuple(groups[1]), tuple(groups[2]), tuple(groups[3])) if plan else None


_SPLIT_PLANS: Final[Mapping[int, _SplitPlan | None]] = {type_id: _split_plan(plan) for type_id, plan in _PLANS.items()}
_DEFAULT_SPLIT_PLAN: Final = _split_plan(_DEFAULT_PLAN)
#: Marks a context not seen yet in :data:`_LEVELS` (``None`` is a cached answer).
_NO_LEVEL: Final = "\0"


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
    """

    __slots__ = ("_hosts",)

    def __init__(self) -> None:
        self._hosts: dict[str | None, _Host] = {}

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

    def observe(self, event: Event) -> list[Attribution]:
        """Learn from ``event`` and return the guests it concerns (best evidence first).

        Args:
            event: the next assembled event, in emission order.

        Returns:
            At most :data:`MAX_GUESTS_PER_EVENT` attributions, one per guest; empty when the
            event concerns no known guest.  Never raises for bad input.
        """
        records = event.records
        if not records:
            return []
        first = records[0].type_id
        if first in _LEARNERS or first == _SYSCALL:
            return self._observe_learning(event, first)
        host = self._hosts.get(event.node)
        return self._attribute(host, records) if host is not None else self._attribute_unknown(records)

    def _observe_learning(self, event: Event, first: int) -> list[Attribution]:
        records = event.records
        if first == _SYSCALL:
            execve = _qemu_execve(records)
            if execve is None:
                host = self._hosts.get(event.node)
                return self._attribute(host, records) if host is not None else self._attribute_unknown(records)
            host = self._host(event.node, event.sec)
            uuid, name, pid = execve
            guest = self._learn_guest(host, uuid, name, None, event.sec)
            if not guest.active:
                guest.state = STARTING
            _set_pids(host, guest, [pid])
            found = self._attribute(host, records)
            return found if found else [Attribution(guest.uuid, guest.name, BY_UUID, TARGET)]
        learner = _LEARNERS[first]
        host = self._host(event.node, event.sec)
        return learner(self, host, event)

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
            if len(host.guests) > MAX_GUESTS_PER_HOST:
                _prune(host, now, force=True)
        if name is not None:
            guest.name = name
        if virt is not None:
            guest.virt = virt
        guest.last_seen = now
        if now - host.last_prune >= PRUNE_INTERVAL_SECONDS:
            _prune(host, now, force=False)
        return guest

    def _virt_record(self, host: _Host, event: Event) -> list[Attribution]:
        """VIRT_CONTROL / VIRT_RESOURCE / VIRT_MACHINE_ID: learn, and attribute by uuid."""
        record = event.records[0]
        fields = record.fields
        raw_uuid = fields.get("uuid")
        if raw_uuid is None or len(raw_uuid) != _UUID_LENGTH or not _UUID.fullmatch(raw_uuid):
            return []  # e.g. container engines' VIRT_CONTROL with vm=? and no uuid
        sender = fields.get("pid")
        if sender is not None and len(host.daemons) < MAX_DAEMON_PIDS:
            host.daemons.add(sender)
        now = event.sec
        virt = fields.get("virt")
        guest = self._learn_guest(host, raw_uuid.lower(), _name(fields.get("vm")), virt, now)
        success = fields.get("res", "success").strip("'\"") == "success"
        type_id = record.type_id
        if type_id == _VIRT_CONTROL:
            _learn_control(host, guest, fields, success, event.sec + event.msec / 1000)
        elif type_id == _VIRT_RESOURCE:
            _learn_resource(host, guest, fields, success, now)
        else:
            _learn_machine_id(host, guest, fields, success, now)
        return [Attribution(guest.uuid, guest.name, BY_UUID, TARGET)]

    def _host_event(self, host: _Host, event: Event) -> list[Attribution]:
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
        return []

    # ------------------------------------------------------------------ attribution

    def _attribute(self, host: _Host, records: list[Record]) -> list[Attribution]:
        found: list[tuple[int, Guest, str]] | None = None
        by_pid, by_level = host.by_pid, host.by_level
        paths_known = bool(host.by_image or host.by_scope or host.by_device)
        for record in records:
            plan = _SPLIT_PLANS.get(record.type_id, _DEFAULT_SPLIT_PLAN)
            if plan is None:
                continue
            fields = record.fields
            pids, labels, paths, others = plan
            for key, kind in pids:
                raw = fields.get(key)
                if raw is not None and (guest := by_pid.get(raw)) is not None:
                    found = _add(found, kind, guest)
            for key, kind in labels:
                raw = fields.get(key)
                if raw is None:
                    continue
                if by_level:
                    level = _selinux_level(raw)
                    guest = by_level.get(level) if level is not None else _profile_guest(host, raw)
                else:
                    guest = _profile_guest(host, raw)
                if guest is not None:
                    found = _add(found, kind, guest)
            if paths_known:
                for key, kind in paths:
                    raw = fields.get(key)
                    if raw is not None:
                        found = _path_guests(host, raw, kind, found)
            for key, kind in others:
                raw = fields.get(key)
                if raw is None:
                    continue
                if kind == _TAP:
                    guest = _tap_guest(host, raw, record, records)
                elif host.by_mac:
                    guest = host.by_mac.get(values.unquote(raw).lower())
                else:
                    continue
                if guest is not None:
                    found = _add(found, kind, guest)
        return _answer(found) if found else []

    def _attribute_unknown(self, records: list[Record]) -> list[Attribution]:
        """A host with no learned guests: only an AppArmor profile can name a guest."""
        found: list[tuple[int, Guest, str]] | None = None
        for record in records:
            fields = record.fields
            for key, kind in _PLANS.get(record.type_id, _DEFAULT_PLAN):
                if kind in (_LABEL_SOURCE, _LABEL_TARGET):
                    raw = fields.get(key)
                    if raw is not None:
                        guest = _profile_guest(None, raw)
                        if guest is not None:
                            found = _add(found, kind, guest)
        return _answer(found) if found else []

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
                kept = list(hints.items())[:MAX_GUESTS_PER_HOST]
                host.tap_hints = {str(key): _int(value) for key, value in kept}
            guests = entry.get("guests")
            loaded = [_guest_from_state(item) for item in guests] if isinstance(guests, list) else []
            ordered = sorted((g for g in loaded if g is not None), key=lambda g: g.started or 0.0)
            for guest in ordered[-MAX_GUESTS_PER_HOST:]:
                host.guests[guest.uuid] = guest
                _index(host, guest)
        return registry


# ---------------------------------------------------------------------- learning helpers


def _name(raw: str | None) -> str | None:
    """The decoded ``vm=`` name, ``None`` when unset."""
    return _text(raw) if raw is not None else None


def _text(raw: str) -> str | None:
    """A libvirt value decoded (quoted, hex, or libvirt 0.8's single quotes); ``None`` when unset."""
    if values.is_unset(raw):
        return None
    if raw[:1] == "'":
        text = raw.strip("'")
        return text if text and text != "?" else None
    text = values.decode_value(raw)
    return text if text and text != "?" else None


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
            if path is not None and _HOSTDEV_NODE.fullmatch(path):
                if reason == _CGROUP_GRANT:
                    _grant_device(host, guest, path)
                elif reason == _CGROUP_REVOKE:
                    _release_device(host, guest, path)
        if not guest.active:
            host.tap_hints[guest.uuid] = now  # a start in progress (libvirt 0.8 writes no net opens)
        cgroup = _text(fields.get("cgroup", "?"))
        scope = scope_of(cgroup) if cgroup is not None else None
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
    if context.startswith(_PROFILE_PREFIX):
        return "apparmor"
    if context.startswith("+"):
        return "dac"
    return "selinux" if context.count(":") >= _SELINUX_PARTS_BEFORE_LEVEL else "unknown"


def _level(context: str) -> str | None:
    """The MLS/MCS level of an SELinux context (everything after the third colon)."""
    parts = context.split(":", _SELINUX_PARTS_BEFORE_LEVEL)
    return parts[_SELINUX_PARTS_BEFORE_LEVEL] if len(parts) > _SELINUX_PARTS_BEFORE_LEVEL else None


def scope_of(path: str) -> str | None:
    """The systemd machine scope a cgroup path lies in, or ``None``.

    ``/sys/fs/cgroup/machine.slice/machine-qemu\\x2d1\\x2dweb01.scope/libvirt/`` (cgroup v2) and
    ``/sys/fs/cgroup/devices/machine.slice/machine-qemu\\x2d1\\x2dweb01.scope`` (v1) both give
    ``machine-qemu\\x2d1\\x2dweb01.scope``.
    """
    at = path.find(_MACHINE_SLICE)
    if at < 0:
        return None
    scope = path[at + len(_MACHINE_SLICE) :].split("/", 1)[0]
    return scope if scope.endswith(_SCOPE_SUFFIX) else None


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


def _prune(host: _Host, now: int, force: bool) -> None:
    """Forget guests stopped long ago; with ``force`` also the oldest until under the cap."""
    host.last_prune = now
    limit = now - FORGET_STOPPED_AFTER_SECONDS
    stale = [g for g in host.guests.values() if not g.active and g.last_seen < limit]
    if force and len(host.guests) - len(stale) > MAX_GUESTS_PER_HOST:
        keep = MAX_GUESTS_PER_HOST * 9 // 10  # room so the next forced sweep is far away
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
        if record.type_id == _EXECVE and '"-uuid"' in record.text:
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
    if not _UUID.fullmatch(uuid):
        return None
    name: str | None = None
    if "-name" in args[:-1]:
        # -name guest=NAME,debug-threads=on (current) or -name NAME (old); qemu doubles commas.
        value = args[args.index("-name") + 1]
        value = value[6:] if value.startswith("guest=") else value
        name = re.split(r"(?<!,),(?!,)", value, maxsplit=1)[0].replace(",,", ",") or None
    return uuid.lower(), name, pid


# ---------------------------------------------------------------------- attribution helpers


def _add(found: list[tuple[int, Guest, str]] | None, kind: int, guest: Guest) -> list[tuple[int, Guest, str]]:
    if found is None:
        return [(kind, guest, guest.uuid)]
    found.append((kind, guest, guest.uuid))
    return found


def _answer(found: list[tuple[int, Guest, str]]) -> list[Attribution]:
    """One attribution per guest, with its best evidence, best first."""
    if len(found) > 1:
        found.sort(key=lambda item: item[0])
    answer: list[Attribution] = []
    seen: set[str] = set()
    for kind, guest, uuid in found:
        if uuid in seen:
            continue
        seen.add(uuid)
        method, side = _KINDS[kind]
        answer.append(Attribution(uuid, guest.name, method, side))
        if len(answer) == MAX_GUESTS_PER_EVENT:
            break
    return answer


def _label_guest(host: _Host, raw: str) -> Guest | None:
    """The guest a security label belongs to: SELinux MCS level of an active guest, or AppArmor
    profile ``libvirt-UUID``."""
    if host.by_level:
        level = _selinux_level(raw)
        if level is not None:
            return host.by_level.get(level)
    return _profile_guest(host, raw)


#: SELinux context -> its level (``None``: not a context with a level).  Bounded: a host has few
#: distinct contexts; the cache starts over when a stream of odd values fills it.
_LEVELS: dict[str, str | None] = {}
_MAX_LEVELS: Final = 4096


def _selinux_level(raw: str) -> str | None:
    """The MCS/MLS level of a SELinux context as written (``user:role:type:LEVEL``)."""
    level = _LEVELS.get(raw, _NO_LEVEL)
    if level is not _NO_LEVEL:
        return level
    parts = raw.split(":", _SELINUX_PARTS_BEFORE_LEVEL)
    level = parts[_SELINUX_PARTS_BEFORE_LEVEL] if len(parts) > _SELINUX_PARTS_BEFORE_LEVEL else None
    if len(_LEVELS) >= _MAX_LEVELS:
        _LEVELS.clear()
    _LEVELS[raw] = level
    return level


def _profile_guest(host: _Host | None, raw: str) -> Guest | None:
    """The guest of an AppArmor profile (``libvirt-UUID``, ``"libvirt-UUID"``, ``libvirt-UUID (enforce)``).

    The uuid names the guest for sure, so a guest the registry has not seen yet is reported too
    (without a name).
    """
    start = 1 if raw[:1] == '"' else 0
    if not raw.startswith(_PROFILE_PREFIX, start):
        return None
    uuid = raw[start + len(_PROFILE_PREFIX) : start + _PROFILE_UUID_END]
    if not _UUID.fullmatch(uuid):
        return None
    uuid = uuid.lower()
    guest = host.guests.get(uuid) if host is not None else None
    return guest if guest is not None else Guest(uuid)


def _path_guests(
    host: _Host, raw: str, kind: int, found: list[tuple[int, Guest, str]] | None
) -> list[tuple[int, Guest, str]] | None:
    """Guests owning the image at ``raw`` or whose cgroup scope contains it."""
    first = raw[:1]
    if first == "/":
        path = raw
    elif first == '"' and raw[-1] == '"' and raw.find('"', 1) == len(raw) - 1:
        path = raw[1:-1]  # what decode_value gives, without the call
    else:
        path = values.decode_value(raw)
    if path[:1] != "/":
        if kind != _SCOPE_PATH:
            return found
        path = "/" + path  # unit= names a scope without a directory
    if kind == _PATH and host.by_image:
        holders = host.by_image.get(path)
        if holders is not None:
            for guest in holders:
                found = _add(found, _PATH, guest)
    if kind == _PATH and host.by_device:
        user = host.by_device.get(path)
        if user is not None:
            found = _add(found, _DEVICE_PATH, user)
    if host.by_scope and (kind == _SCOPE_PATH or _MACHINE_SLICE in path):
        scope = scope_of(path) if _MACHINE_SLICE in path else path[1:]
        owner = host.by_scope.get(scope) if scope is not None else None
        if owner is not None:
            found = _add(found, _SCOPE_PATH, owner)
    return found


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
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid) or not isinstance(state, str):
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


# First record type -> learner.  SYSCALL events are looked at for qemu's execve separately.
_LEARNERS: Final = {
    _VIRT_CONTROL: GuestRegistry._virt_record,
    _VIRT_RESOURCE: GuestRegistry._virt_record,
    _VIRT_MACHINE_ID: GuestRegistry._virt_record,
    _SYSTEM_BOOT: GuestRegistry._host_event,
    _SYSTEM_SHUTDOWN: GuestRegistry._host_event,
    _DAEMON_START: GuestRegistry._host_event,
    _DAEMON_END: GuestRegistry._host_event,
}
