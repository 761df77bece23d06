"""Channels and the peers in them: ownership, membership, who must hear that a peer left (pure).

No sockets here: the app maps peer ids to connections and sends what these methods return. Rules
this module never breaks: only a hash of a broadcaster's secret is stored; a refused join changes
nothing; memory is bounded by the peers present plus owned channels kept `owner_ttl_s` after their
broadcaster left (at most `max_channels` owned); a viewer's join never creates an owned channel:
an unclaimed channel (a waiting room, at most `max_waiting_channels`) goes with its last peer, so
a flood of joins to made-up names can never keep a broadcaster out; per-peer sets are capped.

With `remote_peers` (a cluster: signaling.redis_directory) the registry holds this process's
peers only; neighbours and contacts may be peers of other processes, so ids it does not know are
kept (still capped) and reported in `LeaveResult.notify_elsewhere`.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from signaling.protocol import GetPeers, Join, ProtocolError, Role, Status
from signaling.tracker import Candidate, Tracker

MAX_CONTACTS = 256
#: Reported neighbours that are not in the channel, remembered per peer (the rest are ignored).
MAX_UNKNOWN_NEIGHBOURS = 64
#: Peers gone without a goodbye whose neighbours are still to be told, per registry.
MAX_DEPARTURES = 100_000


def new_peer_id() -> str:
    """Short random URL-safe id (64 bits): unguessable, so ids cannot be used to probe a channel."""
    return secrets.token_urlsafe(8)


@dataclass(eq=False, slots=True)
class PeerState:
    peer_id: str
    channel: str
    role: Role
    joined_at_s: float
    #: Neighbours it last reported (only ids present in the channel, capped by the protocol).
    neighbours: frozenset[str] = frozenset()
    #: Peers whose last status listed this one as a neighbour (reverse of `neighbours`).
    watchers: set[str] = field(default_factory=set)
    #: Peers it exchanged signals with, oldest first, capped at MAX_CONTACTS.
    contacts: dict[str, None] = field(default_factory=dict)
    upload_bps: int = 0
    spare_upload_bps: int | None = None
    latest_seq: int | None = None
    stats: dict[str, float] = field(default_factory=dict)
    #: Neighbours it reports that are not in the channel -> when first reported so.
    unknown_neighbours: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Departure:
    """A peer that went without a goodbye: its id is its owner's for `grace_s`; then whoever
    knew it hears `peer_left`, unless it joined again meanwhile."""

    peer_id: str
    channel: str
    #: Its neighbours and contacts when it went (this process's, and on a cluster others' too).
    notify: frozenset[str]
    deadline_s: float
    #: It was the channel's broadcaster, live: the channel hears `broadcast_ended` then too.
    ended_broadcast: bool = False


@dataclass(eq=False)
class Channel:
    name: str
    created_at_s: float
    owner_secret_hash: bytes | None = None
    broadcaster_id: str | None = None
    media: dict[str, Any] | None = None
    live_since_s: float | None = None
    #: When the owner last left (or ended); None while a broadcaster is connected.
    owner_left_at_s: float | None = None
    peers: dict[str, PeerState] = field(default_factory=dict)
    tracker: Tracker = field(default_factory=Tracker)
    role_counts: dict[str, int] = field(
        default_factory=lambda: {"viewer": 0, "relay": 0, "broadcaster": 0}
    )
    upload_bps_total: int = 0
    listed_by: dict[str, set[str]] = field(default_factory=dict)
    """Peer id -> the peers here whose last report lists it as a neighbour (it may be absent:
    a peer that joins again gets its watchers from here, without a pass over the channel)."""

    def list_neighbour(self, neighbour_id: str, by: str) -> None:
        self.listed_by.setdefault(neighbour_id, set()).add(by)

    def unlist_neighbour(self, neighbour_id: str, by: str) -> None:
        listers = self.listed_by.get(neighbour_id)
        if listers is not None:
            listers.discard(by)
            if not listers:
                del self.listed_by[neighbour_id]

    @property
    def state(self) -> str:
        """`live` (media published), `waiting` (no media yet) or `ended` (owner gone or done)."""
        if self.media is not None:
            return "live"
        if self.owner_secret_hash is not None and self.owner_left_at_s is not None:
            return "ended"
        return "waiting"

    def summary(self, now: float) -> dict[str, Any]:
        """Public facts for the pages and /api (never the secret hash or the init segment)."""
        media = self.media or {}
        return {
            "name": self.name,
            "state": self.state,
            "viewers": self.role_counts["viewer"],
            "relays": self.role_counts["relay"],
            "broadcaster": self.broadcaster_id is not None,
            "peers": len(self.peers),
            "bitrate_bps": media.get("bitrate_bps"),
            "mime_type": media.get("mime_type"),
            "chunk_seconds": media.get("chunk_seconds"),
            "uptime_s": None if self.live_since_s is None else round(now - self.live_since_s, 1),
            "latest_seq": self.tracker.live_edge_seq,
            "upload_bps_total": self.upload_bps_total,
        }


@dataclass(frozen=True)
class JoinResult:
    channel: Channel
    peer: PeerState
    #: A connected broadcaster this join replaced (same secret): the app closes its socket.
    replaced: LeaveResult | None = None


@dataclass(frozen=True)
class LeaveResult:
    peer_id: str
    channel: str
    #: Peers that had it as neighbour or exchanged signals with it: they get `peer_left`.
    notify: frozenset[str]
    #: Set when the broadcaster left mid-broadcast: the channel gets `broadcast_ended`.
    broadcast_ended: bool
    #: With `remote_peers`: neighbours and contacts this registry does not hold (other processes).
    notify_elsewhere: frozenset[str] = frozenset()
    #: Set when it went without a goodbye: nobody is told before the grace period ends.
    departure: Departure | None = None


@dataclass(frozen=True)
class GoneNotice:
    """After a grace period: `peer_id` did not come back; `notify` get `peer_left`."""

    peer_id: str
    channel: str
    notify: frozenset[str]
    #: The channel gets `broadcast_ended` (its live broadcaster did not come back).
    broadcast_ended: bool = False


class Registry:
    """All channels of one server."""

    def __init__(
        self,
        max_peers_per_channel: int = 10_000,
        max_channels: int = 1_000,
        owner_ttl_s: float = 60.0,
        broadcast_token: str | None = None,
        rng: random.Random | None = None,
        max_waiting_channels: int = 1_000,
        remote_peers: bool = False,
        peer_grace_s: float = 5.0,
    ) -> None:
        self.max_peers_per_channel = max_peers_per_channel
        self.max_channels = max_channels
        self.max_waiting_channels = max_waiting_channels
        self.remote_peers = remote_peers
        self.peer_grace_s = peer_grace_s
        #: Peers gone without a goodbye, oldest first (deadlines grow with insertion).
        self.departures: dict[str, Departure] = {}
        self.owner_ttl_s = owner_ttl_s
        self.broadcast_token = broadcast_token
        self.rng = rng or random.Random()
        self.channels: dict[str, Channel] = {}
        self.peers: dict[str, PeerState] = {}
        #: Names of channels a broadcaster owns (the rest are waiting rooms).
        self.owned: set[str] = set()
        # Per-server key: a leaked hash is useless elsewhere and cannot be tried offline cheaply.
        self._secret_key = secrets.token_bytes(32)

    def _hash_secret(self, secret: str) -> bytes:
        return hmac.new(
            self._secret_key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()

    def _check_token(self, token: str | None) -> None:
        if self.broadcast_token is None:
            return
        if token is None:
            raise ProtocolError("token_required", "creating a channel needs a token", fatal=True)
        if not hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), self.broadcast_token.encode("utf-8")
        ):
            raise ProtocolError("forbidden", "wrong token", fatal=True)

    # --- membership ----------------------------------------------------------------------

    def join(
        self, message: Join, peer_id: str, now: float, claim_checked: bool = False
    ) -> JoinResult:
        """Admit `peer_id` or raise ProtocolError (fatal) without changing anything.

        `claim_checked`: a cluster already checked ownership, token and the owned-channel cap
        for all its processes (this registry then only records the claim).
        """
        channel = self.channels.get(message.channel)
        secret_hash: bytes | None = None
        if message.role == "broadcaster":
            assert message.secret is not None  # the parser guarantees it
            secret_hash = self._hash_secret(message.secret)
            owned = channel is not None and channel.owner_secret_hash is not None
            if claim_checked:
                pass
            elif owned:
                assert channel is not None and channel.owner_secret_hash is not None
                if not hmac.compare_digest(secret_hash, channel.owner_secret_hash):
                    raise ProtocolError(
                        "channel_owned", "this channel belongs to another broadcaster", fatal=True
                    )
            else:
                self._check_token(message.token)
                if len(self.owned) >= self.max_channels:
                    raise ProtocolError(
                        "server_full", "too many broadcasts on this server", fatal=True
                    )
        elif channel is not None and len(channel.peers) >= self.max_peers_per_channel:
            raise ProtocolError("channel_full", "this channel is full", fatal=True)
        elif channel is None and len(self.channels) - len(self.owned) >= self.max_waiting_channels:
            raise ProtocolError(
                "server_full", "too many channels are waiting for a broadcaster", fatal=True
            )

        # The same id again (its owner proved its peer secret): the old session goes quietly and
        # its contacts carry over, so nobody hears that it left.
        previous = self.peers.get(peer_id)
        inherited: dict[str, None] = {}
        if previous is not None:
            inherited = dict(previous.contacts)
            self.leave(peer_id, now, replaced=True)
            channel = self.channels.get(message.channel)
        departure = self.departures.pop(peer_id, None)
        if departure is not None and departure.channel == message.channel:
            inherited.update(dict.fromkeys(departure.notify))
        if channel is None:
            channel = Channel(name=message.channel, created_at_s=now)
            self.channels[channel.name] = channel
        replaced = None
        if message.role == "broadcaster":
            if channel.broadcaster_id is not None:
                replaced = self.leave(channel.broadcaster_id, now, replaced=True)
            channel.owner_secret_hash = secret_hash
            channel.broadcaster_id = peer_id
            channel.owner_left_at_s = None
            self.owned.add(channel.name)
        peer = PeerState(peer_id=peer_id, channel=channel.name, role=message.role, joined_at_s=now)
        channel.peers[peer_id] = peer
        channel.role_counts[message.role] += 1
        channel.tracker.add(Candidate(peer_id=peer_id, role=message.role))
        self.peers[peer_id] = peer
        for other_id in inherited:
            other = channel.peers.get(other_id)
            if other is not None and other is not peer:
                _touch_contact(other, peer_id, self.peers)
            if other is not None or (self.remote_peers and other_id != peer_id):
                _touch_contact(peer, other_id, self.peers)
        peer.watchers.update(
            other_id for other_id in channel.listed_by.get(peer_id, ()) if other_id in channel.peers
        )
        return JoinResult(channel=channel, peer=peer, replaced=replaced)

    def leave(
        self, peer_id: str, now: float, replaced: bool = False, graceful: bool = True
    ) -> LeaveResult | None:
        """Forget `peer_id`; say who must be told. None if it was not here.

        `graceful` False (its socket dropped without a goodbye): nobody is told now; the
        `Departure` in the result (also kept in `departures`) says whom to tell once
        `peer_grace_s` passed without it joining again (`expire`).
        """
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return None
        channel = self.channels[peer.channel]
        del channel.peers[peer_id]
        channel.role_counts[peer.role] -= 1
        channel.upload_bps_total -= peer.upload_bps
        channel.tracker.remove(peer_id)
        for other_id in peer.neighbours:
            channel.unlist_neighbour(other_id, peer_id)
            other = self.peers.get(other_id)
            if other is not None:
                other.watchers.discard(peer_id)
        for other_id in peer.contacts:
            other = self.peers.get(other_id)
            if other is not None:
                other.contacts.pop(peer_id, None)
        notify = frozenset(
            other_id
            for other_id in (peer.watchers | peer.contacts.keys())
            if other_id in channel.peers
        )
        elsewhere: frozenset[str] = frozenset()
        if self.remote_peers:
            elsewhere = frozenset(
                other_id
                for other_id in (peer.neighbours | peer.contacts.keys())
                if other_id not in channel.peers
            )
        ended = False
        if channel.broadcaster_id == peer_id:
            channel.broadcaster_id = None
            channel.owner_left_at_s = now
            ended = channel.media is not None and not replaced
            channel.media = None
            channel.live_since_s = None
        if not channel.peers and channel.owner_secret_hash is None:
            del self.channels[channel.name]
        if graceful or replaced:
            return LeaveResult(peer_id, channel.name, notify, ended, elsewhere)
        departure = Departure(
            peer_id, channel.name, notify | elsewhere, now + self.peer_grace_s, ended
        )
        self.add_departure(departure)
        # Not ended yet either: a broadcaster back within the grace period publishes again.
        return LeaveResult(peer_id, channel.name, frozenset(), False, frozenset(), departure)

    def add_departure(self, departure: Departure) -> None:
        """Hold a peer's `peer_left` until its deadline (bounded: the oldest is told early)."""
        self.departures.pop(departure.peer_id, None)
        self.departures[departure.peer_id] = departure
        if len(self.departures) > MAX_DEPARTURES:
            oldest = next(iter(self.departures))
            self.departures[oldest] = replace(self.departures[oldest], deadline_s=float("-inf"))

    def expire(self, now: float) -> list[GoneNotice]:
        """Departures past their deadline, with who must hear `peer_left` for each.

        Whom to tell: the neighbours and contacts it had, plus this registry's peers of its
        channel that still list it as a neighbour or contact (on a cluster, peers of other
        processes). One pass over a channel's peers per call, however many went.
        """
        due: dict[str, list[Departure]] = {}
        for peer_id, departure in list(self.departures.items()):
            if departure.deadline_s > now:
                continue
            del self.departures[peer_id]
            if peer_id not in self.peers:  # it did not come back here
                due.setdefault(departure.channel, []).append(departure)
        notices: list[GoneNotice] = []
        for channel_name, departures in due.items():
            channel = self.channels.get(channel_name)
            members = channel.peers if channel is not None else {}
            gone_ids = {d.peer_id for d in departures}
            knew: dict[str, set[str]] = {d.peer_id: set() for d in departures}
            for member in members.values():
                for gone_id in gone_ids & (member.neighbours | member.contacts.keys()):
                    knew[gone_id].add(member.peer_id)
                    member.contacts.pop(gone_id, None)
            no_broadcast = channel is None or channel.media is None
            for d in departures:
                notify = frozenset(p for p in d.notify | knew[d.peer_id] if p in members)
                ended = d.ended_broadcast and no_broadcast
                notices.append(GoneNotice(d.peer_id, channel_name, notify, ended))
        return notices

    def sweep(self, now: float) -> list[str]:
        """Drop ownership kept past `owner_ttl_s` and channels left empty; returns dropped names."""
        dropped: list[str] = []
        for channel in list(self.channels.values()):
            left_at = channel.owner_left_at_s
            if channel.broadcaster_id is None and (
                left_at is None or now - left_at >= self.owner_ttl_s
            ):
                channel.owner_secret_hash = None
                channel.owner_left_at_s = None
                self.owned.discard(channel.name)
                if not channel.peers:
                    del self.channels[channel.name]
                    dropped.append(channel.name)
        return dropped

    # --- broadcaster -----------------------------------------------------------------------

    def _broadcaster_channel(self, peer_id: str) -> Channel:
        peer = self.peers.get(peer_id)
        if peer is None:
            raise ProtocolError("not_joined", "send join first")
        if peer.role != "broadcaster":
            raise ProtocolError("forbidden", "only the broadcaster may do this")
        return self.channels[peer.channel]

    def publish(self, peer_id: str, media: dict[str, Any], now: float) -> Channel:
        """Store the broadcaster's media info; the app forwards it to every other peer."""
        channel = self._broadcaster_channel(peer_id)
        if channel.media is None:
            channel.live_since_s = now
        channel.media = media
        channel.owner_left_at_s = None
        return channel

    def end(self, peer_id: str, now: float) -> Channel | None:
        """The broadcast is over; returns the channel if it was live (it gets `broadcast_ended`)."""
        channel = self._broadcaster_channel(peer_id)
        if channel.media is None:
            return None
        channel.media = None
        channel.live_since_s = None
        channel.owner_left_at_s = now
        return channel

    # --- peers --------------------------------------------------------------------------------

    def _joined(self, peer_id: str) -> PeerState:
        peer = self.peers.get(peer_id)
        if peer is None:
            raise ProtocolError("not_joined", "send join first")
        return peer

    def record_signal(self, from_id: str, to_id: str) -> None:
        """Allow a signal only inside one channel; remember both ends as contacts."""
        sender = self._joined(from_id)
        target = self.peers.get(to_id)
        if target is None or target.channel != sender.channel or to_id == from_id:
            raise ProtocolError("unknown_peer", "no such peer in this channel")
        _touch_contact(sender, to_id, self.peers)
        _touch_contact(target, from_id, self.peers)

    def record_remote_contact(self, peer_id: str, other_id: str) -> None:
        """A signal between our `peer_id` and a peer of another process (the cluster checked
        that both are in one channel)."""
        peer = self.peers.get(peer_id)
        if peer is not None and other_id != peer_id:
            _touch_contact(peer, other_id, self.peers)

    def status(self, peer_id: str, status: Status, now: float | None = None) -> list[str]:
        """Record a peer's report. Returns the neighbours it lists that have not been in the
        channel for twice `peer_grace_s` (a lone server only, `now` given): it gets
        `peer_left` for them (a server that restarted never saw them leave)."""
        peer = self._joined(peer_id)
        channel = self.channels[peer.channel]
        # On a cluster a neighbour may be a peer of another process: keep ids we do not know.
        known = channel.peers
        neighbours = frozenset(
            n for n in status.neighbours if n != peer_id and (self.remote_peers or n in known)
        )
        for other_id in peer.neighbours - neighbours:
            channel.unlist_neighbour(other_id, peer_id)
            other = self.peers.get(other_id)
            if other is not None:
                other.watchers.discard(peer_id)
        # All of them, not only the new ones: a neighbour that joined again has no watchers yet.
        for other_id in neighbours:
            channel.list_neighbour(other_id, peer_id)
            other = self.peers.get(other_id)
            if other is not None:
                other.watchers.add(peer_id)
        gone: list[str] = []
        if now is not None and not self.remote_peers:
            # Twice the grace: its clock starts at the first report, and after a restart the
            # reporter may be back a backoff round before the neighbour it lists.
            wait_s = 2 * self.peer_grace_s
            gone = _long_unknown(peer, status.neighbours, known, now, wait_s)
        peer.neighbours = neighbours
        channel.upload_bps_total += status.upload_bps - peer.upload_bps
        peer.upload_bps = status.upload_bps
        peer.spare_upload_bps = status.spare_upload_bps
        peer.latest_seq = status.latest_seq
        peer.stats = status.stats
        channel.tracker.update(peer_id, status.latest_seq, status.spare_upload_bps, len(neighbours))
        return gone

    def candidates(self, peer_id: str, request: GetPeers) -> list[Candidate]:
        peer = self._joined(peer_id)
        channel = self.channels[peer.channel]
        exclude = request.exclude | peer.neighbours
        return channel.tracker.select(peer_id, request.count, self.rng, exclude)

    def public_channels(self) -> list[Channel]:
        """Channels a broadcaster owns (viewer-only waiting rooms are not advertised)."""
        return [c for c in self.channels.values() if c.owner_secret_hash is not None]


def _touch_contact(peer: PeerState, other_id: str, peers: dict[str, PeerState]) -> None:
    peer.contacts.pop(other_id, None)
    peer.contacts[other_id] = None
    if len(peer.contacts) > MAX_CONTACTS:
        evicted = next(iter(peer.contacts))
        del peer.contacts[evicted]
        other = peers.get(evicted)
        if other is not None:
            other.contacts.pop(peer.peer_id, None)


def _long_unknown(
    peer: PeerState,
    reported: tuple[str, ...],
    members: dict[str, PeerState],
    now: float,
    grace_s: float,
) -> list[str]:
    """Reported neighbours missing from the channel for `grace_s`; each is returned once."""
    unknown = {n for n in reported if n not in members and n != peer.peer_id}
    tracked = peer.unknown_neighbours
    for peer_id in list(tracked):
        if peer_id not in unknown:
            del tracked[peer_id]
    gone = []
    for peer_id in unknown:
        since = tracked.get(peer_id)
        if since is None:
            if len(tracked) < MAX_UNKNOWN_NEIGHBOURS:
                tracked[peer_id] = now
        elif now - since >= grace_s:
            gone.append(peer_id)
            tracked[peer_id] = float("inf")  # told: not again while it keeps listing it
    return gone
