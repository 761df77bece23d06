// What a peer has to say: per-link control queues, the links with something to send, events.
// The JavaScript twin of streamer/swarm/outbox.py.
//
// Every module of the core writes here and none reads another's queue. Rules: a control message
// is queued on its neighbour's link and that link is marked ready in the same step (the driver
// sends the control messages of every ready link, see drain.js); events keep their order; a
// neighbour is dropped only through drop(), which the peer wires to its own removeNeighbour so
// that every module lets go of the neighbour in one place.

export class Outbox {
  constructor() {
    /** Links that got control messages or servable data since the driver last looked. */
    this.ready = new Set();
    this.events = [];
    this.dropHook = null;
  }

  /** Queue a control message (hello, buffer map, have, header push, request, cancel, absent). */
  send(nb, data) {
    nb.control.push(data);
    this.ready.add(nb.peerId);
  }

  /** peerId's link may have data to send now (a piece arrived, a slot freed up). */
  wake(peerId) {
    this.ready.add(peerId);
  }

  emit(event) {
    this.events.push(event);
  }

  takeReady() {
    const ready = this.ready;
    this.ready = new Set();
    return ready;
  }

  popEvents() {
    const events = this.events;
    this.events = [];
    return events;
  }

  /** Who removes a dropped neighbour (the peer, which owns the neighbour table). */
  onDrop(hook) {
    this.dropHook = hook;
  }

  /** Drop nb now (a forger, a staller, a protocol error): it gets a bye with reason. */
  drop(nb, reason, byeReason) {
    if (this.dropHook === null) throw new Error("no drop hook: the peer wires it at construction");
    this.dropHook(nb, reason, byeReason);
  }
}
