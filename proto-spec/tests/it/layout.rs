//! Pins the archived layout of every wire type to the offset tables in SPEC.md §Message
//! reference: a change here is a protocol change.

use std::mem::{align_of, offset_of, size_of};

use easel_proto::datagram::*;
use easel_proto::message::*;

#[test]
fn archived_layouts_match_spec() {
    assert_eq!((size_of::<ArchivedRole>(), align_of::<ArchivedRole>()), (1, 1), "Role");
    assert_eq!((size_of::<ArchivedSyncKind>(), align_of::<ArchivedSyncKind>()), (1, 1), "SyncKind");
    assert_eq!((size_of::<ArchivedModAction>(), align_of::<ArchivedModAction>()), (1, 1), "ModAction");
    assert_eq!((size_of::<ArchivedSdpKind>(), align_of::<ArchivedSdpKind>()), (1, 1), "SdpKind");
    assert_eq!(
        (size_of::<ArchivedSfuEventKind>(), align_of::<ArchivedSfuEventKind>()),
        (1, 1),
        "SfuEventKind"
    );
    assert_eq!((size_of::<ArchivedHello>(), align_of::<ArchivedHello>()), (44, 4), "Hello");
    assert_eq!(offset_of!(ArchivedHello, versions), 0, "Hello.versions");
    assert_eq!(offset_of!(ArchivedHello, client_id), 8, "Hello.client_id");
    assert_eq!(offset_of!(ArchivedHello, client), 16, "Hello.client");
    assert_eq!(offset_of!(ArchivedHello, token), 24, "Hello.token");
    assert_eq!(offset_of!(ArchivedHello, resume), 32, "Hello.resume");
    assert_eq!(
        (size_of::<ArchivedSessionLimits>(), align_of::<ArchivedSessionLimits>()),
        (48, 4),
        "SessionLimits"
    );
    assert_eq!(offset_of!(ArchivedSessionLimits, max_frame_len), 0, "SessionLimits.max_frame_len");
    assert_eq!(offset_of!(ArchivedSessionLimits, max_datagram_len), 4, "SessionLimits.max_datagram_len");
    assert_eq!(offset_of!(ArchivedSessionLimits, max_rooms), 6, "SessionLimits.max_rooms");
    assert_eq!(offset_of!(ArchivedSessionLimits, max_participants), 8, "SessionLimits.max_participants");
    assert_eq!(offset_of!(ArchivedSessionLimits, ops_per_sec), 12, "SessionLimits.ops_per_sec");
    assert_eq!(offset_of!(ArchivedSessionLimits, ops_burst), 16, "SessionLimits.ops_burst");
    assert_eq!(offset_of!(ArchivedSessionLimits, datagrams_per_sec), 20, "SessionLimits.datagrams_per_sec");
    assert_eq!(offset_of!(ArchivedSessionLimits, datagrams_burst), 24, "SessionLimits.datagrams_burst");
    assert_eq!(offset_of!(ArchivedSessionLimits, chat_per_min), 28, "SessionLimits.chat_per_min");
    assert_eq!(offset_of!(ArchivedSessionLimits, tick_hz), 32, "SessionLimits.tick_hz");
    assert_eq!(offset_of!(ArchivedSessionLimits, heartbeat_ms), 36, "SessionLimits.heartbeat_ms");
    assert_eq!(offset_of!(ArchivedSessionLimits, presence_ttl_ms), 40, "SessionLimits.presence_ttl_ms");
    assert_eq!(offset_of!(ArchivedSessionLimits, resume_grace_ms), 44, "SessionLimits.resume_grace_ms");
    assert_eq!((size_of::<ArchivedWelcome>(), align_of::<ArchivedWelcome>()), (104, 8), "Welcome");
    assert_eq!(offset_of!(ArchivedWelcome, version), 0, "Welcome.version");
    assert_eq!(offset_of!(ArchivedWelcome, session_id), 8, "Welcome.session_id");
    assert_eq!(offset_of!(ArchivedWelcome, user), 16, "Welcome.user");
    assert_eq!(offset_of!(ArchivedWelcome, server_time_ms), 24, "Welcome.server_time_ms");
    assert_eq!(offset_of!(ArchivedWelcome, token_expires_ms), 32, "Welcome.token_expires_ms");
    assert_eq!(offset_of!(ArchivedWelcome, resume_token), 40, "Welcome.resume_token");
    assert_eq!(offset_of!(ArchivedWelcome, resumed), 48, "Welcome.resumed");
    assert_eq!(offset_of!(ArchivedWelcome, limits), 52, "Welcome.limits");
    assert_eq!((size_of::<ArchivedPing>(), align_of::<ArchivedPing>()), (8, 8), "Ping");
    assert_eq!(offset_of!(ArchivedPing, nonce), 0, "Ping.nonce");
    assert_eq!((size_of::<ArchivedPong>(), align_of::<ArchivedPong>()), (16, 8), "Pong");
    assert_eq!(offset_of!(ArchivedPong, nonce), 0, "Pong.nonce");
    assert_eq!(offset_of!(ArchivedPong, time_ms), 8, "Pong.time_ms");
    assert_eq!(
        (size_of::<ArchivedRefreshToken>(), align_of::<ArchivedRefreshToken>()),
        (8, 4),
        "RefreshToken"
    );
    assert_eq!(offset_of!(ArchivedRefreshToken, token), 0, "RefreshToken.token");
    assert_eq!(
        (size_of::<ArchivedTokenRefreshed>(), align_of::<ArchivedTokenRefreshed>()),
        (8, 8),
        "TokenRefreshed"
    );
    assert_eq!(offset_of!(ArchivedTokenRefreshed, expires_ms), 0, "TokenRefreshed.expires_ms");
    assert_eq!((size_of::<ArchivedGoAway>(), align_of::<ArchivedGoAway>()), (16, 4), "GoAway");
    assert_eq!(offset_of!(ArchivedGoAway, code), 0, "GoAway.code");
    assert_eq!(offset_of!(ArchivedGoAway, retry_after_ms), 4, "GoAway.retry_after_ms");
    assert_eq!(offset_of!(ArchivedGoAway, message), 8, "GoAway.message");
    assert_eq!((size_of::<ArchivedFault>(), align_of::<ArchivedFault>()), (24, 8), "Fault");
    assert_eq!(offset_of!(ArchivedFault, code), 0, "Fault.code");
    assert_eq!(offset_of!(ArchivedFault, kind), 2, "Fault.kind");
    assert_eq!(offset_of!(ArchivedFault, reference), 8, "Fault.reference");
    assert_eq!(offset_of!(ArchivedFault, message), 16, "Fault.message");
    assert_eq!((size_of::<ArchivedJoin>(), align_of::<ArchivedJoin>()), (28, 4), "Join");
    assert_eq!(offset_of!(ArchivedJoin, room), 0, "Join.room");
    assert_eq!(offset_of!(ArchivedJoin, name), 8, "Join.name");
    assert_eq!(offset_of!(ArchivedJoin, since), 16, "Join.since");
    assert_eq!((size_of::<ArchivedParticipant>(), align_of::<ArchivedParticipant>()), (28, 4), "Participant");
    assert_eq!(offset_of!(ArchivedParticipant, index), 0, "Participant.index");
    assert_eq!(offset_of!(ArchivedParticipant, user), 4, "Participant.user");
    assert_eq!(offset_of!(ArchivedParticipant, name), 12, "Participant.name");
    assert_eq!(offset_of!(ArchivedParticipant, role), 20, "Participant.role");
    assert_eq!(offset_of!(ArchivedParticipant, read_only), 21, "Participant.read_only");
    assert_eq!(offset_of!(ArchivedParticipant, chat_muted), 22, "Participant.chat_muted");
    assert_eq!(offset_of!(ArchivedParticipant, camera), 23, "Participant.camera");
    assert_eq!(offset_of!(ArchivedParticipant, hand_raised), 24, "Participant.hand_raised");
    assert_eq!((size_of::<ArchivedJoined>(), align_of::<ArchivedJoined>()), (20, 4), "Joined");
    assert_eq!(offset_of!(ArchivedJoined, slot), 0, "Joined.slot");
    assert_eq!(offset_of!(ArchivedJoined, room), 4, "Joined.room");
    assert_eq!(offset_of!(ArchivedJoined, participant), 12, "Joined.participant");
    assert_eq!(offset_of!(ArchivedJoined, role), 14, "Joined.role");
    assert_eq!(offset_of!(ArchivedJoined, resumed), 15, "Joined.resumed");
    assert_eq!(offset_of!(ArchivedJoined, sync), 16, "Joined.sync");
    assert_eq!((size_of::<ArchivedLeave>(), align_of::<ArchivedLeave>()), (0, 1), "Leave");
    assert_eq!((size_of::<ArchivedLeft>(), align_of::<ArchivedLeft>()), (12, 4), "Left");
    assert_eq!(offset_of!(ArchivedLeft, code), 0, "Left.code");
    assert_eq!(offset_of!(ArchivedLeft, message), 4, "Left.message");
    assert_eq!(
        (size_of::<ArchivedParticipantUpdated>(), align_of::<ArchivedParticipantUpdated>()),
        (28, 4),
        "ParticipantUpdated"
    );
    assert_eq!(offset_of!(ArchivedParticipantUpdated, participant), 0, "ParticipantUpdated.participant");
    assert_eq!(
        (size_of::<ArchivedParticipantGone>(), align_of::<ArchivedParticipantGone>()),
        (4, 2),
        "ParticipantGone"
    );
    assert_eq!(offset_of!(ArchivedParticipantGone, index), 0, "ParticipantGone.index");
    assert_eq!(offset_of!(ArchivedParticipantGone, code), 2, "ParticipantGone.code");
    assert_eq!(
        (size_of::<ArchivedParticipants>(), align_of::<ArchivedParticipants>()),
        (20, 4),
        "Participants"
    );
    assert_eq!(offset_of!(ArchivedParticipants, full), 0, "Participants.full");
    assert_eq!(offset_of!(ArchivedParticipants, joined), 4, "Participants.joined");
    assert_eq!(offset_of!(ArchivedParticipants, left), 12, "Participants.left");
    assert_eq!((size_of::<ArchivedUpdate>(), align_of::<ArchivedUpdate>()), (16, 8), "Update");
    assert_eq!(offset_of!(ArchivedUpdate, op_id), 0, "Update.op_id");
    assert_eq!(offset_of!(ArchivedUpdate, data), 8, "Update.data");
    assert_eq!((size_of::<ArchivedAck>(), align_of::<ArchivedAck>()), (8, 4), "Ack");
    assert_eq!(offset_of!(ArchivedAck, op_ids), 0, "Ack.op_ids");
    assert_eq!((size_of::<ArchivedReject>(), align_of::<ArchivedReject>()), (24, 8), "Reject");
    assert_eq!(offset_of!(ArchivedReject, op_id), 0, "Reject.op_id");
    assert_eq!(offset_of!(ArchivedReject, code), 8, "Reject.code");
    assert_eq!(offset_of!(ArchivedReject, message), 12, "Reject.message");
    assert_eq!(
        (size_of::<ArchivedRemoteUpdate>(), align_of::<ArchivedRemoteUpdate>()),
        (12, 4),
        "RemoteUpdate"
    );
    assert_eq!(offset_of!(ArchivedRemoteUpdate, from), 0, "RemoteUpdate.from");
    assert_eq!(offset_of!(ArchivedRemoteUpdate, data), 4, "RemoteUpdate.data");
    assert_eq!((size_of::<ArchivedSync>(), align_of::<ArchivedSync>()), (8, 4), "Sync");
    assert_eq!(offset_of!(ArchivedSync, since), 0, "Sync.since");
    assert_eq!(
        (size_of::<ArchivedSnapshotBegin>(), align_of::<ArchivedSnapshotBegin>()),
        (24, 8),
        "SnapshotBegin"
    );
    assert_eq!(offset_of!(ArchivedSnapshotBegin, slot), 0, "SnapshotBegin.slot");
    assert_eq!(offset_of!(ArchivedSnapshotBegin, sync), 2, "SnapshotBegin.sync");
    assert_eq!(offset_of!(ArchivedSnapshotBegin, total_len), 8, "SnapshotBegin.total_len");
    assert_eq!(offset_of!(ArchivedSnapshotBegin, version), 16, "SnapshotBegin.version");
    assert_eq!(
        (size_of::<ArchivedSnapshotChunk>(), align_of::<ArchivedSnapshotChunk>()),
        (8, 4),
        "SnapshotChunk"
    );
    assert_eq!(offset_of!(ArchivedSnapshotChunk, data), 0, "SnapshotChunk.data");
    assert_eq!((size_of::<ArchivedChatSend>(), align_of::<ArchivedChatSend>()), (16, 8), "ChatSend");
    assert_eq!(offset_of!(ArchivedChatSend, client_msg_id), 0, "ChatSend.client_msg_id");
    assert_eq!(offset_of!(ArchivedChatSend, text), 8, "ChatSend.text");
    assert_eq!((size_of::<ArchivedChatMessage>(), align_of::<ArchivedChatMessage>()), (56, 8), "ChatMessage");
    assert_eq!(offset_of!(ArchivedChatMessage, id), 0, "ChatMessage.id");
    assert_eq!(offset_of!(ArchivedChatMessage, from), 8, "ChatMessage.from");
    assert_eq!(offset_of!(ArchivedChatMessage, user), 12, "ChatMessage.user");
    assert_eq!(offset_of!(ArchivedChatMessage, name), 20, "ChatMessage.name");
    assert_eq!(offset_of!(ArchivedChatMessage, text), 28, "ChatMessage.text");
    assert_eq!(offset_of!(ArchivedChatMessage, sent_ms), 40, "ChatMessage.sent_ms");
    assert_eq!(offset_of!(ArchivedChatMessage, client_msg_id), 48, "ChatMessage.client_msg_id");
    assert_eq!((size_of::<ArchivedChatDelete>(), align_of::<ArchivedChatDelete>()), (8, 8), "ChatDelete");
    assert_eq!(offset_of!(ArchivedChatDelete, id), 0, "ChatDelete.id");
    assert_eq!((size_of::<ArchivedChatDeleted>(), align_of::<ArchivedChatDeleted>()), (16, 8), "ChatDeleted");
    assert_eq!(offset_of!(ArchivedChatDeleted, id), 0, "ChatDeleted.id");
    assert_eq!(offset_of!(ArchivedChatDeleted, by), 8, "ChatDeleted.by");
    assert_eq!((size_of::<ArchivedChatHistory>(), align_of::<ArchivedChatHistory>()), (16, 8), "ChatHistory");
    assert_eq!(offset_of!(ArchivedChatHistory, before), 0, "ChatHistory.before");
    assert_eq!(offset_of!(ArchivedChatHistory, limit), 8, "ChatHistory.limit");
    assert_eq!((size_of::<ArchivedChatPage>(), align_of::<ArchivedChatPage>()), (12, 4), "ChatPage");
    assert_eq!(offset_of!(ArchivedChatPage, messages), 0, "ChatPage.messages");
    assert_eq!(offset_of!(ArchivedChatPage, more), 8, "ChatPage.more");
    assert_eq!((size_of::<ArchivedPollStart>(), align_of::<ArchivedPollStart>()), (40, 8), "PollStart");
    assert_eq!(offset_of!(ArchivedPollStart, request), 0, "PollStart.request");
    assert_eq!(offset_of!(ArchivedPollStart, question), 8, "PollStart.question");
    assert_eq!(offset_of!(ArchivedPollStart, options), 16, "PollStart.options");
    assert_eq!(offset_of!(ArchivedPollStart, multiple), 24, "PollStart.multiple");
    assert_eq!(offset_of!(ArchivedPollStart, duration_ms), 28, "PollStart.duration_ms");
    assert_eq!(offset_of!(ArchivedPollStart, live), 32, "PollStart.live");
    assert_eq!((size_of::<ArchivedPollStarted>(), align_of::<ArchivedPollStarted>()), (56, 8), "PollStarted");
    assert_eq!(offset_of!(ArchivedPollStarted, poll_id), 0, "PollStarted.poll_id");
    assert_eq!(offset_of!(ArchivedPollStarted, request), 8, "PollStarted.request");
    assert_eq!(offset_of!(ArchivedPollStarted, by), 16, "PollStarted.by");
    assert_eq!(offset_of!(ArchivedPollStarted, question), 20, "PollStarted.question");
    assert_eq!(offset_of!(ArchivedPollStarted, options), 28, "PollStarted.options");
    assert_eq!(offset_of!(ArchivedPollStarted, multiple), 36, "PollStarted.multiple");
    assert_eq!(offset_of!(ArchivedPollStarted, closes_at_ms), 40, "PollStarted.closes_at_ms");
    assert_eq!(offset_of!(ArchivedPollStarted, live), 48, "PollStarted.live");
    assert_eq!((size_of::<ArchivedPollAnswer>(), align_of::<ArchivedPollAnswer>()), (24, 8), "PollAnswer");
    assert_eq!(offset_of!(ArchivedPollAnswer, poll_id), 0, "PollAnswer.poll_id");
    assert_eq!(offset_of!(ArchivedPollAnswer, attempt_id), 8, "PollAnswer.attempt_id");
    assert_eq!(offset_of!(ArchivedPollAnswer, choices), 16, "PollAnswer.choices");
    assert_eq!(
        (size_of::<ArchivedPollAnswered>(), align_of::<ArchivedPollAnswered>()),
        (16, 8),
        "PollAnswered"
    );
    assert_eq!(offset_of!(ArchivedPollAnswered, poll_id), 0, "PollAnswered.poll_id");
    assert_eq!(offset_of!(ArchivedPollAnswered, attempt_id), 8, "PollAnswered.attempt_id");
    assert_eq!((size_of::<ArchivedPollClose>(), align_of::<ArchivedPollClose>()), (8, 8), "PollClose");
    assert_eq!(offset_of!(ArchivedPollClose, poll_id), 0, "PollClose.poll_id");
    assert_eq!((size_of::<ArchivedPollResults>(), align_of::<ArchivedPollResults>()), (24, 8), "PollResults");
    assert_eq!(offset_of!(ArchivedPollResults, poll_id), 0, "PollResults.poll_id");
    assert_eq!(offset_of!(ArchivedPollResults, counts), 8, "PollResults.counts");
    assert_eq!(offset_of!(ArchivedPollResults, respondents), 16, "PollResults.respondents");
    assert_eq!(offset_of!(ArchivedPollResults, closed), 20, "PollResults.closed");
    assert_eq!((size_of::<ArchivedHandRaise>(), align_of::<ArchivedHandRaise>()), (0, 1), "HandRaise");
    assert_eq!((size_of::<ArchivedHandLower>(), align_of::<ArchivedHandLower>()), (2, 2), "HandLower");
    assert_eq!(offset_of!(ArchivedHandLower, participant), 0, "HandLower.participant");
    assert_eq!((size_of::<ArchivedHandQueue>(), align_of::<ArchivedHandQueue>()), (8, 4), "HandQueue");
    assert_eq!(offset_of!(ArchivedHandQueue, queue), 0, "HandQueue.queue");
    assert_eq!((size_of::<ArchivedModerate>(), align_of::<ArchivedModerate>()), (12, 4), "Moderate");
    assert_eq!(offset_of!(ArchivedModerate, target), 0, "Moderate.target");
    assert_eq!(offset_of!(ArchivedModerate, action), 2, "Moderate.action");
    assert_eq!(offset_of!(ArchivedModerate, reason), 4, "Moderate.reason");
    assert_eq!((size_of::<ArchivedModerated>(), align_of::<ArchivedModerated>()), (16, 4), "Moderated");
    assert_eq!(offset_of!(ArchivedModerated, target), 0, "Moderated.target");
    assert_eq!(offset_of!(ArchivedModerated, action), 2, "Moderated.action");
    assert_eq!(offset_of!(ArchivedModerated, by), 4, "Moderated.by");
    assert_eq!(offset_of!(ArchivedModerated, reason), 8, "Moderated.reason");
    assert_eq!(
        (size_of::<ArchivedSetCursorCap>(), align_of::<ArchivedSetCursorCap>()),
        (4, 2),
        "SetCursorCap"
    );
    assert_eq!(offset_of!(ArchivedSetCursorCap, cap), 0, "SetCursorCap.cap");
    assert_eq!((size_of::<ArchivedCursorCap>(), align_of::<ArchivedCursorCap>()), (4, 2), "CursorCap");
    assert_eq!(offset_of!(ArchivedCursorCap, cap), 0, "CursorCap.cap");
    assert_eq!(offset_of!(ArchivedCursorCap, by), 2, "CursorCap.by");
    assert_eq!((size_of::<ArchivedSfuJoin>(), align_of::<ArchivedSfuJoin>()), (1, 1), "SfuJoin");
    assert_eq!(offset_of!(ArchivedSfuJoin, publish), 0, "SfuJoin.publish");
    assert_eq!((size_of::<ArchivedSfuGrant>(), align_of::<ArchivedSfuGrant>()), (12, 4), "SfuGrant");
    assert_eq!(offset_of!(ArchivedSfuGrant, can_publish), 0, "SfuGrant.can_publish");
    assert_eq!(offset_of!(ArchivedSfuGrant, ice_servers), 4, "SfuGrant.ice_servers");
    assert_eq!(
        (size_of::<ArchivedSfuSubscribe>(), align_of::<ArchivedSfuSubscribe>()),
        (8, 4),
        "SfuSubscribe"
    );
    assert_eq!(offset_of!(ArchivedSfuSubscribe, feeds), 0, "SfuSubscribe.feeds");
    assert_eq!((size_of::<ArchivedSfuSdp>(), align_of::<ArchivedSfuSdp>()), (24, 8), "SfuSdp");
    assert_eq!(offset_of!(ArchivedSfuSdp, feed), 0, "SfuSdp.feed");
    assert_eq!(offset_of!(ArchivedSfuSdp, kind), 8, "SfuSdp.kind");
    assert_eq!(offset_of!(ArchivedSfuSdp, sdp), 12, "SfuSdp.sdp");
    assert_eq!(
        (size_of::<ArchivedSfuCandidate>(), align_of::<ArchivedSfuCandidate>()),
        (32, 8),
        "SfuCandidate"
    );
    assert_eq!(offset_of!(ArchivedSfuCandidate, feed), 0, "SfuCandidate.feed");
    assert_eq!(offset_of!(ArchivedSfuCandidate, candidate), 8, "SfuCandidate.candidate");
    assert_eq!(offset_of!(ArchivedSfuCandidate, mid), 16, "SfuCandidate.mid");
    assert_eq!(offset_of!(ArchivedSfuCandidate, mline_index), 24, "SfuCandidate.mline_index");
    assert_eq!((size_of::<ArchivedSfuLeave>(), align_of::<ArchivedSfuLeave>()), (8, 8), "SfuLeave");
    assert_eq!(offset_of!(ArchivedSfuLeave, feed), 0, "SfuLeave.feed");
    assert_eq!((size_of::<ArchivedSfuEvent>(), align_of::<ArchivedSfuEvent>()), (24, 8), "SfuEvent");
    assert_eq!(offset_of!(ArchivedSfuEvent, participant), 0, "SfuEvent.participant");
    assert_eq!(offset_of!(ArchivedSfuEvent, feed), 8, "SfuEvent.feed");
    assert_eq!(offset_of!(ArchivedSfuEvent, event), 16, "SfuEvent.event");
    assert_eq!((size_of::<ArchivedSfuStatus>(), align_of::<ArchivedSfuStatus>()), (12, 4), "SfuStatus");
    assert_eq!(offset_of!(ArchivedSfuStatus, reachable), 0, "SfuStatus.reachable");
    assert_eq!(offset_of!(ArchivedSfuStatus, fallback_url), 4, "SfuStatus.fallback_url");
    assert_eq!((size_of::<ArchivedStatus>(), align_of::<ArchivedStatus>()), (1, 1), "Status");
    assert_eq!((size_of::<ArchivedTool>(), align_of::<ArchivedTool>()), (1, 1), "Tool");
    assert_eq!((size_of::<ArchivedCursor>(), align_of::<ArchivedCursor>()), (12, 4), "Cursor");
    assert_eq!(offset_of!(ArchivedCursor, slot), 0, "Cursor.slot");
    assert_eq!(offset_of!(ArchivedCursor, seq), 2, "Cursor.seq");
    assert_eq!(offset_of!(ArchivedCursor, x), 4, "Cursor.x");
    assert_eq!(offset_of!(ArchivedCursor, y), 8, "Cursor.y");
    assert_eq!((size_of::<ArchivedCursorEntry>(), align_of::<ArchivedCursorEntry>()), (12, 4), "CursorEntry");
    assert_eq!(offset_of!(ArchivedCursorEntry, participant), 0, "CursorEntry.participant");
    assert_eq!(offset_of!(ArchivedCursorEntry, seq), 2, "CursorEntry.seq");
    assert_eq!(offset_of!(ArchivedCursorEntry, x), 4, "CursorEntry.x");
    assert_eq!(offset_of!(ArchivedCursorEntry, y), 8, "CursorEntry.y");
    assert_eq!((size_of::<ArchivedCursorBatch>(), align_of::<ArchivedCursorBatch>()), (12, 4), "CursorBatch");
    assert_eq!(offset_of!(ArchivedCursorBatch, slot), 0, "CursorBatch.slot");
    assert_eq!(offset_of!(ArchivedCursorBatch, cursors), 4, "CursorBatch.cursors");
    assert_eq!((size_of::<ArchivedHeartbeat>(), align_of::<ArchivedHeartbeat>()), (6, 2), "Heartbeat");
    assert_eq!(offset_of!(ArchivedHeartbeat, slot), 0, "Heartbeat.slot");
    assert_eq!(offset_of!(ArchivedHeartbeat, seq), 2, "Heartbeat.seq");
    assert_eq!(offset_of!(ArchivedHeartbeat, status), 4, "Heartbeat.status");
    assert_eq!(offset_of!(ArchivedHeartbeat, tool), 5, "Heartbeat.tool");
    assert_eq!(
        (size_of::<ArchivedPresenceEntry>(), align_of::<ArchivedPresenceEntry>()),
        (6, 2),
        "PresenceEntry"
    );
    assert_eq!(offset_of!(ArchivedPresenceEntry, participant), 0, "PresenceEntry.participant");
    assert_eq!(offset_of!(ArchivedPresenceEntry, seq), 2, "PresenceEntry.seq");
    assert_eq!(offset_of!(ArchivedPresenceEntry, status), 4, "PresenceEntry.status");
    assert_eq!(offset_of!(ArchivedPresenceEntry, tool), 5, "PresenceEntry.tool");
    assert_eq!(
        (size_of::<ArchivedPresenceBatch>(), align_of::<ArchivedPresenceBatch>()),
        (12, 4),
        "PresenceBatch"
    );
    assert_eq!(offset_of!(ArchivedPresenceBatch, slot), 0, "PresenceBatch.slot");
    assert_eq!(offset_of!(ArchivedPresenceBatch, entries), 4, "PresenceBatch.entries");
}
