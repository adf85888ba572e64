//! Stream frames arriving in arbitrary pieces: the decoder must return messages or typed
//! errors, never panic, never buffer past its limit, and re-encoding a decoded message must
//! decode to the same message.
#![no_main]

use easel_proto::{FrameDecoder, Message, limits::MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so the fuzzer explores split points too.
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
    for piece in rest.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.decode() {
                Ok(Some(message)) => {
                    let bytes = message.encode().expect("a decoded message re-encodes");
                    let mut again = FrameDecoder::new(MAX_FRAME_LEN);
                    again.push(&bytes);
                    let round: Option<Message> = again.decode().expect("re-encoded frame decodes");
                    assert_eq!(round.as_ref(), Some(&message));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(decoder.buffered() <= MAX_FRAME_LEN + 16);
    }
});
