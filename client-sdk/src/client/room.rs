//! The [`Room`] handle: a joined room's local document, our cursor and presence in it, and
//! its classroom and SFU requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use easel_proto::Message;
use easel_proto::datagram::{Status, Tool};
use easel_proto::message::{
    ChatDelete, ChatHistory, ChatSend, HandLower, HandRaise, ModAction, Moderate, PollAnswer, PollClose,
    PollStart, SdpKind, SetCursorCap, SfuCandidate, SfuJoin, SfuLeave, SfuSdp, SfuSubscribe,
};
use loro::LoroDoc;
use tokio::sync::{mpsc, oneshot};

use super::{Command, Error};

/// A joined room: its local Loro document, and our cursor and presence in it.
#[derive(Debug, Clone)]
pub struct Room {
    id: String,
    doc: LoroDoc,
    cmds: mpsc::UnboundedSender<Command>,
    ids: Arc<AtomicU64>,
}

/// A poll to start (see [`Room::start_poll`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// The question (1 to 500 bytes).
    pub question: String,
    /// The options (2 to 16, each 1 to 200 bytes).
    pub options: Vec<String>,
    /// Whether an answer may pick several options.
    pub multiple: bool,
    /// Close automatically after this long (at most 24 h); `None`: only by [`Room::close_poll`].
    pub duration: Option<Duration>,
    /// Broadcast counts while open.
    pub live: bool,
}

impl Room {
    pub(super) fn new(
        id: String,
        doc: LoroDoc,
        cmds: mpsc::UnboundedSender<Command>,
        ids: Arc<AtomicU64>,
    ) -> Self {
        Self { id, doc, cmds, ids }
    }

    /// The room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The local document. Reads are always allowed; after writing, call `commit()` (or use
    /// [`Room::edit`]) — every commit becomes one op sent to the server.
    pub fn doc(&self) -> &LoroDoc {
        &self.doc
    }

    /// Runs `f` on the document and commits: the edit applies locally at once and is sent.
    pub fn edit<R>(&self, f: impl FnOnce(&LoroDoc) -> R) -> R {
        let out = f(&self.doc);
        self.doc.commit();
        out
    }

    /// Moves our cursor (board pixels); throttled, newest position wins.
    pub fn cursor(&self, x: f64, y: f64) {
        let _ = self.cmds.send(Command::Cursor { room: self.id.clone(), x, y });
    }

    /// Sets our presence status and pointer tool.
    pub fn presence(&self, status: Status, tool: Tool) {
        let _ = self.cmds.send(Command::Presence { room: self.id.clone(), status, tool });
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    async fn request(&self, message: Message) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.cmds
            .send(Command::Request { room: self.id.clone(), message, reply })
            .map_err(|_| Error::Closed)?;
        Ok(answer.await.map_err(|_| Error::Closed)??)
    }

    /// Sends a chat message; returns its `client_msg_id`. Everyone, us included, gets
    /// [`Event::Chat`] once it is stored; a refusal is [`Event::Refused`] with this id.
    ///
    /// [`Event::Chat`]: crate::Event::Chat
    /// [`Event::Refused`]: crate::Event::Refused
    pub async fn chat(&self, text: &str) -> Result<u64, Error> {
        let client_msg_id = self.next_id();
        self.request(Message::from(ChatSend { client_msg_id, text: text.to_owned() })).await?;
        Ok(client_msg_id)
    }

    /// Deletes a chat message for everyone (teachers).
    pub async fn delete_chat(&self, id: u64) -> Result<(), Error> {
        self.request(Message::from(ChatDelete { id })).await
    }

    /// Asks for up to `limit` messages older than `before` (0: the newest); the answer is
    /// [`Event::ChatPage`].
    ///
    /// [`Event::ChatPage`]: crate::Event::ChatPage
    pub async fn chat_history(&self, before: u64, limit: u16) -> Result<(), Error> {
        self.request(Message::from(ChatHistory { before, limit })).await
    }

    /// Starts a poll (teachers); returns the request id that [`Event::PollStarted`] carries.
    ///
    /// [`Event::PollStarted`]: crate::Event::PollStarted
    pub async fn start_poll(&self, poll: Poll) -> Result<u64, Error> {
        let request = self.next_id();
        let duration_ms = poll.duration.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        let start = PollStart {
            request,
            question: poll.question,
            options: poll.options,
            multiple: poll.multiple,
            duration_ms,
            live: poll.live,
        };
        self.request(Message::from(start)).await?;
        Ok(request)
    }

    /// Answers a poll with option indices; returns the attempt id. Sending the same answer
    /// again (after a reconnect) must reuse it: see [`Room::answer_poll_as`].
    pub async fn answer_poll(&self, poll_id: u64, choices: &[u8]) -> Result<u64, Error> {
        let attempt_id = self.next_id();
        self.answer_poll_as(poll_id, attempt_id, choices).await?;
        Ok(attempt_id)
    }

    /// Answers a poll with an explicit attempt id: the same id again is counted once, a new
    /// one replaces our previous answer.
    pub async fn answer_poll_as(&self, poll_id: u64, attempt_id: u64, choices: &[u8]) -> Result<(), Error> {
        self.request(Message::from(PollAnswer { poll_id, attempt_id, choices: choices.to_vec() })).await
    }

    /// Closes a poll (teachers); everyone gets the final [`Event::PollResults`].
    ///
    /// [`Event::PollResults`]: crate::Event::PollResults
    pub async fn close_poll(&self, poll_id: u64) -> Result<(), Error> {
        self.request(Message::from(PollClose { poll_id })).await
    }

    /// Raises our hand (joins the end of the queue).
    pub async fn raise_hand(&self) -> Result<(), Error> {
        self.request(Message::from(HandRaise {})).await
    }

    /// Lowers a hand: our own, or anyone's for a teacher.
    pub async fn lower_hand(&self, participant: u16) -> Result<(), Error> {
        self.request(Message::from(HandLower { participant })).await
    }

    /// A teacher's moderation of participant `target` (mute chat, read-only, remove, …).
    pub async fn moderate(&self, target: u16, action: ModAction, reason: &str) -> Result<(), Error> {
        self.request(Message::from(Moderate { target, action, reason: reason.to_owned() })).await
    }

    /// A teacher sets how many cursors besides the teachers' everyone in the room is shown
    /// (SPEC §8.5): `Some(0)` shows all, `None` goes back to the server's lecture default.
    /// Everyone hears the cap in force as [`Event::CursorCap`](crate::Event::CursorCap).
    pub async fn set_cursor_cap(&self, cap: Option<u16>) -> Result<(), Error> {
        self.request(Message::from(SetCursorCap { cap })).await
    }

    /// Asks for SFU access (SPEC §13), to publish our camera or only to subscribe. The answer
    /// is [`Event::SfuGrant`]; a viewer asking to publish is refused ([`Event::Refused`] with
    /// `Forbidden`), and a server without an SFU refuses with `SfuUnavailable`.
    ///
    /// [`Event::SfuGrant`]: crate::Event::SfuGrant
    /// [`Event::Refused`]: crate::Event::Refused
    pub async fn sfu_join(&self, publish: bool) -> Result<(), Error> {
        self.request(Message::from(SfuJoin { publish })).await
    }

    /// Sends an SDP for a peer connection: our publisher's offer (`feed` 0; the SFU's answer
    /// comes as [`Event::SfuSdp`]), or our answer to the SFU's offer for a subscribed feed.
    ///
    /// [`Event::SfuSdp`]: crate::Event::SfuSdp
    pub async fn sfu_sdp(&self, feed: u64, kind: SdpKind, sdp: &str) -> Result<(), Error> {
        self.request(Message::from(SfuSdp { feed, kind, sdp: sdp.to_owned() })).await
    }

    /// Trickles one of our ICE candidates for a peer connection (`feed` as in
    /// [`Room::sfu_sdp`]); an empty `candidate` ends them.
    pub async fn sfu_candidate(
        &self,
        feed: u64,
        candidate: &str,
        mid: &str,
        mline_index: u16,
    ) -> Result<(), Error> {
        let candidate =
            SfuCandidate { feed, candidate: candidate.to_owned(), mid: mid.to_owned(), mline_index };
        self.request(Message::from(candidate)).await
    }

    /// Subscribes to feeds (ids from [`Event::SfuEvent`]); the SFU's offer for each comes as
    /// [`Event::SfuSdp`].
    ///
    /// [`Event::SfuEvent`]: crate::Event::SfuEvent
    /// [`Event::SfuSdp`]: crate::Event::SfuSdp
    pub async fn sfu_subscribe(&self, feeds: &[u64]) -> Result<(), Error> {
        self.request(Message::from(SfuSubscribe { feeds: feeds.to_vec() })).await
    }

    /// Stops publishing (`feed` 0) or drops the subscription to `feed`.
    pub async fn sfu_leave(&self, feed: u64) -> Result<(), Error> {
        self.request(Message::from(SfuLeave { feed })).await
    }

    /// Leaves the room (unacked edits of the room are dropped).
    pub fn leave(self) -> Result<(), Error> {
        self.cmds.send(Command::Leave(self.id)).map_err(|_| Error::Closed)
    }
}
