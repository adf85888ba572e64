/* tslint:disable */
/* eslint-disable */

/** The subset of loro-crdt's `LoroDoc` the session calls. */
export interface LoroDocLike {
    import(bytes: Uint8Array): unknown;
    importBatch(batch: Uint8Array[]): unknown;
    oplogVersion(): { encode(): Uint8Array; length(): number };
}

/** Options of a new session (all but `clientId` optional). */
export interface SessionOptions {
    /** Stable id of this installation (op ids are unique within it). */
    clientId: string;
    /** Display name sent in `Join` (empty: the token's). */
    name?: string;
    /** Most cursor datagrams per second per room (default 30). */
    cursorHz?: number;
    /** First reconnect delay bound in ms (default 250); doubles per failed attempt. */
    backoffMinMs?: number;
    /** Largest reconnect delay bound in ms (default 10000). */
    backoffMaxMs?: number;
    /** First op id (the offline store's `nextOpId`; default 1). */
    firstOpId?: bigint;
    /** Seed of the reconnect jitter, and the first id of chat, poll and attempt ids: random. */
    seed?: bigint;
}

/** An unacked op from the offline store (as `pollStore()` saved it). */
export interface StoredOp { opId: bigint; data: Uint8Array }

/** What `handshake()` made of the first frame on a connection's control stream. */
export type Handshake =
| { ok: true; resumed: boolean; user: string; sessionId: bigint; serverTimeMs: bigint;
tokenExpiresMs: bigint; maxFrameLen: number; maxDatagramLen: number; resumeGraceMs: number }
| { ok: false };

/** Something to send. `bytes` are ready for the wire (stream frames already length-prefixed). */
export type Transmit =
| { type: "control"; bytes: Uint8Array }
| { type: "join"; room: string; bytes: Uint8Array }
| { type: "room"; room: string; bytes: Uint8Array }
| { type: "datagram"; bytes: Uint8Array };

/** A write for the offline store. */
export type StoreOp =
| { type: "save"; room: string; opId: bigint; data: Uint8Array }
| { type: "remove"; room: string; opIds: bigint[] };

export type Status = "active" | "idle" | "away";
export type Tool = "pointer" | "pen" | "eraser" | "laser" | "hidden";
export type Role = "teacher" | "student" | "viewer";
export type ModAction = "muteChat" | "unmuteChat" | "readOnly" | "readWrite" | "remove" | "stopMedia";
export type SdpKind = "offer" | "answer";
export type SfuEventKind = "joined" | "publishing" | "unpublished" | "left";
export type Transport = "webtransport" | "websocket" | "quic";

export interface Participant {
    index: number; user: string; name: string; role: Role;
    readOnly: boolean; chatMuted: boolean; camera: boolean; handRaised: boolean;
}
export interface ChatMessage {
    id: bigint; from: number; user: string; name: string; text: string; sentMs: bigint; clientMsgId: bigint;
}
export interface Poll {
    pollId: bigint; request: bigint; by: number; question: string; options: string[];
    multiple: boolean; closesAtMs: bigint; live: boolean;
}
export interface PollResults { pollId: bigint; counts: number[]; respondents: number; closed: boolean }
export interface RemoteCursor { participant: number; x: number; y: number }

/** `code` is the wire number, `codeName` its name (e.g. "readOnly"). */
export type EaselEvent =
| { type: "connected"; transport: Transport; resumed: boolean }
| { type: "disconnected"; code?: number; codeName?: string; reason: string; retryInMs: number }
| { type: "tokenRefreshed"; expiresMs: bigint }
| { type: "joined"; room: string; participant: number; resumed: boolean; participants: Participant[] }
| { type: "joinFailed"; room: string; code: number; codeName: string; message: string }
| { type: "left"; room: string; code: number; codeName: string; reason: string }
| { type: "participantJoined"; room: string; participant: Participant }
| { type: "participantLeft"; room: string; index: number; code: number; codeName: string }
| { type: "participantUpdated"; room: string; participant: Participant }
| { type: "cursors"; room: string; cursors: RemoteCursor[] }
| { type: "presence"; room: string; participant: number; status: Status; tool: Tool }
| { type: "remoteUpdate"; room: string; from: number }
| { type: "synced"; room: string }
| { type: "acked"; room: string; opIds: bigint[] }
| { type: "rejected"; room: string; opId: bigint; code: number; codeName: string; message: string }
| { type: "chat"; room: string; message: ChatMessage }
| { type: "chatDeleted"; room: string; id: bigint; by: number }
| { type: "chatPage"; room: string; messages: ChatMessage[]; more: boolean }
| { type: "pollStarted"; room: string; poll: Poll }
| { type: "pollAnswered"; room: string; pollId: bigint; attemptId: bigint }
| { type: "pollResults"; room: string; results: PollResults }
| { type: "handQueue"; room: string; queue: number[] }
| { type: "cursorCap"; room: string; cap: number; by: number }
| { type: "moderated"; room: string; target: number; action: ModAction; by: number; reason: string }
| { type: "sfuGrant"; room: string; canPublish: boolean; iceServers: string[] }
| { type: "sfuSdp"; room: string; feed: bigint; kind: SdpKind; sdp: string }
| { type: "sfuCandidate"; room: string; feed: bigint; candidate: string; mid: string; mlineIndex: number }
| { type: "sfuEvent"; room: string; participant: number; feed: bigint; event: SfuEventKind }
| { type: "sfuStatus"; room: string; reachable: boolean; fallbackUrl: string }
| { type: "refused"; room: string; code: number; codeName: string; kind: number; reference: bigint; message: string }
| { type: "error"; room?: string; code: number; codeName: string; message: string };

/** What one WebSocket message meant (see `WsMux.receive`). */
export type WsEvent =
| { type: "opened"; id: number }
| { type: "data"; id: number; data: Uint8Array }
| { type: "fin"; id: number }
| { type: "reset"; id: number; code: number }
| { type: "datagram"; data: Uint8Array };




/**
 * One client session: its connection state, rooms, pending ops and timers. See the crate
 * README for the driver's loop.
 */
export class EaselSession {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Answers with an explicit attempt id: the same id again counts once.
     */
    answerPollAs(room: string, poll_id: bigint, attempt_id: bigint, choices: Uint8Array | number[]): void;
    /**
     * Answers a poll with option indices; returns the attempt id (resend the same answer
     * with `answerPollAs` and this id).
     */
    answerPoll(room: string, poll_id: bigint, choices: Uint8Array | number[]): bigint;
    /**
     * Asks for up to `limit` messages older than `before` (0: the newest): a `chatPage`.
     */
    chatHistory(room: string, before: bigint, limit: number): void;
    /**
     * Sends a chat message; returns its `clientMsgId` (the `chat` event echoes it).
     */
    chat(room: string, text: string): bigint;
    /**
     * Closes a poll (teachers).
     */
    closePoll(room: string, poll_id: bigint): void;
    /**
     * A connection attempt started: until it ends (`handshake` or `disconnected`) no timeout is
     * due, so `pollTimeout` gives `undefined` instead of a time already past.
     */
    connecting(): void;
    /**
     * A frame on the control stream after the handshake (`GoAway`, `Fault`, token answers).
     */
    controlFrame(frame: Frame): void;
    /**
     * Moves our cursor in `room` (board pixels); throttled, newest position wins.
     */
    cursor(now_ms: number, room: string, x: number, y: number): void;
    /**
     * A datagram received. One that does not decode is dropped (SPEC §3.2); returns whether
     * it decoded.
     */
    datagram(bytes: Uint8Array | number[]): boolean;
    /**
     * Deletes a chat message for everyone (teachers).
     */
    deleteChat(room: string, id: bigint): void;
    /**
     * The connection was lost, closed, or an attempt failed before its `Welcome`. `code` is
     * the server's wire code when the close carried one.
     */
    disconnected(now_ms: number, code: number | null | undefined, reason: string): void;
    /**
     * Time passed: throttled cursors, heartbeats, rate-delayed ops.
     */
    handleTimeout(now_ms: number): void;
    /**
     * The first frame read on the control stream of a connection over `transport`
     * ("webtransport" or "websocket"). A `Welcome` establishes the session (rooms are
     * rejoined: see `pollTransmit`); a `Fault` (a refused token, …) or anything else ends
     * the attempt: the session schedules the next and the driver closes the connection.
     */
    handshake(now_ms: number, transport: Transport, frame: Frame): Handshake;
    /**
     * The `Hello` frame to write first on a new connection's control stream (the client's
     * first bidirectional stream); it asks to resume the last session.
     */
    hello(token: string): Uint8Array;
    /**
     * Whether a connection is established.
     */
    isConnected(): boolean;
    /**
     * Joins `room` (now, or when connected) with the app's `LoroDoc`; `restored` are the
     * room's unacked ops from the offline store (imported into `doc` and resent).
     */
    join(room: string, doc: LoroDocLike, restored?: StoredOp[] | null): void;
    /**
     * Leaves `room`; its unacked ops are dropped from the store.
     */
    leave(room: string): void;
    /**
     * A local commit of `room`'s document (the bytes of loro-crdt's
     * `subscribeLocalUpdates`): it becomes an op, stored, sent and kept until acked. Returns
     * its op id.
     */
    localUpdate(now_ms: number, room: string, bytes: Uint8Array | number[]): bigint;
    /**
     * Lowers a hand: our own, or anyone's for a teacher.
     */
    lowerHand(room: string, participant: number): void;
    /**
     * A teacher's moderation of `target` (`ModAction` name).
     */
    moderate(room: string, target: number, action: ModAction, reason: string): void;
    /**
     * A disconnected session that may connect at once (see `SessionOptions`).
     */
    constructor(options: SessionOptions, now_ms: number);
    /**
     * The next op id that will be used (keep it with the stored ops).
     */
    nextOpId(): bigint;
    /**
     * Unacked op ids of `room`, oldest first.
     */
    pending(room: string): BigUint64Array;
    /**
     * The next `EaselEvent`, or `undefined` (remote updates received so far are imported
     * into the room documents first).
     */
    pollEvent(): EaselEvent | undefined;
    /**
     * The next `StoreOp` for the offline store, or `undefined`. Apply it before sending the
     * transmits polled after it (an op is durable locally before it goes out).
     */
    pollStore(): StoreOp | undefined;
    /**
     * When `handleTimeout` (or a connection attempt) is next due, in the driver's
     * milliseconds; `undefined`: nothing is scheduled.
     */
    pollTimeout(): number | undefined;
    /**
     * The next `Transmit`, or `undefined`.
     */
    pollTransmit(): Transmit | undefined;
    /**
     * Sets our presence in `room` (`Status`, `Tool` names); a heartbeat goes at once.
     */
    presence(now_ms: number, room: string, status: Status, tool: Tool): void;
    /**
     * Raises our hand.
     */
    raiseHand(room: string): void;
    /**
     * Asks the server to accept a fresh token (call before the current one expires).
     */
    refreshToken(token: string): void;
    /**
     * A frame on the room stream opened for `room` (its first is `Joined` or a `Fault`).
     */
    roomFrame(now_ms: number, room: string, frame: Frame): void;
    /**
     * A teacher sets the cursor cap: 0 shows all, `undefined` restores the lecture default.
     */
    setCursorCap(room: string, cap?: number | null): void;
    /**
     * Trickles one of our ICE candidates; an empty `candidate` ends them.
     */
    sfuCandidate(room: string, feed: bigint, candidate: string, mid: string, mline_index: number): void;
    /**
     * Asks for SFU access, to publish or only to subscribe: an `sfuGrant` answers.
     */
    sfuJoin(room: string, publish: boolean): void;
    /**
     * Stops publishing (`feed` 0) or drops a subscription.
     */
    sfuLeave(room: string, feed: bigint): void;
    /**
     * An SDP for a peer connection (`feed` 0: our publisher); `kind` "offer" or "answer".
     */
    sfuSdp(room: string, feed: bigint, kind: SdpKind, sdp: string): void;
    /**
     * Subscribes to feeds (ids from `sfuEvent`s).
     */
    sfuSubscribe(room: string, feeds: BigUint64Array | bigint[]): void;
    /**
     * Whether a connection attempt should start now.
     */
    shouldConnect(now_ms: number): boolean;
    /**
     * The whole content of a snapshot stream (a unidirectional stream the server opens),
     * read to its end. Throws a `ProtocolError` if it is not a snapshot stream.
     */
    snapshot(stream: Uint8Array | number[]): void;
    /**
     * Starts a poll (teachers); returns the request id its `pollStarted` carries.
     * `duration_ms` 0: open until `closePoll`.
     */
    startPoll(room: string, question: string, options: string[], multiple: boolean, duration_ms: number, live: boolean): bigint;
}

/**
 * One decoded frame of a stream, handed to [`crate::EaselSession`] as it is (not decoded
 * twice).
 */
export class Frame {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The message kind, e.g. "welcome", "fault", "joined" (for logs and the driver's checks).
     */
    readonly kind: string;
}

/**
 * Reads frames from one reliable stream (control, room or snapshot stream).
 */
export class FrameReader {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Whether the bytes so far end on a frame boundary (a stream that ends otherwise was cut).
     */
    atBoundary(): boolean;
    /**
     * A reader refusing frames longer than `max_frame` bytes (default: the protocol's
     * limit, 1 MiB).
     */
    constructor(max_frame?: number | null);
    /**
     * The next complete frame, or `undefined` until more bytes come. Throws a
     * `ProtocolError` (`code`: the wire code) for a frame that does not decode; the stream
     * may go on after it unless the code is 102 (`frameTooLarge`: close the connection).
     */
    next(): Frame | undefined;
    /**
     * Bytes read from the stream, any amount.
     */
    push(chunk: Uint8Array | number[]): void;
}

/**
 * The client end of the WebSocket mapping (SPEC §16): every binary WebSocket message is an
 * envelope — a datagram, bytes of a stream, its end or its reset.
 */
export class WsMux {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * The message carrying a datagram.
     */
    static datagram(data: Uint8Array | number[]): Uint8Array;
    /**
     * The message finishing stream `id`.
     */
    static fin(id: number): Uint8Array;
    /**
     * Bookkeeping for the client side, allowing the server `max_peer_streams` open streams
     * at once (default 32, as the native client: control, rooms, snapshots and slack).
     */
    constructor(max_peer_streams?: number | null);
    /**
     * A new bidirectional stream's id (the control stream, a room stream).
     */
    openBi(): number;
    /**
     * What a received message means: an array of `WsEvent`s (a stream's first bytes come as
     * `opened` then `data`). Throws a `ProtocolError` for a violation, which ends the session.
     */
    receive(message: Uint8Array | number[]): WsEvent[];
    /**
     * The message abandoning stream `id` with wire code `code`.
     */
    static reset(id: number, code: number): Uint8Array;
    /**
     * The message carrying `data` on stream `id`.
     */
    static stream(id: number, data: Uint8Array | number[]): Uint8Array;
}

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_easelsession_free: (a: number, b: number) => void;
    readonly __wbg_frame_free: (a: number, b: number) => void;
    readonly __wbg_framereader_free: (a: number, b: number) => void;
    readonly __wbg_wsmux_free: (a: number, b: number) => void;
    readonly easelsession_answerPoll: (a: number, b: number, c: number, d: bigint, e: number, f: number) => [bigint, number, number];
    readonly easelsession_answerPollAs: (a: number, b: number, c: number, d: bigint, e: bigint, f: number, g: number) => [number, number];
    readonly easelsession_chat: (a: number, b: number, c: number, d: number, e: number) => [bigint, number, number];
    readonly easelsession_chatHistory: (a: number, b: number, c: number, d: bigint, e: number) => [number, number];
    readonly easelsession_closePoll: (a: number, b: number, c: number, d: bigint) => [number, number];
    readonly easelsession_connecting: (a: number) => void;
    readonly easelsession_controlFrame: (a: number, b: number) => void;
    readonly easelsession_cursor: (a: number, b: number, c: number, d: number, e: number, f: number) => [number, number];
    readonly easelsession_datagram: (a: number, b: number, c: number) => number;
    readonly easelsession_deleteChat: (a: number, b: number, c: number, d: bigint) => [number, number];
    readonly easelsession_disconnected: (a: number, b: number, c: number, d: number, e: number) => void;
    readonly easelsession_handleTimeout: (a: number, b: number) => void;
    readonly easelsession_handshake: (a: number, b: number, c: number, d: number, e: number) => [number, number, number];
    readonly easelsession_hello: (a: number, b: number, c: number) => [number, number, number, number];
    readonly easelsession_isConnected: (a: number) => number;
    readonly easelsession_join: (a: number, b: number, c: number, d: any, e: number) => [number, number];
    readonly easelsession_leave: (a: number, b: number, c: number) => [number, number];
    readonly easelsession_localUpdate: (a: number, b: number, c: number, d: number, e: number, f: number) => [bigint, number, number];
    readonly easelsession_lowerHand: (a: number, b: number, c: number, d: number) => [number, number];
    readonly easelsession_moderate: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number];
    readonly easelsession_new: (a: any, b: number) => [number, number, number];
    readonly easelsession_nextOpId: (a: number) => bigint;
    readonly easelsession_pending: (a: number, b: number, c: number) => [number, number];
    readonly easelsession_pollEvent: (a: number) => any;
    readonly easelsession_pollStore: (a: number) => any;
    readonly easelsession_pollTimeout: (a: number) => [number, number];
    readonly easelsession_pollTransmit: (a: number) => any;
    readonly easelsession_presence: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number];
    readonly easelsession_raiseHand: (a: number, b: number, c: number) => [number, number];
    readonly easelsession_refreshToken: (a: number, b: number, c: number) => [number, number];
    readonly easelsession_roomFrame: (a: number, b: number, c: number, d: number, e: number) => void;
    readonly easelsession_setCursorCap: (a: number, b: number, c: number, d: number) => [number, number];
    readonly easelsession_sfuCandidate: (a: number, b: number, c: number, d: bigint, e: number, f: number, g: number, h: number, i: number) => [number, number];
    readonly easelsession_sfuJoin: (a: number, b: number, c: number, d: number) => [number, number];
    readonly easelsession_sfuLeave: (a: number, b: number, c: number, d: bigint) => [number, number];
    readonly easelsession_sfuSdp: (a: number, b: number, c: number, d: bigint, e: number, f: number, g: number, h: number) => [number, number];
    readonly easelsession_sfuSubscribe: (a: number, b: number, c: number, d: number, e: number) => [number, number];
    readonly easelsession_shouldConnect: (a: number, b: number) => number;
    readonly easelsession_snapshot: (a: number, b: number, c: number) => [number, number];
    readonly easelsession_startPoll: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number) => [bigint, number, number];
    readonly frame_kind: (a: number) => [number, number];
    readonly framereader_atBoundary: (a: number) => number;
    readonly framereader_new: (a: number) => number;
    readonly framereader_next: (a: number) => [number, number, number];
    readonly framereader_push: (a: number, b: number, c: number) => void;
    readonly wsmux_datagram: (a: number, b: number) => [number, number];
    readonly wsmux_fin: (a: number) => [number, number];
    readonly wsmux_new: (a: number) => number;
    readonly wsmux_openBi: (a: number) => [number, number, number];
    readonly wsmux_receive: (a: number, b: number, c: number) => [number, number, number];
    readonly wsmux_reset: (a: number, b: number) => [number, number];
    readonly wsmux_stream: (a: number, b: number, c: number) => [number, number];
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __externref_drop_slice: (a: number, b: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
