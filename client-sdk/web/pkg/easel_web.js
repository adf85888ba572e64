/* @ts-self-types="./easel_web.d.ts" */

/**
 * One client session: its connection state, rooms, pending ops and timers. See the crate
 * README for the driver's loop.
 */
export class EaselSession {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        EaselSessionFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_easelsession_free(ptr, 0);
    }
    /**
     * Answers with an explicit attempt id: the same id again counts once.
     * @param {string} room
     * @param {bigint} poll_id
     * @param {bigint} attempt_id
     * @param {Uint8Array | number[]} choices
     */
    answerPollAs(room, poll_id, attempt_id, choices) {
        const val3 = BigInt.asIntN(64, poll_id);
        const val4 = BigInt.asIntN(64, attempt_id);
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray8ToWasm0(choices, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_answerPollAs(this.__wbg_ptr, ptr0, len0, val3, val4, ptr1, len1);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Answers a poll with option indices; returns the attempt id (resend the same answer
     * with `answerPollAs` and this id).
     * @param {string} room
     * @param {bigint} poll_id
     * @param {Uint8Array | number[]} choices
     * @returns {bigint}
     */
    answerPoll(room, poll_id, choices) {
        const val3 = BigInt.asIntN(64, poll_id);
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray8ToWasm0(choices, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_answerPoll(this.__wbg_ptr, ptr0, len0, val3, ptr1, len1);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return BigInt.asUintN(64, ret[0]);
    }
    /**
     * Asks for up to `limit` messages older than `before` (0: the newest): a `chatPage`.
     * @param {string} room
     * @param {bigint} before
     * @param {number} limit
     */
    chatHistory(room, before, limit) {
        const val2 = BigInt.asIntN(64, before);
        const val3 = +limit;
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_chatHistory(this.__wbg_ptr, ptr0, len0, val2, val3);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Sends a chat message; returns its `clientMsgId` (the `chat` event echoes it).
     * @param {string} room
     * @param {string} text
     * @returns {bigint}
     */
    chat(room, text) {
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(text, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_chat(this.__wbg_ptr, ptr0, len0, ptr1, len1);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return BigInt.asUintN(64, ret[0]);
    }
    /**
     * Closes a poll (teachers).
     * @param {string} room
     * @param {bigint} poll_id
     */
    closePoll(room, poll_id) {
        const val2 = BigInt.asIntN(64, poll_id);
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_closePoll(this.__wbg_ptr, ptr0, len0, val2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * A connection attempt started: until it ends (`handshake` or `disconnected`) no timeout is
     * due, so `pollTimeout` gives `undefined` instead of a time already past.
     */
    connecting() {
        wasm.easelsession_connecting(this.__wbg_ptr);
    }
    /**
     * A frame on the control stream after the handshake (`GoAway`, `Fault`, token answers).
     * @param {Frame} frame
     */
    controlFrame(frame) {
        _assertClass(frame, Frame);
        var ptr0 = frame.__destroy_into_raw();
        wasm.easelsession_controlFrame(this.__wbg_ptr, ptr0);
    }
    /**
     * Moves our cursor in `room` (board pixels); throttled, newest position wins.
     * @param {number} now_ms
     * @param {string} room
     * @param {number} x
     * @param {number} y
     */
    cursor(now_ms, room, x, y) {
        const val2 = +now_ms;
        const val3 = +x;
        const val4 = +y;
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_cursor(this.__wbg_ptr, val2, ptr0, len0, val3, val4);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * A datagram received. One that does not decode is dropped (SPEC §3.2); returns whether
     * it decoded.
     * @param {Uint8Array | number[]} bytes
     * @returns {boolean}
     */
    datagram(bytes) {
        const ptr0 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_datagram(this.__wbg_ptr, ptr0, len0);
        return ret !== 0;
    }
    /**
     * Deletes a chat message for everyone (teachers).
     * @param {string} room
     * @param {bigint} id
     */
    deleteChat(room, id) {
        const val2 = BigInt.asIntN(64, id);
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_deleteChat(this.__wbg_ptr, ptr0, len0, val2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * The connection was lost, closed, or an attempt failed before its `Welcome`. `code` is
     * the server's wire code when the close carried one.
     * @param {number} now_ms
     * @param {number | null | undefined} code
     * @param {string} reason
     */
    disconnected(now_ms, code, reason) {
        const val2 = +now_ms;
        const val3 = +(isLikeNone(code) ? 0xFFFFFF : code);
        const ptr0 = passStringToWasm0(reason, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        wasm.easelsession_disconnected(this.__wbg_ptr, val2, val3, ptr0, len0);
    }
    /**
     * Time passed: throttled cursors, heartbeats, rate-delayed ops.
     * @param {number} now_ms
     */
    handleTimeout(now_ms) {
        wasm.easelsession_handleTimeout(this.__wbg_ptr, now_ms);
    }
    /**
     * The first frame read on the control stream of a connection over `transport`
     * ("webtransport" or "websocket"). A `Welcome` establishes the session (rooms are
     * rejoined: see `pollTransmit`); a `Fault` (a refused token, …) or anything else ends
     * the attempt: the session schedules the next and the driver closes the connection.
     * @param {number} now_ms
     * @param {Transport} transport
     * @param {Frame} frame
     * @returns {Handshake}
     */
    handshake(now_ms, transport, frame) {
        const val3 = +now_ms;
        let ptr0, len0, ptr1;
        try {
            ptr0 = passStringToWasm0(transport, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            _assertClass(frame, Frame);
            ptr1 = frame.__destroy_into_raw();
        } catch (e) {
            if (ptr1) wasm.__wbg_frame_free(ptr1, 1);
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_handshake(this.__wbg_ptr, val3, ptr0, len0, ptr1);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return takeFromExternrefTable0(ret[0]);
    }
    /**
     * The `Hello` frame to write first on a new connection's control stream (the client's
     * first bidirectional stream); it asks to resume the last session.
     * @param {string} token
     * @returns {Uint8Array}
     */
    hello(token) {
        const ptr0 = passStringToWasm0(token, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_hello(this.__wbg_ptr, ptr0, len0);
        if (ret[3]) {
            throw takeFromExternrefTable0(ret[2]);
        }
        var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        return v2;
    }
    /**
     * Whether a connection is established.
     * @returns {boolean}
     */
    isConnected() {
        const ret = wasm.easelsession_isConnected(this.__wbg_ptr);
        return ret !== 0;
    }
    /**
     * Joins `room` (now, or when connected) with the app's `LoroDoc`; `restored` are the
     * room's unacked ops from the offline store (imported into `doc` and resent).
     * @param {string} room
     * @param {LoroDocLike} doc
     * @param {StoredOp[] | null} [restored]
     */
    join(room, doc, restored) {
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_join(this.__wbg_ptr, ptr0, len0, doc, isLikeNone(restored) ? 0 : addToExternrefTable0(restored));
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Leaves `room`; its unacked ops are dropped from the store.
     * @param {string} room
     */
    leave(room) {
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_leave(this.__wbg_ptr, ptr0, len0);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * A local commit of `room`'s document (the bytes of loro-crdt's
     * `subscribeLocalUpdates`): it becomes an op, stored, sent and kept until acked. Returns
     * its op id.
     * @param {number} now_ms
     * @param {string} room
     * @param {Uint8Array | number[]} bytes
     * @returns {bigint}
     */
    localUpdate(now_ms, room, bytes) {
        const val3 = +now_ms;
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray8ToWasm0(bytes, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_localUpdate(this.__wbg_ptr, val3, ptr0, len0, ptr1, len1);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return BigInt.asUintN(64, ret[0]);
    }
    /**
     * Lowers a hand: our own, or anyone's for a teacher.
     * @param {string} room
     * @param {number} participant
     */
    lowerHand(room, participant) {
        const val2 = +participant;
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_lowerHand(this.__wbg_ptr, ptr0, len0, val2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * A teacher's moderation of `target` (`ModAction` name).
     * @param {string} room
     * @param {number} target
     * @param {ModAction} action
     * @param {string} reason
     */
    moderate(room, target, action, reason) {
        const val4 = +target;
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(action, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passStringToWasm0(reason, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 1, 1); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_moderate(this.__wbg_ptr, ptr0, len0, val4, ptr1, len1, ptr2, len2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * A disconnected session that may connect at once (see `SessionOptions`).
     * @param {SessionOptions} options
     * @param {number} now_ms
     */
    constructor(options, now_ms) {
        const ret = wasm.easelsession_new(options, now_ms);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        this.__wbg_ptr = ret[0];
        EaselSessionFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * The next op id that will be used (keep it with the stored ops).
     * @returns {bigint}
     */
    nextOpId() {
        const ret = wasm.easelsession_nextOpId(this.__wbg_ptr);
        return BigInt.asUintN(64, ret);
    }
    /**
     * Unacked op ids of `room`, oldest first.
     * @param {string} room
     * @returns {BigUint64Array}
     */
    pending(room) {
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_pending(this.__wbg_ptr, ptr0, len0);
        var v2 = getArrayU64FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 8, 8);
        return v2;
    }
    /**
     * The next `EaselEvent`, or `undefined` (remote updates received so far are imported
     * into the room documents first).
     * @returns {EaselEvent | undefined}
     */
    pollEvent() {
        const ret = wasm.easelsession_pollEvent(this.__wbg_ptr);
        return ret;
    }
    /**
     * The next `StoreOp` for the offline store, or `undefined`. Apply it before sending the
     * transmits polled after it (an op is durable locally before it goes out).
     * @returns {StoreOp | undefined}
     */
    pollStore() {
        const ret = wasm.easelsession_pollStore(this.__wbg_ptr);
        return ret;
    }
    /**
     * When `handleTimeout` (or a connection attempt) is next due, in the driver's
     * milliseconds; `undefined`: nothing is scheduled.
     * @returns {number | undefined}
     */
    pollTimeout() {
        const ret = wasm.easelsession_pollTimeout(this.__wbg_ptr);
        return ret[0] === 0 ? undefined : ret[1];
    }
    /**
     * The next `Transmit`, or `undefined`.
     * @returns {Transmit | undefined}
     */
    pollTransmit() {
        const ret = wasm.easelsession_pollTransmit(this.__wbg_ptr);
        return ret;
    }
    /**
     * Sets our presence in `room` (`Status`, `Tool` names); a heartbeat goes at once.
     * @param {number} now_ms
     * @param {string} room
     * @param {Status} status
     * @param {Tool} tool
     */
    presence(now_ms, room, status, tool) {
        const val4 = +now_ms;
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(status, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passStringToWasm0(tool, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 1, 1); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_presence(this.__wbg_ptr, val4, ptr0, len0, ptr1, len1, ptr2, len2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Raises our hand.
     * @param {string} room
     */
    raiseHand(room) {
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_raiseHand(this.__wbg_ptr, ptr0, len0);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Asks the server to accept a fresh token (call before the current one expires).
     * @param {string} token
     */
    refreshToken(token) {
        const ptr0 = passStringToWasm0(token, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_refreshToken(this.__wbg_ptr, ptr0, len0);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * A frame on the room stream opened for `room` (its first is `Joined` or a `Fault`).
     * @param {number} now_ms
     * @param {string} room
     * @param {Frame} frame
     */
    roomFrame(now_ms, room, frame) {
        const val3 = +now_ms;
        let ptr0, len0, ptr1;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            _assertClass(frame, Frame);
            ptr1 = frame.__destroy_into_raw();
        } catch (e) {
            if (ptr1) wasm.__wbg_frame_free(ptr1, 1);
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        wasm.easelsession_roomFrame(this.__wbg_ptr, val3, ptr0, len0, ptr1);
    }
    /**
     * A teacher sets the cursor cap: 0 shows all, `undefined` restores the lecture default.
     * @param {string} room
     * @param {number | null} [cap]
     */
    setCursorCap(room, cap) {
        const val2 = +(isLikeNone(cap) ? 0xFFFFFF : cap);
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_setCursorCap(this.__wbg_ptr, ptr0, len0, val2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Trickles one of our ICE candidates; an empty `candidate` ends them.
     * @param {string} room
     * @param {bigint} feed
     * @param {string} candidate
     * @param {string} mid
     * @param {number} mline_index
     */
    sfuCandidate(room, feed, candidate, mid, mline_index) {
        const val4 = BigInt.asIntN(64, feed);
        const val5 = +mline_index;
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(candidate, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passStringToWasm0(mid, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 1, 1); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_sfuCandidate(this.__wbg_ptr, ptr0, len0, val4, ptr1, len1, ptr2, len2, val5);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Asks for SFU access, to publish or only to subscribe: an `sfuGrant` answers.
     * @param {string} room
     * @param {boolean} publish
     */
    sfuJoin(room, publish) {
        const val2 = +publish;
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_sfuJoin(this.__wbg_ptr, ptr0, len0, val2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Stops publishing (`feed` 0) or drops a subscription.
     * @param {string} room
     * @param {bigint} feed
     */
    sfuLeave(room, feed) {
        const val2 = BigInt.asIntN(64, feed);
        const ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_sfuLeave(this.__wbg_ptr, ptr0, len0, val2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * An SDP for a peer connection (`feed` 0: our publisher); `kind` "offer" or "answer".
     * @param {string} room
     * @param {bigint} feed
     * @param {SdpKind} kind
     * @param {string} sdp
     */
    sfuSdp(room, feed, kind, sdp) {
        const val4 = BigInt.asIntN(64, feed);
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(kind, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passStringToWasm0(sdp, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__wbindgen_free(ptr2, len2 * 1, 1); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_sfuSdp(this.__wbg_ptr, ptr0, len0, val4, ptr1, len1, ptr2, len2);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Subscribes to feeds (ids from `sfuEvent`s).
     * @param {string} room
     * @param {BigUint64Array | bigint[]} feeds
     */
    sfuSubscribe(room, feeds) {
        let ptr0, len0, ptr1, len1;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passArray64ToWasm0(feeds, wasm.__wbindgen_malloc);
            len1 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 8, 8); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_sfuSubscribe(this.__wbg_ptr, ptr0, len0, ptr1, len1);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Whether a connection attempt should start now.
     * @param {number} now_ms
     * @returns {boolean}
     */
    shouldConnect(now_ms) {
        const ret = wasm.easelsession_shouldConnect(this.__wbg_ptr, now_ms);
        return ret !== 0;
    }
    /**
     * The whole content of a snapshot stream (a unidirectional stream the server opens),
     * read to its end. Throws a `ProtocolError` if it is not a snapshot stream.
     * @param {Uint8Array | number[]} stream
     */
    snapshot(stream) {
        const ptr0 = passArray8ToWasm0(stream, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.easelsession_snapshot(this.__wbg_ptr, ptr0, len0);
        if (ret[1]) {
            throw takeFromExternrefTable0(ret[0]);
        }
    }
    /**
     * Starts a poll (teachers); returns the request id its `pollStarted` carries.
     * `duration_ms` 0: open until `closePoll`.
     * @param {string} room
     * @param {string} question
     * @param {string[]} options
     * @param {boolean} multiple
     * @param {number} duration_ms
     * @param {boolean} live
     * @returns {bigint}
     */
    startPoll(room, question, options, multiple, duration_ms, live) {
        const val4 = +multiple;
        const val5 = +duration_ms;
        const val6 = +live;
        let ptr0, len0, ptr1, len1, ptr2, len2;
        try {
            ptr0 = passStringToWasm0(room, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len0 = WASM_VECTOR_LEN;
            ptr1 = passStringToWasm0(question, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            len1 = WASM_VECTOR_LEN;
            ptr2 = passArrayJsValueToWasm0(options, wasm.__wbindgen_malloc);
            len2 = WASM_VECTOR_LEN;
        } catch (e) {
            if (ptr2) { wasm.__externref_drop_slice(ptr2, len2); wasm.__wbindgen_free(ptr2, len2 * 4, 4); }
            if (ptr1) { wasm.__wbindgen_free(ptr1, len1 * 1, 1); }
            if (ptr0) { wasm.__wbindgen_free(ptr0, len0 * 1, 1); }
            throw e;
        }
        const ret = wasm.easelsession_startPoll(this.__wbg_ptr, ptr0, len0, ptr1, len1, ptr2, len2, val4, val5, val6);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return BigInt.asUintN(64, ret[0]);
    }
}
if (Symbol.dispose) EaselSession.prototype[Symbol.dispose] = EaselSession.prototype.free;

/**
 * One decoded frame of a stream, handed to [`crate::EaselSession`] as it is (not decoded
 * twice).
 */
export class Frame {
    static __wrap(ptr) {
        const obj = Object.create(Frame.prototype);
        obj.__wbg_ptr = ptr;
        FrameFinalization.register(obj, obj.__wbg_ptr, obj);
        return obj;
    }
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        FrameFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_frame_free(ptr, 0);
    }
    /**
     * The message kind, e.g. "welcome", "fault", "joined" (for logs and the driver's checks).
     * @returns {string}
     */
    get kind() {
        let deferred1_0;
        let deferred1_1;
        try {
            const ret = wasm.frame_kind(this.__wbg_ptr);
            deferred1_0 = ret[0];
            deferred1_1 = ret[1];
            return getStringFromWasm0(ret[0], ret[1]);
        } finally {
            wasm.__wbindgen_free(deferred1_0, deferred1_1, 1);
        }
    }
}
if (Symbol.dispose) Frame.prototype[Symbol.dispose] = Frame.prototype.free;

/**
 * Reads frames from one reliable stream (control, room or snapshot stream).
 */
export class FrameReader {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        FrameReaderFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_framereader_free(ptr, 0);
    }
    /**
     * Whether the bytes so far end on a frame boundary (a stream that ends otherwise was cut).
     * @returns {boolean}
     */
    atBoundary() {
        const ret = wasm.framereader_atBoundary(this.__wbg_ptr);
        return ret !== 0;
    }
    /**
     * A reader refusing frames longer than `max_frame` bytes (default: the protocol's
     * limit, 1 MiB).
     * @param {number | null} [max_frame]
     */
    constructor(max_frame) {
        const ret = wasm.framereader_new(isLikeNone(max_frame) ? Number.MAX_SAFE_INTEGER : (max_frame) >>> 0);
        this.__wbg_ptr = ret;
        FrameReaderFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * The next complete frame, or `undefined` until more bytes come. Throws a
     * `ProtocolError` (`code`: the wire code) for a frame that does not decode; the stream
     * may go on after it unless the code is 102 (`frameTooLarge`: close the connection).
     * @returns {Frame | undefined}
     */
    next() {
        const ret = wasm.framereader_next(this.__wbg_ptr);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return ret[0] === 0 ? undefined : Frame.__wrap(ret[0]);
    }
    /**
     * Bytes read from the stream, any amount.
     * @param {Uint8Array | number[]} chunk
     */
    push(chunk) {
        const ptr0 = passArray8ToWasm0(chunk, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        wasm.framereader_push(this.__wbg_ptr, ptr0, len0);
    }
}
if (Symbol.dispose) FrameReader.prototype[Symbol.dispose] = FrameReader.prototype.free;

/**
 * The client end of the WebSocket mapping (SPEC §16): every binary WebSocket message is an
 * envelope — a datagram, bytes of a stream, its end or its reset.
 */
export class WsMux {
    __destroy_into_raw() {
        const ptr = this.__wbg_ptr;
        this.__wbg_ptr = 0;
        WsMuxFinalization.unregister(this);
        return ptr;
    }
    free() {
        const ptr = this.__destroy_into_raw();
        wasm.__wbg_wsmux_free(ptr, 0);
    }
    /**
     * The message carrying a datagram.
     * @param {Uint8Array | number[]} data
     * @returns {Uint8Array}
     */
    static datagram(data) {
        const ptr0 = passArray8ToWasm0(data, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wsmux_datagram(ptr0, len0);
        var v2 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        return v2;
    }
    /**
     * The message finishing stream `id`.
     * @param {number} id
     * @returns {Uint8Array}
     */
    static fin(id) {
        const ret = wasm.wsmux_fin(id);
        var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        return v1;
    }
    /**
     * Bookkeeping for the client side, allowing the server `max_peer_streams` open streams
     * at once (default 32, as the native client: control, rooms, snapshots and slack).
     * @param {number | null} [max_peer_streams]
     */
    constructor(max_peer_streams) {
        const ret = wasm.wsmux_new(isLikeNone(max_peer_streams) ? Number.MAX_SAFE_INTEGER : (max_peer_streams) >>> 0);
        this.__wbg_ptr = ret;
        WsMuxFinalization.register(this, this.__wbg_ptr, this);
        return this;
    }
    /**
     * A new bidirectional stream's id (the control stream, a room stream).
     * @returns {number}
     */
    openBi() {
        const ret = wasm.wsmux_openBi(this.__wbg_ptr);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return ret[0] >>> 0;
    }
    /**
     * What a received message means: an array of `WsEvent`s (a stream's first bytes come as
     * `opened` then `data`). Throws a `ProtocolError` for a violation, which ends the session.
     * @param {Uint8Array | number[]} message
     * @returns {WsEvent[]}
     */
    receive(message) {
        const ptr0 = passArray8ToWasm0(message, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wsmux_receive(this.__wbg_ptr, ptr0, len0);
        if (ret[2]) {
            throw takeFromExternrefTable0(ret[1]);
        }
        return takeFromExternrefTable0(ret[0]);
    }
    /**
     * The message abandoning stream `id` with wire code `code`.
     * @param {number} id
     * @param {number} code
     * @returns {Uint8Array}
     */
    static reset(id, code) {
        const ret = wasm.wsmux_reset(id, code);
        var v1 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        return v1;
    }
    /**
     * The message carrying `data` on stream `id`.
     * @param {number} id
     * @param {Uint8Array | number[]} data
     * @returns {Uint8Array}
     */
    static stream(id, data) {
        const val2 = +id;
        const ptr0 = passArray8ToWasm0(data, wasm.__wbindgen_malloc);
        const len0 = WASM_VECTOR_LEN;
        const ret = wasm.wsmux_stream(val2, ptr0, len0);
        var v3 = getArrayU8FromWasm0(ret[0], ret[1]).slice();
        wasm.__wbindgen_free(ret[0], ret[1] * 1, 1);
        return v3;
    }
}
if (Symbol.dispose) WsMux.prototype[Symbol.dispose] = WsMux.prototype.free;
function __wbg_get_imports() {
    const import0 = {
        __proto__: null,
        __wbg___wbindgen_bigint_get_as_i64_11da4b52cd0aedef: function(arg0, arg1) {
            const v = arg1;
            const ret = typeof(v) === 'bigint' ? v : undefined;
            getDataViewMemory0().setBigInt64((arg0 >>> 0) + 8 * 1, isLikeNone(ret) ? BigInt(0) : ret, true);
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, !isLikeNone(ret), true);
        },
        __wbg___wbindgen_is_null_c22311b1cc228e3a: function(arg0) {
            const ret = arg0 === null;
            return ret;
        },
        __wbg___wbindgen_is_undefined_be5b34249ff1fc15: function(arg0) {
            const ret = arg0 === undefined;
            return ret;
        },
        __wbg___wbindgen_jsval_eq_38d7bfbe4cc84039: function(arg0, arg1) {
            const ret = arg0 === arg1;
            return ret;
        },
        __wbg___wbindgen_number_get_934b640d0889af78: function(arg0, arg1) {
            const obj = arg1;
            const ret = typeof(obj) === 'number' ? obj : undefined;
            getDataViewMemory0().setFloat64((arg0 >>> 0) + 8 * 1, isLikeNone(ret) ? 0 : ret, true);
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, !isLikeNone(ret), true);
        },
        __wbg___wbindgen_string_get_7ce8eee7fd327545: function(arg0, arg1) {
            const obj = arg1;
            const ret = typeof(obj) === 'string' ? obj : undefined;
            var ptr1 = isLikeNone(ret) ? 0 : passStringToWasm0(ret, wasm.__wbindgen_malloc, wasm.__wbindgen_realloc);
            var len1 = WASM_VECTOR_LEN;
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
        },
        __wbg___wbindgen_throw_4c88d8bf264fd984: function(arg0, arg1) {
            throw new Error(getStringFromWasm0(arg0, arg1));
        },
        __wbg_encode_6b9f5f6d1556ec26: function() { return handleError(function (arg0, arg1) {
            const ret = arg1.encode();
            const ptr1 = passArray8ToWasm0(ret, wasm.__wbindgen_malloc);
            const len1 = WASM_VECTOR_LEN;
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 1, len1, true);
            getDataViewMemory0().setInt32((arg0 >>> 0) + 4 * 0, ptr1, true);
        }, arguments); },
        __wbg_from_eac91875c8a5ffa4: function(arg0) {
            const ret = Array.from(arg0);
            return ret;
        },
        __wbg_get_2080c49015e35254: function() { return handleError(function (arg0, arg1) {
            const ret = Reflect.get(arg0, arg1);
            return ret;
        }, arguments); },
        __wbg_get_unchecked_e6325ad374eff861: function(arg0, arg1) {
            const ret = arg0[arg1 >>> 0];
            return ret;
        },
        __wbg_importBatch_617ba0759db52b9d: function() { return handleError(function (arg0, arg1) {
            const ret = arg0.importBatch(arg1);
            return ret;
        }, arguments); },
        __wbg_import_e14ab60b04909a0d: function() { return handleError(function (arg0, arg1, arg2) {
            const ret = arg0.import(getArrayU8FromWasm0(arg1, arg2));
            return ret;
        }, arguments); },
        __wbg_instanceof_Error_74e3cca0c4a69161: function(arg0) {
            let result;
            try {
                result = arg0 instanceof Error;
            } catch (_) {
                result = false;
            }
            const ret = result;
            return ret;
        },
        __wbg_length_186163212ffe79c3: function(arg0) {
            const ret = arg0.length;
            return ret;
        },
        __wbg_length_a3ae03b24c812bcf: function() { return handleError(function (arg0) {
            const ret = arg0.length();
            return ret;
        }, arguments); },
        __wbg_length_b03a0fabb109b1e9: function(arg0) {
            const ret = arg0.length;
            return ret;
        },
        __wbg_message_43d8c8f1d543a349: function(arg0) {
            const ret = arg0.message;
            return ret;
        },
        __wbg_new_13de428334042d26: function(arg0) {
            const ret = new Uint8Array(arg0);
            return ret;
        },
        __wbg_new_37eb45aaf5eeb820: function() {
            const ret = new Array();
            return ret;
        },
        __wbg_new_4416a2fe2fac9c65: function(arg0, arg1) {
            const ret = new TypeError(getStringFromWasm0(arg0, arg1));
            return ret;
        },
        __wbg_new_787b9fb330d55d78: function(arg0, arg1) {
            const ret = new Error(getStringFromWasm0(arg0, arg1));
            return ret;
        },
        __wbg_new_cd4348290afae586: function() {
            const ret = new Object();
            return ret;
        },
        __wbg_new_from_slice_b8daf545a41c6aa0: function(arg0, arg1) {
            const ret = new Uint8Array(getArrayU8FromWasm0(arg0, arg1));
            return ret;
        },
        __wbg_now_e7c6795a7f81e10f: function(arg0) {
            const ret = arg0.now();
            return ret;
        },
        __wbg_oplogVersion_a4bf8645c5d98166: function() { return handleError(function (arg0) {
            const ret = arg0.oplogVersion();
            return ret;
        }, arguments); },
        __wbg_performance_7e4e4494fdc9d07a: function(arg0) {
            const ret = arg0.performance;
            return ret;
        },
        __wbg_prototypesetcall_13162965d1fe7aa3: function(arg0, arg1, arg2) {
            Uint8Array.prototype.set.call(getArrayU8FromWasm0(arg0, arg1), arg2);
        },
        __wbg_push_c9f4893fc209f768: function(arg0, arg1) {
            const ret = arg0.push(arg1);
            return ret;
        },
        __wbg_set_2793479888329cb6: function() { return handleError(function (arg0, arg1, arg2) {
            const ret = Reflect.set(arg0, arg1, arg2);
            return ret;
        }, arguments); },
        __wbg_set_name_822e3903f3184979: function(arg0, arg1, arg2) {
            arg0.name = getStringFromWasm0(arg1, arg2);
        },
        __wbg_static_accessor_GLOBAL_THIS_003ee833af9699fc: function() {
            const ret = typeof globalThis === 'undefined' ? undefined : globalThis;
            return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
        },
        __wbg_static_accessor_GLOBAL_e4293fb22cbe77da: function() {
            const ret = typeof global === 'undefined' ? undefined : global;
            return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
        },
        __wbg_static_accessor_SELF_53bb20457401453d: function() {
            const ret = typeof self === 'undefined' ? undefined : self;
            return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
        },
        __wbg_static_accessor_WINDOW_b5e0810bfecb7feb: function() {
            const ret = typeof window === 'undefined' ? undefined : window;
            return isLikeNone(ret) ? 0 : addToExternrefTable0(ret);
        },
        __wbindgen_generic_0000000000000001: function(arg0) {
            // Cast intrinsic for `F64 -> Externref`.
            const ret = arg0;
            return ret;
        },
        __wbindgen_generic_0000000000000002: function(arg0, arg1) {
            // Cast intrinsic for `Ref(String) -> Externref`.
            const ret = getStringFromWasm0(arg0, arg1);
            return ret;
        },
        __wbindgen_generic_0000000000000003: function(arg0) {
            // Cast intrinsic for `U64 -> Externref`.
            const ret = BigInt.asUintN(64, arg0);
            return ret;
        },
        __wbindgen_init_externref_table: function() {
            const table = wasm.__wbindgen_externrefs;
            table.set(0, undefined);
            table.set(1024, undefined);
            table.set(1025, null);
            table.set(1026, true);
            table.set(1027, false);
        },
    };
    return {
        __proto__: null,
        "./easel_web_bg.js": import0,
    };
}

const EaselSessionFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_easelsession_free(ptr, 1));
const FrameFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_frame_free(ptr, 1));
const FrameReaderFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_framereader_free(ptr, 1));
const WsMuxFinalization = (typeof FinalizationRegistry === 'undefined')
    ? { register: () => {}, unregister: () => {} }
    : new FinalizationRegistry(ptr => wasm.__wbg_wsmux_free(ptr, 1));

function addToExternrefTable0(obj) {
    const idx = wasm.__externref_table_alloc();
    wasm.__wbindgen_externrefs.set(idx, obj);
    return idx;
}

function _assertClass(instance, klass) {
    if (!(instance instanceof klass)) {
        throw new Error(`expected instance of ${klass.name}`);
    }
}

function getArrayU64FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getBigUint64ArrayMemory0().subarray(ptr / 8, ptr / 8 + len);
}

function getArrayU8FromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return getUint8ArrayMemory0().subarray(ptr / 1, ptr / 1 + len);
}

let cachedBigUint64ArrayMemory0 = null;
function getBigUint64ArrayMemory0() {
    if (cachedBigUint64ArrayMemory0 === null || cachedBigUint64ArrayMemory0.byteLength === 0) {
        cachedBigUint64ArrayMemory0 = new BigUint64Array(wasm.memory.buffer);
    }
    return cachedBigUint64ArrayMemory0;
}

let cachedDataViewMemory0 = null;
function getDataViewMemory0() {
    if (cachedDataViewMemory0 === null || cachedDataViewMemory0.buffer.detached === true || (cachedDataViewMemory0.buffer.detached === undefined && cachedDataViewMemory0.buffer !== wasm.memory.buffer)) {
        cachedDataViewMemory0 = new DataView(wasm.memory.buffer);
    }
    return cachedDataViewMemory0;
}

function getStringFromWasm0(ptr, len) {
    ptr = ptr >>> 0;
    return decodeText(getUint8ArrayMemory0().subarray(ptr, ptr + len));
}

let cachedUint8ArrayMemory0 = null;
function getUint8ArrayMemory0() {
    if (cachedUint8ArrayMemory0 === null || cachedUint8ArrayMemory0.byteLength === 0) {
        cachedUint8ArrayMemory0 = new Uint8Array(wasm.memory.buffer);
    }
    return cachedUint8ArrayMemory0;
}

function handleError(f, args) {
    try {
        return f.apply(this, args);
    } catch (e) {
        const idx = addToExternrefTable0(e);
        wasm.__wbindgen_exn_store(idx);
    }
}

function isLikeNone(x) {
    return x === undefined || x === null;
}

function passArray64ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 8, 8) >>> 0;
    getBigUint64ArrayMemory0().set(arg, ptr / 8);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArray8ToWasm0(arg, malloc) {
    const ptr = malloc(arg.length * 1, 1) >>> 0;
    getUint8ArrayMemory0().set(arg, ptr / 1);
    WASM_VECTOR_LEN = arg.length;
    return ptr;
}

function passArrayJsValueToWasm0(array, malloc) {
    const ptr = malloc(array.length * 4, 4) >>> 0;
    for (let i = 0; i < array.length; i++) {
        const add = addToExternrefTable0(array[i]);
        getDataViewMemory0().setUint32(ptr + 4 * i, add, true);
    }
    WASM_VECTOR_LEN = array.length;
    return ptr;
}

function passStringToWasm0(arg, malloc, realloc) {
    if (realloc === undefined) {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
        WASM_VECTOR_LEN = buf.length;
        return ptr;
    }

    let len = arg.length;
    let ptr = malloc(len, 1) >>> 0;

    const mem = getUint8ArrayMemory0();

    let offset = 0;

    for (; offset < len; offset++) {
        const code = arg.charCodeAt(offset);
        if (code > 0x7F) break;
        mem[ptr + offset] = code;
    }
    if (offset !== len) {
        if (offset !== 0) {
            arg = arg.slice(offset);
        }
        ptr = realloc(ptr, len, len = offset + arg.length * 3, 1) >>> 0;
        const view = getUint8ArrayMemory0().subarray(ptr + offset, ptr + len);
        const ret = cachedTextEncoder.encodeInto(arg, view);

        offset += ret.written;
        ptr = realloc(ptr, len, offset, 1) >>> 0;
    }

    WASM_VECTOR_LEN = offset;
    return ptr;
}

function takeFromExternrefTable0(idx) {
    const value = wasm.__wbindgen_externrefs.get(idx);
    wasm.__externref_table_dealloc(idx);
    return value;
}

let cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
cachedTextDecoder.decode();
const MAX_SAFARI_DECODE_BYTES = 2146435072;
let numBytesDecoded = 0;
function decodeText(bytes) {
    numBytesDecoded += bytes.length;
    if (numBytesDecoded >= MAX_SAFARI_DECODE_BYTES) {
        cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
        cachedTextDecoder.decode();
        numBytesDecoded = bytes.length;
    }
    return cachedTextDecoder.decode(bytes);
}

const cachedTextEncoder = new TextEncoder();

if (!('encodeInto' in cachedTextEncoder)) {
    cachedTextEncoder.encodeInto = function (arg, view) {
        const buf = cachedTextEncoder.encode(arg);
        view.set(buf);
        return {
            read: arg.length,
            written: buf.length
        };
    };
}

let WASM_VECTOR_LEN = 0;

let wasmModule, wasmInstance, wasm;
function __wbg_finalize_init(instance, module) {
    wasmInstance = instance;
    wasm = instance.exports;
    wasmModule = module;
    cachedBigUint64ArrayMemory0 = null;
    cachedDataViewMemory0 = null;
    cachedUint8ArrayMemory0 = null;
    wasm.__wbindgen_start();
    return wasm;
}

async function __wbg_load(module, imports) {
    if (typeof Response === 'function' && module instanceof Response) {
        if (!module.ok) {
            throw new Error(`failed to fetch Wasm: ${module.status} ${module.statusText} fetching '${module.url}'`);
        }

        if (typeof WebAssembly.instantiateStreaming === 'function') {
            try {
                return await WebAssembly.instantiateStreaming(module, imports);
            } catch (e) {
                const validResponse = expectedResponseType(module.type);

                if (validResponse && module.headers.get('Content-Type') !== 'application/wasm') {
                    console.warn("`WebAssembly.instantiateStreaming` failed because your server does not serve Wasm with `application/wasm` MIME type. Falling back to `WebAssembly.instantiate` which is slower. Original error:\n", e);

                } else { throw e; }
            }
        }

        const bytes = await module.arrayBuffer();
        return await WebAssembly.instantiate(bytes, imports);
    } else {
        const instance = await WebAssembly.instantiate(module, imports);

        if (instance instanceof WebAssembly.Instance) {
            return { instance, module };
        } else {
            return instance;
        }
    }

    function expectedResponseType(type) {
        switch (type) {
            case 'basic': case 'cors': case 'default': return true;
        }
        return false;
    }
}

function initSync(module) {
    if (wasm !== undefined) return wasm;


    if (module !== undefined) {
        if (Object.getPrototypeOf(module) === Object.prototype) {
            ({module} = module)
        } else {
            console.warn('using deprecated parameters for `initSync()`; pass a single object instead')
        }
    }

    const imports = __wbg_get_imports();
    if (!(module instanceof WebAssembly.Module)) {
        module = new WebAssembly.Module(module);
    }
    const instance = new WebAssembly.Instance(module, imports);
    return __wbg_finalize_init(instance, module);
}

let __wbg_init_promise;
async function __wbg_init(module_or_path) {
    if (wasm !== undefined) return wasm;
    if (__wbg_init_promise === undefined) {
        __wbg_init_promise = __wbg_init_once(module_or_path);
        __wbg_init_promise.catch(() => { __wbg_init_promise = undefined; });
    }
    return __wbg_init_promise;
}

async function __wbg_init_once(module_or_path) {

    if (module_or_path !== undefined) {
        if (Object.getPrototypeOf(module_or_path) === Object.prototype) {
            ({module_or_path} = module_or_path)
        } else {
            console.warn('using deprecated parameters for the initialization function; pass a single object instead')
        }
    }

    if (module_or_path === undefined) {
        module_or_path = new URL('easel_web_bg.wasm', import.meta.url);
    }
    const imports = __wbg_get_imports();

    if (typeof module_or_path === 'string' || (typeof Request === 'function' && module_or_path instanceof Request) || (typeof URL === 'function' && module_or_path instanceof URL)) {
        module_or_path = fetch(module_or_path);
    }

    const { instance, module } = await __wbg_load(await module_or_path, imports);

    return __wbg_finalize_init(instance, module);
}

export { initSync, __wbg_init as default };
