"""Runs one replica's trainer and records everything about it in files, so the server need not live.

    python -m mlengine.executors.replica_supervisor --run-dir DIR --name REPLICA \
        [--gate FILE] -- ARGV…

With ``--gate FILE`` the supervisor writes its pid record and then waits (up to
:data:`GATE_SECONDS`) for FILE to exist before it starts the trainer: the executor creates it
once the run's handle is on disk, so a start that a crash cuts short never runs the trainer.

The local executor starts one supervisor per replica as the leader of a new session, with
stdin/stdout/stderr on ``/dev/null`` (it never dies of SIGPIPE when the server is gone). The
supervisor starts ``ARGV`` in its own process group, with the cwd and environment it was given,
and writes three files in ``DIR``, all named after the replica:

``REPLICA.pid``
    ``{"supervisor": {"pid", "start"}, "trainer": {"pid", "start"} | null}``, written before
    the trainer starts and again once it has. ``start`` is field 22 of ``/proc/<pid>/stat``
    (clock ticks since boot), so a recycled pid is never mistaken for ours.
``REPLICA.log``
    One JSON object per line, ``{"t": unix time, "s": "stdout" | "stderr", "m": line}``,
    appended and flushed line by line. A last line without a newline is written too;
    undecodable bytes are replaced; lines longer than :data:`MAX_LINE_BYTES` are split.
``REPLICA.exit``
    ``{"code", "signal", "cpu_seconds", "time", "lost_lines"}``, written atomically (temp file
    + rename) once the trainer has exited. ``code`` follows shell conventions (128+N for
    signal N); ``cpu_seconds`` is user+system time of the trainer and the children it reaped.

SIGTERM and SIGINT are relayed once to every other process of the group (the trainer and
whatever it started). When the trainer exits, anything it left running in the group gets
SIGTERM, then SIGKILL after :data:`LEFTOVER_GRACE_SECONDS` — a replica ends with its trainer,
as a container does — then the output is drained, the exit record written, and the supervisor
exits at once. The executor reads these files; :func:`proc_stat`, :func:`group_alive` and
:func:`signal_group` are how it recognises and signals the processes they name.

This module starts once per replica, on the path to the trainer's first line: it uses the
standard library only, and imports ``json`` and ``threading`` after the trainer has been
spawned, so their import overlaps the trainer's own start-up.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import time

TYPE_CHECKING = False  # typing itself costs milliseconds at start-up; mypy still sees these
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import Any

    StrPath = str | os.PathLike[str]

PID_SUFFIX = ".pid"
LOG_SUFFIX = ".log"
EXIT_SUFFIX = ".exit"

#: A line longer than this is written as several records (bounds the supervisor's memory).
MAX_LINE_BYTES = 1 << 20
#: How long the output may keep flowing after the trainer exits before leftovers are stopped.
DRAIN_SECONDS = 0.5
#: SIGTERM → SIGKILL delay for processes the trainer left behind.
LEFTOVER_GRACE_SECONDS = 2.0
#: Exit code recorded when the trainer could not be started at all (as a shell does).
CANNOT_START = 127
#: With ``--gate FILE``: how long to wait for FILE before giving up without starting.
GATE_SECONDS = 60.0
GATE_POLL_SECONDS = 0.002
USAGE = (
    "usage: python -m mlengine.executors.replica_supervisor --run-dir DIR --name REPLICA "
    "[--gate FILE] -- ARGV…"
)

_DEAD_STATES = frozenset("ZXx")


class ProcessRecord:
    """A process as a pid file names it: pid and start time (clock ticks since boot)."""

    __slots__ = ("pid", "start")

    def __init__(self, pid: int, start: int) -> None:
        self.pid = pid
        self.start = start


class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the executor needs."""

    __slots__ = ("cpu_ticks", "pgrp", "start", "state")

    def __init__(self, state: str, pgrp: int, start: int, cpu_ticks: int) -> None:
        self.state = state
        self.pgrp = pgrp
        self.start = start
        self.cpu_ticks = cpu_ticks  # utime + stime + cutime + cstime

    @property
    def dead(self) -> bool:
        """Zombies count as dead: they run nothing and only wait to be reaped."""
        return self.state in _DEAD_STATES


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat``, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            data = stat_file.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ")".
    fields = data[data.rindex(b")") + 2 :].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ProcStat(fields[0].decode(), int(fields[2]), int(fields[19]), ticks)


def group_members(pgid: int, *, exclude: int | None = None) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, found by scanning ``/proc``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != exclude:
            stat = proc_stat(int(entry))
            if stat is not None and stat.pgrp == pgid and not stat.dead:
                members.append(int(entry))
    return members


def group_alive(pgid: int, start: int, trainer: ProcessRecord | None = None) -> bool:
    """Whether the group led by supervisor ``pgid`` (started at ``start``) still runs anything.

    While any member of a group lives, the kernel never hands its id to a new process; so if
    ``/proc/<pgid>`` shows another start time, our group ended long ago.
    """
    leader = proc_stat(pgid)
    if leader is not None:
        if leader.start != start:
            return False
        if not leader.dead:
            return True
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if trainer is not None:
        stat = proc_stat(trainer.pid)
        if stat is not None and (stat.start, stat.pgrp, stat.dead) == (trainer.start, pgid, False):
            return True
    return bool(group_members(pgid))  # orphans or zombies only: look closer


def signal_group(pgid: int, start: int, sig: int) -> None:
    """Send ``sig`` to the group led by supervisor ``pgid`` — only if that group is ours."""
    leader = proc_stat(pgid)
    if leader is not None and leader.start != start:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def read_json(path: StrPath) -> Any:
    """The JSON document at ``path``, or None if it is missing or not (yet) valid."""
    import json

    try:
        with open(path, "rb") as document:
            return json.loads(document.read())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: StrPath, document: Any, *, durable: bool = False) -> None:
    """Write ``document`` to a temp file beside ``path`` and rename it into place."""
    import json

    _write_atomic(os.fspath(path), json.dumps(document), durable=durable)


def _write_atomic(path: str, text: str, *, durable: bool = False) -> None:
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_pid_record(path: StrPath) -> tuple[ProcessRecord | None, ProcessRecord | None]:
    """(supervisor, trainer) from a ``REPLICA.pid`` file; None for what it does not name."""
    document = read_json(path)
    if not isinstance(document, dict):
        return None, None

    def record(key: str) -> ProcessRecord | None:
        value = document.get(key)
        if isinstance(value, dict):
            return ProcessRecord(int(value["pid"]), int(value["start"]))
        return None

    return record("supervisor"), record("trainer")


def _pid_json(pid: int) -> str:
    stat = proc_stat(pid)
    return f'{{"pid": {pid}, "start": {stat.start if stat else 0}}}'


class Supervisor:
    """Start the trainer, log its lines, record its exit. See the module docstring."""

    def __init__(
        self, run_dir: str, name: str, argv: Sequence[str], *, gate: str | None = None
    ) -> None:
        self._argv = list(argv)
        self._gate = gate
        self._pid_path = os.path.join(run_dir, f"{name}{PID_SUFFIX}")
        self._log_path = os.path.join(run_dir, f"{name}{LOG_SUFFIX}")
        self._exit_path = os.path.join(run_dir, f"{name}{EXIT_SUFFIX}")
        self._trainer: int | None = None
        self._trainer_done = False
        self._pending: int | None = None  # a signal that arrived before the trainer started
        self._hurry = False  # a signal arrived after the trainer exited: finish quickly
        self._log_fd = -1
        self._log_lock = _thread.allocate_lock()  # threading is imported later, see run()
        self._encode: Callable[[Any], str] | None = None
        self._lost_lines = 0

    def run(self) -> int:
        if os.getpgrp() != os.getpid():
            os.setsid()  # run by hand: never treat the caller's group as ours
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._log_fd = os.open(self._log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        me = _pid_json(os.getpid())
        _write_atomic(self._pid_path, f'{{"supervisor": {me}, "trainer": null}}')
        if self._gate is not None and not self._wait_for_gate():
            if self._pending is not None:
                return self._finish(128 + self._pending, self._pending, 0.0)
            self._write("stderr", b"mlengine: the executor never confirmed this start")
            return self._finish(CANNOT_START, None, 0.0)
        if self._pending is not None:
            return self._finish(128 + self._pending, self._pending, 0.0)
        try:
            pid, out, err = self._spawn()
        except OSError as exc:
            self._write("stderr", f"mlengine: cannot start {self._argv!r}: {exc}".encode())
            return self._finish(CANNOT_START, None, 0.0)
        self._trainer = pid
        _write_atomic(self._pid_path, f'{{"supervisor": {me}, "trainer": {_pid_json(pid)}}}')
        if self._pending is not None:
            self._relay(self._pending)
        import json  # imported only now, so that both imports overlap the trainer's start-up
        import threading

        self._encode = json.JSONEncoder(ensure_ascii=False).encode
        pumps = [
            threading.Thread(target=self._pump, args=(name, fd), daemon=True)
            for name, fd in (("stdout", out), ("stderr", err))
        ]
        for pump in pumps:
            pump.start()
        _, status, usage = os.wait4(pid, 0)
        self._trainer_done = True
        code = os.waitstatus_to_exitcode(status)
        self._end_leftovers(pumps)
        signum = -code if code < 0 else None
        return self._finish(
            128 + signum if signum else code, signum, usage.ru_utime + usage.ru_stime
        )

    def _wait_for_gate(self) -> bool:
        """Wait until the gate file exists (the executor has recorded the run durably);
        False on a signal or after :data:`GATE_SECONDS`. Until then no trainer runs, so a
        start cut short by a crash never runs the trainer."""
        assert self._gate is not None
        deadline = time.monotonic() + GATE_SECONDS
        while time.monotonic() < deadline and self._pending is None:
            if os.path.exists(self._gate):
                return True
            time.sleep(GATE_POLL_SECONDS)
        return False

    def _spawn(self) -> tuple[int, int, int]:
        """Start the trainer in our group, stdout/stderr on pipes; (pid, out fd, err fd)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = os.posix_spawnp(
                self._argv[0],
                self._argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                # Python ignores these; a trainer must start with the defaults.
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w):
                os.close(fd)
        return pid, out_r, err_r

    # -- signals ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._trainer is None:
            self._pending = signum
        elif not self._trainer_done:
            self._relay(signum)
        else:
            self._hurry = True

    @staticmethod
    def _relay(signum: int) -> None:
        """Send ``signum`` once to every other process of the group (we ignore our copy)."""
        handler = signal.getsignal(signum)
        signal.signal(signum, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signum)
        finally:
            signal.signal(signum, handler)

    # -- output -----------------------------------------------------------------------------

    def _pump(self, stream_name: str, fd: int) -> None:
        with open(fd, "rb") as stream:
            for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
                self._write(stream_name, raw)

    def _write(self, stream_name: str, raw: bytes) -> None:
        if self._encode is None:  # the trainer could not even be started
            import json

            self._encode = json.JSONEncoder(ensure_ascii=False).encode
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        data = (self._encode({"t": time.time(), "s": stream_name, "m": text}) + "\n").encode()
        with self._log_lock:
            try:
                while data:  # one append per record, unless the kernel takes less
                    data = data[os.write(self._log_fd, data) :]
            except OSError:  # disk full: count what we could not keep, go on
                self._lost_lines += 1

    # -- the end ----------------------------------------------------------------------------

    def _end_leftovers(self, pumps: list[threading.Thread]) -> None:
        """Let the output drain; stop what the trainer left in the group; drain again."""
        self._join(pumps, DRAIN_SECONDS)
        me = os.getpid()
        leftovers = group_members(me, exclude=me)
        if leftovers:
            self._signal_each(leftovers, signal.SIGTERM)
            deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
            while leftovers and time.monotonic() < deadline and not self._hurry:
                time.sleep(0.02)
                leftovers = group_members(me, exclude=me)
            self._signal_each(leftovers, signal.SIGKILL)
        # A process that left our session may still hold the pipes: stop waiting after a while.
        self._join(pumps, LEFTOVER_GRACE_SECONDS)

    @staticmethod
    def _signal_each(pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def _join(threads: list[threading.Thread], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _finish(self, code: int, signum: int | None, cpu_seconds: float) -> int:
        record = {
            "code": code,
            "signal": signum,
            "cpu_seconds": cpu_seconds,
            "time": time.time(),
            "lost_lines": self._lost_lines,
        }
        write_json_atomic(self._exit_path, record, durable=True)
        return 0


def parse_args(argv: Sequence[str]) -> tuple[str, str, list[str]]:
    """(run dir, replica name, trainer argv) from ``--run-dir DIR --name REPLICA -- ARGV…``."""
    run_dir, name, command, _ = parse_options(argv)
    return run_dir, name, command


def parse_options(argv: Sequence[str]) -> tuple[str, str, list[str], str | None]:
    """:func:`parse_args` plus the optional ``--gate FILE``."""
    if "--" not in argv:
        raise SystemExit(f"{USAGE}\nmissing -- before the trainer's command")
    split = list(argv).index("--")
    options, command = list(argv[:split]), list(argv[split + 1 :])
    pairs = dict(zip(options[::2], options[1::2], strict=False))
    required = {"--run-dir", "--name"}
    if len(options) % 2 or not required <= set(pairs) <= required | {"--gate"} or not command:
        raise SystemExit(f"{USAGE}\ngot: {' '.join(argv)}")
    return pairs["--run-dir"], pairs["--name"], command, pairs.get("--gate")


def main(argv: Sequence[str] | None = None) -> int:
    run_dir, name, command, gate = parse_options(sys.argv[1:] if argv is None else argv)
    return Supervisor(run_dir, name, command, gate=gate).run()


if __name__ == "__main__":
    sys.exit(main())
