//! Cluster rooms' snapshots, sans IO: what one holds ([`Snapshot`]: the Loro document and the
//! classroom at a position of the room's log), how it is encoded, and what a node loading a
//! room does with what it finds in the object store bucket ([`BUCKET`], one object per room
//! under its subject token). The IO is in [`super::log`].
//!
//! An object is [`MAGIC`], a JSON header's length (u32, big endian), the header (room id,
//! covered sequence, classroom records in the side table's encoding, memberships, hands),
//! then the Loro export. Its metadata repeats the covered sequence ([`UPTO`]) and says where
//! the room's subject still starts ([`FLOOR`]): what a node needs when the object itself is
//! unreadable, and to notice a purge while it was replaying.
//!
//! The subject is purged one snapshot behind: storing the snapshot at `S` over one at `P`
//! purges what precedes `P + 1`, so a node still loading from `P`, or following a step
//! behind, finds what it needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::class::Exported;
use crate::room::Key;

/// The object store bucket holding the rooms' snapshots.
pub const BUCKET: &str = "easel_snapshots";
/// What every snapshot object starts with.
pub const MAGIC: &[u8; 16] = b"EASEL-SNAPSHOT1\n";
/// Object metadata: the last log sequence the snapshot covers.
pub const UPTO: &str = "easel-upto";
/// Object metadata: the room's subject holds everything from this sequence on (1: nothing
/// was purged).
pub const FLOOR: &str = "easel-floor";

/// A cluster room's state at a position of its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The room id (an object under another room's name is refused).
    pub room: String,
    /// The last sequence of the room's subject the state covers: a loader replays from the
    /// next one.
    pub upto_seq: u64,
    /// Loro export of the board.
    pub doc: Vec<u8>,
    /// The classroom.
    pub class: Exported,
    /// The raised hands, first raised first.
    pub hands: Vec<Key>,
    /// A teacher's cursor cap for the room (`None`: the server's default; SPEC §8.5).
    pub cursor_cap: Option<u16>,
}

/// A snapshot object that is not one of this room's snapshots.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not an Easel snapshot (or one of another format version).
    #[error("not an Easel snapshot")]
    NotASnapshot,
    /// Cut short.
    #[error("truncated snapshot")]
    Truncated,
    /// The header does not decode.
    #[error("snapshot header: {0}")]
    Header(#[from] serde_json::Error),
    /// A classroom record that is not UTF-8 JSON text.
    #[error("snapshot classroom record {0} is not text")]
    Record(String),
    /// Another room's.
    #[error("a snapshot of room {0:?}")]
    Foreign(String),
    /// Its bytes do not match the digest it was stored with.
    #[error("its bytes do not match its digest")]
    Digest,
    /// A header too large for its length field (4 GiB).
    #[error("snapshot header too large")]
    TooLarge,
}

#[derive(Serialize, Deserialize)]
struct Header {
    room: String,
    upto_seq: u64,
    /// `(kind, key, JSON text)`.
    records: Vec<(String, String, String)>,
    /// The open memberships (key → user). Snapshots written before memberships had keys
    /// hold `present` (user → count) instead: read as memberships of keys no departure names
    /// (upgrade a cluster's nodes together; see docs/cluster.md).
    #[serde(default)]
    memberships: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    present: BTreeMap<String, u32>,
    hands: Vec<(String, u16)>,
    /// Absent from snapshots written before the cap was on the log: none chosen.
    #[serde(default)]
    cursor_cap: Option<u16>,
}

/// Encodes a snapshot as an object's bytes.
pub fn encode(s: &Snapshot) -> Result<Vec<u8>, SnapshotError> {
    let records = s
        .class
        .records
        .iter()
        .map(|(kind, key, value)| {
            let text = String::from_utf8(value.clone()).map_err(|_| SnapshotError::Record(key.clone()))?;
            Ok((kind.clone(), key.clone(), text))
        })
        .collect::<Result<_, SnapshotError>>()?;
    let header = Header {
        room: s.room.clone(),
        upto_seq: s.upto_seq,
        records,
        memberships: s.class.memberships.clone(),
        present: BTreeMap::new(),
        hands: s.hands.iter().map(|k| (k.origin.to_string(), k.index)).collect(),
        cursor_cap: s.cursor_cap,
    };
    let header = serde_json::to_vec(&header)?;
    let len = u32::try_from(header.len()).map_err(|_| SnapshotError::TooLarge)?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + s.doc.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&s.doc);
    Ok(out)
}

/// Decodes `room`'s snapshot from an object's bytes.
pub fn decode(bytes: &[u8], room: &str) -> Result<Snapshot, SnapshotError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(SnapshotError::NotASnapshot)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(SnapshotError::Truncated)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| SnapshotError::Truncated)?;
    let (header, doc) = rest.split_at_checked(len).ok_or(SnapshotError::Truncated)?;
    let header: Header = serde_json::from_slice(header)?;
    if header.room != room {
        return Err(SnapshotError::Foreign(header.room));
    }
    let records =
        header.records.into_iter().map(|(kind, key, text)| (kind, key, text.into_bytes())).collect();
    Ok(Snapshot {
        room: header.room,
        upto_seq: header.upto_seq,
        doc: doc.to_vec(),
        class: Exported { records, memberships: memberships(header.memberships, header.present) },
        hands: header
            .hands
            .into_iter()
            .map(|(origin, index)| Key { origin: Arc::from(origin), index })
            .collect(),
        cursor_cap: header.cursor_cap,
    })
}

/// What a snapshot object's metadata says (`None`: it does not say, so it is not ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// [`UPTO`].
    pub upto: Option<u64>,
    /// [`FLOOR`].
    pub floor: Option<u64>,
}

impl Marks {
    /// Reads an object's metadata.
    pub fn of(metadata: &HashMap<String, String>) -> Self {
        let read = |name| metadata.get(name).and_then(|v: &String| v.parse().ok());
        Self { upto: read(UPTO), floor: read(FLOOR) }
    }

    /// The metadata of a snapshot covering `upto`, stored over one with these marks (or
    /// over none): the subject is then purged below the returned floor.
    pub fn next(previous: Option<Self>, upto: u64) -> Self {
        let floor = previous.map_or(1, |p| p.floor.unwrap_or(1).max(p.upto.map_or(1, |u| u + 1)));
        Self { upto: Some(upto), floor: Some(floor.min(upto + 1)) }
    }

    /// As object metadata.
    pub fn metadata(self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        if let Some(upto) = self.upto {
            m.insert(UPTO.to_owned(), upto.to_string());
        }
        if let Some(floor) = self.floor {
            m.insert(FLOOR.to_owned(), floor.to_string());
        }
        m
    }

    /// Whether the subject still holds everything from `from` on (an unknown floor may not).
    pub fn holds_from(self, from: u64) -> bool {
        self.floor.is_some_and(|floor| floor <= from)
    }
}

/// Where loading a room starts, given the room's snapshot object (`None`: there is none).
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// From this snapshot, replaying the subject after it.
    Snapshot(Box<Snapshot>),
    /// Replaying the whole subject.
    Log,
    /// Neither: the snapshot is unreadable and the history before it is gone (or may be).
    Lost(String),
}

/// Decides where loading starts from what was found: the object's marks and its decoded
/// bytes. An unreadable object (corrupt, foreign) is only passed over when its metadata says
/// the subject was never purged.
pub fn start(found: Option<(Marks, Result<Snapshot, SnapshotError>)>) -> Start {
    match found {
        None => Start::Log,
        Some((_, Ok(snapshot))) => Start::Snapshot(Box::new(snapshot)),
        Some((marks, Err(e))) if marks.holds_from(1) => {
            tracing::warn!("cluster: unreadable room snapshot ({e}); the room log is whole: replaying it");
            Start::Log
        }
        Some((marks, Err(e))) => Start::Lost(match marks.floor {
            Some(floor) => format!("its snapshot is unreadable ({e}) and its log before {floor} was purged"),
            None => format!("its snapshot is unreadable ({e}) and says nothing of its log"),
        }),
    }
}

/// The open memberships of a header: its keyed ones, or those of an older snapshot's counts
/// per user, under keys no departure names.
fn memberships(keyed: BTreeMap<String, String>, counts: BTreeMap<String, u32>) -> BTreeMap<String, String> {
    if !keyed.is_empty() {
        return keyed;
    }
    counts
        .into_iter()
        .flat_map(|(user, n)| (0..n).map(move |i| (format!("earlier/{user}/{i}"), user.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            room: "uni/room.1".into(),
            upto_seq: 42,
            doc: vec![0, 1, 2, 255],
            class: Exported {
                records: vec![("chat".into(), "00000000000000000001".into(), br#"{"id":1}"#.to_vec())],
                memberships: BTreeMap::from([("a@1/3".into(), "ada".into()), ("b@1/1".into(), "ada".into())]),
            },
            hands: vec![Key { origin: "a@1".into(), index: 3 }],
            cursor_cap: Some(5),
        }
    }

    #[test]
    fn a_snapshot_survives_encoding() {
        let s = snapshot();
        let bytes = encode(&s).expect("encode");
        assert_eq!(decode(&bytes, "uni/room.1").expect("decode"), s);
    }

    #[test]
    fn a_snapshot_written_before_the_cursor_cap_was_kept_reads_as_none_chosen() {
        let header = br#"{"room":"uni/room.1","upto_seq":42,"records":[],"present":{"ada":2},"hands":[]}"#;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
        bytes.extend_from_slice(header);
        let s = decode(&bytes, "uni/room.1").expect("decode");
        assert_eq!((s.upto_seq, s.cursor_cap), (42, None));
        let ada = s.class.memberships.values().filter(|u| *u == "ada").count();
        assert_eq!(ada, 2, "counts per user read as memberships: {:?}", s.class.memberships);
    }

    #[test]
    fn foreign_truncated_and_garbage_objects_are_errors() {
        let bytes = encode(&snapshot()).expect("encode");
        assert!(matches!(decode(&bytes, "other"), Err(SnapshotError::Foreign(r)) if r == "uni/room.1"));
        assert!(matches!(decode(b"garbage", "uni/room.1"), Err(SnapshotError::NotASnapshot)));
        assert!(matches!(decode(&bytes[..MAGIC.len() + 2], "uni/room.1"), Err(SnapshotError::Truncated)));
        assert!(matches!(decode(&bytes[..MAGIC.len() + 10], "uni/room.1"), Err(SnapshotError::Truncated)));
        let mut bad = bytes.clone();
        bad[MAGIC.len() + 4] = b'!';
        assert!(matches!(decode(&bad, "uni/room.1"), Err(SnapshotError::Header(_))));
    }

    #[test]
    fn the_subject_is_purged_one_snapshot_behind() {
        let first = Marks::next(None, 10);
        assert_eq!(first, Marks { upto: Some(10), floor: Some(1) }, "the first purges nothing");
        let second = Marks::next(Some(first), 20);
        assert_eq!(second, Marks { upto: Some(20), floor: Some(11) });
        assert_eq!(Marks::of(&second.metadata()), second);
        assert!(second.holds_from(11) && second.holds_from(21) && !second.holds_from(10));
        assert!(!Marks { upto: Some(5), floor: None }.holds_from(1), "an unknown floor holds nothing");
    }

    #[test]
    fn an_unreadable_snapshot_is_passed_over_only_while_the_log_is_whole() {
        assert_eq!(start(None), Start::Log);
        let good = snapshot();
        let marks = Marks::next(None, 42);
        assert_eq!(start(Some((marks, Ok(good.clone())))), Start::Snapshot(Box::new(good)));
        assert_eq!(start(Some((marks, Err(SnapshotError::NotASnapshot)))), Start::Log);
        let purged = Marks::next(Some(marks), 50);
        assert!(matches!(start(Some((purged, Err(SnapshotError::NotASnapshot)))), Start::Lost(_)));
        let unknown = Marks { upto: None, floor: None };
        assert!(matches!(start(Some((unknown, Err(SnapshotError::NotASnapshot)))), Start::Lost(_)));
    }
}
