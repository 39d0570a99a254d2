"""Safe file I/O every writer shares: one atomic write, one lock with a timeout.

:func:`atomic_write` writes to a temp file in the target's own folder
(``.<name>.<pid>.<random>.pbsvllm-tmp``), fsyncs it, gives it the mode (and,
when root edits another user's file, the owner) and renames it over the
target, then fsyncs the folder: a reader sees the old or the new file, never
a partial one. A writer killed in between leaves only a temp file, which the
next writer of the same file may remove (:func:`remove_stale_temps`, under the
file's lock).

:func:`file_lock` is an exclusive ``flock`` on a sidecar lock file that
waits at most ``timeout_s`` seconds. The holder writes who it is (pid, host,
command, since when) into the lock file, so a waiter that gives up can name
the process to look at instead of hanging forever.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import sys
import time
from typing import Callable, Iterator, Optional, Type, Union

from pbsvllm.errors import PbsvllmError

TMP_MARK = ".pbsvllm-tmp"
#: Seconds a writer waits for another pbsvllm process's lock before giving up.
LOCK_TIMEOUT_S = 60.0


def temp_prefix(path: str) -> str:
    """The name prefix of :func:`atomic_write`'s temp files for ``path``."""
    return "." + os.path.basename(path) + "."


def atomic_write(path: str, data: Union[str, bytes], mode: int = 0o600, *,
                 prefix: Optional[str] = None, owner_of: Optional[os.stat_result] = None) -> None:
    """Replace ``path`` by ``data`` atomically (see the module doc).

    ``mode`` is the new file's permission bits. ``owner_of``: the stat of the
    file being replaced; when running as root, the new file gets its owner and
    group (root editing a user's registry must not take it over). Raises
    :class:`OSError` (the temp file removed, ``path`` untouched).
    """
    folder = os.path.dirname(os.path.abspath(path))
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = os.path.join(folder, f"{prefix or temp_prefix(path)}{os.getpid()}.{os.urandom(4).hex()}{TMP_MARK}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            view = memoryview(raw)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if owner_of is not None and os.geteuid() == 0:
                os.fchown(fd, owner_of.st_uid, owner_of.st_gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_error_text(path: str, exc: OSError) -> str:
    """One sentence for a failed :func:`atomic_write` (the old file is intact)."""
    if exc.errno == errno.ENOSPC:
        return f"no space left writing {path}; the previous version is intact"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded writing {path}; the previous version is intact"
    return f"cannot write {path}: {exc.strerror or exc}; the previous version is intact"


def remove_stale_temps(path: str) -> None:
    """Remove temp files a killed writer of ``path`` left; call it holding ``path``'s lock."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = temp_prefix(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(TMP_MARK):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """``a FIFO (named pipe)``, ``a character device``, ... for a non-regular ``st_mode``."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular(path: str, what: str, *, error: Type[PbsvllmError] = PbsvllmError,
                 max_bytes: Optional[int] = None, hint: str = "", mine_only: bool = False) -> Optional[bytes]:
    """The bytes of ``path`` (symlinks followed), None if it does not exist.

    Only a regular file is read: it is opened without blocking and checked
    with ``fstat`` before a byte is read, so a FIFO never hangs the caller
    and a device is never read. ``what`` names the file in errors
    (``config file``, ``registry``); ``max_bytes`` bounds what is read.
    ``mine_only``: a file owned by another user is refused (run files that
    another user could have planted: their URL must never receive your key).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            real = os.path.realpath(path)
            via = f" (through the link to {real})" if real != os.path.abspath(path) else ""
            raise error(f"{what} {path}{via} is {kind_of(st.st_mode)}, not a regular file; pbsvllm only reads"
                        " regular files", hint=hint or f"point pbsvllm at the real {what}")
        if mine_only and st.st_uid != os.geteuid():
            raise error(f"{what} {path} belongs to {user_name(st.st_uid)}, not to you; pbsvllm ignores files"
                        " another user wrote there", hint=hint or "remove it, or use a private PBSVLLM_HOME")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{what} {path} is {st.st_size} bytes, more than the {max_bytes} such a file can be",
                        hint=hint or f"point pbsvllm at the real {what}")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise error(f"{what} {path} is more than the {max_bytes} bytes such a file can be")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def user_name(uid: int) -> str:
    """``user alice (uid 1001)``, or ``uid 1001`` when it has no name here."""
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def check_private_dir(path: str, what: str, *, error: Type[PbsvllmError] = PbsvllmError) -> None:
    """Refuse a folder where another user could plant or swap files that
    pbsvllm trusts (job records, server-info files that receive your API key).

    Refused: the folder (or, while it does not exist yet, the nearest folder
    that does) owned by another user or writable by group or others; any
    symbolic link on the way owned by another user (other than root); any
    folder above it that others may write without the sticky bit (they could
    rename the folder and put their own in its place).
    """
    me = os.geteuid()
    path = os.path.abspath(path)
    # symbolic links on the way: whoever owns a link decides where it points
    parts = path.strip(os.sep).split(os.sep)
    cur = os.sep
    for part in parts:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            break
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (me, 0):
            raise error(f"{what} {path} is reached through the symbolic link {cur}, which belongs to "
                        f"{user_name(st.st_uid)}: that user decides where your files go",
                        hint=f"use a {what} on a path only you (or root) control")
    real = os.path.realpath(path)
    existing = real
    while not os.path.isdir(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            return
        existing = parent
    st = os.stat(existing)
    target = existing == real
    if st.st_uid != me and (target or st.st_uid != 0 and st.st_mode & 0o022):
        raise error(f"{what} {real} {'' if target else '(to be created in ' + existing + ') '}belongs to "
                    f"{user_name(st.st_uid)}, not to you", hint=f"use a {what} of your own (it is created 0700)")
    if target and st.st_mode & 0o022:
        raise error(f"{what} {real} is writable by {'others' if st.st_mode & 0o002 else 'its group'} "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}): another user could plant job files there that "
                    "receive your API key", hint=f"chmod 700 {real}")
    above = existing if not target else os.path.dirname(existing)
    while True:
        try:
            pst = os.stat(above)
        except OSError:
            return
        if pst.st_mode & 0o002 and not pst.st_mode & stat.S_ISVTX:
            raise error(f"{what} {real} is inside {above}, which every user may write (mode "
                        f"{stat.S_IMODE(pst.st_mode):04o}, no sticky bit): another user could replace it",
                        hint=f"use a {what} under a folder only you can write")
        parent = os.path.dirname(above)
        if parent == above:
            return
        above = parent


def _holder_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 512)
    except OSError:
        return ""
    return raw.decode("utf-8", "replace").strip()


def _describe_holder(text: str) -> str:
    """``pid=1 host=h since=... cmd=...`` -> ``pid 1 on h (pbsvllm watch), holding it since 05:40:01``."""
    fields = dict(part.split("=", 1) for part in text.split("\t") if "=" in part)
    pid = fields.get("pid", "")
    if not pid.isdigit():
        return "another process (it did not say which)"
    out = f"pid {pid}"
    host = fields.get("host", "")
    if host and host != socket.gethostname():
        out += f" on {host}"
    elif host:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            out += " (no longer running: the lock is held by a process it started, or the file system"
            out += " does not release locks)"
        except PermissionError:
            pass
    cmd = fields.get("cmd", "")
    if cmd:
        out += f" ({cmd[:120]})"
    since = fields.get("since", "")
    if since.replace(".", "", 1).isdigit():
        out += f", holding it since {time.strftime('%H:%M:%S', time.localtime(float(since)))}"
    return out


@contextlib.contextmanager
def file_lock(lock_path: str, what: str, *, timeout_s: Optional[float] = None,
              error: Type[PbsvllmError] = PbsvllmError,
              sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created 0600 if missing).

    Waits at most ``timeout_s`` (default :data:`LOCK_TIMEOUT_S`); then raises
    ``error`` naming ``what`` and the holder. The lock file is never followed
    through a symlink and must be a regular file.
    """
    limit = LOCK_TIMEOUT_S if timeout_s is None else max(0.0, float(timeout_s))
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"lock file {lock_path} for {what} is a symbolic link; pbsvllm will not follow it",
                        hint=f"remove {lock_path} (pbsvllm recreates it)") from None
        raise error(f"cannot create lock file {lock_path} for {what}: {exc.strerror}",
                    hint="check that you may write to that folder") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"lock file {lock_path} for {what} is not a regular file",
                        hint=f"remove {lock_path} (pbsvllm recreates it)")
        deadline = time.monotonic() + limit
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise error(f"cannot lock {lock_path} for {what}: {exc.strerror}") from None
            left = deadline - time.monotonic()
            if left <= 0:
                holder = _describe_holder(_holder_text(fd))
                raise error(
                    f"{what} is locked by {holder}; gave up after {limit:g} s",
                    hint=f"wait for that process to finish or end it; the lock file is {lock_path}",
                )
            sleep(min(delay, left))
            delay = min(delay * 2, 0.25)
        me = "\t".join((f"pid={os.getpid()}", f"host={socket.gethostname()}", f"since={time.time():.0f}",
                        "cmd=" + " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:4]))))
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (me.replace("\n", " ") + "\n").encode("utf-8", "replace"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
