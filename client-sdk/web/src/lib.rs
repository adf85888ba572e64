//! # easel-web — the Easel session core for the browser
//!
//! Layer: wraps the sans-IO [`easel_client::session::Session`] (built without its `native`
//! feature: no tokio, sockets, `redb` or Loro crate) with `wasm-bindgen`, so a TypeScript
//! driver runs the protocol — op ids, pending ops and acks, resume, rejoin by version, cursor
//! throttling, heartbeats, classroom requests, reconnect timing — with the very code the Rust
//! SDK runs. The driver owns the sockets (WebTransport or WebSocket), the clock
//! (`performance.now()`, passed in as milliseconds) and the offline store (IndexedDB); this
//! crate owns every decision and every byte format.
//!
//! ```text
//! easel-proto ← easel-client (session core) ← easel-web (this crate) ← the TypeScript driver
//! ```
//!
//! The room's document is the app's `loro-crdt` `LoroDoc`, passed in from JavaScript: the
//! core calls its `import`/`importBatch` and `oplogVersion().encode()` ([`document`]); only one
//! Loro runtime is on the page.
//!
//! Modules:
//! - [`session`]: [`EaselSession`], the class the driver feeds and drains;
//! - [`events`]: the core's events, transmits and store writes as plain JavaScript objects;
//! - [`frames`]: [`FrameReader`] (a stream's bytes in any pieces → frames), snapshot streams,
//!   and [`WsMux`] (SPEC §16: streams and datagrams over one WebSocket);
//! - [`document`]: the app's `LoroDoc` as the core's [`easel_client::session::Document`];
//! - [`js`]: small conversions (names of wire enums, objects, errors).
//!
//! `client-sdk/web/README.md` is the contract for the driver.

pub mod document;
pub mod events;
pub mod frames;
pub mod js;
pub mod session;

pub use frames::{Frame, FrameReader, WsMux};
pub use session::EaselSession;

use wasm_bindgen::prelude::wasm_bindgen;

/// Shapes of the plain objects crossing the boundary, for the generated `.d.ts`.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
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

"#;
