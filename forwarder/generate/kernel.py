"""Kernel records: syscall events (SYSCALL, EXECVE, SOCKADDR, OBJ_PID, CWD, PATH, PROCTITLE),
SELinux and AppArmor AVC denials, and the ANOM_* anomalies.

Record order inside a syscall event follows ``audit_log_exit()`` in ``kernel/auditsc.c``: SYSCALL,
the special record of the call (EXECVE, KERN_MODULE), SOCKADDR, OBJ_PID, CWD, the PATH items,
PROCTITLE last.  AVC records are written while the call runs, so they come before SYSCALL.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from forwarder.generate.encoding import hex_upper, proctitle, rule_key, untrusted
from forwarder.generate.model import Actor, Draft, EventDraft, HostState, group_name, inode_of, user_name

#: x86_64 syscall numbers (``arch/x86/entry/syscalls/syscall_64.tbl``).
SYSCALL_NUMBERS: Final[dict[str, int]] = {
    "write": 1,
    "ioctl": 16,
    "connect": 42,
    "sendto": 44,
    "bind": 49,
    "execve": 59,
    "kill": 62,
    "rename": 82,
    "chmod": 90,
    "setuid": 105,
    "init_module": 175,
    "openat": 257,
    "unlinkat": 263,
    "accept4": 288,
    "finit_module": 313,
}

#: ``AUDIT_ARCH_X86_64`` as the kernel writes it.
ARCH_X86_64: Final = "c000003e"

#: errno values used for failed calls (negated in ``exit=``).
ERRNO: Final[dict[str, int]] = {
    "EPERM": 1,
    "ENOENT": 2,
    "EACCES": 13,
    "EADDRINUSE": 98,
    "ECONNREFUSED": 111,
    "EINPROGRESS": 115,
}

#: The kernel starts a new EXECVE record when one would grow past this many bytes
#: (``MAX_EXECVE_AUDIT_LEN`` in ``kernel/auditsc.c``).
MAX_EXECVE_AUDIT_LEN: Final = 7500

#: Hex characters of one ``aN[k]=`` chunk of a split argument: what fits in one EXECVE record
#: next to the record's own text.
EXECVE_CHUNK_HEX: Final = 7000

#: The ELF interpreter every dynamically linked exec also resolves (PATH item 1).
LD_SO: Final = "/lib64/ld-linux-x86-64.so.2"

#: ``dev=`` of a path by file system (prefix -> major:minor); the root file system is LVM.
DEVICES: Final[tuple[tuple[str, str], ...]] = (
    ("/dev/", "00:05"),
    ("/run/", "00:19"),
    ("/dev/shm/", "00:18"),
    ("/home/", "fd:02"),
    ("/var/lib/libvirt/images/", "fd:03"),
    ("/", "fd:00"),
)

#: PATH capability fields of kernels >= 4.x.
_CAPS: Final = "cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0"


def device_of(path: str) -> str:
    """``dev=`` of ``path`` from :data:`DEVICES`."""
    for prefix, dev in DEVICES:
        if path.startswith(prefix):
            return dev
    return "fd:00"


def syscall_enrichment(name: str, actor: Actor) -> str:
    """ENRICHED interpretations auditd appends to a SYSCALL record."""
    uid = user_name(actor.uid)
    euid = user_name(actor.effective_uid)
    gid = group_name(actor.gid)
    egid = group_name(actor.effective_gid)
    return (
        f'ARCH=x86_64 SYSCALL={name} AUID="{user_name(actor.auid)}" UID="{uid}" GID="{gid}" '
        f'EUID="{euid}" SUID="{euid}" FSUID="{euid}" EGID="{egid}" SGID="{egid}" FSGID="{egid}"'
    )


def syscall_record(
    actor: Actor,
    name: str,
    *,
    exit_code: int,
    args: tuple[str, str, str, str],
    items: int,
    keys: tuple[str, ...] = (),
) -> Draft:
    """The SYSCALL record of one call.

    Args:
        actor: the calling task.
        name: syscall name (a key of :data:`SYSCALL_NUMBERS`).
        exit_code: return value; negative errno means ``success=no``.
        args: a0..a3 as the kernel prints them (hex without ``0x``).
        items: number of PATH records that follow.
        keys: audit rule keys that matched (none -> ``key=(null)``).
    """
    success = "yes" if exit_code >= 0 else "no"
    euid = actor.effective_uid
    egid = actor.effective_gid
    subj = "" if actor.subj is None else f" subj={actor.subj}"
    body = (
        f"arch={ARCH_X86_64} syscall={SYSCALL_NUMBERS[name]} success={success} exit={exit_code} "
        f"a0={args[0]} a1={args[1]} a2={args[2]} a3={args[3]} items={items} ppid={actor.ppid} "
        f"pid={actor.pid} auid={actor.auid} uid={actor.uid} gid={actor.gid} euid={euid} suid={euid} "
        f"fsuid={euid} egid={egid} sgid={egid} fsgid={egid} tty={actor.tty} ses={actor.ses} "
        f"comm={untrusted(actor.comm)} exe={untrusted(actor.exe)}{subj} key={rule_key(keys)}"
    )
    return Draft("SYSCALL", body, syscall_enrichment(name, actor))


def cwd_record(cwd: str) -> Draft:
    """The CWD record."""
    return Draft("CWD", f"cwd={untrusted(cwd)}")


def path_record(
    host: HostState,
    item: int,
    name: str,
    *,
    nametype: str,
    mode: str,
    owner: tuple[int, int] = (0, 0),
    resolved: str | None = None,
    rdev: str = "00:00",
) -> Draft:
    """One PATH record.

    Args:
        item: index of the name in the call.
        name: the name as the program passed it (may be relative).
        nametype: ``NORMAL``, ``PARENT``, ``CREATE``, ``DELETE`` or ``UNKNOWN`` (name not found:
            no inode fields).
        mode: ``mode=`` in octal as the kernel writes it (``0100644``, ``040755``).
        owner: ``(ouid, ogid)``.
        resolved: absolute path used for the labels and the inode (defaults to ``name``).
    """
    target = resolved or name
    if nametype == "UNKNOWN":
        return Draft("PATH", f"item={item} name={untrusted(name)} nametype=UNKNOWN {_CAPS}")
    obj = host.security.file_object(target)
    label = "" if obj is None else f" obj={obj}"
    body = (
        f"item={item} name={untrusted(name)} inode={inode_of(target)} dev={device_of(target)} "
        f"mode={mode} ouid={owner[0]} ogid={owner[1]} rdev={rdev}{label} nametype={nametype} {_CAPS}"
    )
    return Draft("PATH", body, f'OUID="{user_name(owner[0])}" OGID="{group_name(owner[1])}"')


def proctitle_record(argv: list[str]) -> Draft:
    """The PROCTITLE record (always last in a syscall event)."""
    return Draft("PROCTITLE", f"proctitle={proctitle(argv)}")


def execve_records(argv: list[str]) -> list[Draft]:
    """EXECVE record(s) of ``argv``, split the way the kernel splits them.

    Arguments longer than one record are cut into ``aN[k]=`` hex chunks announced by
    ``aN_len=``; when the fields of many arguments outgrow one record the kernel continues in
    another EXECVE record whose text starts with a space.
    """
    records: list[Draft] = []
    fields: list[str] = [f"argc={len(argv)}"]
    used = len(fields[0])

    def flush() -> None:
        nonlocal fields, used
        text = " ".join(fields)
        records.append(Draft("EXECVE", text if not records else " " + text))
        fields, used = [], 0

    for index, arg in enumerate(argv):
        encoded = untrusted(arg)
        if len(encoded) + 8 <= MAX_EXECVE_AUDIT_LEN // 2:
            pieces = [f"a{index}={encoded}"]
        else:
            hexed = hex_upper(arg)
            chunks = [hexed[i : i + EXECVE_CHUNK_HEX] for i in range(0, len(hexed), EXECVE_CHUNK_HEX)]
            pieces = [f"a{index}[{k}]={chunk}" for k, chunk in enumerate(chunks)]
            pieces[0] = f"a{index}_len={len(arg.encode('utf-8'))} {pieces[0]}"
        for piece in pieces:
            if fields and used + 1 + len(piece) > MAX_EXECVE_AUDIT_LEN:
                flush()
            fields.append(piece)
            used += 1 + len(piece)
    if fields:
        flush()
    return records


def sockaddr_record(family: str, address: str = "", port: int = 0) -> Draft:
    """A SOCKADDR record with auditd's ``SADDR={ ... }`` interpretation.

    Args:
        family: ``inet``, ``inet6``, ``unix`` (``address`` is the socket path, ``""`` for an
            unnamed peer) or ``netlink`` (``port`` is the netlink port id, 0 for the kernel).
    """
    if family == "inet":
        raw = "0200" + f"{port:04X}" + ipaddress.IPv4Address(address).packed.hex().upper() + "0" * 16
        text = f"saddr_fam=inet laddr={address} lport={port}"
    elif family == "inet6":
        packed = ipaddress.IPv6Address(address).packed.hex().upper()
        raw = "0A00" + f"{port:04X}" + "00000000" + packed + "00000000"
        text = f"saddr_fam=inet6 laddr={ipaddress.IPv6Address(address).compressed} lport={port}"
    elif family == "unix":
        if address:
            raw = "0100" + hex_upper(address) + "00"
            text = f"saddr_fam=local path={address}"
        else:
            raw = "0100"
            text = "saddr_fam=local sockaddr len too short"
    else:
        raw = "1000" + "0000" + port.to_bytes(4, "little").hex().upper() + "00000000"
        text = f"fam=netlink nlnk-fam=16 nlnk-pid={port}"
    return Draft("SOCKADDR", f"saddr={raw}", f"SADDR={{ {text} }}")


def obj_pid_record(target: Actor) -> Draft:
    """OBJ_PID: the task a kill/ptrace targeted."""
    label = "" if target.subj is None else f" obj={target.subj}"
    body = (
        f"opid={target.pid} oauid={target.auid} ouid={target.uid} oses={target.ses}{label} "
        f"ocomm={untrusted(target.comm)}"
    )
    return Draft("OBJ_PID", body, f'OAUID="{user_name(target.auid)}" OUID="{user_name(target.uid)}"')


def execve_event(
    host: HostState,
    actor: Actor,
    argv: list[str],
    cwd: str,
    keys: tuple[str, ...] = ("exec",),
) -> EventDraft:
    """A successful execve: SYSCALL, EXECVE(s), CWD, PATH (program, ELF interpreter), PROCTITLE."""
    args = (host.pointer(), host.pointer(), host.pointer(stack=True), host.pointer())
    records = [syscall_record(actor, "execve", exit_code=0, args=args, items=2, keys=keys)]
    records.extend(execve_records(argv))
    records.append(cwd_record(cwd))
    records.append(path_record(host, 0, actor.exe, nametype="NORMAL", mode="0100755"))
    records.append(path_record(host, 1, LD_SO, nametype="NORMAL", mode="0100755"))
    records.append(proctitle_record(argv))
    return records


#: openat flags (a2) by intent.
OPEN_FLAGS: Final[dict[str, str]] = {
    "read": "80000",  # O_RDONLY|O_CLOEXEC
    "write": "80241",  # O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC
    "readwrite": "80002",  # O_RDWR|O_CLOEXEC
}


def file_event(
    host: HostState,
    actor: Actor,
    operation: str,
    path: str,
    *,
    cwd: str,
    argv: list[str],
    owner: tuple[int, int] = (0, 0),
    mode: str = "0100644",
    errno: str | None = None,
    keys: tuple[str, ...] = (),
    target: str | None = None,
) -> EventDraft:
    """A file syscall event with its PATH items.

    Args:
        operation: ``open`` (existing file), ``create`` (openat O_CREAT of a new file),
            ``unlink``, ``chmod`` or ``rename`` (to ``target``).
        path: absolute path of the file.
        errno: name of the error for a failed call (``EACCES``, ``ENOENT``), else success.
    """
    directory = path.rsplit("/", 1)[0] + "/"
    failure = -ERRNO[errno] if errno else None
    records: list[Draft]
    paths: list[Draft]
    if operation in ("open", "create"):
        fd = failure if failure is not None else host.rng.randint(3, 40)
        flags = OPEN_FLAGS["write" if operation == "create" else host.rng.choice(("read", "readwrite"))]
        args = ("ffffff9c", host.pointer(), flags, "1b6" if operation == "create" else "0")
        if errno == "ENOENT":
            paths = [path_record(host, 0, path, nametype="UNKNOWN", mode="")]
        elif operation == "create":
            paths = [
                path_record(host, 0, directory, nametype="PARENT", mode="040755", owner=owner),
                path_record(host, 1, path, nametype="CREATE", mode=mode, owner=owner),
            ]
        else:
            paths = [path_record(host, 0, path, nametype="NORMAL", mode=mode, owner=owner)]
        syscall = syscall_record(actor, "openat", exit_code=fd, args=args, items=len(paths), keys=keys)
    elif operation == "unlink":
        paths = [
            path_record(host, 0, directory, nametype="PARENT", mode="040755", owner=owner),
            path_record(host, 1, path, nametype="DELETE", mode=mode, owner=owner),
        ]
        args = ("ffffff9c", host.pointer(), "0", "0")
        syscall = syscall_record(actor, "unlinkat", exit_code=failure or 0, args=args, items=2, keys=keys)
    elif operation == "chmod":
        paths = [path_record(host, 0, path, nametype="NORMAL", mode=mode, owner=owner)]
        args = (host.pointer(), "1a4", "0", "0")
        syscall = syscall_record(actor, "chmod", exit_code=failure or 0, args=args, items=1, keys=keys)
    else:  # rename
        new = target or path + ".1"
        new_dir = new.rsplit("/", 1)[0] + "/"
        paths = [
            path_record(host, 0, directory, nametype="PARENT", mode="040755", owner=owner),
            path_record(host, 1, new_dir, nametype="PARENT", mode="040755", owner=owner),
            path_record(host, 2, path, nametype="DELETE", mode=mode, owner=owner),
            path_record(host, 3, new, nametype="CREATE", mode=mode, owner=owner),
        ]
        args = (host.pointer(), host.pointer(), "0", "0")
        syscall = syscall_record(actor, "rename", exit_code=failure or 0, args=args, items=4, keys=keys)
    records = [syscall, cwd_record(cwd), *paths, proctitle_record(argv)]
    return records


def network_event(
    host: HostState,
    actor: Actor,
    call: str,
    family: str,
    address: str,
    port: int,
    *,
    argv: list[str],
    cwd: str = "/",
    exit_code: int = 0,
    keys: tuple[str, ...] = ("network",),
) -> EventDraft:
    """connect/accept4/bind with its SOCKADDR; a named unix socket also resolves a PATH."""
    length = {"inet": 16, "inet6": 28, "unix": 110, "netlink": 12}[family]
    fd = host.rng.randint(3, 30)
    args = (f"{fd:x}", host.pointer(), f"{length:x}", "0" if call != "accept4" else "80800")
    named_unix = family == "unix" and bool(address) and call != "accept4"
    items = 1 if named_unix else 0
    records = [
        syscall_record(actor, call, exit_code=exit_code, args=args, items=items, keys=keys),
        sockaddr_record(family, address, port),
    ]
    if named_unix:
        records.append(cwd_record(cwd))
        records.append(path_record(host, 0, address, nametype="NORMAL", mode="0140755"))
    records.append(proctitle_record(argv))
    return records


def kill_event(host: HostState, actor: Actor, victim: Actor, signal: int, argv: list[str]) -> EventDraft:
    """kill(2) of ``victim``: SYSCALL, OBJ_PID, PROCTITLE."""
    args = (f"{victim.pid:x}", f"{signal:x}", "0", "0")
    return [
        syscall_record(actor, "kill", exit_code=0, args=args, items=0, keys=("signals",)),
        obj_pid_record(victim),
        proctitle_record(argv),
    ]


def setuid_event(host: HostState, actor: Actor, uid: int, argv: list[str], allowed: bool) -> EventDraft:
    """setuid(2): SYSCALL, PROCTITLE (EPERM when not allowed)."""
    exit_code = 0 if allowed else -ERRNO["EPERM"]
    args = (f"{uid:x}", "0", "0", "0")
    return [
        syscall_record(actor, "setuid", exit_code=exit_code, args=args, items=0, keys=("setuid",)),
        proctitle_record(argv),
    ]


def module_event(host: HostState, actor: Actor, module: str, argv: list[str], by_fd: bool) -> EventDraft:
    """Loading a kernel module: SYSCALL (init_module or finit_module), KERN_MODULE, PROCTITLE."""
    if by_fd:
        args = (f"{host.rng.randint(3, 9):x}", host.pointer(), "0", "0")
        name = "finit_module"
    else:
        args = ("7f" + f"{host.rng.getrandbits(36):09x}", f"{host.rng.randint(20000, 900000):x}", "0", "0")
        name = "init_module"
    return [
        syscall_record(actor, name, exit_code=0, args=args, items=0, keys=("modules",)),
        Draft("KERN_MODULE", f"name={module}"),
        proctitle_record(argv),
    ]


def selinux_avc_event(
    host: HostState,
    actor: Actor,
    *,
    perms: str,
    target: str,
    tcontext: str,
    tclass: str,
    argv: list[str],
    call: str = "openat",
) -> EventDraft:
    """A SELinux denial: AVC, SYSCALL (EACCES), PROCTITLE of the same serial."""
    name = target.rsplit("/", 1)[-1] or target
    avc = (
        f"avc:  denied  {{ {perms} }} for  pid={actor.pid} comm={untrusted(actor.comm)} "
        f'name={untrusted(name)} dev="{_dev_name(target)}" ino={inode_of(target)} '
        f"scontext={actor.subj} tcontext={tcontext} tclass={tclass} permissive=0"
    )
    args = ("ffffff9c", host.pointer(), "80002", "0")
    return [
        Draft("AVC", avc),
        syscall_record(actor, call, exit_code=-ERRNO["EACCES"], args=args, items=0),
        proctitle_record(argv),
    ]


def apparmor_avc_event(
    host: HostState,
    actor: Actor,
    *,
    profile: str,
    target: str,
    mask: str,
    owner: int,
    argv: list[str],
) -> EventDraft:
    """An AppArmor file denial: AVC (``apparmor="DENIED"``), SYSCALL (EACCES), PROCTITLE."""
    fsuid = actor.effective_uid
    avc = (
        f'apparmor="DENIED" operation="open" profile="{profile}" name={untrusted(target)} '
        f'pid={actor.pid} comm={untrusted(actor.comm)} requested_mask="{mask}" denied_mask="{mask}" '
        f"fsuid={fsuid} ouid={owner}"
    )
    args = ("ffffff9c", host.pointer(), "80000" if mask == "r" else "80002", "0")
    return [
        Draft("AVC", avc, f'FSUID="{user_name(fsuid)}" OUID="{user_name(owner)}"'),
        syscall_record(actor, "openat", exit_code=-ERRNO["EACCES"], args=args, items=0),
        proctitle_record(argv),
    ]


def promiscuous_event(host: HostState, actor: Actor, device: str, argv: list[str]) -> EventDraft:
    """ANOM_PROMISCUOUS of a tap device entering promiscuous mode, with the ioctl's SYSCALL."""
    anomaly = (
        f"dev={device} prom=256 old_prom=0 auid={actor.auid} uid={actor.uid} gid={actor.gid} ses={actor.ses}"
    )
    enrichment = f'AUID="{user_name(actor.auid)}" UID="{user_name(actor.uid)}" GID="{group_name(actor.gid)}"'
    args = (f"{host.rng.randint(20, 60):x}", "8914", host.pointer(stack=True), "0")  # SIOCSIFFLAGS
    return [
        Draft("ANOM_PROMISCUOUS", anomaly, enrichment),
        syscall_record(actor, "ioctl", exit_code=0, args=args, items=0),
        proctitle_record(argv),
    ]


#: Signal names of core-dumping signals (number -> name).
CORE_SIGNALS: Final[dict[int, str]] = {6: "SIGABRT", 11: "SIGSEGV", 7: "SIGBUS"}


def abend_record(actor: Actor, signal: int) -> Draft:
    """ANOM_ABEND: a process ended with a core-dumping signal (single-record event)."""
    subj = "" if actor.subj is None else f" subj={actor.subj}"
    body = (
        f"auid={actor.auid} uid={actor.uid} gid={actor.gid} ses={actor.ses}{subj} pid={actor.pid} "
        f"comm={untrusted(actor.comm)} exe={untrusted(actor.exe)} sig={signal} res=1"
    )
    enrichment = (
        f'AUID="{user_name(actor.auid)}" UID="{user_name(actor.uid)}" GID="{group_name(actor.gid)}" '
        f"SIG={CORE_SIGNALS.get(signal, str(signal))}"
    )
    return Draft("ANOM_ABEND", body, enrichment)


def _dev_name(path: str) -> str:
    """Kernel device name in AVC ``dev=`` for ``path``."""
    return {"00:05": "devtmpfs", "00:19": "tmpfs", "00:18": "tmpfs"}.get(device_of(path), "dm-0")
