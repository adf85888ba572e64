//! Golden vectors: `proto-spec/vectors/` holds, per message kind, the sample's bytes and a
//! readable description. This test fails when the encoding drifts; regenerate on purpose with
//! `EASEL_BLESS=1 cargo test -p easel-proto --test it vectors` and review the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use easel_proto::message::{Channel, Direction};
use easel_proto::{Datagram, FrameDecoder, Message};
use serde_json::{Value, json};

use crate::samples;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Control => "control stream",
        Channel::Room => "room stream",
        Channel::Snapshot => "snapshot stream",
        Channel::Any => "any stream",
        Channel::Datagram => "datagram",
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::ClientToServer => "client to server",
        Direction::ServerToClient => "server to client",
        Direction::Both => "either side",
    }
}

/// Hex with a space every 8 bytes, so offsets in SPEC.md are easy to follow.
fn spaced_hex(bytes: &[u8]) -> String {
    bytes.chunks(8).map(hex::encode).collect::<Vec<_>>().join(" ")
}

/// The vector files this version of the protocol defines: name → content.
fn expected() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for m in samples::messages() {
        let k = m.kind();
        let frame = m.encode().expect("sample encodes");
        let (len, prefix) = easel_proto::varint::decode(&frame).expect("prefix");
        let v = json!({
            "kind": k.name(),
            "code": format!("0x{:02x}", k.to_u8()),
            "channel": channel(k.channel()),
            "direction": direction(k.direction()),
            "summary": k.summary(),
            "message": serde_json::to_value(&m).expect("serde"),
            "frame_len": len,
            "frame": {
                "length_prefix": hex::encode(&frame[..prefix]),
                "kind": hex::encode(&frame[prefix..=prefix]),
                "archive": spaced_hex(&frame[prefix + 1..]),
            },
            "hex": hex::encode(&frame),
        });
        files.push((format!("{:02x}-{}.json", k.to_u8(), k.name()), pretty(&v)));
    }
    for d in samples::datagrams() {
        let k = d.kind();
        let bytes = d.encode().expect("sample encodes");
        let v = json!({
            "kind": k.name(),
            "code": format!("0x{:02x}", k.to_u8()),
            "channel": channel(k.channel()),
            "direction": direction(k.direction()),
            "summary": k.summary(),
            "message": serde_json::to_value(&d).expect("serde"),
            "datagram_len": bytes.len(),
            "frame": { "kind": hex::encode(&bytes[..1]), "archive": spaced_hex(&bytes[1..]) },
            "hex": hex::encode(&bytes),
        });
        files.push((format!("{:02x}-{}.json", k.to_u8(), k.name()), pretty(&v)));
    }
    files
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json") + "\n"
}

#[test]
fn golden_vectors_match_the_encoding() {
    let dir = dir();
    let files = expected();
    if std::env::var_os("EASEL_BLESS").is_some() {
        std::fs::create_dir_all(&dir).expect("mkdir vectors");
        for entry in std::fs::read_dir(&dir).expect("read vectors") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(path).expect("remove old vector");
            }
        }
        for (name, content) in &files {
            std::fs::write(dir.join(name), content).expect("write vector");
        }
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("vectors/ exists (EASEL_BLESS=1 creates it)")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let wanted: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(on_disk, wanted, "vector files differ from the message kinds");
    for (name, content) in files {
        let stored = std::fs::read_to_string(dir.join(&name)).expect("read vector");
        assert!(
            stored == content,
            "{name} drifted from the encoding; if the change is intended, regenerate with EASEL_BLESS=1"
        );
    }
}

/// Reads each vector as another SDK would: decode the hex, compare with the JSON message.
#[test]
fn golden_vectors_decode_to_their_messages() {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir()).expect("vectors/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let bytes = hex::decode(v["hex"].as_str().expect("hex")).expect("hex decodes");
        if v["channel"] == "datagram" {
            let want: Datagram = serde_json::from_value(v["message"].clone()).expect("message");
            assert_eq!(Datagram::decode(&bytes).expect("decode"), want, "{}", path.display());
            assert_eq!(want.encode().expect("encode"), bytes);
        } else {
            let want: Message = serde_json::from_value(v["message"].clone()).expect("message");
            let mut d = FrameDecoder::new(easel_proto::limits::MAX_FRAME_LEN);
            d.push(&bytes);
            assert_eq!(d.decode().expect("decode"), Some(want.clone()), "{}", path.display());
            assert!(d.is_at_boundary());
            assert_eq!(want.encode().expect("encode"), bytes);
        }
        seen += 1;
    }
    assert_eq!(seen, easel_proto::Kind::ALL.len() + easel_proto::DatagramKind::ALL.len());
}
