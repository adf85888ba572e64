//! Tokens over a session's life (SPEC §5.2–5.3): `nbf` with its leeway, configured issuer and
//! audience, a refresh that changes the role or the grant of rooms already joined, and a
//! token that expires mid-session.

use easel_proto::ErrorCode;
use easel_proto::Message;
use easel_proto::message::{ModAction, Moderate, Ping, RefreshToken, Role};
use easel_server::auth::{Claims, Issuer, NBF_LEEWAY_SECS};
use easel_transport::client::{ClientError, Connection, RoomStream, Transport};

use crate::harness::{
    Board, SECRET, TRANSPORTS, TestServer, everyone, expect_message, now_secs, send_acked, token, within,
};

const ROOM: &str = "s/c/r";

fn mint(claims: &Claims) -> String {
    Issuer::hs256(SECRET.as_bytes()).mint(claims).expect("mint")
}

/// Claims for `user` as `role` in `room`, valid for an hour.
fn claims(user: &str, role: &str, room: &str) -> Claims {
    Claims::new(user, room, role, now_secs() + 3600)
}

async fn connect(server: &TestServer, transport: Transport, jwt: &str) -> Result<Connection, ClientError> {
    within("connect", Connection::connect(&server.options(transport), jwt, "device")).await
}

fn refused_code(result: Result<Connection, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. } | ClientError::Closed { code: Some(code), .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Joins `room` and reads up to the whole list of participants.
async fn join(conn: &Connection, room: &str) -> RoomStream {
    let mut stream = within("join", conn.join(room, None)).await.expect("join");
    everyone(&mut stream).await;
    stream
}

/// Sends `RefreshToken` and returns the server's answer.
async fn refresh(conn: &Connection, claims: &Claims) -> Message {
    let request = Message::from(RefreshToken { token: mint(claims) });
    within("refresh", conn.request(&request)).await.expect("answer")
}

/// Waits for the membership frame saying `who` left; returns its code.
async fn left_code(stream: &mut RoomStream, who: u16) -> u16 {
    expect_message(stream, "participant left", |m| match m {
        Message::Participants(p) => p.left.iter().find(|l| l.index == who).map(|l| l.code),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_not_yet_valid_token_is_refused_at_hello_and_accepted_within_the_leeway() {
    let server = TestServer::start().await;
    let early = |by: u64| mint(&Claims { nbf: Some(now_secs() + by), ..claims("eve", "student", ROOM) });
    for transport in TRANSPORTS {
        let code = refused_code(connect(&server, transport, &early(3600)).await);
        assert_eq!(code, ErrorCode::InvalidToken, "{transport:?}: an hour early");
    }
    // Within the leeway (clock skew between issuer and server): it joins and writes.
    let conn =
        connect(&server, Transport::Quic, &early(NBF_LEEWAY_SECS / 2)).await.expect("within the leeway");
    let mut stream = join(&conn, ROOM).await;
    send_acked(&mut stream, Board::new(1).put(1, "k", 1)).await;
    server.server.shutdown().await;
}

#[tokio::test]
async fn issuer_and_audience_mismatches_are_refused_when_configured() {
    let server = TestServer::start_with(|c| {
        c.jwt_issuer = Some("https://idp.example".into());
        c.jwt_audience = Some("easel".into());
    })
    .await;
    let with = |iss: Option<&str>, aud: Option<&str>| {
        mint(&Claims { iss: iss.map(Into::into), aud: aud.map(Into::into), ..claims("eve", "student", ROOM) })
    };
    let good = with(Some("https://idp.example"), Some("easel"));
    connect(&server, Transport::Quic, &good).await.expect("issuer and audience match");
    for (iss, aud) in [
        (Some("https://evil.example"), Some("easel")),
        (Some("https://idp.example"), Some("another-app")),
        (None, Some("easel")),
        (Some("https://idp.example"), None),
    ] {
        let code = refused_code(connect(&server, Transport::Quic, &with(iss, aud)).await);
        assert_eq!(code, ErrorCode::InvalidToken, "iss {iss:?}, aud {aud:?}");
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_refresh_that_demotes_a_teacher_ends_its_moderation_at_once_and_others_see_the_role() {
    let server = TestServer::start().await;
    let teacher =
        connect(&server, Transport::Quic, &mint(&claims("tess", "teacher", ROOM))).await.expect("tess");
    let mut t = join(&teacher, ROOM).await;
    let (_ada, mut a) = server.member(Transport::WebSocket, "ada", "student", ROOM).await;
    let (tess, ada) = (t.joined().participant, a.joined().participant);
    let moderate = |action| Message::from(Moderate { target: ada, action, reason: String::new() });
    // As a teacher it moderates.
    t.send(&moderate(ModAction::MuteChat)).await.expect("send");
    expect_message(&mut t, "muted", |m| match m {
        Message::Moderated(m) if m.target == ada => Some(()),
        Message::Fault(f) => panic!("a teacher's moderation refused: {f:?}"),
        _ => None,
    })
    .await;

    let answer = refresh(&teacher, &claims("tess", "student", ROOM)).await;
    assert!(matches!(answer, Message::TokenRefreshed(_)), "{answer:?}");
    let role = expect_message(&mut a, "tess's new role", |m| match m {
        Message::ParticipantUpdated(p) if p.participant.index == tess => Some(p.participant.role),
        _ => None,
    })
    .await;
    assert_eq!(role, Role::Student);
    t.send(&moderate(ModAction::UnmuteChat)).await.expect("send");
    let code = expect_message(&mut t, "refusal", |m| match m {
        Message::Fault(f) => Some(f.code),
        Message::Moderated(m) => panic!("a demoted teacher moderated: {m:?}"),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::Forbidden.to_u16());
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_refresh_without_a_joined_rooms_grant_ends_that_membership_with_its_code() {
    let server = TestServer::start().await;
    let ada =
        connect(&server, Transport::Quic, &mint(&claims("ada", "student", "s/c/*"))).await.expect("ada");
    let mut one = join(&ada, "s/c/one").await;
    let mut two = join(&ada, "s/c/two").await;
    let (_bob, mut bob) = server.member(Transport::Quic, "bob", "student", "s/c/one").await;
    let who = one.joined().participant;

    let answer = refresh(&ada, &claims("ada", "student", "s/c/two")).await;
    assert!(matches!(answer, Message::TokenRefreshed(_)), "{answer:?}");
    let code = expect_message(&mut one, "Left", |m| match m {
        Message::Left(l) => Some(l.code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::RoomNotAllowed.to_u16(), "the code a Join would have got");
    assert_eq!(left_code(&mut bob, who).await, ErrorCode::RoomNotAllowed.to_u16(), "others see it leave");
    // The room still granted goes on; the other is refused from now on.
    send_acked(&mut two, Board::new(2).put(1, "k", 1)).await;
    match within("rejoin", ada.join("s/c/one", None)).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::RoomNotAllowed),
        other => panic!("expected RoomNotAllowed, got {other:?}"),
    }
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_refresh_for_another_subject_is_refused_and_the_session_goes_on() {
    let server = TestServer::start().await;
    let ada = connect(&server, Transport::Quic, &mint(&claims("ada", "student", ROOM))).await.expect("ada");
    let mut stream = join(&ada, ROOM).await;
    let answer = refresh(&ada, &claims("bob", "teacher", ROOM)).await;
    match answer {
        Message::Fault(f) => assert_eq!(f.code, ErrorCode::InvalidToken.to_u16(), "{}", f.message),
        other => panic!("a refresh for bob accepted: {other:?}"),
    }
    let pong = within("ping", ada.request(&Message::from(Ping { nonce: 7 }))).await.expect("pong");
    assert!(matches!(pong, Message::Pong(p) if p.nonce == 7), "{pong:?}");
    send_acked(&mut stream, Board::new(3).put(1, "k", 1)).await;
    assert_eq!(ada.welcome().user, "ada");
    server.server.shutdown().await;
}

#[tokio::test]
async fn a_token_that_expires_mid_session_closes_it_with_token_expired() {
    let server = TestServer::start().await;
    let (_bob, mut bob) = server.member(Transport::Quic, "bob", "student", ROOM).await;
    for transport in TRANSPORTS {
        let ada = connect(&server, transport, &token(ROOM, "ada", "student", 2)).await.expect("ada");
        let stream = join(&ada, ROOM).await;
        // Nothing is sent: the server's clock alone ends the session.
        let control = within("the session's end", ada.control_next()).await;
        match within("close", ada.closed()).await {
            ClientError::Closed { code, .. } => {
                assert_eq!(code, Some(ErrorCode::TokenExpired), "{transport:?}")
            }
            other => panic!("{transport:?}: {other:?}"),
        }
        // The GoAway before the close (SPEC §5.3), on every transport: the server gives it
        // time to arrive before closing, which would discard it over QUIC and WebTransport.
        match control {
            Ok(Some(Message::GoAway(g))) => assert_eq!(g.code, ErrorCode::TokenExpired.to_u16()),
            other => panic!("{transport:?}: no GoAway before the close: {other:?}"),
        }
        let who = stream.joined().participant;
        assert_eq!(
            left_code(&mut bob, who).await,
            ErrorCode::Normal.to_u16(),
            "{transport:?}: others see it leave"
        );
    }
    server.server.shutdown().await;
}
