//! QUIC variable-length integers (RFC 9000 §16), used for frame lengths and WebSocket stream
//! ids: the top two bits of the first byte give the length (1, 2, 4 or 8 bytes), the rest is
//! the value in network byte order.

/// Largest value a varint can carry (2^62 - 1).
pub const MAX: u64 = (1 << 62) - 1;

/// Number of bytes [`encode`] uses for `value`.
pub const fn len(value: u64) -> usize {
    if value < 1 << 6 {
        1
    } else if value < 1 << 14 {
        2
    } else if value < 1 << 30 {
        4
    } else {
        8
    }
}

/// Appends `value` in its shortest form. Values above [`MAX`] are a caller bug; they are
/// clamped by masking, so callers check lengths against the protocol limits first.
pub fn encode(value: u64, out: &mut Vec<u8>) {
    let value = value & MAX;
    match len(value) {
        1 => out.push(value as u8),
        2 => out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&(value as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Reads a varint from the front of `bytes`: `Some((value, bytes_used))`, or `None`
/// when `bytes` ends before the varint does. Non-minimal encodings are accepted, as in QUIC.
pub fn decode(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let raw = bytes.get(..1usize << (first >> 6))?;
    let mut value = u64::from(first & 0x3f);
    for &b in &raw[1..] {
        value = (value << 8) | u64::from(b);
    }
    Some((value, raw.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9000_examples() {
        // RFC 9000 appendix A.1 sample encodings.
        let cases: &[(&[u8], u64)] = &[
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 151_288_809_941_952_652),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(decode(bytes), Some((*value, bytes.len())));
        }
    }

    #[test]
    fn shortest_form_round_trips_and_truncation_is_incomplete() {
        for value in [0, 63, 64, 16_383, 16_384, (1 << 30) - 1, 1 << 30, MAX] {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(out.len(), len(value));
            assert_eq!(decode(&out), Some((value, out.len())));
            for cut in 0..out.len() {
                assert!(decode(&out[..cut]).is_none());
            }
        }
    }
}
