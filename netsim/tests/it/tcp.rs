//! The TCP proxy in front of a TCP echo server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use easel_netsim::proxy::Tcp;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::{scenario, within};

/// An echo server on 127.0.0.1:0.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `data` through `stream` while reading the echo back; returns the echo.
async fn round_trip(stream: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut read, mut write) = stream.into_split();
    let sent = data.to_vec();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.expect("write");
        write.shutdown().await.expect("half-close");
    });
    let mut echo = Vec::new();
    within("echo to the end", read.read_to_end(&mut echo)).await.expect("read");
    writer.await.expect("writer");
    echo
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn bytes_arrive_intact_in_order_and_delayed() {
    let echo = echo_server().await;
    let proxy = Tcp::start("127.0.0.1:0".parse().expect("addr"), echo, &scenario("link.delay_ms = 40"), 1)
        .await
        .expect("proxy starts");
    let mut stream = within("connect", TcpStream::connect(proxy.local_addr())).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut rtts = Vec::new();
    let mut buf = [0u8; 5];
    for _ in 0..5 {
        let start = Instant::now();
        stream.write_all(b"hello").await.expect("write");
        within("echo", stream.read_exact(&mut buf)).await.expect("read");
        rtts.push(start.elapsed());
        assert_eq!(&buf, b"hello");
    }
    let (min, max) = (*rtts.iter().min().expect("some"), *rtts.iter().max().expect("some"));
    eprintln!("tcp 40 ms each way: rtt min {min:?}, max {max:?}");
    assert!(min >= Duration::from_millis(80), "{min:?}");
    assert!(max < Duration::from_millis(80 + 40), "{max:?}");

    let data = pattern(1 << 20);
    assert!(round_trip(stream, &data).await == data, "1 MiB echoed intact and in order");
    let stats = proxy.stats();
    assert_eq!(stats.up.bytes_delivered, 25 + (1 << 20));
    assert_eq!(stats.down.bytes_delivered, 25 + (1 << 20));
    assert_eq!(stats.up.retransmits, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn loss_becomes_retransmission_stalls_not_lost_bytes() {
    let echo = echo_server().await;
    let lossy = scenario(
        r#"
        [link]
        delay_ms = 5
        loss = { model = "bernoulli", p = 0.1 }
        [tcp]
        rto_min_ms = 100
        "#,
    );
    let proxy =
        Tcp::start("127.0.0.1:0".parse().expect("addr"), echo, &lossy, 3).await.expect("proxy starts");
    let stream = within("connect", TcpStream::connect(proxy.local_addr())).await.expect("connect");
    let data = pattern(200_000);
    let start = Instant::now();
    assert!(round_trip(stream, &data).await == data, "every byte, in order");
    let elapsed = start.elapsed();
    let stats = proxy.stats();
    eprintln!(
        "tcp 10% loss: {} + {} segments, {} + {} retransmits, 200 kB echoed in {elapsed:?}",
        stats.up.segments, stats.down.segments, stats.up.retransmits, stats.down.retransmits
    );
    assert!(stats.up.retransmits > 0 && stats.down.retransmits > 0);
    assert!(elapsed >= Duration::from_millis(100), "at least one RTO stall: {elapsed:?}");
    proxy.shutdown().await;
}
