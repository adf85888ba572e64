// The page's one Loro runtime: loro-crdt's `web` build, whose wasm (`loro_wasm_bg.wasm`) sits
// next to this module. The demo and the browser tests import it from here.
import * as loro from "loro-crdt/web";

export * from "loro-crdt/web";
/** Loads loro-crdt's wasm (its `.d.ts` omits the default export its module has). */
export const initLoro = (loro as unknown as { default: () => Promise<unknown> }).default;
