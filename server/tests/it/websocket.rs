//! WebSocket specifics beyond the shared end-to-end suite (which runs over it too).

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::harness::{TestServer, within};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads until the server's close frame and returns its code.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    within("close", async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
}

#[tokio::test]
async fn subprotocol_is_negotiated_and_text_closes_with_1003() {
    let server = TestServer::start().await;
    let mut request =
        format!("ws://{}/ws", server.server.http_addr()).into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("easel.v1"));
    let (mut socket, response) =
        within("upgrade", tokio_tungstenite::connect_async(request)).await.expect("upgrade");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").map(|v| v.as_bytes()),
        Some(&b"easel.v1"[..])
    );
    socket.send(Message::Text("hello?".into())).await.expect("send text");
    let close = close_code(&mut socket).await;
    assert_eq!(close, Some(1003));
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_protocol_violation_closes_with_4000_plus_the_code() {
    let server = TestServer::start().await;
    let request = format!("ws://{}/ws", server.server.http_addr()).into_client_request().expect("request");
    let (mut socket, _) =
        within("upgrade", tokio_tungstenite::connect_async(request)).await.expect("upgrade");
    // Stream bytes on stream 3: the server's own unidirectional id, not the client's to use.
    socket.send(Message::Binary(vec![0x01, 0x03, 0xAA].into())).await.expect("send");
    let close = close_code(&mut socket).await;
    assert_eq!(close, Some(4000 + easel_proto::ErrorCode::Malformed.to_u16()));
    server.server.shutdown().await;
}
