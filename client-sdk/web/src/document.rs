//! The app's `loro-crdt` `LoroDoc` as the core's [`Document`]: the core calls its `import`,
//! `importBatch` and `oplogVersion().encode()` through JavaScript, so the page holds one Loro
//! runtime (the app's) and this wasm none. Local commits reach the core from the driver
//! (`EaselSession.localUpdate`, fed by the doc's `subscribeLocalUpdates`).

use easel_client::session::{Document, ImportError};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// A `LoroDoc` of the `loro-crdt` package (any object with these methods).
    #[wasm_bindgen(typescript_type = "LoroDocLike")]
    #[derive(Debug, Clone)]
    pub type LoroDocLike;

    #[wasm_bindgen(method, catch, js_name = import)]
    fn import(this: &LoroDocLike, bytes: &[u8]) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = importBatch)]
    fn import_batch(this: &LoroDocLike, batch: &js_sys::Array) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(method, catch, js_name = oplogVersion)]
    fn oplog_version(this: &LoroDocLike) -> Result<VersionVectorLike, JsValue>;

    /// loro-crdt's `VersionVector`.
    type VersionVectorLike;

    #[wasm_bindgen(method, catch)]
    fn encode(this: &VersionVectorLike) -> Result<Vec<u8>, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn length(this: &VersionVectorLike) -> Result<u32, JsValue>;
}

/// A room's document living in JavaScript.
#[derive(Debug, Clone)]
pub struct JsDocument(LoroDocLike);

impl JsDocument {
    /// Wraps the app's document.
    pub fn new(doc: LoroDocLike) -> Self {
        Self(doc)
    }
}

impl Document for JsDocument {
    fn import(&self, data: &[u8]) -> Result<(), ImportError> {
        self.0.import(data).map(drop).map_err(thrown)
    }

    fn import_batch(&self, batch: &[Vec<u8>]) -> Result<(), ImportError> {
        let batch: js_sys::Array = batch.iter().map(|d| js_sys::Uint8Array::from(&d[..])).collect();
        self.0.import_batch(&batch).map(drop).map_err(thrown)
    }

    fn version(&self) -> Option<Vec<u8>> {
        // A document that cannot say what it holds rejoins asking for everything: correct,
        // only slower.
        let vv = self.0.oplog_version().ok()?;
        (vv.length().ok()? > 0).then(|| vv.encode().ok()).flatten()
    }
}

/// What a JavaScript call threw, as an import error.
fn thrown(e: JsValue) -> ImportError {
    let message = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "the document refused the bytes".to_owned());
    ImportError(message)
}
