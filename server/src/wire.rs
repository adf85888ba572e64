//! Small helpers for what the server puts on the wire, shared by the modules that build
//! messages (rooms, the SFU driver, connections) so none of them has to import another.

/// Cuts a human-readable reason to the wire limit, on a character boundary.
pub(crate) fn clip_reason(mut reason: String) -> String {
    let max = easel_proto::limits::MAX_REASON_LEN;
    if reason.len() > max {
        let end = (0..=max).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes, every other byte mid-character
        let clipped = clip_reason(long);
        assert!(clipped.len() <= easel_proto::limits::MAX_REASON_LEN);
        assert_eq!(clipped, "é".repeat(128));
        assert_eq!(clip_reason("short".into()), "short");
    }
}
