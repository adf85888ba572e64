// The sockets: one connection over WebTransport or the WebSocket fallback (`/ws`, SPEC §16),
// raced with a head start for WebTransport. Bytes only: every frame is read with the core's
// `FrameReader` and handed up; what the bytes mean is the wasm core's business.

import { FrameReader, WsMux } from "../pkg/easel_web.js";
import type { Frame } from "../pkg/easel_web.js";

export type TransportName = "webtransport" | "websocket";

/** What a connection reports to the client driving it. */
export interface ConnectionSink {
  controlFrame(frame: Frame): void;
  roomFrame(room: string, frame: Frame): void;
  snapshot(bytes: Uint8Array): void;
  datagram(bytes: Uint8Array): void;
  /** Once, when the connection ends for any reason (`code`: the Easel wire code, if any). */
  closed(code: number | undefined, reason: string): void;
}

/** An open connection: the control stream exists, nothing is written yet. */
export interface Connection {
  readonly transport: TransportName;
  sendControl(bytes: Uint8Array): void;
  /** Opens a new bidirectional stream for `room` and writes `bytes` (its `Join`) first. */
  openRoom(room: string, bytes: Uint8Array): void;
  sendRoom(room: string, bytes: Uint8Array): void;
  /** Latest-wins: a datagram that cannot go now, or is longer than `maxLen`, is dropped. */
  sendDatagram(bytes: Uint8Array, maxLen: number): void;
  close(reason: string): void;
}

export interface DialOptions {
  webTransportUrl?: string;
  webSocketUrl?: string;
  /** SHA-256 of the server's certificate (hex), for self-signed dev certificates. */
  certHash?: string;
  /** Transports to try, in order of preference. */
  transports: TransportName[];
  /** Head start of the first transport over the second, in ms. */
  headStartMs: number;
}

const WS_CLOSE_BASE = 4000;
/** A WebSocket holding more unsent bytes than this drops datagrams (latest-wins). */
const WS_DATAGRAM_BACKLOG = 64 * 1024;

/**
 * Opens the transports in order, the later ones after the head start (or at once when an
 * earlier one fails); the first to open wins and the others are closed.
 */
export async function dial(opts: DialOptions, sink: ConnectionSink): Promise<Connection> {
  const attempts: Array<{ name: TransportName; abort: () => void; promise: Promise<Connection> }> = [];
  const errors: string[] = [];
  let won = false;
  return new Promise<Connection>((resolve, reject) => {
    let started = 0;
    let failed = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const start = (): void => {
      clearTimeout(timer);
      if (won || started >= opts.transports.length) return;
      const name = opts.transports[started++]!;
      const attempt = open(name, opts, sink);
      attempts.push({ name, ...attempt });
      attempt.promise.then(
        (conn) => {
          if (won) return conn.close("lost the race");
          won = true;
          clearTimeout(timer);
          for (const other of attempts) if (other.name !== name) other.abort();
          resolve(conn);
        },
        (e: unknown) => {
          errors.push(`${name}: ${String(e)}`);
          if (++failed === opts.transports.length) reject(new Error(errors.join("; ")));
          else start();
        },
      );
      if (started < opts.transports.length) timer = setTimeout(start, opts.headStartMs);
    };
    start();
  });
}

function open(
  name: TransportName,
  opts: DialOptions,
  sink: ConnectionSink,
): { abort: () => void; promise: Promise<Connection> } {
  if (name === "webtransport") {
    if (!opts.webTransportUrl || typeof WebTransport !== "function") {
      return { abort() {}, promise: Promise.reject(new Error("WebTransport is not available")) };
    }
    return openWebTransport(opts.webTransportUrl, opts.certHash, sink);
  }
  if (!opts.webSocketUrl) return { abort() {}, promise: Promise.reject(new Error("no WebSocket URL")) };
  return openWebSocket(opts.webSocketUrl, sink);
}

/** Reads frames of one stream into `each`; a frame that does not decode ends the connection. */
function framer(each: (frame: Frame) => void, fail: (e: unknown) => void): (chunk: Uint8Array) => void {
  const reader = new FrameReader();
  return (chunk) => {
    try {
      reader.push(chunk);
      for (let f; (f = reader.next()); ) each(f);
    } catch (e) {
      fail(e);
    }
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function unhex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function openWebTransport(
  url: string,
  certHash: string | undefined,
  sink: ConnectionSink,
): { abort: () => void; promise: Promise<Connection> } {
  const options: WebTransportOptions = certHash
    ? { serverCertificateHashes: [{ algorithm: "sha-256", value: unhex(certHash.trim()) as BufferSource }] }
    : {};
  let wt: WebTransport;
  try {
    wt = new WebTransport(url, options);
  } catch (e) {
    return { abort() {}, promise: Promise.reject(e) };
  }
  let ended = false;
  const end = (code: number | undefined, reason: string): void => {
    if (ended) return;
    ended = true;
    sink.closed(code, reason);
  };
  const fail = (e: unknown): void => {
    try {
      wt.close({ closeCode: 0, reason: String(e).slice(0, 100) });
    } catch {
      // Already closed.
    }
    end(undefined, String(e));
  };
  const pump = async (readable: ReadableStream<Uint8Array>, each: (chunk: Uint8Array) => void): Promise<void> => {
    const reader = readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      each(value);
    }
  };
  const promise = (async (): Promise<Connection> => {
    await wt.ready;
    const control = await wt.createBidirectionalStream();
    const controlWriter = control.writable.getWriter();
    wt.closed.then(
      (info) => end(info.closeCode, info.reason || "closed"),
      (e: unknown) => end(undefined, String(e)),
    );
    pump(control.readable, framer((f) => sink.controlFrame(f), fail)).then(
      () => end(undefined, "control stream ended"),
      (e: unknown) => end(undefined, String(e)),
    );
    pump(wt.datagrams.readable, (d) => sink.datagram(d)).catch(() => {});
    (async () => {
      const incoming = wt.incomingUnidirectionalStreams.getReader();
      for (;;) {
        const { value, done } = await incoming.read();
        if (done) return;
        const chunks: Uint8Array[] = [];
        pump(value, (c) => chunks.push(c)).then(() => sink.snapshot(concat(chunks)), fail);
      }
    })().catch(() => {});
    const datagrams = wt.datagrams.writable.getWriter();
    // Writes of one stream are queued in order behind the stream's opening.
    const rooms = new Map<string, Promise<WritableStreamDefaultWriter<Uint8Array>>>();
    const write = (w: WritableStreamDefaultWriter<Uint8Array>, bytes: Uint8Array): void => {
      w.write(bytes).catch(() => {});
    };
    return {
      transport: "webtransport",
      sendControl: (bytes) => write(controlWriter, bytes),
      openRoom(room, bytes) {
        const opened = wt.createBidirectionalStream().then((stream) => {
          const w = stream.writable.getWriter();
          write(w, bytes);
          pump(stream.readable, framer((f) => sink.roomFrame(room, f), fail)).catch(() => {});
          return w;
        });
        opened.catch(fail);
        rooms.set(room, opened);
      },
      sendRoom(room, bytes) {
        rooms.get(room)?.then((w) => write(w, bytes), () => {});
      },
      sendDatagram(bytes, maxLen) {
        const limit = Math.min(maxLen, wt.datagrams.maxDatagramSize ?? maxLen);
        // The browser's own datagram queue drops what it cannot send in time; waiting on the
        // writer's backpressure here instead held nearly every cursor back in Chromium.
        if (bytes.length > limit) return;
        datagrams.write(bytes).catch(() => {});
      },
      close(reason) {
        ended = true;
        try {
          wt.close({ closeCode: 0, reason });
        } catch {
          // Already closed.
        }
      },
    };
  })();
  promise.catch(() => {
    ended = true;
  });
  return {
    abort() {
      ended = true;
      try {
        wt.close();
      } catch {
        // Not open yet or already closed.
      }
    },
    promise,
  };
}

function openWebSocket(url: string, sink: ConnectionSink): { abort: () => void; promise: Promise<Connection> } {
  let ws: WebSocket;
  try {
    ws = new WebSocket(url, "easel.v1");
  } catch (e) {
    return { abort() {}, promise: Promise.reject(e) };
  }
  ws.binaryType = "arraybuffer";
  const mux = new WsMux();
  let ended = false;
  let opened = false;
  const end = (code: number | undefined, reason: string): void => {
    if (ended) return;
    ended = true;
    sink.closed(code, reason);
  };
  const fail = (e: unknown): void => {
    ws.close(1002, String(e).slice(0, 100));
    end(undefined, String(e));
  };
  const control = mux.openBi();
  const readers = new Map<number, (chunk: Uint8Array) => void>();
  const snapshots = new Map<number, Uint8Array[]>();
  readers.set(control, framer((f) => sink.controlFrame(f), fail));
  const roomIds = new Map<string, number>();
  const promise = new Promise<Connection>((resolve, reject) => {
    ws.onopen = () => {
      opened = true;
      resolve({
        transport: "websocket",
        sendControl: (bytes) => ws.send(WsMux.stream(control, bytes)),
        openRoom(room, bytes) {
          const id = mux.openBi();
          roomIds.set(room, id);
          readers.set(id, framer((f) => sink.roomFrame(room, f), fail));
          ws.send(WsMux.stream(id, bytes));
        },
        sendRoom(room, bytes) {
          const id = roomIds.get(room);
          if (id !== undefined) ws.send(WsMux.stream(id, bytes));
        },
        sendDatagram(bytes, maxLen) {
          if (bytes.length > maxLen || ws.bufferedAmount > WS_DATAGRAM_BACKLOG) return;
          ws.send(WsMux.datagram(bytes));
        },
        close(reason) {
          ended = true;
          ws.close(WS_CLOSE_BASE, reason.slice(0, 100));
        },
      });
    };
    ws.onclose = (ev) => {
      if (!opened) reject(new Error(`WebSocket closed before it opened (${ev.code})`));
      const code =
        ev.code >= WS_CLOSE_BASE && ev.code < WS_CLOSE_BASE + 1000
          ? ev.code - WS_CLOSE_BASE
          : ev.code === 1000
            ? 0
            : undefined;
      end(code, ev.reason || `WebSocket closed (${ev.code})`);
    };
  });
  ws.onmessage = (ev: MessageEvent<ArrayBuffer>) => {
    let events;
    try {
      events = mux.receive(new Uint8Array(ev.data));
    } catch (e) {
      return fail(e);
    }
    for (const e of events) {
      if (e.type === "opened") {
        if (!readers.has(e.id)) snapshots.set(e.id, []);
      } else if (e.type === "data") {
        const snapshot = snapshots.get(e.id);
        if (snapshot) snapshot.push(e.data);
        else readers.get(e.id)?.(e.data);
      } else if (e.type === "fin") {
        const snapshot = snapshots.get(e.id);
        snapshots.delete(e.id);
        if (snapshot) sink.snapshot(concat(snapshot));
      } else if (e.type === "reset") {
        snapshots.delete(e.id);
      } else if (e.type === "datagram") {
        sink.datagram(e.data);
      }
    }
  };
  return {
    abort() {
      ended = true;
      ws.close();
    },
    promise,
  };
}
