//! Property tests: every message survives encode → decode, through any split of the stream.

use easel_proto::limits::MAX_FRAME_LEN;
use easel_proto::ws::Envelope;
use easel_proto::{Datagram, FrameDecoder, Message};
use proptest::prelude::*;

fn decode_all(pieces: &[&[u8]]) -> Vec<Message> {
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    let mut out = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        while let Some(m) = decoder.decode().expect("valid frames decode") {
            out.push(m);
        }
    }
    assert!(decoder.is_at_boundary(), "bytes left over");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A valid message round-trips; an invalid one is refused on encode with the same error
    /// validation reports.
    #[test]
    fn message_round_trips(msg in any::<Message>()) {
        match msg.validate() {
            Ok(()) => {
                let bytes = msg.encode().expect("valid message encodes");
                prop_assert_eq!(decode_all(&[&bytes]), vec![msg]);
            }
            Err(e) => {
                let refused = msg.encode().expect_err("invalid message must not encode");
                prop_assert_eq!(refused.code(), e.code());
                prop_assert_eq!(refused.to_string(), e.to_string());
            }
        }
    }

    #[test]
    fn datagram_round_trips(d in any::<Datagram>()) {
        match d.encode() {
            Ok(bytes) => {
                prop_assert!(bytes.len() <= easel_proto::limits::MAX_DATAGRAM_LEN);
                prop_assert_eq!(Datagram::decode(&bytes).expect("decode"), d);
            }
            Err(e) => prop_assert!(d.validate().is_err(), "encode failed on a valid datagram: {}", e),
        }
    }

    #[test]
    fn ws_envelope_round_trips(id in 0u64..=easel_proto::ws::MAX_STREAM_ID, data in prop::collection::vec(any::<u8>(), 1..64), code: u16) {
        for e in [Envelope::Stream { id, data: &data }, Envelope::Fin { id }, Envelope::Reset { id, code }] {
            let bytes = e.encode();
            prop_assert_eq!(Envelope::decode(&bytes).expect("decode"), e);
        }
    }
}

proptest! {
    // Each case is up to 8 messages, so fewer cases than above: the CI fuzz run
    // (scripts/fuzz.sh, target stream_decoder) pushes the decoder through far more splits.
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Several frames, cut at arbitrary points, decode to the same messages in order.
    #[test]
    fn split_stream_decodes_in_order(msgs in prop::collection::vec(any::<Message>(), 1..8), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let msgs: Vec<Message> = msgs.into_iter().filter(|m| m.validate().is_ok()).collect();
        let wire: Vec<u8> = msgs.iter().flat_map(|m| m.encode().expect("encode")).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
        prop_assert_eq!(decode_all(&pieces), msgs);
    }
}
