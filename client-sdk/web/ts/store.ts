// The offline store: the core's unacked ops in IndexedDB, per client id, so a reload resends
// them. The core decides what to keep (`pollStore`); this only writes and reads it back.

import type { StoreOp, StoredOp } from "../pkg/easel_web.js";

const OPS = "ops";
const META = "meta";

interface OpRow {
  key: string;
  clientId: string;
  room: string;
  opId: string;
  data: Uint8Array;
}

/** What a previous page of this client left unacked. */
export interface Restored {
  nextOpId: bigint;
  rooms: Map<string, StoredOp[]>;
}

export class OpStore {
  private constructor(
    private readonly db: IDBDatabase | undefined,
    private readonly clientId: string,
  ) {}

  /** Opens the store (a page without IndexedDB keeps nothing) and reads what is kept. */
  static async open(name: string, clientId: string): Promise<[OpStore, Restored]> {
    const empty: Restored = { nextOpId: 1n, rooms: new Map() };
    if (typeof indexedDB === "undefined") return [new OpStore(undefined, clientId), empty];
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(name, 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore(OPS, { keyPath: "key" }).createIndex("client", "clientId");
        req.result.createObjectStore(META);
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const tx = db.transaction([OPS, META], "readonly");
    const rows = await request<OpRow[]>(tx.objectStore(OPS).index("client").getAll(clientId));
    const next = await request<string | undefined>(tx.objectStore(META).get(`${clientId}/nextOpId`));
    const rooms = new Map<string, StoredOp[]>();
    for (const row of rows) {
      const list = rooms.get(row.room) ?? [];
      list.push({ opId: BigInt(row.opId), data: row.data });
      rooms.set(row.room, list);
    }
    for (const list of rooms.values()) list.sort((a, b) => (a.opId < b.opId ? -1 : 1));
    return [new OpStore(db, clientId), { nextOpId: next ? BigInt(next) : 1n, rooms }];
  }

  /**
   * Applies the core's writes in one transaction, queued before anything polled after them
   * is sent (IndexedDB runs transactions in order, so a later reload sees them).
   */
  apply(ops: StoreOp[], nextOpId: bigint): Promise<void> {
    if (!this.db || ops.length === 0) return Promise.resolve();
    const tx = this.db.transaction([OPS, META], "readwrite");
    const rows = tx.objectStore(OPS);
    for (const op of ops) {
      if (op.type === "save") {
        const opId = op.opId.toString();
        rows.put({ key: this.key(op.room, opId), clientId: this.clientId, room: op.room, opId, data: op.data });
      } else {
        for (const id of op.opIds) rows.delete(this.key(op.room, id.toString()));
      }
    }
    tx.objectStore(META).put(nextOpId.toString(), `${this.clientId}/nextOpId`);
    return new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
  }

  private key(room: string, opId: string): string {
    return `${this.clientId}\u0000${room}\u0000${opId.padStart(20, "0")}`;
  }
}

function request<T>(req: IDBRequest): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result as T);
    req.onerror = () => reject(req.error);
  });
}
