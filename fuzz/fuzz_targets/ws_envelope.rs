//! WebSocket binary messages: the envelope parser must give an envelope or a typed error and
//! round-trip what it accepts.
#![no_main]

use easel_proto::ws::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let bytes = envelope.encode();
        assert_eq!(Envelope::decode(&bytes).expect("re-encoded envelope decodes"), envelope);
    }
});
