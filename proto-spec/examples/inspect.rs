//! Inspect the Easel protocol from the command line.
//!
//! ```text
//! cargo run -p easel-proto --example inspect                 # catalogue: kinds, error codes, limits
//! cargo run -p easel-proto --example inspect -- frame 0901032a00000000000000
//! cargo run -p easel-proto --example inspect -- datagram 80...
//! cargo run -p easel-proto --example inspect -- ws 01000901...
//! echo 0901... | cargo run -p easel-proto --example inspect -- frame -
//! ```
//! A `frame` argument may hold several frames back to back; each is decoded in turn. Exit
//! status 1 means the bytes did not decode (the typed error and its wire code are printed).

use std::io::Read as _;
use std::process::ExitCode;

use easel_proto::ws::Envelope;
use easel_proto::{Datagram, DatagramKind, ErrorCode, FrameDecoder, Kind, limits};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            catalogue();
            ExitCode::SUCCESS
        }
        [what, hex] => match bytes(hex) {
            Ok(bytes) => decode(what, &bytes),
            Err(e) => {
                eprintln!("not hex: {e}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: inspect [frame|datagram|ws HEX|-]");
            ExitCode::from(2)
        }
    }
}

fn bytes(arg: &str) -> Result<Vec<u8>, String> {
    let mut text = arg.to_owned();
    if arg == "-" {
        text.clear();
        std::io::stdin().read_to_string(&mut text).map_err(|e| e.to_string())?;
    }
    let digits: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    hex::decode(digits).map_err(|e| e.to_string())
}

fn decode(what: &str, bytes: &[u8]) -> ExitCode {
    let result = match what {
        "frame" => frames(bytes),
        "datagram" => Datagram::decode(bytes).map(|d| println!("{d:#?}")),
        "ws" => Envelope::decode(bytes).and_then(|e| {
            println!("{e:?}");
            match e {
                Envelope::Stream { data, .. } => frames(data),
                Envelope::Datagram(d) => Datagram::decode(d).map(|d| println!("{d:#?}")),
                _ => Ok(()),
            }
        }),
        other => {
            eprintln!("unknown input type {other:?}: use frame, datagram or ws");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}\nwire code: {}", e.code());
            ExitCode::FAILURE
        }
    }
}

fn frames(bytes: &[u8]) -> Result<(), easel_proto::Error> {
    let mut decoder = FrameDecoder::new(limits::MAX_FRAME_LEN);
    decoder.push(bytes);
    while let Some(message) = decoder.decode()? {
        println!("{message:#?}");
    }
    if !decoder.is_at_boundary() {
        println!("(incomplete: {} bytes of a partial frame)", decoder.buffered());
    }
    Ok(())
}

fn catalogue() {
    println!("Easel protocol v{}\n", easel_proto::PROTOCOL_VERSION);
    println!("{:<6} {:<20} {:<10} {:<16} summary", "kind", "name", "channel", "direction");
    for k in Kind::ALL {
        let (c, d) = (format!("{:?}", k.channel()), format!("{:?}", k.direction()));
        println!("0x{:02x}   {:<20} {c:<10} {d:<16} {}", k.to_u8(), k.name(), k.summary());
    }
    for k in DatagramKind::ALL {
        let (c, d) = (format!("{:?}", k.channel()), format!("{:?}", k.direction()));
        println!("0x{:02x}   {:<20} {c:<10} {d:<16} {}", k.to_u8(), k.name(), k.summary());
    }
    println!("\nerror codes:");
    for c in ErrorCode::ALL {
        println!("  {:>3}  {c:?}", c.to_u16());
    }
    println!(
        "\nlimits: frame {} B (pre-auth {} B), datagram {} B, {} rooms per connection, {} cursors per datagram",
        limits::MAX_FRAME_LEN,
        limits::MAX_PREAUTH_FRAME_LEN,
        limits::MAX_DATAGRAM_LEN,
        limits::MAX_ROOMS_PER_CONNECTION,
        easel_proto::datagram::CursorBatch::MAX_ENTRIES,
    );
}
