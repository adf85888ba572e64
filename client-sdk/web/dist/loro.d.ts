export * from "loro-crdt/web";
/** Loads loro-crdt's wasm (its `.d.ts` omits the default export its module has). */
export declare const initLoro: () => Promise<unknown>;
