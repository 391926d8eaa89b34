"""The timeline: activities of a hypervisor host scheduled on one clock and written as log lines.

An *activity* (a login, a sudo command, a guest start ...) is a list of :class:`Step` s, each an
event and its delay after the previous step.  New activities arrive at random intervals while
earlier ones are still running, so their events overlap in time as on a real host; a priority
queue keyed by time hands out the next event.  Every event gets the next serial when it is
written, so serials only grow (they restart at a reboot, like the kernel's counter).

The kernel also interleaves *records*: sometimes the records of an event are split around the
next event (never across more than a second, and never after its PROCTITLE, so auparse and
ausearch still assemble it).

Memory does not grow with the log size: only the activities in flight (a bounded number, each a
few dozen records) are held.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from forwarder.generate import catalog, kernel, libvirt, userspace
from forwarder.generate.kernel import (
    execve_event,
    file_event,
    network_event,
    proctitle_record,
    syscall_record,
)
from forwarder.generate.libvirt import Guest, Libvirtd
from forwarder.generate.model import ADMINS, UNSET, Actor, Draft, HostState, Security, Step
from forwarder.generate.options import GeneratorOptions
from forwarder.generate.userspace import LoginSession

#: Mean seconds between the starts of two activities (a moderately busy hypervisor).
MEAN_ARRIVAL_SECONDS: Final = 12.0

#: Share of multi-record events whose records are split around the next event.
RECORD_INTERLEAVE_SHARE: Final = 0.08

#: auparse's ``end_of_event_timeout`` is 2 s; split events only when the next event is less than
#: this many seconds later so no reader closes the event early.
MAX_SPLIT_SECONDS: Final = 1

#: Records per host reboot in long logs (a reboot every ~25k records, at least one when the log
#: is long enough to show one).
RECORDS_PER_REBOOT: Final = 25_000
MIN_RECORDS_FOR_REBOOT: Final = 1_000

#: Share of reboots that are crashes (no shutdown records, running guests never stop).
CRASH_SHARE: Final = 0.35

#: A guest runs at least this long before the scenario stops it (guests mostly run for hours).
MIN_GUEST_RUN_MS: Final = 20 * 60 * 1000

#: Types auditd writes itself, numbered by auditd's own counter, not the kernel's.
AUDITD_OWN_TYPES: Final = frozenset({"DAEMON_START", "DAEMON_END"})

#: Per security model: kernel release, qemu binary, qemu uid (RHEL-like SELinux hosts,
#: Debian-like AppArmor hosts).
HOST_PROFILES: Final[dict[str, tuple[str, str, int]]] = {
    "selinux": ("5.14.0-362.24.1.el9_3.x86_64", "/usr/libexec/qemu-kvm", 107),
    "apparmor": ("6.1.0-18-amd64", "/usr/bin/qemu-system-x86_64", 64055),
    "dac": ("6.1.0-18-amd64", "/usr/bin/qemu-system-x86_64", 107),
    "none": ("5.15.0-91-generic", "/usr/bin/qemu-system-x86_64", 107),
}


@dataclass(slots=True)
class _Activity:
    steps: list[Step]
    index: int
    release: Callable[[], None] | None


class Scenario:
    """One generated log.  Iterate :meth:`lines` once."""

    def __init__(self, options: GeneratorOptions) -> None:
        options.validate()
        self.options = options
        self.rng = random.Random(options.seed)
        kernel_release, qemu_exe, qemu_uid = HOST_PROFILES[options.security]
        self.host = HostState(self.rng, Security(options.security), kernel_release)
        self.qemu_exe = qemu_exe
        self.qemu_uid = qemu_uid
        self.modular = options.libvirt_style == "modern" and self.rng.random() < 0.5
        self.guests = libvirt.make_guests(self.host, options.guests)
        self.daemon = self._new_daemon()
        self.sessions: list[LoginSession] = []
        self.busy: set[str] = set()
        self.clock_ms = options.start * 1000
        self.serial = 0
        self.auditd_serial = 0
        self.count = 0
        self.queue: list[tuple[int, int, _Activity]] = []
        self.sequence = 0
        self.next_arrival = self.clock_ms
        self.pending: tuple[int, list[bytes]] | None = None
        self.prefix = "" if options.node is None else f"node={options.node} "
        self.sshd_master = 0
        kinds = [(kind, weight) for kind, weight in options.mix.items() if weight > 0]
        self.kinds = [kind for kind, _ in kinds]
        self.weights = [weight for _, weight in kinds]
        self.handlers: dict[str, Callable[[], tuple[list[Step], Callable[[], None] | None]]] = {
            "execve": self._execve,
            "file": self._file,
            "network": self._network,
            "avc": self._avc,
            "login": self._login,
            "sudo": self._sudo,
            "service": self._service,
            "cron": self._cron,
            "guest": self._guest,
            "admin": self._admin,
        }
        reboots = 0
        if options.host_reboots and options.records >= MIN_RECORDS_FOR_REBOOT:
            reboots = max(1, options.records // RECORDS_PER_REBOOT)
        self.reboot_at = sorted(int(options.records * self.rng.uniform(0.25, 0.85)) for _ in range(reboots))

    # ------------------------------------------------------------------ driver

    def lines(self) -> Iterator[bytes]:
        """The log, line by line (each ends in ``\\n``)."""
        target = self.options.records
        if target == 0:
            return
        yield from self._boot(first=True)
        while self.count < target:
            if self.reboot_at and self.count >= self.reboot_at[0]:
                self.reboot_at.pop(0)
                yield from self._reboot()
                continue
            head = self.queue[0][0] if self.queue else None
            can_start = self.options.interleave or head is None
            if can_start and (head is None or self.next_arrival <= head):
                start = max(self.next_arrival, self.clock_ms)
                self._start_activity(start)
                gap = self.rng.expovariate(1.0 / MEAN_ARRIVAL_SECONDS)
                self.next_arrival = start + int(gap * 1000)
            else:
                yield from self._step()
        yield from self._drain()
        yield from self._flush_pending()

    def _start_activity(self, at: int) -> None:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        steps, release = self.handlers[kind]()
        self._schedule(at, steps, release)

    def _schedule(self, at: int, steps: list[Step], release: Callable[[], None] | None) -> None:
        if not steps:
            if release is not None:
                release()
            return
        self.sequence += 1
        heapq.heappush(self.queue, (at + steps[0].delay_ms, self.sequence, _Activity(steps, 0, release)))

    def _step(self) -> Iterator[bytes]:
        at, _, activity = heapq.heappop(self.queue)
        self.clock_ms = max(self.clock_ms, at)
        yield from self._emit(activity.steps[activity.index].records)
        activity.index += 1
        if activity.index < len(activity.steps):
            self.sequence += 1
            next_at = self.clock_ms + activity.steps[activity.index].delay_ms
            heapq.heappush(self.queue, (next_at, self.sequence, activity))
        elif activity.release is not None:
            activity.release()

    def _drain(self) -> Iterator[bytes]:
        while self.queue:
            yield from self._step()

    def _run(self, steps: list[Step]) -> Iterator[bytes]:
        """Write ``steps`` now, after everything in flight."""
        yield from self._drain()
        self._schedule(self.clock_ms, steps, None)
        yield from self._drain()

    # ------------------------------------------------------------------ writing

    def _emit(self, records: list[Draft]) -> Iterator[bytes]:
        if not records:
            return
        if records[0].type in AUDITD_OWN_TYPES:
            serial = self.auditd_serial
            self.auditd_serial += 1
        else:
            self.serial += 1
            if self.rng.random() < 0.05:  # events no rule selected still use up serials
                self.serial += self.rng.randint(1, 6)
            serial = self.serial
        sec, msec = divmod(self.clock_ms, 1000)
        head = f"{self.prefix}type="
        stamp = f" msg=audit({sec}.{msec:03d}:{serial}): "
        enriched = self.options.enriched
        lines = [
            (
                f"{head}{draft.type}{stamp}{draft.body}\x1d{draft.enrichment}\n"
                if enriched and draft.enrichment
                else f"{head}{draft.type}{stamp}{draft.body}\n"
            ).encode("utf-8")
            for draft in records
        ]
        self.count += len(lines)
        if self.pending is not None:
            pending_sec, tail = self.pending
            self.pending = None
            if sec - pending_sec >= MAX_SPLIT_SECONDS:
                yield from tail
                yield from lines
            else:
                yield from lines
                yield from tail
            return
        if (
            self.options.interleave
            and len(lines) >= 3
            and records[0].type not in AUDITD_OWN_TYPES
            and self.rng.random() < RECORD_INTERLEAVE_SHARE
        ):
            split = self.rng.randint(1, len(lines) - 1)
            yield from lines[:split]
            self.pending = (sec, lines[split:])
            return
        yield from lines

    def _flush_pending(self) -> Iterator[bytes]:
        if self.pending is not None:
            yield from self.pending[1]
            self.pending = None

    # ------------------------------------------------------------------ host life

    def _new_daemon(self) -> Libvirtd:
        role = "virtqemud" if self.modular else "libvirtd"
        return Libvirtd(
            pid=self.host.new_pid(),
            exe=f"/usr/sbin/{role}",
            role=role,
            subj=self.host.security.subject(role),
            style=self.options.libvirt_style,
            security=self.options.security,
            qemu_uid=self.qemu_uid,
            qemu_exe=self.qemu_exe,
        )

    def _boot(self, first: bool) -> Iterator[bytes]:
        """auditd start, rule loading, boot units, SYSTEM_BOOT, libvirt, runlevel, guest autostart."""
        host, rng = self.host, self.rng
        host.next_pid = rng.randint(500, 900)
        host.session = 1
        host.tap_index = 0
        host.domain_id = 0
        self.serial = rng.randint(3, 60)
        self.auditd_serial = rng.randint(1000, 9999)
        auditd_pid = host.new_pid()
        steps = [Step(0, [userspace.daemon_start(host, auditd_pid, self.options.enriched)])]
        auditctl = Actor(
            host.new_pid(),
            1,
            0,
            0,
            UNSET,
            UNSET,
            "auditctl",
            "/usr/sbin/auditctl",
            host.security.subject("service"),
        )
        for key in catalog.BOOT_RULE_KEYS:
            steps.append(Step(rng.randint(0, 3), self._config_change(auditctl, key)))
        for unit in catalog.BOOT_UNITS:
            steps.append(Step(rng.randint(20, 400), [userspace.service_record(host, unit, True)]))
        steps.append(Step(rng.randint(10, 200), [userspace.utmp_record(host, "SYSTEM_BOOT")]))
        self.daemon = self._new_daemon()
        self.sshd_master = host.new_pid()
        daemon_units = ["virtlockd", self.daemon.role, "libvirt-guests"]
        for unit in daemon_units:
            steps.append(Step(rng.randint(50, 900), [userspace.service_record(host, unit, True)]))
        steps.append(
            Step(rng.randint(100, 2000), [userspace.utmp_record(host, "SYSTEM_RUNLEVEL", ("N", "3"))])
        )
        yield from self._run(steps)
        autostart: list[Step] = []
        for index, guest in enumerate(self.guests):
            if guest.saved:
                reason = "restored"
            elif first:
                if index > 1 and rng.random() < 0.4:
                    continue
                reason = "booted"
            elif guest.away or rng.random() < 0.3:
                continue
            else:
                reason = "booted"
            guest.started_ms = self.clock_ms
            steps = libvirt.start_steps(self.daemon, host, guest, reason)
            autostart += [Step(rng.randint(500, 4000), steps[0].records), *steps[1:]]
        yield from self._run(autostart)
        self.next_arrival = self.clock_ms + rng.randint(1000, 20000)

    def _config_change(self, auditctl: Actor, key: str) -> list[Draft]:
        subj = "" if auditctl.subj is None else f" subj={auditctl.subj}"
        change = Draft(
            "CONFIG_CHANGE",
            f'auid={UNSET} ses={UNSET}{subj} op=add_rule key="{key}" list=4 res=1',
            'AUID="unset"',
        )
        args = ("3", self.host.pointer(stack=True), f"{self.rng.randint(1000, 1200):x}", "0")
        return [
            change,
            syscall_record(auditctl, "sendto", exit_code=self.rng.randint(1000, 1200), args=args, items=0),
            kernel.sockaddr_record("netlink", "", 0),
            proctitle_record(["/sbin/auditctl", "-R", "/etc/audit/audit.rules"]),
        ]

    def _reboot(self) -> Iterator[bytes]:
        """A clean reboot (guests stopped or saved, shutdown records) or a crash (nothing)."""
        rng, host = self.rng, self.host
        crash = rng.random() < CRASH_SHARE
        if crash:
            yield from self._flush_pending()
            for _, _, activity in self.queue:
                if activity.release is not None:
                    activity.release()
            self.queue.clear()
            for guest in self.guests:
                guest.running = False
                guest.saved = False
            self.sessions.clear()
            self.clock_ms += rng.randint(60_000, 600_000)
        else:
            yield from self._drain()
            steps: list[Step] = []
            save = rng.random() < 0.4
            for guest in self.guests:
                if guest.running:
                    steps += libvirt.stop_steps(self.daemon, host, guest, "saved" if save else "shutdown")
            for session in self.sessions:
                steps += userspace.ssh_logout(host, session)
            self.sessions.clear()
            for unit in ("libvirt-guests", self.daemon.role, "virtlockd", "sshd", "crond", "chronyd"):
                steps.append(Step(rng.randint(20, 600), [userspace.service_record(host, unit, False)]))
            steps.append(
                Step(rng.randint(10, 300), [userspace.utmp_record(host, "SYSTEM_RUNLEVEL", ("3", "6"))])
            )
            steps.append(Step(rng.randint(10, 300), [userspace.utmp_record(host, "SYSTEM_SHUTDOWN")]))
            steps.append(Step(rng.randint(10, 300), [userspace.daemon_end(host)]))
            yield from self._run(steps)
            yield from self._flush_pending()
            self.clock_ms += rng.randint(40_000, 180_000)
        yield from self._boot(first=False)

    # ------------------------------------------------------------------ helpers

    def _releaser(self, key: str) -> Callable[[], None]:
        def release() -> None:
            self.busy.discard(key)

        return release

    def _free_session(self) -> LoginSession | None:
        free = [s for s in self.sessions if f"ses{s.ses}" not in self.busy]
        return self.rng.choice(free) if free else None

    def _service_actor(self, comm: str, exe: str, role: str, uid: int = 0, ppid: int = 1) -> Actor:
        return Actor(
            self.host.new_pid(),
            ppid,
            uid,
            uid,
            UNSET,
            UNSET,
            comm[:15],
            exe,
            self.host.security.subject(role),
        )

    def _admin_root(self, session: LoginSession, exe: str) -> Actor:
        """A root task started through sudo in ``session``."""
        return Actor(
            self.host.new_pid(),
            self.host.new_pid(),
            0,
            0,
            session.uid,
            session.ses,
            exe.rsplit("/", 1)[-1][:15],
            exe,
            session.shell.subj,
            tty=session.tty,
        )

    # ------------------------------------------------------------------ activity kinds

    def _execve(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host = self.rng, self.host
        roll = rng.random()
        session = self._free_session()
        if roll < 0.45 and session is not None:
            command = rng.choice(catalog.USER_COMMANDS)
            shell = session.shell
            task = Actor(
                host.new_pid(),
                shell.pid,
                session.uid,
                session.uid,
                session.uid,
                session.ses,
                command.argv[0].rsplit("/", 1)[-1][:15],
                command.exe,
                shell.subj,
                tty=session.tty,
            )
            cwd = f"/home/{session.name}"
            return [Step(rng.randint(0, 500), execve_event(host, task, list(command.argv), cwd))], None
        if roll < 0.85:
            runner, command, role, uid = rng.choice(catalog.SERVICE_COMMANDS)
            ppid = self.daemon.pid if runner == "libvirtd" else 1
            subj = self.daemon.subj if runner == "libvirtd" else host.security.subject(role)
            task = Actor(
                host.new_pid(),
                ppid,
                uid,
                uid,
                UNSET,
                UNSET,
                command.exe.rsplit("/", 1)[-1][:15],
                command.exe,
                subj,
            )
            return [Step(rng.randint(0, 500), execve_event(host, task, list(command.argv), "/"))], None
        if roll < 0.95:
            repeat = rng.randint(130, 300)
            argv = ["/bin/sh", "-c", catalog.LONG_SCRIPT_LINE * repeat]
            task = self._service_actor("sh", "/usr/bin/bash", "cronjob")
            return [Step(rng.randint(0, 500), execve_event(host, task, argv, "/root"))], None
        count = rng.randint(400, 900)
        argv = ["tar", "czf", "/srv/backup/guest-logs.tgz"]
        argv += [f"/var/log/libvirt/qemu/guest-{index:04d}.log" for index in range(count)]
        task = self._service_actor("tar", "/usr/bin/tar", "cronjob")
        return [Step(rng.randint(0, 500), execve_event(host, task, argv, "/var/log/libvirt"))], None

    def _file(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host = self.rng, self.host
        watched = rng.choice(catalog.WATCHED_FILES)
        session = self._free_session()
        if rng.random() < 0.1 and session is not None:
            path = rng.choice(catalog.FORBIDDEN_FILES)
            task = Actor(
                host.new_pid(),
                session.shell.pid,
                session.uid,
                session.uid,
                session.uid,
                session.ses,
                "cat",
                "/usr/bin/cat",
                session.shell.subj,
                tty=session.tty,
            )
            steps = file_event(
                host,
                task,
                "open",
                path,
                cwd=f"/home/{session.name}",
                argv=["cat", path],
                errno="EACCES",
                keys=("access",),
                mode="0100600",
            )
            return [Step(0, steps)], None
        if session is not None and rng.random() < 0.6:
            task = self._admin_root(session, "/usr/bin/vim")
            cwd = f"/home/{session.name}"
        else:
            task = self._service_actor("python3", "/usr/bin/python3.11", "service")
            cwd = "/"
        operation = rng.choices(("open", "create", "rename", "chmod", "unlink"), (50, 15, 15, 10, 10))[0]
        argv = [task.comm, watched.path]
        errno = "ENOENT" if operation == "open" and rng.random() < 0.05 else None
        target = watched.path + "~" if operation == "rename" else None
        steps = file_event(
            host,
            task,
            operation,
            watched.path,
            cwd=cwd,
            argv=argv,
            owner=watched.owner,
            mode=watched.mode,
            errno=errno,
            keys=(watched.key,),
            target=target,
        )
        return [Step(0, steps)], None

    def _network(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host = self.rng, self.host
        roll = rng.random()
        if roll < 0.3:
            family, address, port, command, role, uid = rng.choice(catalog.OUTBOUND_PEERS)
            task = self._service_actor(
                command.argv[0].rsplit("/", 1)[-1],
                command.exe,
                "admin" if role == "admin" else "service",
                uid,
            )
            if role == "admin":
                task.auid, task.ses, task.tty = uid, rng.randint(1, 20), "pts0"
            exit_code = rng.choice((0, 0, -kernel.ERRNO["EINPROGRESS"], -kernel.ERRNO["ECONNREFUSED"]))
            events = network_event(
                host, task, "connect", family, address, port, argv=list(command.argv), exit_code=exit_code
            )
        elif roll < 0.5:
            _, _, addr = rng.choice(ADMINS)
            family = "inet6" if ":" in addr else "inet"
            task = Actor(
                self.sshd_master, 1, 0, 0, UNSET, UNSET, "sshd", userspace.SSHD, host.security.subject("sshd")
            )
            events = network_event(
                host,
                task,
                "accept4",
                family,
                addr,
                rng.randint(40000, 65000),
                argv=["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"],
                exit_code=rng.randint(4, 12),
            )
        elif roll < 0.65:
            running = [g for g in self.guests if g.running and g.uuid not in self.busy]
            if running and rng.random() < 0.6:
                guest = rng.choice(running)
                task = libvirt.qemu_actor(self.daemon, guest)
                port = 5900 + self.guests.index(guest)
                events = network_event(
                    host, task, "bind", "inet", "127.0.0.1", port, argv=libvirt.qemu_argv(self.daemon, guest)
                )
            else:
                task = self._service_actor("dnsmasq", "/usr/sbin/dnsmasq", "dnsmasq", 990)
                events = network_event(
                    host,
                    task,
                    "bind",
                    "inet",
                    "192.168.122.1",
                    53,
                    argv=["/usr/sbin/dnsmasq", "--conf-file=/var/lib/libvirt/dnsmasq/default.conf"],
                )
        elif roll < 0.9:
            path, command, role = rng.choice(catalog.UNIX_SOCKETS)
            task = self._service_actor(command.argv[0].rsplit("/", 1)[-1], command.exe, role)
            events = network_event(host, task, "connect", "unix", path, 0, argv=list(command.argv))
            if rng.random() < 0.5:
                daemon = self.daemon.actor
                accept = network_event(
                    host,
                    daemon,
                    "accept4",
                    "unix",
                    "",
                    0,
                    argv=[self.daemon.exe, "--timeout", "120"],
                    exit_code=rng.randint(18, 40),
                )
                return [Step(0, events), Step(rng.randint(0, 3), accept)], None
        else:
            task = self.daemon.actor
            events = network_event(
                host, task, "bind", "netlink", "", task.pid, argv=[self.daemon.exe, "--timeout", "120"]
            )
        return [Step(0, events)], None

    def _avc(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host = self.rng, self.host
        running = [g for g in self.guests if g.running and g.uuid not in self.busy]
        security = self.options.security
        if running and security in ("selinux", "apparmor") and rng.random() < 0.6:
            guest = rng.choice(running)
            others = [g for g in self.guests if g is not guest]
            # The denial comes seconds later: the guest may not stop before it.
            self.busy.add(guest.uuid)
            return libvirt.denial_steps(self.daemon, host, guest, others), self._releaser(guest.uuid)
        if security == "selinux":
            task = self._service_actor("logrotate", "/usr/sbin/logrotate", "logrotate")
            events = kernel.selinux_avc_event(
                host,
                task,
                perms="write",
                target="/var/log/libvirt/qemu/web01.log",
                tcontext="system_u:object_r:virt_log_t:s0",
                tclass="file",
                argv=["/usr/sbin/logrotate", "/etc/logrotate.conf"],
            )
            return [Step(0, events)], None
        if security == "apparmor":
            task = self._service_actor("dnsmasq", "/usr/sbin/dnsmasq", "dnsmasq", 990)
            events = kernel.apparmor_avc_event(
                host,
                task,
                profile="/usr/sbin/dnsmasq",
                target="/etc/dnsmasq.d/custom.conf",
                mask="r",
                owner=0,
                argv=["/usr/sbin/dnsmasq", "--conf-file=/var/lib/libvirt/dnsmasq/default.conf"],
            )
            return [Step(0, events)], None
        return self._file()

    def _login(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host = self.rng, self.host
        roll = rng.random()
        if roll < 0.45 and len(self.sessions) < 4:
            name, uid, addr = rng.choice(ADMINS)
            login, opened = userspace.ssh_login(host, name, uid, addr)
            key = f"ses{opened.ses}"
            self.busy.add(key)
            self.sessions.append(opened)
            return login, self._releaser(key)
        session = self._free_session()
        if roll < 0.8 and session is not None:
            self.sessions.remove(session)
            return userspace.ssh_logout(host, session), None
        attempts: list[Step] = []
        for _ in range(rng.randint(1, 3)):
            attempts += userspace.failed_ssh(
                host, rng.choice(catalog.GUESSED_ACCOUNTS), rng.choice(catalog.ATTACKERS)
            )
        return attempts, None

    def _sudo(self) -> tuple[list[Step], Callable[[], None] | None]:
        session = self._free_session()
        if session is None:
            return self._login()
        command = self.rng.choice(catalog.ADMIN_COMMANDS)
        allowed = not (session.name == "carol" and self.rng.random() < 0.3)
        steps, _ = userspace.sudo_command(
            self.host, session, list(command.argv), command.exe, f"/home/{session.name}", allowed=allowed
        )
        key = f"ses{session.ses}"
        self.busy.add(key)
        return steps, self._releaser(key)

    def _service(self) -> tuple[list[Step], Callable[[], None] | None]:
        unit = self.rng.choice(catalog.TRANSIENT_UNITS)
        return [
            Step(0, [userspace.service_record(self.host, unit, True)]),
            Step(self.rng.randint(200, 60000), [userspace.service_record(self.host, unit, False)]),
        ], None

    def _cron(self) -> tuple[list[Step], Callable[[], None] | None]:
        job = self.rng.choice(catalog.CRON_JOBS)
        return userspace.cron_job(self.host, list(job.argv), job.exe), None

    def _guest(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host, daemon = self.rng, self.host, self.daemon
        free = [g for g in self.guests if g.uuid not in self.busy]
        if not free:
            return self._file()
        guest: Guest = rng.choice(free)
        if guest.running:
            roll = rng.random()
            if roll < 0.15 and self.clock_ms - guest.started_ms >= MIN_GUEST_RUN_MS:
                reasons, weights = zip(*libvirt.STOP_REASONS, strict=True)
                steps = libvirt.stop_steps(daemon, host, guest, rng.choices(reasons, weights)[0])
            elif roll < 0.55:
                steps = libvirt.hotplug_steps(daemon, host, guest)
            elif roll < 0.75 or self.options.security not in ("selinux", "apparmor"):
                steps = libvirt.guest_io_steps(daemon, host, guest)
            else:
                steps = libvirt.denial_steps(daemon, host, guest, [g for g in self.guests if g is not guest])
        elif guest.away:
            guest.started_ms = self.clock_ms
            steps = libvirt.start_steps(daemon, host, guest, "migrated")
        elif guest.saved:
            guest.started_ms = self.clock_ms
            steps = libvirt.start_steps(daemon, host, guest, "restored")
        else:
            guest.started_ms = self.clock_ms
            fail = rng.random() < 0.1
            reason = "from-snapshot" if rng.random() < 0.12 else "booted"
            steps = libvirt.start_steps(daemon, host, guest, reason, fail=fail)
        self.busy.add(guest.uuid)
        return steps, self._releaser(guest.uuid)

    def _admin(self) -> tuple[list[Step], Callable[[], None] | None]:
        rng, host = self.rng, self.host
        session = self._free_session()
        roll = rng.random()
        if session is None:
            if roll < 0.5:
                task = self._service_actor("su", "/usr/bin/su", "service", 65534)
                return [Step(0, kernel.setuid_event(host, task, 0, ["su", "-"], allowed=False))], None
            return self._file()
        if roll < 0.35:
            module = rng.choice(catalog.MODULES)
            task = self._admin_root(session, "/usr/sbin/modprobe" if roll < 0.25 else "/usr/sbin/insmod")
            task.subj = host.security.subject("insmod") if task.subj is not None else None
            by_fd = task.exe.endswith("modprobe")
            argv = (
                ["modprobe", module]
                if by_fd
                else ["insmod", f"/usr/lib/modules/{host.kernel}/extra/{module}.ko"]
            )
            return [Step(0, kernel.module_event(host, task, module, argv, by_fd))], None
        if roll < 0.6:
            killer = self._admin_root(session, "/usr/bin/kill")
            victim = self._service_actor("python3", "/usr/bin/python3.11", "service", 1001)
            return [
                Step(
                    0, kernel.kill_event(host, killer, victim, rng.choice((9, 15)), ["kill", str(victim.pid)])
                )
            ], None
        if roll < 0.8:
            task = Actor(
                host.new_pid(),
                session.shell.pid,
                session.uid,
                session.uid,
                session.uid,
                session.ses,
                "newgrp",
                "/usr/bin/newgrp",
                session.shell.subj,
                tty=session.tty,
                euid=0,
            )
            return [
                Step(0, kernel.setuid_event(host, task, session.uid, ["newgrp", "kvm"], allowed=True))
            ], None
        watched = rng.choice(catalog.WATCHED_FILES)
        task = self._admin_root(session, "/usr/bin/chmod")
        events = file_event(
            host,
            task,
            "chmod",
            watched.path,
            cwd=f"/home/{session.name}",
            argv=["chmod", "0640", watched.path],
            owner=watched.owner,
            mode="0100640",
            keys=("perm-change", watched.key),
        )
        return [Step(0, events)], None
