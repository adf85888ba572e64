//! Small conversions at the JavaScript boundary: plain objects, the names of wire enums
//! (lower camel case of the Rust variant, both ways from one table each), and errors thrown
//! as `Error`s with a `name`.

use easel_proto::ErrorCode;
use easel_proto::datagram::{Status, Tool};
use easel_proto::message::{ModAction, SdpKind};
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::JsValue;

/// Builds a plain object field by field.
pub(crate) struct Obj(Object);

impl Obj {
    /// `{ type: kind }`.
    pub(crate) fn typed(kind: &str) -> Self {
        Self::new().set("type", kind)
    }

    pub(crate) fn new() -> Self {
        Self(Object::new())
    }

    /// Sets `key`. Setting a property on a fresh plain object cannot fail.
    pub(crate) fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    pub(crate) fn bytes(self, key: &str, bytes: &[u8]) -> Self {
        self.set(key, Uint8Array::from(bytes))
    }

    /// `code` (the wire number) and `codeName`.
    pub(crate) fn code(self, code: ErrorCode) -> Self {
        self.set("code", code.to_u16()).set("codeName", name(code))
    }

    pub(crate) fn build(self) -> JsValue {
        self.0.into()
    }
}

/// An array of the converted items.
pub(crate) fn array<T>(items: impl IntoIterator<Item = T>, f: impl Fn(T) -> JsValue) -> JsValue {
    items.into_iter().map(f).collect::<Array>().into()
}

/// The JavaScript name of a wire enum value: its Rust variant, first letter lowered.
pub(crate) fn name(value: impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    let mut chars = debug.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The value of `all` named `text` (see [`name`]), or a `TypeError`.
fn parse<T: std::fmt::Debug + Copy>(what: &str, all: &[T], text: &str) -> Result<T, JsValue> {
    all.iter().copied().find(|v| name(*v) == text).ok_or_else(|| {
        let names: Vec<String> = all.iter().map(|v| name(*v)).collect();
        js_sys::TypeError::new(&format!("{what} {text:?} is not one of {}", names.join(", "))).into()
    })
}

pub(crate) const STATUSES: [Status; 3] = [Status::Active, Status::Idle, Status::Away];
pub(crate) const TOOLS: [Tool; 5] = [Tool::Pointer, Tool::Pen, Tool::Eraser, Tool::Laser, Tool::Hidden];
pub(crate) const MOD_ACTIONS: [ModAction; 6] = [
    ModAction::MuteChat,
    ModAction::UnmuteChat,
    ModAction::ReadOnly,
    ModAction::ReadWrite,
    ModAction::Remove,
    ModAction::StopMedia,
];
pub(crate) const SDP_KINDS: [SdpKind; 2] = [SdpKind::Offer, SdpKind::Answer];
pub(crate) fn status(text: &str) -> Result<Status, JsValue> {
    parse("status", &STATUSES, text)
}

pub(crate) fn tool(text: &str) -> Result<Tool, JsValue> {
    parse("tool", &TOOLS, text)
}

pub(crate) fn mod_action(text: &str) -> Result<ModAction, JsValue> {
    parse("moderation action", &MOD_ACTIONS, text)
}

pub(crate) fn sdp_kind(text: &str) -> Result<SdpKind, JsValue> {
    parse("SDP kind", &SDP_KINDS, text)
}

/// An `Error` named `name` (the driver tells errors apart by it) with `message`.
pub(crate) fn error(name: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name(name);
    e.into()
}

/// A refused session call (`SessionError`): `name` "SessionError", `kind` the variant.
pub(crate) fn session_error(e: &easel_client::session::SessionError) -> JsValue {
    use easel_client::session::SessionError as E;
    let kind = match e {
        E::InvalidRoom { .. } => "invalidRoom",
        E::AlreadyJoined(_) => "alreadyJoined",
        E::NotJoined(_) => "notJoined",
        E::Offline(_) => "offline",
        _ => "other",
    };
    let error = error("SessionError", &e.to_string());
    let _ = Reflect::set(&error, &JsValue::from_str("kind"), &JsValue::from_str(kind));
    error
}

/// A protocol error (bytes that do not decode): `name` "ProtocolError", `code` its wire code.
pub(crate) fn protocol_error(e: &easel_proto::Error) -> JsValue {
    let error = error("ProtocolError", &e.to_string());
    let _ = Reflect::set(&error, &JsValue::from_str("code"), &JsValue::from(e.code().to_u16()));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    // Run where the crate runs: in wasm32, under Node (scripts/build-web.sh --test); CI leaves
    // this crate out of the host test build.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn names_are_lower_camel_case_variants() {
        assert_eq!(name(ModAction::MuteChat), "muteChat");
        assert_eq!(name(ErrorCode::ReadOnly), "readOnly");
        assert_eq!(name(Tool::Hidden), "hidden");
        assert_eq!(name(easel_proto::message::Role::Teacher), "teacher");
        assert_eq!(name(easel_proto::message::SfuEventKind::Publishing), "publishing");
    }
}
