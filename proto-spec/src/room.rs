//! Room ids and the room patterns tokens grant (SPEC.md §Rooms).
//!
//! A room id is 1 to 3 `/`-separated segments — institution, course, session — each 1 to 40
//! bytes of `[A-Za-z0-9._~-]` other than `.` and `..` (ids end up in URLs and file names), at
//! most [`MAX_ROOM_ID_LEN`] bytes in all: `uni-a/math-101/2026-11-23`.
//! A pattern is a room id in which a segment may be `*` (exactly one segment) and the last
//! segment may be `**` (one or more segments).

use crate::limits::MAX_ROOM_ID_LEN;

/// Most segments in a room id.
pub const MAX_SEGMENTS: usize = 3;
/// Longest segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 40;

/// Checks a room id; the error says what is wrong.
pub fn validate_id(id: &str) -> Result<(), String> {
    check(id, false)
}

/// Checks a room pattern; the error says what is wrong.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    check(pattern, true)
}

/// Whether `room` (a valid room id) is granted by `pattern` (a valid pattern).
pub fn matches(pattern: &str, room: &str) -> bool {
    let mut want = pattern.split('/').peekable();
    let mut have = room.split('/');
    while let Some(p) = want.next() {
        if p == "**" && want.peek().is_none() {
            return have.next().is_some();
        }
        match have.next() {
            Some(segment) if p == "*" || p == segment => {}
            _ => return false,
        }
    }
    have.next().is_none()
}

fn check(id: &str, pattern: bool) -> Result<(), String> {
    if id.len() > MAX_ROOM_ID_LEN {
        return Err(format!("{} bytes, limit {MAX_ROOM_ID_LEN}", id.len()));
    }
    let segments: Vec<&str> = id.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(format!("{} segments, limit {MAX_SEGMENTS}", segments.len()));
    }
    let last = segments.len() - 1;
    for (i, s) in segments.iter().enumerate() {
        if pattern && (*s == "*" || (*s == "**" && i == last)) {
            continue;
        }
        if s.is_empty() || s.len() > MAX_SEGMENT_LEN {
            return Err(format!("segment {} must be 1 to {MAX_SEGMENT_LEN} bytes", i + 1));
        }
        if let Some(c) =
            s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
        {
            return Err(format!("segment {} has the character {c:?}", i + 1));
        }
        if *s == "." || *s == ".." {
            return Err(format!("segment {} may not be {s:?}", i + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["lobby", "uni-a/math-101", "uni-a/math-101/2026-11-23", "a.b~c_d"] {
            assert_eq!(validate_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a//b", "/a", "a/", "a/b/c/d", "a b", "café", "*", "a/..", ".", &"x".repeat(41)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(validate_pattern("uni-a/*/**"), Ok(()));
        assert!(validate_pattern("**/x").is_err());
        let cases = [
            ("uni-a/math-101/*", "uni-a/math-101/s1", true),
            ("uni-a/math-101/*", "uni-a/math-101", false),
            ("uni-a/math-101/*", "uni-a/math-102/s1", false),
            ("uni-a/**", "uni-a/math-101/s1", true),
            ("uni-a/**", "uni-a/math-101", true),
            ("uni-a/**", "uni-a", false),
            ("*", "lobby", true),
            ("*", "uni-a/x", false),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
        ];
        for (p, r, want) in cases {
            assert_eq!(matches(p, r), want, "{p} ~ {r}");
        }
    }
}
