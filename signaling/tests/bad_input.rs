//! Bad input over the real WebSocket: every mistake gets an `error` with the documented code and leaves
//! the connection (and everyone else in the room) working.

mod common;

use std::time::Duration;

use common::{Server, Ws, auth, auth_join, connect, ping, recv, send, send_text};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Expect the next message to be an `error` with `code`, then check the connection still answers `ping`.
async fn expect_error(ws: &mut Ws, code: &str, what: &str) -> Value {
    let v = recv_reply(ws).await;
    assert_eq!(v["type"], "error", "{what}: expected error {code}, got {v}");
    assert_eq!(v["code"], code, "{what}: wrong error code in {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: error without message: {v}"
    );
    let before: Vec<Value> = ping(ws)
        .await
        .into_iter()
        .filter(|v| v["type"] != "media_state" && v["type"] != "request_updated")
        .collect();
    assert!(
        before.is_empty(),
        "{what}: unexpected messages before pong: {before:?}"
    );
    v
}

/// A syntactically valid SDP answer.
fn valid_answer_sdp() -> String {
    use str0m::Rtc;
    use str0m::change::SdpOffer;
    use str0m::media::{Direction, MediaKind};
    str0m::crypto::from_feature_flags().install_process_default();
    let now = std::time::Instant::now();
    let mut offerer = Rtc::builder().build(now);
    let mut answerer = Rtc::builder().build(now);
    let mut change = offerer.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = change.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("parse offer");
    let answer = answerer.sdp_api().accept_offer(offer).expect("answer");
    answer.to_sdp_string()
}

/// The next message that is not an unsolicited `media_state` (the relay reports `connecting` as soon
/// as a participant joins) or `request_updated` (the workflow's live updates).
async fn recv_reply(ws: &mut Ws) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] != "media_state" && v["type"] != "request_updated" {
            return v;
        }
    }
}

/// The bystander still answers `ping` and has seen no error.
async fn bystander_fine(ws: &mut Ws, what: &str) -> Vec<Value> {
    let seen = ping(ws).await;
    for v in &seen {
        assert_ne!(v["type"], "error", "{what}: bystander got an error: {v}");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_leave_the_connection_usable() {
    let server = Server::start();
    let c = common::consultation(&server).await;
    let mut other = connect(&server).await;
    auth_join(&mut other, &c.specialist, &c.id).await;

    let mut ws = connect(&server).await;

    send_text(&mut ws, "{this is not json").await;
    expect_error(&mut ws, "bad_json", "malformed JSON").await;
    bystander_fine(&mut other, "after bad_json").await;

    send_text(&mut ws, "[1,2,3]").await;
    expect_error(&mut ws, "bad_json", "JSON array").await;

    send(&mut ws, json!({"type":"dance"})).await;
    let v = expect_error(&mut ws, "unknown_type", "unknown type").await;
    assert_eq!(v["request_type"], "dance", "{v}");
    bystander_fine(&mut other, "after unknown_type").await;

    send(&mut ws, json!({"v":2,"type":"ping"})).await;
    expect_error(&mut ws, "unsupported_version", "v:2").await;

    ws.send(Message::binary(vec![1u8, 2, 3, 4]))
        .await
        .expect("send binary");
    expect_error(&mut ws, "binary_not_supported", "binary frame").await;
    bystander_fine(&mut other, "after binary").await;

    send(&mut ws, json!({"type":"join","request_id":c.id})).await;
    let v = expect_error(&mut ws, "not_logged_in", "join before auth").await;
    assert_eq!(v["request_type"], "join", "{v}");

    send(&mut ws, json!({"type":"auth","token":"v1.forged.token"})).await;
    expect_error(&mut ws, "invalid_token", "forged token").await;
    // A token signed for the doctor but altered to name the specialist.
    let forged = {
        let mut parts: Vec<String> = c.doctor.split('.').map(str::to_string).collect();
        let first = if parts[1].starts_with('A') { "B" } else { "A" };
        parts[1].replace_range(..1, first);
        parts.join(".")
    };
    send(&mut ws, json!({"type":"auth","token":forged})).await;
    expect_error(&mut ws, "invalid_token", "tampered token").await;

    let v = auth(&mut ws, &c.doctor).await;
    assert_eq!(v["user"]["username"], "doctor", "{v}");
    send(&mut ws, json!({"type":"auth","token":c.doctor})).await;
    expect_error(&mut ws, "already_logged_in", "second auth").await;

    send(
        &mut ws,
        json!({"type":"join","request_id":"no-such-request"}),
    )
    .await;
    expect_error(&mut ws, "not_found", "unknown request").await;

    send(&mut ws, json!({"type":"join","request_id":c.id})).await;
    let joined = recv(&mut ws).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let pid = joined["participant_id"].as_str().expect("participant_id");
    let seen = bystander_fine(&mut other, "after join").await;
    assert!(
        seen.iter()
            .any(|v| v["type"] == "participant_joined" && v["participant"]["participant_id"] == pid),
        "bystander was not told about the join: {seen:?}"
    );

    send(&mut ws, json!({"type":"offer","sdp":"garbage"})).await;
    let v = expect_error(&mut ws, "bad_sdp", "garbage offer").await;
    assert_eq!(v["request_type"], "offer", "{v}");
    bystander_fine(&mut other, "after bad_sdp").await;

    // A well-formed answer (made by two local str0m sessions), so only the missing offer is wrong.
    send(&mut ws, json!({"type":"answer","sdp":valid_answer_sdp()})).await;
    expect_error(&mut ws, "no_pending_offer", "answer without offer").await;
    bystander_fine(&mut other, "after no_pending_offer").await;

    // Still in the room and fully working: leave properly.
    send(&mut ws, json!({"type":"leave"})).await;
    let v = recv_reply(&mut ws).await;
    assert_eq!(v["type"], "left", "{v}");
    let seen = bystander_fine(&mut other, "after leave").await;
    let left_seen = seen
        .iter()
        .any(|v| v["type"] == "participant_left" && v["participant_id"] == pid);
    if !left_seen {
        // The event may trail the pong; wait for it.
        let (v, _) = common::recv_until(&mut other, "participant_left").await;
        assert_eq!(v["participant_id"], pid, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_closes_with_1009() {
    let server = Server::start();
    let c = common::consultation(&server).await;
    let mut other = connect(&server).await;
    auth_join(&mut other, &c.specialist, &c.id).await;

    let mut ws = connect(&server).await;
    let joined = auth_join(&mut ws, &c.doctor, &c.id).await;
    let pid = joined["participant_id"].as_str().unwrap().to_string();
    bystander_fine(&mut other, "after join").await;

    // A valid JSON ping padded to 70 KiB.
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    send_text(&mut ws, big).await;
    let v = recv_reply(&mut ws).await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "too_large", "{v}");

    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame after too_large");
    let frame = close.expect("close frame without code");
    assert_eq!(frame.code, CloseCode::Size, "close frame {frame:?}");
    assert_eq!(u16::from(frame.code), 1009);

    // The other participant is unaffected and learns that the sender is gone.
    let seen = bystander_fine(&mut other, "after too_large").await;
    let v = match seen.into_iter().find(|v| v["type"] == "participant_left") {
        Some(v) => v,
        None => common::recv_until(&mut other, "participant_left").await.0,
    };
    assert_eq!(v["participant_id"], pid.as_str(), "{v}");
    assert_eq!(v["reason"], "disconnected", "{v}");
    bystander_fine(&mut other, "after participant_left").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok() {
    let server = Server::start();
    let (head, body) = common::http_get(&server, "/healthz").await;
    assert!(head.starts_with("HTTP/1.1 200"), "response head: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "response head: {head}"
    );
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("body {body:?}: {e}"));
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(
        v["media"]["udp"], server.ready["media_udp"],
        "healthz and ready line disagree: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_two_participants_join_the_room() {
    let server = Server::start();
    let c = common::consultation(&server).await;
    for (user, password) in [
        ("township", "demo-township"),
        ("specialist2", "demo-specialist2"),
        ("itadmin", "demo-itadmin"),
        ("operator", "demo-operator"),
    ] {
        let token = common::login(&server, user, password).await;
        let mut ws = connect(&server).await;
        auth(&mut ws, &token).await;
        send(&mut ws, json!({"type":"join","request_id":c.id})).await;
        expect_error(
            &mut ws,
            "not_yours",
            &format!("{user} joining another's consultation"),
        )
        .await;
    }
}
