// The channel's media description (the signaling server's `media` object), validated.
//
// Why a module: the page must not trust the server to be well-formed; this mirrors
// streamer/node/media_info.py so the page and the Python peers accept the same descriptions.
// Pure: no DOM.

const MAX_INIT_SEGMENT_BYTES = 64 * 1024;

export class MediaError extends Error {}

export function base64ToBytes(text, maxBytes, what) {
  if (typeof text !== "string" || text.length > (4 * maxBytes) / 3 + 4) {
    throw new MediaError(`media.${what} must be a base64 string of at most ${maxBytes} bytes`);
  }
  let raw;
  try {
    raw = atob(text);
  } catch {
    throw new MediaError(`media.${what} is not valid base64`);
  }
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
  return out;
}

/** Validate a media description; returns {mimeType, chunkSeconds, initSegment, publicKey, ...}. */
export function parseMedia(media) {
  if (!media || typeof media !== "object") throw new MediaError("media must be an object");
  const mimeType = media.mime_type;
  if (typeof mimeType !== "string" || !mimeType.length || mimeType.length > 256) {
    throw new MediaError("media.mime_type must be a short string");
  }
  const chunkSeconds = media.chunk_seconds;
  if (typeof chunkSeconds !== "number" || !(chunkSeconds >= 0.05 && chunkSeconds <= 60)) {
    throw new MediaError("media.chunk_seconds must be a number in [0.05, 60]");
  }
  const keyType = media.key_type ?? "ed25519";
  if (keyType !== "ed25519") throw new MediaError(`unsupported signature key type ${keyType}`);
  const publicKey = base64ToBytes(media.public_key, 32, "public_key");
  if (publicKey.length !== 32) throw new MediaError("media.public_key must be a raw Ed25519 key");
  const initSegment = base64ToBytes(media.init_segment, MAX_INIT_SEGMENT_BYTES, "init_segment");
  if (!initSegment.length) throw new MediaError("media.init_segment is empty");
  const bitrateBps = Number.isInteger(media.bitrate_bps) ? media.bitrate_bps : 0;
  const firstSeq = Number.isInteger(media.first_seq) ? media.first_seq : null;
  let epoch = null;
  if (media.epoch !== undefined && media.epoch !== null) {
    if (!Number.isInteger(media.epoch) || media.epoch < 0 || media.epoch > 0xffffffff) {
      throw new MediaError("media.epoch must be an integer in [0, 2**32)");
    }
    epoch = media.epoch;
  }
  return {
    mimeType,
    chunkSeconds,
    initSegment,
    publicKey,
    bitrateBps,
    firstSeq,
    /** The broadcast session: only chunk headers signed for it are accepted (null: any). */
    epoch,
    width: Number.isInteger(media.width) ? media.width : null,
    height: Number.isInteger(media.height) ? media.height : null,
    /** Identity of this broadcast session: a change means a restart (new init, key or seqs). */
    key: `${mimeType}|${media.init_segment}|${media.public_key}|${firstSeq}|${epoch}`,
  };
}
