"""A cluster of signaling processes sharing channels through Redis (redis-py's asyncio client).

Each process keeps its own peers in a `Registry` (as a lone server does) and shares, in Redis,
what the others need (the layout is in signaling.cluster_model): who owns a channel and what it
broadcasts, which peers a channel has and where each one is, and which processes are alive.
A signal to a peer of another process goes to that process's pub/sub inbox; a message for a
whole channel goes to every process. A process that stops beating drops out of every sample
within `cluster_liveness_s`, and the first process to notice removes what it left behind.

Rules: a join, a signal or a get_peers costs one Redis round trip at most, never a scan of a
channel; peers' status changes are batched into one write per
heartbeat; no Redis reply is trusted to be well formed (cluster_model decodes defensively).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling import cluster_model as model
from signaling.background import Periodic, stop_task
from signaling.channels import Departure, GoneNotice, LeaveResult, Registry
from signaling.config import ServerConfig
from signaling.directory import Events, Joined, LocalDirectory, Totals
from signaling.protocol import GetPeers, Join, ProtocolError, Status
from signaling.tracker import Candidate, draw
from streamer.errors import UserError

log = logging.getLogger(__name__)

#: Redis connections per process (the pub/sub reader has its own).
POOL_CONNECTIONS = 32
#: The tracker's sample: this many candidates looked at per one asked for (tracker.Tracker).
SAMPLE_FACTOR = 4
#: Seconds one process may spend cleaning up after a dead one before another may try.
CLEANUP_LOCK_S = 30

# Claim a channel atomically. KEYS: claim, claims set. ARGV: secret hash, peer, proc, channel,
# max owned channels, token ok ("1"/"0"), expiry ms. Returns {status, old peer, old proc}.
_CLAIM = """
local owner = redis.call('HGET', KEYS[1], 'hash')
if owner and owner ~= ARGV[1] then return {'owned', '', ''} end
if not owner then
  if ARGV[6] ~= '1' then return {'token', '', ''} end
  if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[5]) then return {'full', '', ''} end
end
local old_peer = redis.call('HGET', KEYS[1], 'peer') or ''
local old_proc = redis.call('HGET', KEYS[1], 'proc') or ''
redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'peer', ARGV[2], 'proc', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[4])
return {'ok', old_peer, old_proc}
"""

# The broadcaster left: its claim lasts `claim_ttl` more, unless a newer broadcaster holds it.
# KEYS: claim. ARGV: peer, ttl ms. Returns 1 if it was still the claim's broadcaster.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'peer') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'peer', '', 'proc', '', 'media', '', 'since', '')
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2])
else redis.call('DEL', KEYS[1]) end
return 1
"""


# Sample a channel's members (half from its preferred pool) with their info, in one round trip;
# on a join, also add the joining peer (after sampling: it is not its own candidate).
# KEYS: members, preferred, info, claim, process's peers. ARGV: peer, budget, join ("1"/"0"),
# its PeerInfo, preferred ("1"/"0"), its process entry. Returns {ids, infos, claim}: the whole
# claim on a join (the welcome's media), only its live edge seq otherwise.
_SAMPLE = """
local budget = tonumber(ARGV[2])
local ids, seen = {}, {[ARGV[1]] = true}
local function take(key, n)
  if n <= 0 then return end
  for _, id in ipairs(redis.call('SRANDMEMBER', key, n)) do
    if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
  end
end
take(KEYS[2], math.floor(budget / 2))
take(KEYS[1], budget)
local claim
local previous = ''
if ARGV[3] == '1' then
  previous = redis.call('HGET', KEYS[3], ARGV[1]) or ''
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
  if ARGV[5] == '1' then redis.call('SADD', KEYS[2], ARGV[1]) end
  redis.call('SADD', KEYS[5], ARGV[6])
  claim = redis.call('HGETALL', KEYS[4])
else
  claim = {'seq', redis.call('HGET', KEYS[4], 'seq') or ''}
end
local infos = {}
if #ids > 0 then infos = redis.call('HMGET', KEYS[3], unpack(ids)) end
return {ids, infos, claim, previous}
"""

# Remove a peer's records if they are still this process's (the peer may have joined again on
# another process meanwhile: then they are that one's). KEYS: members, preferred, info, the
# process's peers. ARGV: peer, proc, its process entry. Returns 1 if removed.
_FORGET = """
redis.call('SREM', KEYS[4], ARGV[3])
local info = redis.call('HGET', KEYS[3], ARGV[1])
if info then
  local ok, decoded = pcall(cjson.decode, info)
  if ok and type(decoded) == 'table' and decoded[1] ~= ARGV[2] then return 0 end
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# After process ARGV[1] died: remove its peers' records, except those of peers that joined
# again elsewhere meanwhile. KEYS: its peers, its figures, its address counts, the addresses of
# its channel counts. ARGV: the process, the key prefix.
# Returns the removed "CHANNEL PEER"s.
_CLEANUP = """
local removed = {}
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local space = string.find(entry, ' ', 1, true)
  if space then
    local channel, peer = string.sub(entry, 1, space - 1), string.sub(entry, space + 1)
    local info_key = ARGV[2] .. 'info:' .. channel
    local info = redis.call('HGET', info_key, peer)
    local mine = true
    if info then
      local ok, decoded = pcall(cjson.decode, info)
      mine = not (ok and type(decoded) == 'table' and decoded[1] ~= ARGV[1])
    end
    if mine then
      redis.call('SREM', ARGV[2] .. 'members:' .. channel, peer)
      redis.call('SREM', ARGV[2] .. 'preferred:' .. channel, peer)
      redis.call('HDEL', info_key, peer)
      removed[#removed + 1] = entry
    end
  end
end
for _, address in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('DEL', ARGV[2] .. 'proc:' .. ARGV[1] .. ':chans:' .. address)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', ARGV[2] .. 'procs', ARGV[1])
return removed
"""

# One more socket from an address, if the cluster holds fewer than the cap. KEYS: this process's
# address counts, then every other live process's. ARGV: address, cap. Returns 1 if counted.
_ADMIT_ADDRESS = """
local total = 0
for _, key in ipairs(KEYS) do total = total + tonumber(redis.call('HGET', key, ARGV[1]) or '0') end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""

# A counted socket closed. KEYS: this process's address counts. ARGV: address.
_RELEASE_ADDRESS = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"""

# A peer of an address joins a channel, if the address is in it already or in fewer channels
# than the cap across the cluster. KEYS: this process's set of addresses with channel counts,
# its channel counts for the address, then every other live process's for the address. ARGV:
# address, channel, cap. Returns 1 if counted.
_ADMIT_CHANNEL = """
local seen, count, inside = {}, 0, false
for i = 2, #KEYS do
  for _, channel in ipairs(redis.call('HKEYS', KEYS[i])) do
    if channel == ARGV[2] then inside = true end
    if not seen[channel] then
      seen[channel] = true
      count = count + 1
    end
  end
end
if not inside and count >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

# A counted peer left its channel. KEYS: as _ADMIT_CHANNEL's first two. ARGV: address, channel.
_RELEASE_CHANNEL = """
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if redis.call('HLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end
return 1
"""

#: Where peers of other processes are (a peer never moves): (channel, peer) -> process.
WHERE_CACHE_ENTRIES = 100_000

_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])


def _unavailable_on_redis_errors(fatal: bool) -> Callable[[_Method], _Method]:
    """Redis gone for a moment is an `unavailable` error for that client, not a crash."""

    def wrap(method: _Method) -> _Method:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except (RedisError, OSError) as error:
                log.warning("%s failed: %s", method.__name__, error)
                raise ProtocolError(
                    "unavailable", "the cluster is unavailable, try again", fatal=fatal
                ) from None

        return cast(_Method, wrapper)

    return wrap


CLOSE_TIMEOUT_S = 5.0
"""Each step of leaving the cluster on shutdown waits at most this long."""


class RedisDirectory(LocalDirectory):
    """`LocalDirectory` for this process's peers, plus what Redis shares with the others."""

    def __init__(self, registry: Registry, config: ServerConfig) -> None:
        super().__init__(registry)
        assert config.redis_url is not None
        self.config = config
        self.proc = secrets.token_hex(6)
        self.redis: aioredis.Redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                config.redis_url, max_connections=POOL_CONNECTIONS, decode_responses=True
            )
        )
        self.live_procs: set[str] = {self.proc}
        self._secret_key = b""
        #: channel -> peer -> encoded PeerInfo, written at the next heartbeat.
        self._dirty: dict[str, dict[str, model.PeerInfo]] = {}
        self._heartbeats = Periodic("cluster heartbeat", config.cluster_heartbeat_s, self._beat)
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._sample_script = self.redis.register_script(_SAMPLE)
        self._forget_script = self.redis.register_script(_FORGET)
        self._cleanup_script = self.redis.register_script(_CLEANUP)
        self._admit_script = self.redis.register_script(_ADMIT_ADDRESS)
        self._release_script = self.redis.register_script(_RELEASE_ADDRESS)
        self._admit_channel_script = self.redis.register_script(_ADMIT_CHANNEL)
        self._release_channel_script = self.redis.register_script(_RELEASE_CHANNEL)
        self._where: dict[tuple[str, str], str] = {}
        #: Our peers in their channel's preferred pool in Redis.
        self._preferred: set[str] = set()
        #: Set by close(): our records go in one sweep (_cleanup), not peer by peer.
        self._closing = False

    # --- life cycle ---------------------------------------------------------------------

    async def start(self, events: Events) -> None:
        await super().start(events)
        try:
            await self.redis.set(model.KEY, secrets.token_hex(32), nx=True)
            key = await self.redis.get(model.KEY)
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(model.inbox(self.proc), model.ALL)
            await self._beat()
        except (RedisError, OSError) as error:
            await self.redis.aclose(close_connection_pool=True)
            raise UserError(f"cannot use Redis at {self.config.redis_url}: {error}") from None
        self._secret_key = str(key).encode()
        self._heartbeats.start()
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name="listen")

    async def close(self) -> None:
        self._closing = True
        await self._heartbeats.stop()
        if self._listener is not None:
            await stop_task(self._listener)
        # Bounded: a Redis that stopped answering must not hold the server's shutdown.
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            # Leave at once rather than after `cluster_liveness_s`: drop our peers and our name.
            await asyncio.wait_for(self._cleanup(self.proc), CLOSE_TIMEOUT_S)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            if self._pubsub is not None:
                await asyncio.wait_for(self._pubsub.aclose(), CLOSE_TIMEOUT_S)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self.redis.aclose(close_connection_pool=True), CLOSE_TIMEOUT_S)

    # --- per-address caps ---------------------------------------------------------------

    async def admit_address(self, address: str, cap: int) -> bool:
        """One round trip; the sum is over the processes alive at our last beat (a process
        that died holds no sockets: its counts go with the rest of its records). Redis out of
        reach: admitted, each process's own cap still holds."""
        others = sorted(self.live_procs - {self.proc})
        keys = [model.proc_addresses_key(p) for p in [self.proc, *others]]
        try:
            return bool(await self._admit_script(keys=keys, args=[address, cap]))
        except (RedisError, OSError) as error:
            log.warning("per-address count failed, admitted on this process's cap: %s", error)
            return True

    async def release_address(self, address: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._release_script(keys=[model.proc_addresses_key(self.proc)], args=[address])

    async def admit_channel(self, address: str, channel: str, cap: int) -> bool:
        """One round trip, over the live processes as admit_address; Redis out of reach:
        admitted, each process's own cap still holds."""
        others = sorted(self.live_procs - {self.proc})
        keys = [
            model.proc_channel_addresses_key(self.proc),
            *(model.proc_address_channels_key(p, address) for p in [self.proc, *others]),
        ]
        try:
            return bool(await self._admit_channel_script(keys=keys, args=[address, channel, cap]))
        except (RedisError, OSError) as error:
            log.warning(
                "per-address channel count failed, admitted on this process's cap: %s", error
            )
            return True

    async def release_channel(self, address: str, channel: str) -> None:
        keys = [
            model.proc_channel_addresses_key(self.proc),
            model.proc_address_channels_key(self.proc, address),
        ]
        with contextlib.suppress(RedisError, OSError):
            await self._release_channel_script(keys=keys, args=[address, channel])

    # --- membership ---------------------------------------------------------------------

    @_unavailable_on_redis_errors(fatal=True)
    async def join(self, message: Join, peer_id: str, now: float, count: int) -> Joined:
        channel_name = message.channel
        old_peer = old_proc = ""
        if message.role == "broadcaster":
            old_peer, old_proc = await self._claim(message, peer_id)
        result = self.registry.join(message, peer_id, now, claim_checked=True)
        if result.replaced is not None:  # its old broadcaster was ours
            self.replace_done(result.replaced)
        info = model.PeerInfo(self.proc, message.role)
        try:
            if result.replaced is not None:
                await self._forget(result.replaced)
            if old_peer and old_proc not in ("", self.proc) and old_proc in self.live_procs:
                await self._send_to_proc(old_proc, {"op": "replace", "peer": old_peer})
            candidates, claim, previous = await self._sample(
                channel_name, peer_id, count, join=info
            )
            if info.preferred:
                self._preferred.add(peer_id)
            # The same id held by another live process (its old socket not noticed closed yet):
            # that one drops it quietly.
            if previous is not None and previous.proc != self.proc:
                await self._learn_procs({previous.proc})
                if previous.proc in self.live_procs:
                    await self._send_to_proc(previous.proc, {"op": "evict", "peer": peer_id})
        except (RedisError, OSError) as error:
            with contextlib.suppress(RedisError, OSError):
                await self.leave(peer_id, now)
            self.registry.leave(peer_id, now)  # when Redis failed before leave() got to it
            self.registry.departures.pop(peer_id, None)
            log.warning("join failed: %s", error)
            raise ProtocolError(
                "unavailable", "the cluster is unavailable, try again", fatal=True
            ) from None
        channel = self.registry.channels.get(channel_name)
        media = (channel.media if channel else None) or model.media_of(claim)
        return Joined(channel_name, media, candidates)

    async def _claim(self, message: Join, peer_id: str) -> tuple[str, str]:
        """Own the channel cluster-wide or raise; returns the broadcaster it replaces, if any."""
        assert message.secret is not None
        secret_hash = hmac.new(
            self._secret_key, message.secret.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).hexdigest()
        token = self.config.broadcast_token
        token_ok = token is None or (
            message.token is not None
            and hmac.compare_digest(
                message.token.encode("utf-8", "surrogatepass"), token.encode("utf-8")
            )
        )
        status, old_peer, old_proc = await self.redis.eval(
            _CLAIM,
            2,
            model.claim_key(message.channel),
            model.CLAIMS,
            secret_hash,
            peer_id,
            self.proc,
            message.channel,
            self.config.max_channels,
            "1" if token_ok else "0",
            self._claim_held_ms(),
        )
        if status == "owned":
            raise ProtocolError(
                "channel_owned", "this channel belongs to another broadcaster", fatal=True
            )
        if status == "token":
            if message.token is None:
                raise ProtocolError("token_required", "creating a channel needs a token", True)
            raise ProtocolError("forbidden", "wrong token", fatal=True)
        if status == "full":
            raise ProtocolError("server_full", "too many broadcasts on this cluster", fatal=True)
        return str(old_peer), str(old_proc)

    def _claim_held_ms(self) -> int:
        """A connected broadcaster's claim outlives its process's last heartbeat by claim_ttl."""
        return int((self.config.owner_ttl_s + self.config.cluster_liveness_s) * 1000)

    async def leave(self, peer_id: str, now: float, graceful: bool = True) -> None:
        peer = self.registry.peers.get(peer_id)
        if peer is None:
            return
        channel_name, role = peer.channel, peer.role
        left = self.registry.leave(peer_id, now, graceful=graceful)
        assert left is not None
        self.events.deliver(left.notify, {"type": "peer_left", "peer_id": peer_id})
        await self._forget(left)
        if left.departure is not None and not self._closing:
            # Every process holds the departure: each tells its own peers that knew it, unless
            # it joined again anywhere within the grace period.
            with contextlib.suppress(RedisError, OSError):
                ended_ids = [peer_id] if left.departure.ended_broadcast else []
                await self._publish_departed(channel_name, [peer_id], ended_ids)
        if self._closing:
            return  # this process is going: its broadcaster's claim lasts claim_ttl, as on a crash
        try:
            if role == "broadcaster":
                await self.redis.eval(
                    _RELEASE,
                    1,
                    model.claim_key(channel_name),
                    peer_id,
                    int(self.config.owner_ttl_s * 1000),
                )
            if left.broadcast_ended:
                ended = {"type": "broadcast_ended", "reason": "broadcaster_left"}
                self._deliver_to_channel(channel_name, ended, except_peer=None)
                await self._publish_all(channel_name, ended, except_peer=None)
        except (RedisError, OSError) as error:
            log.warning("could not release %s's claim on %s: %s", peer_id, channel_name, error)

    async def _replaced_here(self, peer_id: str) -> None:
        """Another process took our broadcaster's claim with its secret: close our socket."""
        peer = self.registry.peers.get(peer_id)
        if peer is None or peer.role != "broadcaster":
            return
        left = self.registry.leave(peer_id, time.monotonic(), replaced=True)
        assert left is not None
        self.replace_done(left)
        await self._forget(left)

    def _evicted_here(self, peer_id: str) -> None:
        """Our peer joined again on another process: drop the old session here, quietly (its
        records in Redis are the new process's now)."""
        peer = self.registry.peers.get(peer_id)
        if peer is None:
            return
        self.registry.leave(peer_id, time.monotonic(), replaced=True)
        self._dirty.get(peer.channel, {}).pop(peer_id, None)
        self._preferred.discard(peer_id)
        self.events.replaced(peer_id)

    async def _publish_departed(
        self, channel_name: str, peer_ids: list[str], ended: list[str] | None = None
    ) -> None:
        envelope = {
            "op": "departed",
            "src": self.proc,
            "channel": channel_name,
            "peers": peer_ids,
            "ended": ended or [],
        }
        await self.redis.publish(model.ALL, json.dumps(envelope, separators=(",", ":")))

    async def expire(self, now: float) -> None:
        """Tell the peers that knew a departed peer it is gone, unless it joined again anywhere
        (one HMGET per channel)."""
        notices = self.registry.expire(now)
        by_channel: dict[str, list[GoneNotice]] = {}
        for notice in notices:
            if notice.notify or notice.broadcast_ended:
                by_channel.setdefault(notice.channel, []).append(notice)
        for channel_name, gone in by_channel.items():
            try:
                infos = await self.redis.hmget(
                    model.info_key(channel_name), [n.peer_id for n in gone]
                )
            except (RedisError, OSError) as error:
                log.warning("could not check departed peers: %s", error)
                continue
            for notice, text in zip(gone, infos, strict=True):
                info = model.decode_info(_str(text)) if text is not None else None
                if info is not None and info.proc in self.live_procs:
                    continue  # it is back
                self.events.deliver(notice.notify, left_message(notice.peer_id))
                if notice.broadcast_ended:  # every process tells its own peers of the channel
                    ended = {"type": "broadcast_ended", "reason": "broadcaster_left"}
                    self._deliver_to_channel(channel_name, ended, except_peer=None)

    async def _forget(self, left: LeaveResult) -> None:
        """Remove a peer that left from Redis; tell its contacts on other processes."""
        channel_name, peer_id = left.channel, left.peer_id
        self._dirty.get(channel_name, {}).pop(peer_id, None)
        self._preferred.discard(peer_id)
        if self._closing:
            return
        try:
            await self._forget_script(
                keys=[
                    model.members_key(channel_name),
                    model.preferred_key(channel_name),
                    model.info_key(channel_name),
                    model.proc_peers_key(self.proc),
                ],
                args=[peer_id, self.proc, f"{channel_name} {peer_id}"],
            )
            await self._route(channel_name, left.notify_elsewhere, left_message(peer_id))
        except (RedisError, OSError) as error:
            # It stays a member until this process restarts or dies (then it is swept); a
            # signal to it meanwhile comes back as unknown_peer.
            if not self._closing:
                log.warning("could not remove %s from Redis: %s", peer_id, error)

    # --- candidates ---------------------------------------------------------------------

    @_unavailable_on_redis_errors(fatal=False)
    async def candidates(self, peer_id: str, request: GetPeers) -> list[Candidate]:
        peer = self.registry.peers.get(peer_id)
        if peer is None:
            raise ProtocolError("not_joined", "send join first")
        exclude = request.exclude | peer.neighbours
        candidates, _, _ = await self._sample(peer.channel, peer_id, request.count, exclude=exclude)
        return candidates

    async def _sample(
        self,
        channel_name: str,
        requester: str,
        count: int,
        exclude: frozenset[str] = frozenset(),
        join: model.PeerInfo | None = None,
    ) -> tuple[list[Candidate], dict[str, str], model.PeerInfo | None]:
        """Weigh a bounded sample of the channel's members, in one round trip (_SAMPLE); with
        `join`, add `requester` to the channel too. Returns the candidates, the claim and (on a
        join) where `requester` was recorded before."""
        entry = f"{channel_name} {requester}"
        ids, infos, flat_claim, previous = await self._sample_script(
            keys=[
                model.members_key(channel_name),
                model.preferred_key(channel_name),
                model.info_key(channel_name),
                model.claim_key(channel_name),
                model.proc_peers_key(self.proc),
            ],
            args=[
                requester,
                SAMPLE_FACTOR * count,
                "1" if join else "0",
                join.encode() if join else "",
                "1" if join and join.preferred else "0",
                entry,
            ],
        )
        claim = {_str(k): _str(v) for k, v in zip(flat_claim[::2], flat_claim[1::2], strict=True)}
        decoded = model.decode_infos(None if text is None else _str(text) for text in infos)
        await self._learn_procs(model.procs_of(decoded))
        pool = model.live_candidates(
            [_str(i) for i in ids], decoded, self.live_procs, exclude | {requester}
        )
        seq = claim.get("seq", "")
        live_edge_seq = int(seq) if seq.isdigit() else None
        previous_info = model.decode_info(_str(previous)) if previous else None
        return draw(pool, count, self.registry.rng, live_edge_seq), claim, previous_info

    async def status(self, peer_id: str, status: Status) -> None:
        self.registry.status(peer_id, status)
        peer = self.registry.peers[peer_id]
        self._dirty.setdefault(peer.channel, {})[peer_id] = model.PeerInfo(
            self.proc,
            peer.role,
            status.latest_seq,
            status.spare_upload_bps,
            len(peer.neighbours),
        )

    # --- signals and broadcasts ---------------------------------------------------------

    @_unavailable_on_redis_errors(fatal=False)
    async def signal(self, from_id: str, to_id: str, data: dict[str, Any]) -> None:
        if to_id in self.registry.peers:
            await super().signal(from_id, to_id, data)
            return
        sender = self.registry.peers.get(from_id)
        if sender is None:
            raise ProtocolError("not_joined", "send join first")
        proc = await self._where_is(sender.channel, to_id)
        if proc is None or to_id == from_id:
            raise ProtocolError("unknown_peer", "no such peer in this channel")
        self.registry.record_remote_contact(from_id, to_id)
        await self._send_to_proc(
            proc,
            {
                "op": "signal",
                "from": from_id,
                "from_proc": self.proc,
                "channel": sender.channel,
                "to": to_id,
                "data": data,
                "t": time.time(),
            },
        )

    async def _where_is(self, channel_name: str, peer_id: str) -> str | None:
        """The live process holding `peer_id` in this channel (cached; a peer moves only when
        its server goes away, and a signal that missed it is forwarded: `_on_envelope`)."""
        key = (channel_name, peer_id)
        proc = self._where.get(key)
        if proc is not None and proc not in self.live_procs:
            proc = None  # it joined again elsewhere, or is gone: ask Redis
        if proc is None:
            text = await self.redis.hget(model.info_key(channel_name), peer_id)
            info = model.decode_info(_str(text)) if text is not None else None
            if info is None:
                return None
            proc = info.proc
            if len(self._where) >= WHERE_CACHE_ENTRIES:
                del self._where[next(iter(self._where))]
            self._where[key] = proc
        await self._learn_procs({proc})
        return proc if proc in self.live_procs else None

    @_unavailable_on_redis_errors(fatal=False)
    async def publish(self, peer_id: str, media: dict[str, Any], now: float) -> None:
        await super().publish(peer_id, media, now)
        channel_name = self.registry.peers[peer_id].channel
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(
            model.claim_key(channel_name),
            mapping={"media": json.dumps(media, separators=(",", ":")), "since": time.time()},
        )
        await pipe.execute()
        await self._publish_all(channel_name, {"type": "media", "media": media}, peer_id)

    @_unavailable_on_redis_errors(fatal=False)
    async def end(self, peer_id: str, now: float) -> None:
        was_live = self.registry.end(peer_id, now)
        if was_live is None:
            return
        message = {"type": "broadcast_ended", "reason": "ended"}
        self._deliver_to_channel(was_live.name, message, except_peer=peer_id)
        await self.redis.hset(model.claim_key(was_live.name), mapping={"media": "", "since": ""})
        await self._publish_all(was_live.name, message, peer_id)

    def _deliver_to_channel(
        self, channel_name: str, message: dict[str, Any], except_peer: str | None
    ) -> None:
        channel = self.registry.channels.get(channel_name)
        if channel is not None:
            self.events.deliver([p for p in channel.peers if p != except_peer], message)

    async def _publish_all(
        self, channel_name: str, message: dict[str, Any], except_peer: str | None
    ) -> None:
        envelope = {
            "op": "channel",
            "src": self.proc,
            "channel": channel_name,
            "except": except_peer,
            "msg": message,
        }
        await self.redis.publish(model.ALL, json.dumps(envelope, separators=(",", ":")))

    async def _route(
        self, channel_name: str, peer_ids: Iterable[str], message: dict[str, Any]
    ) -> None:
        """Deliver to peers of other processes (looked up in one HMGET)."""
        ids = list(peer_ids)
        if not ids:
            return
        infos = await self.redis.hmget(model.info_key(channel_name), ids)
        by_proc: dict[str, list[str]] = {}
        for peer_id, text in zip(ids, infos, strict=True):
            info = model.decode_info(_str(text)) if text is not None else None
            if info is not None and info.proc != self.proc and info.proc in self.live_procs:
                by_proc.setdefault(info.proc, []).append(peer_id)
        for proc, targets in by_proc.items():
            await self._send_to_proc(proc, {"op": "deliver", "peers": targets, "msg": message})

    async def _send_to_proc(self, proc: str, envelope: dict[str, Any]) -> None:
        await self.redis.publish(model.inbox(proc), json.dumps(envelope, separators=(",", ":")))

    async def _listen(self) -> None:
        """Handle what other processes send us; a broken subscription is re-made."""
        while not self._closing:  # not only cancellation: see signaling.background
            try:
                async for message in self._pubsub.listen():
                    if self._closing:
                        return
                    if message.get("type") == "message":
                        await self._on_envelope(message["data"])
            except (RedisError, OSError) as error:
                if self._closing:
                    return
                log.warning("cluster subscription lost (%s); resubscribing", error)
                await asyncio.sleep(self.config.cluster_heartbeat_s)
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.subscribe(model.inbox(self.proc), model.ALL)

    async def _on_envelope(self, text: str) -> None:
        try:
            envelope = json.loads(text)
            op = envelope["op"]
            if op == "signal":
                to_id, from_id = envelope["to"], envelope["from"]
                if to_id not in self.registry.peers:
                    # It moved to another process (its server went away): forward once.
                    self._where.pop((envelope["channel"], to_id), None)
                    moved_to = await self._where_is(envelope["channel"], to_id)
                    if moved_to not in (None, self.proc) and not envelope.get("forwarded"):
                        assert moved_to is not None
                        await self._send_to_proc(moved_to, {**envelope, "forwarded": True})
                        return
                    # It left: the sender's server forgets it.
                    gone = {"op": "gone", "channel": envelope["channel"], "peer": to_id}
                    await self._send_to_proc(envelope["from_proc"], {**gone, "to": from_id})
                    return
                self.registry.record_remote_contact(to_id, from_id)
                self.events.deliver(
                    [to_id], {"type": "signal", "from": from_id, "data": envelope["data"]}
                )
                self.events.signal_delivered(max(0.0, time.time() - float(envelope["t"])))
            elif op == "deliver":
                self.events.deliver(envelope["peers"], envelope["msg"])
            elif op == "gone":  # a signal we sent found no one: as if it had been refused here
                self._where.pop((envelope["channel"], envelope["peer"]), None)
                error = {"type": "error", "code": "unknown_peer", "fatal": False}
                self.events.deliver([envelope["to"]], {**error, "message": "that peer left"})
            elif op == "channel" and envelope["src"] != self.proc:
                self._deliver_to_channel(envelope["channel"], envelope["msg"], envelope["except"])
            elif op == "replace":
                await self._replaced_here(envelope["peer"])
            elif op == "evict":
                self._evicted_here(envelope["peer"])
            elif op == "departed" and envelope["src"] != self.proc:
                deadline_s = time.monotonic() + self.registry.peer_grace_s
                ended = set(envelope.get("ended", []))
                for peer_id in envelope["peers"]:
                    self.registry.add_departure(
                        Departure(
                            str(peer_id),
                            str(envelope["channel"]),
                            frozenset(),
                            deadline_s,
                            peer_id in ended,
                        )
                    )
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed cluster message")
        except Exception:  # one bad message must not stop the listener
            log.exception("cluster message failed")

    # --- heartbeats, figures, cleanup ---------------------------------------------------

    async def _beat(self) -> None:
        """Say we are alive, learn who else is, publish our figures and peers' status."""
        now_ms = int(time.time() * 1000)
        liveness_ms = int(self.config.cluster_liveness_s * 1000)
        dirty, self._dirty = self._dirty, {}
        figures = model.local_figures(
            (c.name, c.role_counts, c.upload_bps_total) for c in self.registry.channels.values()
        )
        pipe = self.redis.pipeline(transaction=False)
        # Each process states its own deadline, so processes with other settings agree on it.
        pipe.zadd(model.PROCS, {self.proc: now_ms + liveness_ms})
        pipe.zrangebyscore(model.PROCS, now_ms, "+inf")
        pipe.zrangebyscore(model.PROCS, "-inf", now_ms - 1)
        figures_key = model.proc_channels_key(self.proc)
        pipe.delete(figures_key)
        if figures:
            pipe.hset(figures_key, mapping=figures)  # type: ignore[arg-type]
            pipe.pexpire(figures_key, liveness_ms)
        for channel_name, infos in dirty.items():
            if not infos:  # its peers left before the beat (an empty HSET fails the whole beat)
                continue
            pipe.hset(
                model.info_key(channel_name),
                mapping={peer_id: info.encode() for peer_id, info in infos.items()},
            )
            joined = {p for p, info in infos.items() if info.preferred} - self._preferred
            dropped = {p for p, info in infos.items() if not info.preferred} & self._preferred
            if joined:  # only changes: most peers keep their pool from one status to the next
                pipe.sadd(model.preferred_key(channel_name), *joined)
                self._preferred |= joined
            if dropped:
                pipe.srem(model.preferred_key(channel_name), *dropped)
                self._preferred -= dropped
            for info in infos.values():
                if info.role == "broadcaster" and info.latest_seq is not None:
                    pipe.hset(model.claim_key(channel_name), "seq", info.latest_seq)
        for channel in self.registry.channels.values():
            if channel.broadcaster_id is not None:
                pipe.pexpire(model.claim_key(channel.name), self._claim_held_ms())
        results = await pipe.execute()
        self.live_procs = set(results[1]) | {self.proc}
        for dead in results[2]:
            if dead != self.proc:
                await self._cleanup(dead)

    async def _learn_procs(self, procs: set[str]) -> None:
        """Check processes we do not know yet (one started since our last beat) in Redis."""
        unknown = sorted(procs - self.live_procs)
        if not unknown:
            return
        deadlines_ms = await self.redis.zmscore(model.PROCS, unknown)
        now_ms = time.time() * 1000
        for proc, deadline_ms in zip(unknown, deadlines_ms, strict=True):
            if deadline_ms is not None and deadline_ms >= now_ms:
                self.live_procs.add(proc)

    async def _cleanup(self, proc: str) -> None:
        """Remove a gone process's peers from every channel (one process does it, under a lock)."""
        lock = f"{model.PREFIX}cleanup:{proc}"
        if not await self.redis.set(lock, "1", nx=True, ex=CLEANUP_LOCK_S):
            return
        entries = await self._cleanup_script(
            keys=[
                model.proc_peers_key(proc),
                model.proc_channels_key(proc),
                model.proc_addresses_key(proc),
                model.proc_channel_addresses_key(proc),
            ],
            args=[proc, model.PREFIX],
        )
        self.live_procs.discard(proc)
        log.info("cleaned up after signaling process %s (%d peers)", proc, len(entries))
        if proc == self.proc:
            return
        # Its peers get the grace period to join again elsewhere; then whoever knew them hears.
        by_channel: dict[str, list[str]] = {}
        for entry in entries:
            channel_name, _, peer_id = _str(entry).partition(" ")
            by_channel.setdefault(channel_name, []).append(peer_id)
        deadline_s = time.monotonic() + self.registry.peer_grace_s
        for channel_name, peer_ids in by_channel.items():
            for peer_id in peer_ids:
                self.registry.add_departure(
                    Departure(peer_id, channel_name, frozenset(), deadline_s)
                )
            await self._publish_departed(channel_name, peer_ids)

    async def sweep(self, now: float) -> None:
        await super().sweep(now)
        names = [_str(name) for name in await self.redis.smembers(model.CLAIMS)]
        if not names:
            return
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(model.claim_key(name))
        found = await pipe.execute()
        gone = [name for name, exists in zip(names, found, strict=True) if not exists]
        if gone:
            await self.redis.srem(model.CLAIMS, *gone)

    # --- figures ------------------------------------------------------------------------

    async def _cluster_figures(self) -> dict[str, dict[str, int]]:
        """Channel -> peers by role and upload, summed over every live process."""
        procs = sorted(self.live_procs)
        pipe = self.redis.pipeline(transaction=False)
        for proc in procs:
            pipe.hgetall(model.proc_channels_key(proc))
        totals: dict[str, dict[str, int]] = {}
        for per_channel in await pipe.execute():
            for name, text in per_channel.items():
                model.add_figures(totals.setdefault(name, model.empty_figures()), text)
        return totals

    async def channel_summaries(self, now: float) -> list[dict[str, Any]]:
        names = sorted(_str(name) for name in await self.redis.smembers(model.CLAIMS))
        figures = await self._cluster_figures()
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(model.claim_key(name))
        claims = await pipe.execute()
        now_unix_s = time.time()
        return [
            model.channel_summary(
                name, claim, figures.get(name, model.empty_figures()), self.live_procs, now_unix_s
            )
            for name, claim in zip(names, claims, strict=True)
            if claim.get("hash")
        ]

    async def channel_summary(self, name: str, now: float) -> dict[str, Any] | None:
        claim = {
            _str(k): _str(v) for k, v in (await self.redis.hgetall(model.claim_key(name))).items()
        }
        figures = (await self._cluster_figures()).get(name)
        if not claim and figures is None:
            return None
        return model.channel_summary(
            name, claim, figures or model.empty_figures(), self.live_procs, time.time()
        )

    async def totals(self) -> Totals:
        figures = await self._cluster_figures()
        peers_by_role = {role: 0 for role in ("viewer", "relay", "broadcaster")}
        for channel in figures.values():
            for role in peers_by_role:
                peers_by_role[role] += channel[role]
        claimed = await self.redis.smembers(model.CLAIMS)
        return Totals(peers_by_role, len(figures.keys() | {_str(name) for name in claimed}))


def _str(value: str | bytes) -> str:
    """redis-py's replies are typed str | bytes; ours are str (decode_responses=True)."""
    return value.decode() if isinstance(value, bytes) else value


def left_message(peer_id: str) -> dict[str, Any]:
    return {"type": "peer_left", "peer_id": peer_id}
