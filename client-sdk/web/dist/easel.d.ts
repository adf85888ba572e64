import { EaselSession } from "../pkg/easel_web.js";
import type { EaselEvent, LoroDocLike, ModAction, Participant, SdpKind, Status, StoredOp, Tool, Transport } from "../pkg/easel_web.js";
import type { TransportName } from "./transport.js";
import { OpStore } from "./store.js";
import type { Restored } from "./store.js";
export type { EaselEvent, LoroDocLike, ModAction, Participant, SdpKind, Status, StoredOp, Tool, Transport, } from "../pkg/easel_web.js";
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
export type ConnectionEvent = {
    type: "connection";
    state: "connecting";
} | {
    type: "connection";
    state: "connected";
    transport: Transport;
    resumed: boolean;
} | {
    type: "connection";
    state: "disconnected";
    code?: number;
    codeName?: string;
    reason: string;
    retryInMs: number;
};
/** An edit round trip: from `localUpdate` to its ack, in ms. */
export interface LatencyEvent {
    type: "latency";
    room: string;
    ms: number;
}
/** Every event, by its `type`. */
export type ClientEvent = EaselEvent | ConnectionEvent | LatencyEvent;
export type EventOf<K extends ClientEvent["type"]> = Extract<ClientEvent, {
    type: K;
}>;
/** Loads the wasm core (once) and starts connecting to the server at `url` (its HTTP origin). */
export declare function connect(url: string, options: ConnectOptions): Promise<Client>;
/** One session with the server: reconnects by itself until `close()`. */
export declare class Client {
    private readonly options;
    readonly clientId: string;
    private readonly store;
    private readonly restored;
    /** The transport in use, if connected. */
    transport: Transport | undefined;
    /** The last edit round trip in ms (`localUpdate` to ack). */
    latencyMs: number | undefined;
    private readonly session;
    private readonly handlers;
    private readonly rooms;
    private readonly sentAt;
    private conn;
    private connecting;
    private closed;
    private maxDatagramLen;
    private timer;
    private refreshTimer;
    /** Store writes in flight: transmits wait for them (an op is durable before it is sent). */
    private storing;
    private pendingStore;
    private readonly wtUrl;
    private readonly wsUrl;
    /** Use [`connect`]. */
    constructor(url: string, options: ConnectOptions, clientId: string, store: OpStore | undefined, restored: Restored);
    /** Listens to one kind of event (room events of every room; `Room.on` filters one). */
    on<K extends ClientEvent["type"]>(type: K, handler: (e: EventOf<K>) => void): () => void;
    /**
     * Joins `room` with the app's `LoroDoc`; its local updates become ops. Unacked edits a
     * previous page left in IndexedDB are resent (`restored` overrides them).
     */
    join(room: string, doc: LoroDocLike & {
        subscribeLocalUpdates(f: (b: Uint8Array) => void): () => void;
    }, restored?: StoredOp[]): Room;
    /** Whether a connection is established. */
    get connected(): boolean;
    /** Resolves once every edit so far is in IndexedDB (e.g. before the page unloads). */
    flush(): Promise<void>;
    /** Ends the session for good. */
    close(): void;
    /** Runs `f` on the session, then the loop; a refused call throws (`SessionError`, …). */
    call<T>(f: (s: EaselSession, nowMs: number) => T): T;
    /** @internal */
    forget(room: string): void;
    private emit;
    /** The driver's loop: store first, then transmits, then events, then one timer. */
    private pump;
    private event;
    private tick;
    private attempt;
    private handshake;
    /** Asks `getToken()` for a new token before the one in use expires (ms since the epoch). */
    private scheduleRefresh;
}
/** A joined room: its document and everything said in it. */
export declare class Room {
    private readonly client;
    readonly id: string;
    readonly doc: LoroDocLike;
    /** Who is here, by participant index. */
    readonly participants: Map<number, Participant>;
    /** Our participant index once joined. */
    me: number | undefined;
    /** @internal */
    unsubscribe: (() => void) | undefined;
    private readonly handlers;
    /** @internal */
    constructor(client: Client, id: string, doc: LoroDocLike);
    /** Listens to this room's events of one kind. */
    on<K extends ClientEvent["type"]>(type: K, handler: (e: EventOf<K>) => void): () => void;
    /** Unacked op ids, oldest first. */
    pending(): bigint[];
    cursor(x: number, y: number): void;
    presence(status: Status, tool: Tool): void;
    chat(text: string): bigint;
    deleteChat(id: bigint): void;
    chatHistory(before: bigint, limit: number): void;
    startPoll(question: string, options: string[], opts?: {
        multiple?: boolean;
        durationMs?: number;
        live?: boolean;
    }): bigint;
    answerPoll(pollId: bigint, choices: number[]): bigint;
    closePoll(pollId: bigint): void;
    raiseHand(): void;
    lowerHand(participant?: number): void;
    moderate(target: number, action: ModAction, reason?: string): void;
    setCursorCap(cap?: number): void;
    sfuJoin(publish: boolean): void;
    sfuSdp(feed: bigint, kind: SdpKind, sdp: string): void;
    sfuCandidate(feed: bigint, candidate: string, mid: string, mlineIndex: number): void;
    sfuSubscribe(feeds: bigint[]): void;
    sfuLeave(feed: bigint): void;
    /** Leaves the room; its unacked edits are dropped. */
    leave(): void;
    /** @internal Keeps `participants` current, then hands `e` to this room's listeners. */
    observe(e: EaselEvent): void;
}
