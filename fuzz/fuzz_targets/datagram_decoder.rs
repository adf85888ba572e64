//! Datagrams are single untrusted packets: decode must give a datagram or a typed error, and
//! anything that decodes must survive an encode/decode round trip unchanged.
#![no_main]

use easel_proto::Datagram;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(datagram) = Datagram::decode(data) {
        let bytes = datagram.encode().expect("a decoded datagram re-encodes");
        assert_eq!(Datagram::decode(&bytes).expect("re-encoded datagram decodes"), datagram);
    }
});
