//! Codec micro-benchmarks: the per-message cost the server pays on its hottest paths.
//!
//! Decodes are always the validated (bytecheck) path the server uses on untrusted input.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use easel_proto::datagram::{CursorBatch, CursorEntry, Heartbeat, Status, Tool};
use easel_proto::limits::MAX_FRAME_LEN;
use easel_proto::message::Update;
use easel_proto::{Datagram, FrameDecoder, Message};

fn cursor_batch(c: &mut Criterion) {
    let cursors = (0..50u16)
        .map(|i| CursorEntry { participant: i, seq: i * 7, x: i32::from(i) * 160, y: -i32::from(i) * 48 })
        .collect();
    let batch = Datagram::CursorBatch(CursorBatch { slot: 3, cursors });
    let bytes = batch.encode().unwrap();
    assert!(bytes.len() <= 1200, "50 cursors must fit one datagram");
    let mut group = c.benchmark_group("cursor_batch_50");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| black_box(&batch).encode().unwrap()));
    group.bench_function("decode", |b| b.iter(|| Datagram::decode(black_box(&bytes)).unwrap()));
    group.finish();
}

fn heartbeat(c: &mut Criterion) {
    let beat = Datagram::Heartbeat(Heartbeat { slot: 1, seq: 42, status: Status::Active, tool: Tool::Pen });
    let bytes = beat.encode().unwrap();
    let mut group = c.benchmark_group("heartbeat");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| b.iter(|| black_box(&beat).encode().unwrap()));
    group.bench_function("decode", |b| b.iter(|| Datagram::decode(black_box(&bytes)).unwrap()));
    group.finish();
}

fn update(c: &mut Criterion, name: &str, len: usize) {
    let data = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let message = Message::Update(Update { op_id: 123_456, data });
    let frame = message.encode().unwrap();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    let mut out = Vec::with_capacity(frame.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&message).encode_into(&mut out).unwrap();
        })
    });
    // A fresh decoder per frame, fed the whole frame: what a room stream pays per update.
    group.bench_function("decode", |b| {
        b.iter_batched_ref(
            || FrameDecoder::new(MAX_FRAME_LEN),
            |decoder| {
                decoder.push(black_box(&frame));
                decoder.decode().unwrap().unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn updates(c: &mut Criterion) {
    update(c, "update_100B", 100);
    update(c, "update_10KiB", 10 * 1024);
}

criterion_group!(benches, cursor_batch, heartbeat, updates);
criterion_main!(benches);
