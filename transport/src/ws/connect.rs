//! The client end over tokio-tungstenite: connecting, and its messages as [`Frame`]s.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use super::{CLOSE_NO_STATUS, Frame, Mux, SUBPROTOCOL, Side, WsSession};
use crate::TransportError;

/// Connects to the server's `/ws` at `addr` (its HTTP address): plain `ws://`, or with `tls`
/// `wss://` (a TLS-terminating proxy in front of the HTTP port) verified like QUIC, by
/// `cert_hash` or against the system's roots, for `server_name`.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    tls: bool,
    cert_hash: Option<[u8; 32]>,
) -> Result<WsSession, TransportError> {
    let url = match tls {
        true => format!("wss://{server_name}:{}/ws", addr.port()),
        false => format!("ws://{addr}/ws"),
    };
    let connect_err = |e: &dyn std::fmt::Display| TransportError::Connect(format!("{url}: {e}"));
    let mut request = url.as_str().into_client_request().map_err(|e| connect_err(&e))?;
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    let connector = match tls {
        true => Connector::Rustls(Arc::new(crate::tls::client_config(cert_hash, b"http/1.1")?)),
        false => Connector::Plain,
    };
    // The resolved address, whatever the name in the URL resolves to; Nagle off: cursors must
    // not wait ~40 ms for an ACK.
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| connect_err(&e))?;
    tcp.set_nodelay(true).map_err(|e| connect_err(&e))?;
    let (socket, _response) =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector)).await.map_err(
            |e| match retry_after(&e) {
                Some(wait) => TransportError::RetryAfter(wait),
                None => connect_err(&e),
            },
        )?;
    let (sink, stream) = socket.split();
    let sink = sink.with(|frame: Frame| async move { Ok::<_, WsError>(to_message(frame)) });
    let stream = stream.map(|m| m.map(to_frame));
    Ok(WsSession::new(Mux::spawn(Side::Client, Box::pin(sink), stream)))
}

/// The wait a `503 Service Unavailable` upgrade answer asks for: its `Retry-After` in seconds
/// (the HTTP-date form is not used by Easel servers; without a usable header, one second).
fn retry_after(e: &WsError) -> Option<std::time::Duration> {
    let WsError::Http(response) = e else { return None };
    if response.status() != tokio_tungstenite::tungstenite::http::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let secs = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Some(std::time::Duration::from_secs(secs))
}

fn to_message(frame: Frame) -> WsMessage {
    match frame {
        Frame::Binary(b) => WsMessage::Binary(b),
        Frame::Close(code, reason) => {
            WsMessage::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))
        }
        // The mux never sends these; a pong is harmless should it start to.
        Frame::Text | Frame::Control => WsMessage::Pong(Bytes::new()),
    }
}

fn to_frame(message: WsMessage) -> Frame {
    match message {
        WsMessage::Binary(b) => Frame::Binary(b),
        WsMessage::Text(_) => Frame::Text,
        WsMessage::Close(c) => c.map_or(Frame::Close(CLOSE_NO_STATUS, String::new()), |c| {
            Frame::Close(c.code.into(), c.reason.to_string())
        }),
        WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Frame::Control,
    }
}
