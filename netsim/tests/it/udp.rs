//! The UDP proxy in front of a UDP echo server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use easel_netsim::proxy::{Udp, UdpOptions};

use crate::{eventually, median, scenario, within};

/// An echo server on 127.0.0.1:0; returns its address and how many datagrams it has seen.
async fn echo_server() -> (SocketAddr, Arc<AtomicU64>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = socket.local_addr().expect("addr");
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&buf[..len], from).await;
        }
    });
    (addr, seen)
}

async fn client() -> tokio::net::UdpSocket {
    tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind client")
}

#[tokio::test]
async fn fixed_delay_adds_it_once_each_way() {
    let (echo, _) = echo_server().await;
    let proxy = Udp::start("127.0.0.1:0".parse().expect("addr"), echo, &scenario("link.delay_ms = 30"), 1)
        .await
        .expect("proxy starts");
    let socket = client().await;
    socket.connect(proxy.local_addr()).await.expect("connect");
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0u32..20 {
        let start = Instant::now();
        socket.send(&i.to_be_bytes()).await.expect("send");
        let len = within("echo", socket.recv(&mut buf)).await.expect("recv");
        rtts.push(start.elapsed());
        assert_eq!(&buf[..len], &i.to_be_bytes(), "the echo of this ping, nothing else");
    }
    let (min, max) = (*rtts.iter().min().expect("some"), *rtts.iter().max().expect("some"));
    eprintln!("udp 30 ms each way: rtt min {min:?}, median {:?}, max {max:?}", median(rtts.clone()));
    assert!(min >= Duration::from_millis(60), "never faster than the two delays: {min:?}");
    // Timer granularity (≈1 ms per hop) plus scheduling on a busy 2-core machine.
    assert!(max < Duration::from_millis(60 + 40), "{max:?}");
    let stats = proxy.stats();
    assert_eq!((stats.clients, stats.up.delivered, stats.down.delivered), (1, 20, 20));
    proxy.shutdown().await;
}

/// A cut drops what is in the way either way (a reply already on its way back included) and
/// keeps the mapping: after healing, the same client's next ping is echoed, and nothing from
/// during the cut arrives late.
#[tokio::test]
async fn a_cut_drops_both_ways_until_healed() {
    let (echo, seen) = echo_server().await;
    let slow_up = scenario(
        r#"
        [up]
        delay_ms = 100
        "#,
    );
    let proxy = Udp::start("127.0.0.1:0".parse().expect("addr"), echo, &slow_up, 3).await.expect("starts");
    let socket = client().await;
    socket.connect(proxy.local_addr()).await.expect("connect");
    socket.send(&1u32.to_be_bytes()).await.expect("send");
    // The ping is in the up link once its mapping exists; cut before it reaches the server.
    eventually("the mapping", || proxy.stats().clients == 1).await;
    proxy.cut(true);
    eventually("the echo dropped on its way back", || proxy.stats().cut == 1).await;
    assert_eq!(seen.load(Ordering::Relaxed), 1, "the ping sent before the cut went through");
    socket.send(&2u32.to_be_bytes()).await.expect("send");
    eventually("the ping dropped on its way out", || proxy.stats().cut == 2).await;
    assert_eq!(seen.load(Ordering::Relaxed), 1, "nothing passes while cut");

    proxy.cut(false);
    socket.send(&3u32.to_be_bytes()).await.expect("send");
    let mut buf = [0u8; 64];
    let len = within("echo after healing", socket.recv(&mut buf)).await.expect("recv");
    assert_eq!(&buf[..len], &3u32.to_be_bytes(), "the first echo is the one after healing");
    let stats = proxy.stats();
    assert_eq!((stats.clients, stats.cut, seen.load(Ordering::Relaxed)), (1, 2, 2), "{stats:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn loss_drops_about_the_configured_fraction() {
    const N: u64 = 2_000;
    let (echo, seen) = echo_server().await;
    let lossy = scenario(
        r#"
        [up]
        loss = { model = "bernoulli", p = 0.1 }
        "#,
    );
    let proxy =
        Udp::start("127.0.0.1:0".parse().expect("addr"), echo, &lossy, 7).await.expect("proxy starts");
    let socket = Arc::new(client().await);
    socket.connect(proxy.local_addr()).await.expect("connect");
    // Echoes are read while sending so that no socket buffer overflows and adds its own loss.
    let reader = Arc::clone(&socket);
    let received = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&received);
    let read_task = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while reader.recv(&mut buf).await.is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    // In batches, each waited for, so that what is measured is the model's loss, not the
    // proxy's capacity in a debug build on a busy machine.
    for batch in 0..N / 100 {
        for i in batch * 100..(batch + 1) * 100 {
            socket.send(&i.to_be_bytes()).await.expect("send");
        }
        eventually("the batch crossed the proxy", || {
            let stats = proxy.stats();
            stats.up.sent == (batch + 1) * 100
                && seen.load(Ordering::Relaxed) == stats.up.delivered
                && stats.down.sent == stats.up.delivered
                && received.load(Ordering::Relaxed) == stats.down.delivered
        })
        .await;
    }
    read_task.abort();
    let stats = proxy.stats();
    let lost = N - received.load(Ordering::Relaxed);
    assert_eq!(lost, stats.up.dropped_loss, "every loss is the model's, none the kernel's");
    let fraction = lost as f64 / N as f64;
    // Binomial sd over 2,000 packets at 10%: 0.67 percentage points; allow five.
    let tolerance = 5.0 * (0.1f64 * 0.9 / N as f64).sqrt();
    eprintln!(
        "udp 10% loss up: lost {lost} of {N} ({:.2}%), tolerance ±{:.2}%",
        fraction * 100.0,
        tolerance * 100.0
    );
    assert!((fraction - 0.1).abs() < tolerance, "lost {fraction}");
    assert_eq!(stats.down.dropped(), 0, "the down link has no loss");
    proxy.shutdown().await;
}

#[tokio::test]
async fn each_client_gets_its_own_upstream_and_idle_ones_expire() {
    let (echo, _) = echo_server().await;
    let mut options = UdpOptions::default();
    options.idle_timeout = Duration::from_millis(200);
    options.max_clients = 2;
    let proxy = Udp::start_with("127.0.0.1:0".parse().expect("addr"), echo, &scenario(""), 1, options)
        .await
        .expect("proxy starts");
    let (a, b, c) = (client().await, client().await, client().await);
    let mut buf = [0u8; 8];
    for socket in [&a, &b] {
        socket.send_to(b"hi", proxy.local_addr()).await.expect("send");
        within("echo", socket.recv_from(&mut buf)).await.expect("recv");
    }
    assert_eq!(proxy.stats().active_clients, 2);
    // A third client is over the limit while the others are alive.
    c.send_to(b"hi", proxy.local_addr()).await.expect("send");
    eventually("third client rejected", || proxy.stats().rejected == 1).await;
    // Once idle, the mappings go and make room.
    eventually("idle mappings removed", || proxy.stats().active_clients == 0).await;
    c.send_to(b"hi", proxy.local_addr()).await.expect("send");
    within("echo after expiry", c.recv_from(&mut buf)).await.expect("recv");
    assert_eq!(proxy.stats().clients, 3);
    proxy.shutdown().await;
}
