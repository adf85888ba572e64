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
/**
 * Opens the transports in order, the later ones after the head start (or at once when an
 * earlier one fails); the first to open wins and the others are closed.
 */
export declare function dial(opts: DialOptions, sink: ConnectionSink): Promise<Connection>;
