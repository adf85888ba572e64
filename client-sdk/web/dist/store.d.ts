import type { StoreOp, StoredOp } from "../pkg/easel_web.js";
/** What a previous page of this client left unacked. */
export interface Restored {
    nextOpId: bigint;
    rooms: Map<string, StoredOp[]>;
}
export declare class OpStore {
    private readonly db;
    private readonly clientId;
    private constructor();
    /** Opens the store (a page without IndexedDB keeps nothing) and reads what is kept. */
    static open(name: string, clientId: string): Promise<[OpStore, Restored]>;
    /**
     * Applies the core's writes in one transaction, queued before anything polled after them
     * is sent (IndexedDB runs transactions in order, so a later reload sees them).
     */
    apply(ops: StoreOp[], nextOpId: bigint): Promise<void>;
    private key;
}
