"""coturn as the bed's STUN/TURN server, and the time-limited credentials its REST API scheme takes.

`--use-auth-secret` (the "TURN REST API"): a username is "EXPIRY:NAME" (a Unix time) and its
password base64(HMAC-SHA1(secret, username)); coturn checks both with the shared secret and the
clock. The bed mints one such pair for the whole run and hands it to `streamer serve` as the
static --turn-username/--turn-credential (per-peer credentials are the signaling server's job).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import secrets
import shutil
import tempfile
from pathlib import Path

from streamer.errors import UserError

TURN_PORT = 3478
REALM = "netbed"
UNPRIVILEGED_USER = "nobody"
UNPRIVILEGED_GROUP = "nogroup"


def rest_credentials(secret: str, name: str, expiry_unix_s: int) -> tuple[str, str]:
    """(username, password) valid until expiry_unix_s for coturn's --use-auth-secret."""
    username = f"{expiry_unix_s}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def new_secret() -> str:
    return secrets.token_hex(16)


def turnserver_argv(
    listen_ip: str, secret: str, state_dir: Path, port: int = TURN_PORT
) -> list[str]:
    """coturn in the foreground, no config file, STUN + TURN over UDP/TCP only, as nobody;
    its database and pid file in state_dir (see make_state_dir)."""
    return [
        "setpriv", f"--reuid={UNPRIVILEGED_USER}", f"--regid={UNPRIVILEGED_GROUP}",
        "--clear-groups", "--",
        "turnserver", "-n",
        "--listening-ip", listen_ip, "--relay-ip", listen_ip, "--listening-port", str(port),
        "--use-auth-secret", f"--static-auth-secret={secret}", "--realm", REALM,
        "--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780", "--no-software-attribute",
        "--fingerprint", "--log-file", "stdout", "--simple-log", "--verbose",
        "--userdb", str(state_dir / "turndb"), "--pidfile", str(state_dir / "turnserver.pid"),
        "--min-port", "49152", "--max-port", "65535",
    ]  # fmt: skip


STATE_DIR_PREFIX = "netbed-coturn-"


def make_state_dir() -> Path:
    """A fresh folder the unprivileged coturn can write (its SQLite database, its pid file); a
    temporary one of its own, since the run's workdir may not be reachable for `nobody`. Its
    name carries the run's pid, so a later run can remove it if this one dies unannounced."""
    path = Path(tempfile.mkdtemp(prefix=f"{STATE_DIR_PREFIX}{os.getpid()}-"))
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def stale_state_dirs(names: list[str], alive: set[int]) -> list[str]:
    """The state folders (by name) whose run's pid is not alive."""
    stale = []
    for name in names:
        pid_text = name.removeprefix(STATE_DIR_PREFIX).split("-", 1)[0]
        if name.startswith(STATE_DIR_PREFIX) and pid_text.isdigit() and int(pid_text) not in alive:
            stale.append(name)
    return stale


def remove_stale_state_dirs(alive: set[int]) -> int:
    """Remove the state folders of runs that died (SIGKILL); how many went."""
    parent = Path(tempfile.gettempdir())
    names = [p.name for p in parent.glob(f"{STATE_DIR_PREFIX}*")]
    stale = stale_state_dirs(names, alive)
    for name in stale:
        shutil.rmtree(parent / name, ignore_errors=True)
    return len(stale)


def allocations(log_text: str) -> int:
    """How many TURN allocations coturn's log reports (each relayed peer connection makes one)."""
    return sum(1 for line in log_text.splitlines() if "ALLOCATE processed, success" in line)


def check_installed() -> None:
    for tool in ("turnserver", "setpriv"):
        if shutil.which(tool) is None:
            raise UserError(f"missing {tool} (Debian: apt-get install coturn util-linux)")


def ice_server_options(ip: str, username: str, password: str, port: int = TURN_PORT) -> list[str]:
    """`streamer serve` options that hand STUN and TURN (UDP) on ip:port to every peer."""
    return [
        "--ice-server", f"stun:{ip}:{port}",
        "--ice-server", f"turn:{ip}:{port}?transport=udp",
        "--turn-username", username,
        "--turn-credential", password,
    ]  # fmt: skip
