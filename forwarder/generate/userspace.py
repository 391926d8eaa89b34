"""User-space records: PAM and login messages of sshd, sudo and cron, systemd services, the
utmp boot/runlevel/shutdown records and auditd's own DAEMON_* records.

User-space programs send a text and the kernel wraps it (``docs/virt-audit.md`` §1.1)::

    pid=P uid=U auid=A ses=S[ subj=CTX] msg='TEXT exe=EXE hostname=H addr=A terminal=T res=R'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from forwarder.generate.encoding import encode_nv, untrusted
from forwarder.generate.kernel import execve_event, proctitle_record, syscall_record
from forwarder.generate.model import UNSET, Actor, Draft, HostState, Step, user_name

#: auditd release written in DAEMON_START (the last one with auvirt).
AUDITD_VERSION: Final = "3.0.9"

#: PAM modules that granted each PAM stage, as Linux-PAM lists them in ``grantors=``.
GRANTORS: Final[dict[tuple[str, str], str]] = {
    ("sshd", "authentication"): "pam_unix",
    ("sshd", "accounting"): "pam_unix,pam_localuser",
    ("sshd", "setcred"): "pam_env,pam_unix",
    ("sshd", "session_open"): "pam_selinux,pam_loginuid,pam_selinux,pam_namespace,pam_keyinit,"
    "pam_keyinit,pam_limits,pam_systemd,pam_unix,pam_umask,pam_lastlog",
    ("sshd", "session_close"): "pam_selinux,pam_loginuid,pam_selinux,pam_namespace,pam_keyinit,"
    "pam_keyinit,pam_limits,pam_systemd,pam_unix,pam_umask,pam_lastlog",
    ("sudo", "authentication"): "pam_unix",
    ("sudo", "accounting"): "pam_unix,pam_localuser",
    ("sudo", "setcred"): "pam_env,pam_unix",
    ("sudo", "session_open"): "pam_keyinit,pam_limits,pam_keyinit,pam_limits,pam_systemd,pam_unix",
    ("sudo", "session_close"): "pam_keyinit,pam_limits,pam_keyinit,pam_limits,pam_systemd,pam_unix",
    ("crond", "setcred"): "pam_env,pam_unix",
    ("crond", "session_open"): "pam_loginuid,pam_keyinit,pam_limits,pam_systemd,pam_unix",
    ("crond", "session_close"): "pam_loginuid,pam_keyinit,pam_limits,pam_systemd,pam_unix",
}

#: Executables of the user-space senders.
SSHD: Final = "/usr/sbin/sshd"
SUDO: Final = "/usr/bin/sudo"
CROND: Final = "/usr/sbin/crond"
SYSTEMD: Final = "/usr/lib/systemd/systemd"
UTMP: Final = "/usr/lib/systemd/systemd-update-utmp"
AUDITD_EXE: Final = "/usr/sbin/auditd"


@dataclass(slots=True)
class Sender:
    """The process that sends a user-space message (the kernel fills these fields in)."""

    pid: int
    uid: int
    auid: int
    ses: int
    subj: str | None


def user_message(
    record_type: str,
    sender: Sender,
    text: str,
    *,
    success: bool = True,
    enrichment_extra: str = "",
) -> Draft:
    """Wrap ``text`` (everything before ``res=``) as the kernel does.

    Args:
        record_type: USER_*, CRED_*, SERVICE_*, SYSTEM_*, VIRT_* ...
        text: the message text without ``res=``.
        enrichment_extra: more ENRICHED pairs (`` ID="alice"``) after ``UID`` and ``AUID``.
    """
    subj = "" if sender.subj is None else f" subj={sender.subj}"
    res = "success" if success else "failed"
    body = (
        f"pid={sender.pid} uid={sender.uid} auid={sender.auid} ses={sender.ses}{subj} msg='{text} res={res}'"
    )
    enrichment = f'UID="{user_name(sender.uid)}" AUID="{user_name(sender.auid)}"{enrichment_extra}'
    return Draft(record_type, body, enrichment)


def pam_text(program: str, stage: str, acct: str, exe: str, hostname: str, addr: str, terminal: str) -> str:
    """Text of a Linux-PAM audit message (``op=PAM:stage grantors=... acct=...``)."""
    grantors = GRANTORS.get((program, stage), "?")
    return (
        f"op=PAM:{stage} grantors={grantors} {encode_nv('acct', acct)} exe={untrusted(exe)} "
        f"hostname={hostname} addr={addr} terminal={terminal}"
    )


@dataclass(slots=True)
class LoginSession:
    """An administrator's open ssh session."""

    name: str
    uid: int
    ses: int
    tty: str
    addr: str
    sshd: Sender
    shell: Actor

    @property
    def terminal(self) -> str:
        return f"/dev/{self.tty[:3]}/{self.tty[3:]}"


def ssh_login(host: HostState, name: str, uid: int, addr: str) -> tuple[list[Step], LoginSession]:
    """A successful ssh login: USER_AUTH, USER_ACCT, CRED_ACQ, LOGIN(+SYSCALL), USER_START, USER_LOGIN."""
    rng = host.rng
    subj = host.security.subject("sshd")
    sshd = Sender(host.new_pid(), 0, UNSET, UNSET, subj)
    pam = {
        stage: pam_text("sshd", stage, name, SSHD, addr, addr, "ssh")
        for stage in ("authentication", "accounting", "setcred", "session_open")
    }
    ses = host.new_session()
    tty = host.new_tty()
    steps = [
        Step(rng.randint(200, 900), [user_message("USER_AUTH", sshd, pam["authentication"])]),
        Step(rng.randint(1, 8), [user_message("USER_ACCT", sshd, pam["accounting"])]),
        Step(rng.randint(1, 5), [user_message("CRED_ACQ", sshd, pam["setcred"])]),
    ]
    task = Actor(sshd.pid, 1, 0, 0, UNSET, UNSET, "sshd", SSHD, subj)
    steps.append(Step(rng.randint(1, 5), login_records(host, task, uid, ses, [f"sshd: {name} [priv]"])))
    sshd = Sender(sshd.pid, 0, uid, ses, subj)
    steps.append(Step(rng.randint(2, 20), [user_message("USER_START", sshd, pam["session_open"])]))
    login_text = f"op=login id={uid} exe={untrusted(SSHD)} hostname=? addr={addr} terminal=/dev/pts/{tty[3:]}"
    steps.append(
        Step(
            rng.randint(20, 90),
            [user_message("USER_LOGIN", sshd, login_text, enrichment_extra=f' ID="{name}"')],
        )
    )
    shell_subj = host.security.subject("admin")
    shell = Actor(host.new_pid(), sshd.pid, uid, uid, uid, ses, "bash", "/usr/bin/bash", shell_subj, tty=tty)
    return steps, LoginSession(name, uid, ses, tty, addr, sshd, shell)


def login_records(host: HostState, task: Actor, uid: int, ses: int, argv: list[str]) -> list[Draft]:
    """Kernel LOGIN (auid/ses set by writing /proc/self/loginuid) with its SYSCALL and PROCTITLE."""
    subj = "" if task.subj is None else f" subj={task.subj}"
    body = (
        f"pid={task.pid} uid={task.uid}{subj} old-auid={UNSET} auid={uid} tty=(none) "
        f"old-ses={UNSET} ses={ses} res=1"
    )
    enrichment = f'UID="{user_name(task.uid)}" OLD-AUID="unset" AUID="{user_name(uid)}"'
    args = (f"{host.rng.randint(3, 9):x}", host.pointer(stack=True), f"{len(str(uid)):x}", "0")
    return [
        Draft("LOGIN", body, enrichment),
        syscall_record(task, "write", exit_code=len(str(uid)), args=args, items=0),
        proctitle_record(argv),
    ]


def ssh_logout(host: HostState, session: LoginSession) -> list[Step]:
    """End of an ssh session: USER_LOGOUT, USER_END, CRED_DISP."""
    rng = host.rng
    sshd = session.sshd
    logout = f"op=login id={session.uid} exe={untrusted(SSHD)} hostname=? addr=? terminal={session.terminal}"
    close = pam_text("sshd", "session_close", session.name, SSHD, session.addr, session.addr, "ssh")
    disp = pam_text("sshd", "setcred", session.name, SSHD, session.addr, session.addr, "ssh")
    return [
        Step(
            rng.randint(1, 30),
            [user_message("USER_LOGOUT", sshd, logout, enrichment_extra=f' ID="{session.name}"')],
        ),
        Step(rng.randint(1, 10), [user_message("USER_END", sshd, close)]),
        Step(rng.randint(1, 5), [user_message("CRED_DISP", sshd, disp)]),
    ]


def failed_ssh(host: HostState, acct: str, addr: str) -> list[Step]:
    """A failed password guess: USER_AUTH res=failed, USER_LOGIN res=failed (auid unset)."""
    rng = host.rng
    sshd = Sender(host.new_pid(), 0, UNSET, UNSET, host.security.subject("sshd"))
    auth = pam_text("sshd", "authentication", acct, SSHD, addr, addr, "ssh")
    login = f"op=login {encode_nv('acct', acct)} exe={untrusted(SSHD)} hostname=? addr={addr} terminal=ssh"
    return [
        Step(rng.randint(500, 3000), [user_message("USER_AUTH", sshd, auth, success=False)]),
        Step(rng.randint(1, 20), [user_message("USER_LOGIN", sshd, login, success=False)]),
    ]


def sudo_command(
    host: HostState,
    session: LoginSession,
    argv: list[str],
    exe: str,
    cwd: str,
    *,
    allowed: bool = True,
) -> tuple[list[Step], Actor]:
    """``sudo ARGV`` in ``session``: PAM records, USER_CMD, the command's execve, session close.

    Returns:
        the steps and the root task that ran the command (for follow-up syscalls).
    """
    rng = host.rng
    subj = session.shell.subj
    sudo = Sender(host.new_pid(), session.uid, session.uid, session.ses, subj)
    terminal = session.terminal
    user_pam = {
        stage: pam_text("sudo", stage, session.name, SUDO, "?", "?", terminal)
        for stage in ("authentication", "accounting")
    }
    root_pam = {
        stage: pam_text("sudo", stage, "root", SUDO, "?", "?", terminal)
        for stage in ("setcred", "session_open", "session_close")
    }
    command = encode_nv("cmd", " ".join(argv))
    cmd_text = (
        f"cwd={untrusted(cwd)} {command} exe={untrusted(SUDO)} terminal={session.tty[:3]}/{session.tty[3:]}"
    )
    steps = []
    if rng.random() < 0.3:
        steps.append(
            Step(rng.randint(800, 4000), [user_message("USER_AUTH", sudo, user_pam["authentication"])])
        )
    steps.append(
        Step(rng.randint(1, 40), [user_message("USER_ACCT", sudo, user_pam["accounting"], success=allowed)])
    )
    steps.append(Step(rng.randint(1, 4), [user_message("USER_CMD", sudo, cmd_text, success=allowed)]))
    root = Actor(
        host.new_pid(),
        sudo.pid,
        0,
        0,
        session.uid,
        session.ses,
        argv[0].rsplit("/", 1)[-1][:15],
        exe,
        subj,
        tty=session.tty,
    )
    if not allowed:
        return steps, root
    steps.append(Step(rng.randint(1, 4), [user_message("CRED_REFR", sudo, root_pam["setcred"])]))
    steps.append(Step(rng.randint(1, 9), [user_message("USER_START", sudo, root_pam["session_open"])]))
    steps.append(Step(rng.randint(1, 9), execve_event(host, root, argv, cwd, keys=("exec", "privileged"))))
    steps.append(Step(rng.randint(5, 3000), [user_message("USER_END", sudo, root_pam["session_close"])]))
    steps.append(Step(rng.randint(1, 4), [user_message("CRED_DISP", sudo, root_pam["setcred"])]))
    return steps, root


def cron_job(host: HostState, argv: list[str], exe: str) -> list[Step]:
    """A root cron job: CRED_ACQ, LOGIN, USER_START, the job's execve, CRED_DISP, USER_END."""
    rng = host.rng
    subj = host.security.subject("cron")
    crond = Sender(host.new_pid(), 0, UNSET, UNSET, subj)
    pam = {
        stage: pam_text("crond", stage, "root", CROND, "?", "?", "cron")
        for stage in ("setcred", "session_open", "session_close")
    }
    ses = host.new_session()
    task = Actor(crond.pid, 1, 0, 0, UNSET, UNSET, "crond", CROND, subj)
    steps = [
        Step(rng.randint(0, 30), [user_message("CRED_ACQ", crond, pam["setcred"])]),
        Step(rng.randint(1, 4), login_records(host, task, 0, ses, ["/usr/sbin/CROND", "-n"])),
    ]
    crond = Sender(crond.pid, 0, 0, ses, subj)
    steps.append(Step(rng.randint(1, 6), [user_message("USER_START", crond, pam["session_open"])]))
    job = Actor(
        host.new_pid(),
        crond.pid,
        0,
        0,
        0,
        ses,
        argv[0].rsplit("/", 1)[-1][:15],
        exe,
        host.security.subject("cronjob"),
    )
    steps.append(Step(rng.randint(1, 10), execve_event(host, job, argv, "/root")))
    steps.append(Step(rng.randint(50, 4000), [user_message("CRED_DISP", crond, pam["setcred"])]))
    steps.append(Step(rng.randint(1, 4), [user_message("USER_END", crond, pam["session_close"])]))
    return steps


def service_record(host: HostState, unit: str, start: bool, success: bool = True) -> Draft:
    """SERVICE_START / SERVICE_STOP from systemd (pid 1)."""
    systemd = Sender(1, 0, UNSET, UNSET, host.security.subject("init"))
    text = f'unit={unit} comm="systemd" exe={untrusted(SYSTEMD)} hostname=? addr=? terminal=?'
    return user_message("SERVICE_START" if start else "SERVICE_STOP", systemd, text, success=success)


def utmp_record(host: HostState, record_type: str, levels: tuple[str, str] | None = None) -> Draft:
    """SYSTEM_BOOT / SYSTEM_SHUTDOWN / SYSTEM_RUNLEVEL from systemd-update-utmp."""
    sender = Sender(host.new_pid(), 0, UNSET, UNSET, host.security.subject("init"))
    prefix = "" if levels is None else f"old-level={levels[0]} new-level={levels[1]}"
    text = f'{prefix} comm="systemd-update-utmp" exe={untrusted(UTMP)} hostname=? addr=? terminal=?'
    return user_message(record_type, sender, text)


def daemon_start(host: HostState, auditd_pid: int, enriched: bool) -> Draft:
    """auditd's DAEMON_START (3.x form)."""
    subj = host.security.subject("auditd")
    label = "" if subj is None else f" subj={subj}"
    body = (
        f"op=start ver={AUDITD_VERSION} format={'enriched' if enriched else 'raw'} kernel={host.kernel} "
        f"auid={UNSET} pid={auditd_pid} uid=0 ses={UNSET}{label} res=success"
    )
    return Draft("DAEMON_START", body, 'AUID="unset" UID="root"')


def daemon_end(host: HostState) -> Draft:
    """auditd's DAEMON_END at a clean shutdown (sent on systemd's behalf, pid 1)."""
    subj = host.security.subject("init")
    label = "" if subj is None else f" subj={subj}"
    body = f"op=terminate auid=0 uid=0 ses={UNSET}{label} pid=1 res=success"
    return Draft("DAEMON_END", body, 'AUID="root" UID="root"')
