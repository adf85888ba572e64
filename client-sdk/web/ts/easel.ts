// Easel's browser SDK: a thin driver around the wasm session core (`EaselSession`). It owns the
// sockets (transport.ts), the clock, one timer and IndexedDB (store.ts); the core owns every
// protocol decision: op ids, acks, resume, rejoin, backoff, throttling and byte formats.

import init, { EaselSession } from "../pkg/easel_web.js";
import type {
  EaselEvent,
  Frame,
  LoroDocLike,
  ModAction,
  Participant,
  SdpKind,
  Status,
  StoredOp,
  StoreOp,
  Tool,
  Transport,
} from "../pkg/easel_web.js";
import { dial } from "./transport.js";
import type { Connection, TransportName } from "./transport.js";
import { OpStore } from "./store.js";
import type { Restored } from "./store.js";

export type {
  EaselEvent,
  LoroDocLike,
  ModAction,
  Participant,
  SdpKind,
  Status,
  StoredOp,
  Tool,
  Transport,
} from "../pkg/easel_web.js";
export type { TransportName } from "./transport.js";

/** Options of [`connect`]. Give `token` or `getToken`. */
export interface ConnectOptions {
  /** A fixed token (JWT). */
  token?: string;
  /** Called for every connection attempt and before the token expires. */
  getToken?: () => string | Promise<string>;
  /** The WebTransport URL; default `https://<host of url>:4433/`. */
  webTransportUrl?: string;
  /** SHA-256 of the server's (self-signed, ≤ 14 days) certificate, hex. */
  certHash?: string;
  /** Display name (default: the token's). */
  name?: string;
  /** Stable id of this client; default one per browser tab, kept across reloads. */
  clientId?: string;
  /** Transports to use (default both, the remembered winner first). */
  transports?: TransportName[];
  /** WebTransport's head start over WebSocket in ms (default 300). */
  headStartMs?: number;
  /** IndexedDB database of unacked edits (default "easel"); `false` keeps nothing. */
  storage?: string | false;
}

/** Connection state changes, with the transport in use. */
export type ConnectionEvent =
  | { type: "connection"; state: "connecting" }
  | { type: "connection"; state: "connected"; transport: Transport; resumed: boolean }
  | { type: "connection"; state: "disconnected"; code?: number; codeName?: string; reason: string; retryInMs: number };

/** An edit round trip: from `localUpdate` to its ack, in ms. */
export interface LatencyEvent {
  type: "latency";
  room: string;
  ms: number;
}

/** Every event, by its `type`. */
export type ClientEvent = EaselEvent | ConnectionEvent | LatencyEvent;
export type EventOf<K extends ClientEvent["type"]> = Extract<ClientEvent, { type: K }>;
type Handler = (e: ClientEvent) => void;

const REMEMBERED = "easel.transport";
const CLIENT_ID = "easel.clientId";
/** Refresh the token this long before it expires. */
const REFRESH_BEFORE_MS = 60_000;
const DEFAULT_WT_PORT = 4433;

let ready: Promise<unknown> | undefined;

/** Loads the wasm core (once) and starts connecting to the server at `url` (its HTTP origin). */
export async function connect(url: string, options: ConnectOptions): Promise<Client> {
  if (!options.token && !options.getToken) throw new TypeError("connect: give token or getToken");
  ready ??= init();
  await ready;
  const clientId = options.clientId ?? tabClientId();
  const [store, restored] =
    options.storage === false
      ? [undefined, { nextOpId: 1n, rooms: new Map<string, StoredOp[]>() }]
      : await OpStore.open(options.storage ?? "easel", clientId);
  return new Client(url, options, clientId, store, restored);
}

function tabClientId(): string {
  try {
    const kept = sessionStorage.getItem(CLIENT_ID);
    if (kept) return kept;
    const id = `web-${crypto.randomUUID()}`;
    sessionStorage.setItem(CLIENT_ID, id);
    return id;
  } catch {
    return `web-${crypto.randomUUID()}`;
  }
}

function randomU64(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[0]!) << 32n) | BigInt(words[1]!);
}

function remembered(): TransportName | undefined {
  try {
    const t = localStorage.getItem(REMEMBERED);
    return t === "webtransport" || t === "websocket" ? t : undefined;
  } catch {
    return undefined;
  }
}

/** One session with the server: reconnects by itself until `close()`. */
export class Client {
  /** The transport in use, if connected. */
  transport: Transport | undefined;
  /** The last edit round trip in ms (`localUpdate` to ack). */
  latencyMs: number | undefined;
  private readonly session: EaselSession;
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly rooms = new Map<string, Room>();
  private readonly sentAt = new Map<string, number>();
  private conn: Connection | undefined;
  private connecting = false;
  private closed = false;
  private maxDatagramLen = 1200;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Store writes in flight: transmits wait for them (an op is durable before it is sent). */
  private storing: Promise<void> | undefined;
  private pendingStore: StoreOp[] = [];
  private readonly wtUrl: string;
  private readonly wsUrl: string;

  /** Use [`connect`]. */
  constructor(
    url: string,
    private readonly options: ConnectOptions,
    readonly clientId: string,
    private readonly store: OpStore | undefined,
    private readonly restored: Restored,
  ) {
    const base = new URL(url);
    this.wsUrl = new URL("/ws", base).href.replace(/^http/, "ws");
    this.wtUrl = options.webTransportUrl ?? `https://${base.hostname}:${DEFAULT_WT_PORT}/`;
    this.session = new EaselSession(
      { clientId, name: options.name, seed: randomU64(), firstOpId: restored.nextOpId },
      performance.now(),
    );
    this.tick();
  }

  /** Listens to one kind of event (room events of every room; `Room.on` filters one). */
  on<K extends ClientEvent["type"]>(type: K, handler: (e: EventOf<K>) => void): () => void {
    const set = this.handlers.get(type) ?? new Set();
    set.add(handler as Handler);
    this.handlers.set(type, set);
    return () => set.delete(handler as Handler);
  }

  /**
   * Joins `room` with the app's `LoroDoc`; its local updates become ops. Unacked edits a
   * previous page left in IndexedDB are resent (`restored` overrides them).
   */
  join(room: string, doc: LoroDocLike & { subscribeLocalUpdates(f: (b: Uint8Array) => void): () => void }, restored?: StoredOp[]): Room {
    this.session.join(room, doc, restored ?? this.restored.rooms.get(room) ?? null);
    const r = new Room(this, room, doc);
    r.unsubscribe = doc.subscribeLocalUpdates((bytes) => {
      const opId = this.session.localUpdate(performance.now(), room, bytes);
      this.sentAt.set(`${room}\u0000${opId}`, performance.now());
      this.pump();
    });
    this.rooms.set(room, r);
    this.pump();
    return r;
  }

  /** Whether a connection is established. */
  get connected(): boolean {
    return this.session.isConnected();
  }

  /** Resolves once every edit so far is in IndexedDB (e.g. before the page unloads). */
  async flush(): Promise<void> {
    while (this.storing) await this.storing;
  }

  /** Ends the session for good. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.refreshTimer);
    this.conn?.close("client closed");
    this.conn = undefined;
    for (const r of this.rooms.values()) r.unsubscribe?.();
  }

  /** Runs `f` on the session, then the loop; a refused call throws (`SessionError`, …). */
  call<T>(f: (s: EaselSession, nowMs: number) => T): T {
    try {
      return f(this.session, performance.now());
    } finally {
      this.pump();
    }
  }

  /** @internal */
  forget(room: string): void {
    this.rooms.delete(room);
  }

  private emit(e: ClientEvent): void {
    for (const h of this.handlers.get(e.type) ?? []) {
      try {
        h(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /** The driver's loop: store first, then transmits, then events, then one timer. */
  private pump(): void {
    for (let op; (op = this.session.pollStore()); ) this.pendingStore.push(op);
    if (this.pendingStore.length && this.store && !this.storing) {
      const ops = this.pendingStore;
      this.pendingStore = [];
      this.storing = this.store.apply(ops, this.session.nextOpId()).then(
        () => {
          this.storing = undefined;
          this.pump();
        },
        (e: unknown) => {
          this.storing = undefined;
          this.emit({ type: "error", code: 0, codeName: "storage", message: `IndexedDB: ${String(e)}` });
          this.pump();
        },
      );
    } else if (!this.store) {
      this.pendingStore = [];
    }
    if (!this.storing) {
      for (let t; (t = this.session.pollTransmit()); ) {
        const conn = this.conn;
        if (!conn) continue;
        if (t.type === "control") conn.sendControl(t.bytes);
        else if (t.type === "join") conn.openRoom(t.room, t.bytes);
        else if (t.type === "room") conn.sendRoom(t.room, t.bytes);
        else conn.sendDatagram(t.bytes, this.maxDatagramLen);
      }
    }
    for (let e; (e = this.session.pollEvent()); ) this.event(e);
    clearTimeout(this.timer);
    const due = this.session.pollTimeout();
    if (due !== undefined && !this.closed) {
      this.timer = setTimeout(() => this.tick(), Math.max(0, due - performance.now()));
    }
  }

  private event(e: EaselEvent): void {
    if (e.type === "acked") {
      for (const id of e.opIds) {
        const key = `${e.room}\u0000${id}`;
        const at = this.sentAt.get(key);
        this.sentAt.delete(key);
        if (at !== undefined) {
          this.latencyMs = performance.now() - at;
          this.emit({ type: "latency", room: e.room, ms: this.latencyMs });
        }
      }
    }
    if ("room" in e && e.room !== undefined) this.rooms.get(e.room)?.observe(e);
    if (e.type === "tokenRefreshed") {
      // The next refresh, before the new token expires.
      if (this.conn) this.scheduleRefresh(e.expiresMs);
    } else if (e.type === "connected") {
      this.transport = e.transport;
      this.emit({ type: "connection", state: "connected", transport: e.transport, resumed: e.resumed });
    } else if (e.type === "disconnected") {
      this.transport = undefined;
      this.emit({ type: "connection", state: "disconnected", code: e.code, codeName: e.codeName, reason: e.reason, retryInMs: e.retryInMs });
    }
    this.emit(e);
  }

  private tick(): void {
    if (this.closed) return;
    const now = performance.now();
    this.session.handleTimeout(now);
    if (!this.connecting && !this.conn && this.session.shouldConnect(now)) void this.attempt();
    this.pump();
  }

  private async attempt(): Promise<void> {
    this.connecting = true;
    this.session.connecting();
    this.emit({ type: "connection", state: "connecting" });
    let conn: Connection | undefined;
    let handshaken = false;
    const fail = (code: number | undefined, reason: string): void => {
      if (this.conn === conn) this.conn = undefined;
      this.connecting = false;
      clearTimeout(this.refreshTimer);
      if (!this.closed) this.session.disconnected(performance.now(), code ?? null, reason);
      this.pump();
    };
    try {
      const token = this.options.token ?? (await this.options.getToken!());
      const first = remembered() ?? "webtransport";
      const order: TransportName[] = (this.options.transports ?? [first, first === "webtransport" ? "websocket" : "webtransport"]);
      conn = await dial(
        {
          webTransportUrl: this.wtUrl,
          webSocketUrl: this.wsUrl,
          certHash: this.options.certHash,
          transports: order,
          // A remembered WebSocket winner goes first without waiting.
          headStartMs: first === "webtransport" ? (this.options.headStartMs ?? 300) : 0,
        },
        {
          controlFrame: (f) => {
            if (handshaken) this.session.controlFrame(f);
            else {
              handshaken = true;
              this.handshake(conn!, f);
            }
            this.pump();
          },
          roomFrame: (room, f) => {
            this.session.roomFrame(performance.now(), room, f);
            this.pump();
          },
          snapshot: (bytes) => {
            try {
              this.session.snapshot(bytes);
            } catch (e) {
              this.emit({ type: "error", code: 0, codeName: "snapshot", message: String(e) });
              conn?.close("bad snapshot");
              return fail(undefined, String(e));
            }
            this.pump();
          },
          datagram: (bytes) => {
            this.session.datagram(bytes);
            this.pump();
          },
          closed: (code, reason) => fail(code, reason),
        },
      );
      if (this.closed) return conn.close("client closed");
      this.conn = conn;
      conn.sendControl(this.session.hello(token));
    } catch (e) {
      fail(undefined, String(e));
    }
  }

  private handshake(conn: Connection, frame: Frame): void {
    const h = this.session.handshake(performance.now(), conn.transport, frame);
    this.connecting = false;
    if (!h.ok) {
      conn.close("refused");
      if (this.conn === conn) this.conn = undefined;
      return;
    }
    this.maxDatagramLen = h.maxDatagramLen;
    try {
      localStorage.setItem(REMEMBERED, conn.transport);
    } catch {
      // Storage may be unavailable (private mode): nothing to remember.
    }
    this.scheduleRefresh(h.tokenExpiresMs);
  }

  /** Asks `getToken()` for a new token before the one in use expires (ms since the epoch). */
  private scheduleRefresh(expiresMs: bigint): void {
    clearTimeout(this.refreshTimer);
    const getToken = this.options.getToken;
    if (!getToken) return;
    const inMs = Number(expiresMs) - Date.now() - REFRESH_BEFORE_MS;
    this.refreshTimer = setTimeout(
      () => {
        Promise.resolve(getToken()).then(
          (t) => this.call((s) => s.refreshToken(t)),
          (e: unknown) => this.emit({ type: "error", code: 0, codeName: "token", message: String(e) }),
        );
      },
      Math.max(1000, Math.min(inMs, 2 ** 31 - 1)),
    );
  }
}

/** A joined room: its document and everything said in it. */
export class Room {
  /** Who is here, by participant index. */
  readonly participants = new Map<number, Participant>();
  /** Our participant index once joined. */
  me: number | undefined;
  /** @internal */
  unsubscribe: (() => void) | undefined;
  private readonly handlers = new Map<string, Set<Handler>>();

  /** @internal */
  constructor(
    private readonly client: Client,
    readonly id: string,
    readonly doc: LoroDocLike,
  ) {}

  /** Listens to this room's events of one kind. */
  on<K extends ClientEvent["type"]>(type: K, handler: (e: EventOf<K>) => void): () => void {
    const set = this.handlers.get(type) ?? new Set();
    set.add(handler as Handler);
    this.handlers.set(type, set);
    return () => set.delete(handler as Handler);
  }

  /** Unacked op ids, oldest first. */
  pending(): bigint[] {
    return Array.from(this.client.call((s) => s.pending(this.id)));
  }
  cursor(x: number, y: number): void {
    this.client.call((s, now) => s.cursor(now, this.id, x, y));
  }
  presence(status: Status, tool: Tool): void {
    this.client.call((s, now) => s.presence(now, this.id, status, tool));
  }
  chat(text: string): bigint {
    return this.client.call((s) => s.chat(this.id, text));
  }
  deleteChat(id: bigint): void {
    this.client.call((s) => s.deleteChat(this.id, id));
  }
  chatHistory(before: bigint, limit: number): void {
    this.client.call((s) => s.chatHistory(this.id, before, limit));
  }
  startPoll(question: string, options: string[], opts: { multiple?: boolean; durationMs?: number; live?: boolean } = {}): bigint {
    return this.client.call((s) =>
      s.startPoll(this.id, question, options, opts.multiple ?? false, opts.durationMs ?? 0, opts.live ?? true),
    );
  }
  answerPoll(pollId: bigint, choices: number[]): bigint {
    return this.client.call((s) => s.answerPoll(this.id, pollId, choices));
  }
  closePoll(pollId: bigint): void {
    this.client.call((s) => s.closePoll(this.id, pollId));
  }
  raiseHand(): void {
    this.client.call((s) => s.raiseHand(this.id));
  }
  lowerHand(participant = this.me ?? 0): void {
    this.client.call((s) => s.lowerHand(this.id, participant));
  }
  moderate(target: number, action: ModAction, reason = ""): void {
    this.client.call((s) => s.moderate(this.id, target, action, reason));
  }
  setCursorCap(cap?: number): void {
    this.client.call((s) => s.setCursorCap(this.id, cap));
  }
  sfuJoin(publish: boolean): void {
    this.client.call((s) => s.sfuJoin(this.id, publish));
  }
  sfuSdp(feed: bigint, kind: SdpKind, sdp: string): void {
    this.client.call((s) => s.sfuSdp(this.id, feed, kind, sdp));
  }
  sfuCandidate(feed: bigint, candidate: string, mid: string, mlineIndex: number): void {
    this.client.call((s) => s.sfuCandidate(this.id, feed, candidate, mid, mlineIndex));
  }
  sfuSubscribe(feeds: bigint[]): void {
    this.client.call((s) => s.sfuSubscribe(this.id, feeds));
  }
  sfuLeave(feed: bigint): void {
    this.client.call((s) => s.sfuLeave(this.id, feed));
  }
  /** Leaves the room; its unacked edits are dropped. */
  leave(): void {
    this.unsubscribe?.();
    this.client.forget(this.id);
    this.client.call((s) => s.leave(this.id));
  }

  /** @internal Keeps `participants` current, then hands `e` to this room's listeners. */
  observe(e: EaselEvent): void {
    if (e.type === "joined") {
      this.me = e.participant;
      this.participants.clear();
      for (const p of e.participants) this.participants.set(p.index, p);
    } else if (e.type === "participantJoined" || e.type === "participantUpdated") {
      this.participants.set(e.participant.index, e.participant);
    } else if (e.type === "participantLeft") {
      this.participants.delete(e.index);
    }
    for (const h of this.handlers.get(e.type) ?? []) {
      try {
        h(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
