// Moving a core's output onto links: the one drain loop every driver of the JS core uses (the
// page, the node test harnesses, the bridge into the Python simulator). The twin of
// streamer/swarm/drain.py.
//
// The core queues control messages per link and produces data messages (headers, pieces) only
// when asked, so flow control stays with the driver. Rules: every control message is sent, in
// order, before any data for that link; data is pulled only while the driver says the link may
// take more; a send that fails stops that link for now (the core keeps what it did not hand out).

/**
 * Send every control message queued for peerId; false if the link refused one.
 * @param {(peerId: string, data: Uint8Array) => boolean} send
 */
export function sendControl(core, peerId, send) {
  let data;
  while ((data = core.nextControlMessage(peerId)) !== null) {
    if (!send(peerId, data)) return false;
  }
  return true;
}

/**
 * Pull headers and pieces for peerId while maySend() allows (always, if null); returns how many
 * were sent.
 */
export function sendData(core, peerId, now, send, maySend = null) {
  let sent = 0;
  while (maySend === null || maySend()) {
    const data = core.nextDataMessage(peerId, now);
    if (data === null || !send(peerId, data)) break;
    sent += 1;
  }
  return sent;
}

/** The control messages of several links, in peer-id order (a run must not depend on order). */
export function sendReadyControl(core, peerIds, send) {
  for (const peerId of [...peerIds].sort()) sendControl(core, peerId, send);
}

/**
 * Everything core has for peerId now, control messages first, then data, then the control
 * messages serving queued meanwhile (absents): an ideal link, for tests and bridges.
 */
export function drainLink(core, peerId, now) {
  const out = [];
  const keep = (_peerId, data) => {
    out.push(data);
    return true;
  };
  sendControl(core, peerId, keep);
  sendData(core, peerId, now, keep);
  sendControl(core, peerId, keep);
  return out;
}
