//! Where to connect: parsing server URLs into transport candidates.
//!
//! | URL | transport | default port |
//! |---|---|---|
//! | `easel+quic://host[:port]` | raw QUIC | 4434 |
//! | `https://host[:port][/]` | WebTransport | 4433 |
//! | `ws://host[:port][/ws]` | WebSocket | 8080 |
//! | `wss://host[:port][/ws]` | WebSocket over TLS (a TLS proxy in front of the HTTP port) | 443 |
//! | `easel://host` | a race: QUIC (4434), then WebSocket (8080) | — |
//!
//! `easel://host?quic=P&wt=P&ws=P` names the ports of a base address explicitly; listing
//! `wt` adds WebTransport to the race (after QUIC, before WebSocket).

use std::net::SocketAddr;

use crate::Transport;

/// Default raw QUIC port.
pub const QUIC_PORT: u16 = 4434;
/// Default WebTransport port.
pub const WT_PORT: u16 = 4433;
/// Default HTTP (WebSocket) port.
pub const HTTP_PORT: u16 = 8080;
/// Default port of `wss://` (a TLS proxy's).
pub const WSS_PORT: u16 = 443;

/// One way to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The transport.
    pub transport: Transport,
    /// Host name (also the TLS server name).
    pub host: String,
    /// Port.
    pub port: u16,
    /// WebSocket over TLS (`wss://`).
    pub tls: bool,
}

impl Endpoint {
    /// Resolves the host (first address).
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        tokio::net::lookup_host((host, self.port)).await?.next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address"))
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Quic => "easel+quic",
            Transport::WebTransport => "https",
            Transport::WebSocket if self.tls => "wss",
            Transport::WebSocket => "ws",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Why a URL was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server URL {url:?}: {reason}")]
pub struct UrlError {
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// Parses a server URL into the endpoints to try, in order of preference.
pub fn parse(url: &str) -> Result<Vec<Endpoint>, UrlError> {
    let err = |reason: &str| UrlError { url: url.to_owned(), reason: reason.to_owned() };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err("missing scheme (easel://, easel+quic://, https://, ws://)"))?;
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let (host, port) = split_host_port(authority).map_err(|r| err(&r))?;
    let one = |transport, default: u16, paths: &[&str]| {
        if !paths.contains(&path) {
            return Err(err(&format!("unexpected path {path:?}")));
        }
        if !query.is_empty() {
            return Err(err("no query expected"));
        }
        let tls = scheme == "wss";
        Ok(vec![Endpoint { transport, host: host.clone(), port: port.unwrap_or(default), tls }])
    };
    match scheme {
        "easel+quic" => one(Transport::Quic, QUIC_PORT, &["", "/"]),
        "https" => one(Transport::WebTransport, WT_PORT, &["", "/"]),
        "ws" => one(Transport::WebSocket, HTTP_PORT, &["", "/", "/ws"]),
        "wss" => one(Transport::WebSocket, WSS_PORT, &["", "/", "/ws"]),
        "easel" => {
            if port.is_some() || !matches!(path, "" | "/") {
                return Err(err("a base address has no port or path; name ports with ?quic=&wt=&ws="));
            }
            base(&host, query).map_err(|r| err(&r))
        }
        other => Err(err(&format!("unknown scheme {other:?}"))),
    }
}

fn base(host: &str, query: &str) -> Result<Vec<Endpoint>, String> {
    let (mut quic, mut wt, mut ws) = (Some(QUIC_PORT), None, Some(HTTP_PORT));
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("query item {pair:?} has no value"))?;
        let port = value.parse::<u16>().map_err(|_| format!("{key}: {value:?} is not a port"))?;
        match key {
            "quic" => quic = Some(port),
            "wt" => wt = Some(port),
            "ws" => ws = Some(port),
            other => return Err(format!("unknown query item {other:?}")),
        }
    }
    let at = |transport, port: Option<u16>| {
        port.map(|port| Endpoint { transport, host: host.to_owned(), port, tls: false })
    };
    Ok([at(Transport::Quic, quic), at(Transport::WebTransport, wt), at(Transport::WebSocket, ws)]
        .into_iter()
        .flatten()
        .collect())
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    if authority.is_empty() {
        return Err("missing host".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unclosed [ in IPv6 host")?;
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = port.map(|p| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port"))).transpose()?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ep(transport: Transport, host: &str, port: u16) -> Endpoint {
        Endpoint { transport, host: host.into(), port, tls: false }
    }

    #[test]
    fn single_transport_urls() {
        assert_eq!(
            parse("easel+quic://example.org").unwrap(),
            vec![ep(Transport::Quic, "example.org", 4434)]
        );
        assert_eq!(parse("https://127.0.0.1:9/").unwrap(), vec![ep(Transport::WebTransport, "127.0.0.1", 9)]);
        assert_eq!(parse("ws://localhost:80/ws").unwrap(), vec![ep(Transport::WebSocket, "localhost", 80)]);
        assert_eq!(parse("easel+quic://[::1]:7").unwrap(), vec![ep(Transport::Quic, "[::1]", 7)]);
        let wss = parse("wss://example.org/ws").unwrap();
        assert_eq!(wss, vec![Endpoint { tls: true, ..ep(Transport::WebSocket, "example.org", 443) }]);
        assert_eq!(wss[0].to_string(), "wss://example.org:443");
    }

    #[test]
    fn base_address_races_quic_then_websocket() {
        assert_eq!(
            parse("easel://h").unwrap(),
            vec![ep(Transport::Quic, "h", 4434), ep(Transport::WebSocket, "h", 8080)]
        );
        assert_eq!(
            parse("easel://h?quic=1&wt=2&ws=3").unwrap(),
            vec![
                ep(Transport::Quic, "h", 1),
                ep(Transport::WebTransport, "h", 2),
                ep(Transport::WebSocket, "h", 3)
            ]
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, why) in [
            ("localhost:4434", "missing scheme"),
            ("ftp://h", "unknown scheme"),
            ("ws://h:99999", "not a port"),
            ("easel://h:1", "no port"),
            ("easel://h?tcp=1", "unknown query"),
            ("https://h/x", "unexpected path"),
            ("ws://", "missing host"),
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.reason.contains(why), "{url}: {e}");
        }
    }
}
