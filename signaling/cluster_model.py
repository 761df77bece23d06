"""What a signaling cluster keeps in Redis, and how it reads back (pure: no I/O, no clock).

Keys, all under `sig:` (channel names and peer ids are `[A-Za-z0-9_-]`, so no separator clashes):

    sig:key                 the cluster's HMAC key for broadcasters' secrets (made once, SET NX)
    sig:procs               ZSET process id -> when it counts as dead unless it beats again
                            (Unix ms; each process states its own)
    sig:proc:P:peers        SET "CHANNEL PEER" of process P, to clean up after P died
    sig:proc:P:channels     HASH channel -> P's figures there (JSON); expires with P's heartbeats
    sig:claim:CH            HASH hash, peer, proc, media, since, seq: CH's owner and broadcast;
                            expires `claim_ttl` after its broadcaster left (or its process died)
    sig:claims              SET of claimed channel names (the cap, the listing; pruned lazily)
    sig:members:CH          SET of CH's peers on any process (the tracker samples it)
    sig:preferred:CH        SET of relays, broadcasters and peers reporting spare upload
    sig:info:CH             HASH peer -> PeerInfo (JSON list), refreshed from `status` once a beat

Pub/sub: `sig:to:P` carries what is for process P's peers (signals, peer_left, replaced);
`sig:all` what is for a whole channel (media, broadcast_ended).

Rules: everything a process wrote about its peers either expires with its heartbeats or is
removed by whoever finds it dead, so a killed process leaves nothing that keeps counting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signaling.tracker import Candidate
from signaling_wire import ROLES, Role

PREFIX = "sig:"
KEY = PREFIX + "key"
PROCS = PREFIX + "procs"
CLAIMS = PREFIX + "claims"
ALL = PREFIX + "all"


def proc_peers_key(proc: str) -> str:
    return f"{PREFIX}proc:{proc}:peers"


def proc_channels_key(proc: str) -> str:
    return f"{PREFIX}proc:{proc}:channels"


def proc_addresses_key(proc: str) -> str:
    """A process's sockets per client address (hash: address -> count), for per-address caps."""
    return f"{PREFIX}proc:{proc}:addresses"


def proc_channel_addresses_key(proc: str) -> str:
    """The addresses whose channel counts a process holds (set), for its cleanup."""
    return f"{PREFIX}proc:{proc}:chanaddrs"


def proc_address_channels_key(proc: str, address: str) -> str:
    """A process's peers of one client address per channel (hash: channel -> count), for the
    per-address channel cap. (_CLEANUP in signaling.redis_directory builds the same name.)"""
    return f"{PREFIX}proc:{proc}:chans:{address}"


def claim_key(channel: str) -> str:
    return f"{PREFIX}claim:{channel}"


def members_key(channel: str) -> str:
    return f"{PREFIX}members:{channel}"


def preferred_key(channel: str) -> str:
    return f"{PREFIX}preferred:{channel}"


def info_key(channel: str) -> str:
    return f"{PREFIX}info:{channel}"


def inbox(proc: str) -> str:
    return f"{PREFIX}to:{proc}"


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What other processes need to know about a peer: where it is and the tracker's inputs."""

    proc: str
    role: Role
    latest_seq: int | None = None
    spare_upload_bps: int | None = None
    neighbour_count: int = 0

    def encode(self) -> str:
        return json.dumps(
            [self.proc, self.role, self.latest_seq, self.spare_upload_bps, self.neighbour_count],
            separators=(",", ":"),
        )

    @property
    def preferred(self) -> bool:
        """In the tracker's preferred pool (signaling.tracker.Tracker._refile)."""
        return self.role in ("relay", "broadcaster") or bool(self.spare_upload_bps)

    def candidate(self, peer_id: str) -> Candidate:
        return Candidate(
            peer_id, self.role, self.latest_seq, self.spare_upload_bps, self.neighbour_count
        )


def decode_info(text: str) -> PeerInfo | None:
    """A PeerInfo, or None for anything malformed (Redis is shared: never trust it blindly)."""
    try:
        proc, role, seq, spare, neighbours = json.loads(text)
    except (ValueError, TypeError):
        return None
    if not isinstance(proc, str) or role not in ROLES:
        return None
    return PeerInfo(proc, role, seq, spare, int(neighbours or 0))


def decode_infos(texts: Iterable[str | None]) -> list[PeerInfo | None]:
    """Each encoded PeerInfo decoded once (None where absent or malformed): a join's sample
    holds dozens, and decoding them was a tenth of a cluster server's time under joins."""
    return [None if text is None else decode_info(text) for text in texts]


def procs_of(infos: Iterable[PeerInfo | None]) -> set[str]:
    """The processes these PeerInfos name."""
    return {info.proc for info in infos if info is not None}


def live_candidates(
    ids: list[str], infos: list[PeerInfo | None], live_procs: set[str], skip: frozenset[str]
) -> list[Candidate]:
    """The sampled peers whose process is alive (a dead process's peers are skipped at once),
    but those in `skip` (the requester, and whom it excluded)."""
    return [
        info.candidate(peer_id)
        for peer_id, info in zip(ids, infos, strict=True)
        if info is not None and peer_id not in skip and info.proc in live_procs
    ]


def empty_figures() -> dict[str, int]:
    return {"viewer": 0, "relay": 0, "broadcaster": 0, "upload_bps_total": 0}


def add_figures(total: dict[str, int], text: str) -> None:
    """Add one process's figures for a channel (JSON) to `total`; ignore malformed ones."""
    try:
        figures = json.loads(text)
    except ValueError:
        return
    if not isinstance(figures, dict):
        return
    for key in total:
        value = figures.get(key, 0)
        if isinstance(value, int):
            total[key] += value


def channel_summary(
    name: str,
    claim: Mapping[str, str],
    figures: Mapping[str, int],
    live_procs: set[str],
    now_unix_s: float,
) -> dict[str, Any]:
    """The same shape as signaling.channels.Channel.summary, from what Redis holds."""
    media = _media(claim)
    owned = bool(claim.get("hash"))
    broadcaster = bool(claim.get("peer")) and claim.get("proc") in live_procs
    if media is not None:
        state = "live"
    elif owned and not broadcaster:
        state = "ended"
    else:
        state = "waiting"
    since = _float(claim.get("since"))
    seq = claim.get("seq")
    info = media or {}
    return {
        "name": name,
        "state": state,
        "viewers": figures["viewer"],
        "relays": figures["relay"],
        "broadcaster": broadcaster,
        "peers": figures["viewer"] + figures["relay"] + figures["broadcaster"],
        "bitrate_bps": info.get("bitrate_bps"),
        "mime_type": info.get("mime_type"),
        "chunk_seconds": info.get("chunk_seconds"),
        "uptime_s": None if since is None or media is None else round(now_unix_s - since, 1),
        "latest_seq": int(seq) if seq and seq.isdigit() else None,
        "upload_bps_total": figures["upload_bps_total"],
    }


def media_of(claim: Mapping[str, str]) -> dict[str, Any] | None:
    return _media(claim)


def _media(claim: Mapping[str, str]) -> dict[str, Any] | None:
    text = claim.get("media")
    if not text:
        return None
    try:
        media = json.loads(text)
    except ValueError:
        return None
    return media if isinstance(media, dict) else None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def local_figures(channels: Iterable[tuple[str, Mapping[str, int], int]]) -> dict[str, str]:
    """This process's figures per channel, as the HASH fields of sig:proc:P:channels."""
    out: dict[str, str] = {}
    for name, role_counts, upload_bps_total in channels:
        figures = {role: role_counts.get(role, 0) for role in ROLES}
        figures["upload_bps_total"] = upload_bps_total
        out[name] = json.dumps(figures, separators=(",", ":"))
    return out
