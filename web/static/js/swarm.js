// The swarm core's entry module, as streamer/swarm/__init__.py is Python's: SwarmPeer, one peer's
// sans-I/O swarm state machine (peer.js, the dispatcher, and its parts: outbox.js, announcing.js,
// seeding.js, serving.js, fetching.js, playout.js, verifying.js; the rules: docs/protocol.md,
// Behaviour, and docs/ARCHITECTURE.md). The page's player, signaling and WebRTC code drive it;
// node tests drive it with explicit time. No DOM, no timers, no WebRTC, no clock in the core:
// every call takes `now` (seconds; pass Date.now() / 1000 so that lag against the source's
// release time means something).
//
// Driver API (same as Python's SwarmPeer, camelCase):
//
//   const core = new SwarmPeer({role: Role.VIEWER, now, rng: seededRandom(seed), config: {...}});
//   core.addNeighbour(peerId, now) -> bool      // a data channel opened; false = full, close it
//   core.removeNeighbour(peerId, now)           // the channel closed
//   core.receive(peerId, bytes, now)            // one binary message (Uint8Array or ArrayBuffer)
//   core.headerVerified(header, ok, now)        // the answer to a VerifyHeader event (see below)
//   core.publishChunk(header, data, now)        // source only, with a header signChunkHeader made
//   core.takeReady() -> Set<peerId>             // links with something new to send
//   core.nextControlMessage(peerId) -> Uint8Array | null   // send all of these, always
//   core.nextDataMessage(peerId, now) -> Uint8Array | null // only while the link has room
//                                               // (bufferedAmount low / upload cap not reached)
//   core.uploadPeers() -> peerId[]              // links whose requests hold an upload slot now
//   core.setLinkFull(peerId, full)              // the link's buffer reached its high mark (true)
//                                               // or has room again (false)
//   core.nextTimer() -> number | null           // call handleTimer(now) at that time
//   core.handleTimer(now)
//   core.popEvents() -> [{kind, ...}]           // see the event kinds below
//   core.stats() -> {startup_s, continuity, lag_s_p50, lag_s_p95, chunks_played, chunks_late,
//                    chunks_missed, lag_added_s, stall_s, reanchored_s, reanchors, bytes_from_source, bytes_from_peers,
//                    bytes_uploaded, timeouts, ...}
//                                               // (Python's names)
//   core.leave() -> Uint8Array                  // the bye to send to everyone on shutdown
//   core.exchangeCandidates(count, now) -> [[peerId, via]]  // peers our neighbours named
//   core.sendSignal(via, to, payload) -> bool   // a WebRTC signal to `to` through neighbour via
//
// Events (popEvents): {kind: "VerifyHeader", seq, header}; {kind: "ChunkComplete", seq, header,
// data}; {kind: "ChunkPlayed", seq, lagS, data} (append data to the SourceBuffer now);
// {kind: "ChunkMissed", seq}; {kind: "DropNeighbour", peerId, reason, bye} (send bye unless null,
// then close; the core forgot the peer already); {kind: "WantNeighbours", count};
// {kind: "PeerSignal", fromPeer, via, payload} (a WebRTC signal relayed to us through via).
//
// Signature checks are asynchronous in WebCrypto, so the core never waits on one. When a chunk
// header with new bytes arrives, the core emits VerifyHeader and keeps the header (and the pieces
// of that chunk that arrive meanwhile, bounded) aside, unstored. The driver checks it, e.g.
//     const ok = await verifier.verify(event.header);   // chunkheader.js HeaderVerifier
//     core.headerVerified(event.header, ok, Date.now() / 1000);
// then drains the core as after any input. ok: the header is stored and the held pieces are
// checked by hash (synchronously, sha2.js) and stored; not ok: every neighbour that sent those
// bytes is dropped as a forger. For tests or a synchronous verifier, pass
// `verifyHeaderSync: (header) => boolean` to the constructor: no VerifyHeader events then.
//
// After every call that feeds the core (receive, headerVerified, handleTimer, publishChunk,
// add/removeNeighbour) the driver drains popEvents(), sends the control messages of every peer in
// takeReady(), pumps data messages while each link has room (drain.js), and re-arms its timer
// from nextTimer(). Flow control is the driver's: the core produces a piece only when asked.
//
// Rules this module never breaks: a malformed or hostile message drops only its sender (a
// ProtocolError inside receive becomes a DropNeighbour event, never an exception to the driver);
// nothing unverified is stored, played or forwarded; randomness only from the injected rng.

export { DEFAULT_CONFIG } from "./config.js";
export { SwarmPeer, percentile } from "./peer.js";
export { haveIntervalFor } from "./announcing.js";
export { Role } from "./wire.js";
export { seededRandom } from "./scheduler.js";
