//! The HTTP API against the real server: every endpoint, its denials (wrong role, another site's
//! record, expired and tampered tokens), validation, concurrent accepts and restarts, on SQLite and on
//! a real Redis server.

mod common;

use common::{Server, http, http_raw, login};
use serde_json::{Value, json};
use signaling::auth::{Claims, TokenKey};

const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The demo configuration with a known token secret, so the test can mint expired tokens.
fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let text = signaling::config::DEMO_CONFIG.replace(
        "[auth]\n",
        &format!("[auth]\ntoken_secret = \"{SECRET}\"\n"),
    );
    let path = dir.join("telemed.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let config = config_file(dir.path());
    let config = config.to_str().expect("utf-8 path");
    let mut args = vec!["--config", config];
    args.extend_from_slice(extra);
    Server::start_with(&args, Some(&dir.path().join("data")))
}

fn new_request(pseudonym: &str) -> Value {
    json!({
        "patient_pseudonym": pseudonym,
        "specialty": "cardiology",
        "urgency": "routine",
        "question": "Palpitations for two weeks; Holter attached. Ablation indicated?",
        "preferred_centre": null,
        "consent_method": "verbal"
    })
}

async fn create(server: &Server, token: &str, body: Value) -> Value {
    let (status, v) = http(server, "POST", "/api/v1/requests", Some(token), Some(body)).await;
    assert_eq!(status, 201, "create: {v}");
    v
}

async fn post(server: &Server, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http(server, "POST", path, Some(token), body).await
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_tokens_and_their_denials() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);

    // Wrong password and unknown user look the same.
    for (u, p) in [("doctor", "wrong-password"), ("nobody", "whatever-pass")] {
        let (status, v) = http(
            &server,
            "POST",
            "/api/v1/login",
            None,
            Some(json!({"username":u,"password":p})),
        )
        .await;
        assert_eq!((status, code(&v)), (401, "bad_credentials"), "{v}");
    }
    let (status, v) = http(
        &server,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"username":"doctor","password":"demo-doctor"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"]["role"], "referring_doctor");
    assert_eq!(v["site"]["id"], "county-renhe");
    assert!(v.get("password_hash").is_none() && v["user"].get("password_hash").is_none());
    let token = v["token"].as_str().unwrap().to_string();

    let (status, v) = http(&server, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!(
        (status, v["user"]["username"].as_str()),
        (200, Some("doctor")),
        "{v}"
    );

    // Missing, tampered, foreign-key and expired tokens.
    let (status, v) = http(&server, "GET", "/api/v1/me", None, None).await;
    assert_eq!((status, code(&v)), (401, "missing_token"), "{v}");
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, v) = http(&server, "GET", "/api/v1/me", Some(&tampered), None).await;
    assert_eq!((status, code(&v)), (401, "invalid_token"), "{v}");
    let now = signaling::workflow::now_ms();
    let claims = |sub: &str, exp| Claims {
        sub: sub.into(),
        generation: 0,
        iat: now - 7_200_000,
        exp,
    };
    let foreign = TokenKey::new(b"some other key entirely, 32 bytes+")
        .sign(&claims("operator", now + 60_000));
    let (status, v) = http(&server, "GET", "/api/v1/me", Some(&foreign), None).await;
    assert_eq!((status, code(&v)), (401, "invalid_token"), "{v}");
    let expired = TokenKey::new(SECRET.as_bytes()).sign(&claims("doctor", now - 1_000));
    let (status, v) = http(&server, "GET", "/api/v1/me", Some(&expired), None).await;
    assert_eq!((status, code(&v)), (401, "expired_token"), "{v}");
    let valid = TokenKey::new(SECRET.as_bytes()).sign(&claims("doctor", now + 60_000));
    let (status, _) = http(&server, "GET", "/api/v1/me", Some(&valid), None).await;
    assert_eq!(
        status, 200,
        "a token minted with the configured secret is accepted"
    );

    // Too many failures for one user name are throttled.
    for _ in 0..10 {
        http(
            &server,
            "POST",
            "/api/v1/login",
            None,
            Some(json!({"username":"township","password":"wrong-password"})),
        )
        .await;
    }
    let (status, v) = http(
        &server,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"username":"township","password":"demo-township"})),
    )
    .await;
    assert_eq!((status, code(&v)), (429, "rate_limited"), "{v}");

    // A password change by the operator revokes the user's earlier tokens.
    let operator = login(&server, "operator", "demo-operator").await;
    let (status, v) = http(
        &server,
        "PATCH",
        "/api/v1/users/doctor",
        Some(&operator),
        Some(json!({"password":"a-new-password"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = http(&server, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!((status, code(&v)), (401, "invalid_token"), "{v}");
    login(&server, "doctor", "a-new-password").await;

    // Disabled accounts cannot log in.
    let (status, _) = http(
        &server,
        "PATCH",
        "/api/v1/users/specialist2",
        Some(&operator),
        Some(json!({"disabled":true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = http(
        &server,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"username":"specialist2","password":"demo-specialist2"})),
    )
    .await;
    assert_eq!((status, code(&v)), (401, "bad_credentials"), "{v}");

    // Logins are audited, with the address and without the password.
    let (status, audit) = http(
        &server,
        "GET",
        "/api/v1/audit?action=login.&limit=100",
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let events = audit.as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "login.failed" && e["address"] == "127.0.0.1"),
        "{audit}"
    );
    assert!(
        !audit.to_string().contains("wrong-password"),
        "a password reached the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_workflow_with_role_and_site_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let doctor = login(&server, "doctor", "demo-doctor").await;
    let township = login(&server, "township", "demo-township").await;
    let specialist = login(&server, "specialist", "demo-specialist").await;
    let specialist2 = login(&server, "specialist2", "demo-specialist2").await;
    let itadmin = login(&server, "itadmin", "demo-itadmin").await;
    let operator = login(&server, "operator", "demo-operator").await;

    // Reference data for everyone.
    let (status, sites) = http(&server, "GET", "/api/v1/sites", Some(&itadmin), None).await;
    assert_eq!(status, 200);
    assert!(sites.as_array().unwrap().len() >= 4);
    let (_, specialties) = http(&server, "GET", "/api/v1/specialties", Some(&doctor), None).await;
    assert!(
        specialties
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "cardiology")
    );

    // Only referring doctors create requests.
    for t in [&specialist, &itadmin, &operator] {
        let (status, v) = post(&server, t, "/api/v1/requests", Some(new_request("P-1"))).await;
        assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    }
    let r = create(&server, &doctor, new_request("P-1001")).await;
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["state"], "queued");
    assert_eq!(r["queue_position"], 0);
    assert!(
        r["estimated_wait_secs"].is_null(),
        "nobody on duty: unknown wait, {r}"
    );
    assert_eq!(r["consent"]["recorded_by"], "doctor");
    assert_eq!(r["consent"]["method"], "verbal");
    assert_eq!(r["requester_name"], "李医生");

    // Another site's doctor, the IT admin and the operator see nothing of it.
    let (status, v) = http(
        &server,
        "GET",
        &format!("/api/v1/requests/{id}"),
        Some(&township),
        None,
    )
    .await;
    assert_eq!((status, code(&v)), (403, "not_yours"), "{v}");
    for t in [&itadmin, &operator] {
        let (status, v) = http(
            &server,
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(t),
            None,
        )
        .await;
        assert_eq!(status, 403, "{v}");
        let (status, v) = http(&server, "GET", "/api/v1/requests", Some(t), None).await;
        assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    }
    let (_, mine) = http(&server, "GET", "/api/v1/requests", Some(&township), None).await;
    assert_eq!(mine, json!([]), "the township doctor has no requests");
    let (status, v) = post(
        &server,
        &township,
        &format!("/api/v1/requests/{id}/cancel"),
        Some(json!({"reason":"x"})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "not_yours"), "{v}");

    // Specialists of the specialty see it in their queue; a referring doctor cannot mark availability.
    let (status, q) = http(
        &server,
        "GET",
        "/api/v1/requests?scope=queue",
        Some(&specialist),
        None,
    )
    .await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q.as_array().unwrap().len(), 1);
    let (status, v) = http(
        &server,
        "PUT",
        "/api/v1/availability",
        Some(&doctor),
        Some(json!({"available":true})),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    let (status, v) = post(
        &server,
        &doctor,
        &format!("/api/v1/requests/{id}/accept"),
        None,
    )
    .await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");

    // The specialist marks available and is offered it; declining puts it back, specialist2 gets it.
    let (status, _) = http(
        &server,
        "PUT",
        "/api/v1/availability",
        Some(&specialist),
        Some(json!({"available":true})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, r) = http(
        &server,
        "GET",
        &format!("/api/v1/requests/{id}"),
        Some(&doctor),
        None,
    )
    .await;
    assert_eq!(r["state"], "offered", "{r}");
    assert_eq!(r["specialist"], "specialist");
    let (status, v) = post(
        &server,
        &specialist2,
        &format!("/api/v1/requests/{id}/accept"),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (409, "illegal_transition"),
        "offered to someone else: {v}"
    );
    let (status, r) = post(
        &server,
        &specialist,
        &format!("/api/v1/requests/{id}/decline-offer"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "queued");
    assert_eq!(r["returned_to_queue"], true);
    let (status, _) = http(
        &server,
        "PUT",
        "/api/v1/availability",
        Some(&specialist2),
        Some(json!({"available":true})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, r) = http(
        &server,
        "GET",
        &format!("/api/v1/requests/{id}"),
        Some(&doctor),
        None,
    )
    .await;
    assert_eq!(
        (r["state"].as_str(), r["specialist"].as_str()),
        (Some("offered"), Some("specialist2")),
        "{r}"
    );
    let (status, r) = post(
        &server,
        &specialist2,
        &format!("/api/v1/requests/{id}/accept"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "accepted");
    assert_eq!(r["centre"], "centre-east");
    assert!(r["room"].as_str().unwrap().starts_with("consult-"));

    // The first specialist is no longer involved and cannot read it now that it left the queue.
    let (status, _) = http(
        &server,
        "GET",
        &format!("/api/v1/requests/{id}"),
        Some(&specialist),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Opinion: only its specialist writes; signing needs a diagnosis; the doctor cannot sign.
    let opinion_path = format!("/api/v1/requests/{id}/opinion");
    let empty = json!({"findings":"","diagnosis":"","recommendations":"","follow_up":""});
    let (status, _) = http(
        &server,
        "PUT",
        &opinion_path,
        Some(&specialist2),
        Some(empty),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(&server, &specialist2, &format!("{opinion_path}/sign"), None).await;
    assert_eq!((status, code(&v)), (422, "invalid_action"), "{v}");
    let text = json!({
        "findings": "Sinus rhythm, frequent PVCs (12 %), normal QT.",
        "diagnosis": "Idiopathic RVOT ventricular ectopy",
        "recommendations": "Start metoprolol 23.75 mg daily; echo to exclude structural disease.",
        "follow_up": "Holter in 4 weeks; refer up if burden stays above 10 %."
    });
    let (status, v) = http(
        &server,
        "PUT",
        &opinion_path,
        Some(&doctor),
        Some(text.clone()),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    let (status, _) = http(
        &server,
        "PUT",
        &opinion_path,
        Some(&specialist2),
        Some(text.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(&server, &doctor, &format!("{opinion_path}/sign"), None).await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    let (status, r) = post(&server, &specialist2, &format!("{opinion_path}/sign"), None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "opinion_written");
    assert_eq!(r["opinion"]["signature"]["signed_by"], "specialist2");
    assert_eq!(
        r["opinion"]["signature"]["digest"].as_str().unwrap().len(),
        64
    );
    let (status, v) = http(
        &server,
        "PUT",
        &opinion_path,
        Some(&specialist2),
        Some(text),
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (409, "illegal_transition"),
        "a signed opinion is frozen: {v}"
    );

    // Referral both ways, validated.
    let refer = format!("/api/v1/requests/{id}/referrals");
    let (status, v) = post(
        &server,
        &doctor,
        &refer,
        Some(json!({"direction":"up","to_site":"county-renhe","reason":"ablation"})),
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (422, "validation_failed"),
        "up goes to a centre: {v}"
    );
    let (status, r) = post(&server, &doctor, &refer, Some(json!({"direction":"up","to_site":"centre-east","reason":"ablation if burden stays high"}))).await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = post(
        &server,
        &specialist2,
        &refer,
        Some(json!({"direction":"down","to_site":"county-renhe","reason":"follow-up at home"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["referrals"].as_array().unwrap().len(), 2);

    // Acknowledge closes it; both sides see it in their history.
    let (status, v) = post(
        &server,
        &specialist2,
        &format!("/api/v1/requests/{id}/acknowledge"),
        None,
    )
    .await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    let (status, r) = post(
        &server,
        &doctor,
        &format!("/api/v1/requests/{id}/acknowledge"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "closed");
    let (status, v) = post(
        &server,
        &doctor,
        &format!("/api/v1/requests/{id}/acknowledge"),
        None,
    )
    .await;
    assert_eq!((status, code(&v)), (409, "illegal_transition"), "{v}");
    for t in [&doctor, &specialist2] {
        let (_, list) = http(
            &server,
            "GET",
            "/api/v1/requests?state=closed",
            Some(t),
            None,
        )
        .await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    }

    // The signed record is kept at both sites: a colleague at the county hospital and one at the
    // answering centre read it; the township clinic does not.
    for (name, role, site, specialties) in [
        (
            "colleague.county",
            "referring_doctor",
            "county-renhe",
            json!([]),
        ),
        (
            "colleague.east",
            "specialist",
            "centre-east",
            json!(["neurology"]),
        ),
    ] {
        let body = json!({"username":name,"display_name":name,"role":role,"site_id":site,"specialties":specialties,"password":"long-enough-1"});
        let (status, v) = post(&server, &operator, "/api/v1/users", Some(body)).await;
        assert_eq!(status, 201, "{v}");
        let t = login(&server, name, "long-enough-1").await;
        let (status, v) = http(
            &server,
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(status, 200, "{name}: {v}");
        let (_, list) = http(
            &server,
            "GET",
            "/api/v1/requests?scope=site",
            Some(&t),
            None,
        )
        .await;
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{name}: {list}");
    }
    let (_, list) = http(
        &server,
        "GET",
        "/api/v1/requests?scope=site",
        Some(&township),
        None,
    )
    .await;
    assert_eq!(list, json!([]), "{list}");
    let (status, _) = http(
        &server,
        "GET",
        &format!("/api/v1/requests/{id}"),
        Some(&township),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Cancel and final decline, with their reasons; a cancelled request cannot be accepted.
    let r = create(&server, &doctor, new_request("P-1002")).await;
    let id2 = r["id"].as_str().unwrap().to_string();
    let (status, v) = post(
        &server,
        &doctor,
        &format!("/api/v1/requests/{id2}/cancel"),
        Some(json!({"reason":""})),
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (422, "validation_failed"),
        "a reason is required: {v}"
    );
    let (status, r) = post(
        &server,
        &doctor,
        &format!("/api/v1/requests/{id2}/cancel"),
        Some(json!({"reason":"patient transferred by ambulance"})),
    )
    .await;
    assert_eq!(
        (status, r["state"].as_str()),
        (200, Some("cancelled")),
        "{r}"
    );
    let (status, v) = post(
        &server,
        &specialist,
        &format!("/api/v1/requests/{id2}/accept"),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (409, "illegal_transition"),
        "a cancelled request cannot be accepted: {v}"
    );
    let r = create(&server, &doctor, new_request("P-1003")).await;
    let id3 = r["id"].as_str().unwrap().to_string();
    let (_, r) = http(
        &server,
        "GET",
        &format!("/api/v1/requests/{id3}"),
        Some(&doctor),
        None,
    )
    .await;
    let offered_to = r["specialist"].as_str().unwrap_or("").to_string();
    let t = if offered_to == "specialist" {
        &specialist
    } else {
        &specialist2
    };
    let (status, r) = post(
        &server,
        t,
        &format!("/api/v1/requests/{id3}/decline"),
        Some(json!({"reason":"needs an on-site echo first"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["state"].as_str(), r["closing_reason"].as_str()),
        (Some("declined"), Some("needs an on-site echo first"))
    );
    let (status, v) = http(&server, "GET", "/api/v1/availability", Some(t), None).await;
    assert_eq!((status, v["available"].as_bool()), (200, Some(true)), "{v}");

    // IT admin sees quality, not the audit log; the operator sees both; nobody else sees quality.
    let (status, q) = http(&server, "GET", "/api/v1/quality", Some(&itadmin), None).await;
    assert_eq!(status, 200, "{q}");
    assert!(
        !q.to_string().contains("P-1001") && !q.to_string().contains("Palpitations"),
        "clinical content in quality data: {q}"
    );
    let (status, _) = http(&server, "GET", "/api/v1/quality", Some(&doctor), None).await;
    assert_eq!(status, 403);
    let (status, v) = http(&server, "GET", "/api/v1/audit", Some(&itadmin), None).await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    let (status, audit) = http(
        &server,
        "GET",
        &format!("/api/v1/audit?request_id={id}&limit=1000"),
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "request.created",
            "request.enqueue",
            "request.offer",
            "request.decline_offer",
            "request.offer",
            "request.accept",
            "request.save_opinion",
            "request.save_opinion",
            "request.sign_opinion",
            "request.refer",
            "request.refer",
            "request.acknowledge"
        ],
        "{audit}"
    );
    let accepted = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "request.accept")
        .unwrap();
    assert_eq!(accepted["actor"], "specialist2");
    assert_eq!(accepted["detail"], "offered -> accepted");
    assert_eq!(accepted["address"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_codes_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let doctor = login(&server, "doctor", "demo-doctor").await;
    let operator = login(&server, "operator", "demo-operator").await;

    let cases = [
        (
            json!({"patient_pseudonym":"张三","specialty":"cardiology","urgency":"routine","question":"q","consent_method":"written"}),
            "patient_pseudonym",
            "invalid_format",
        ),
        (
            json!({"patient_pseudonym":"11010519491231002X","specialty":"cardiology","urgency":"routine","question":"q","consent_method":"written"}),
            "patient_pseudonym",
            "invalid_value",
        ),
        (
            json!({"patient_pseudonym":"P-1","specialty":"astrology","urgency":"routine","question":"q","consent_method":"written"}),
            "specialty",
            "unknown_reference",
        ),
        (
            json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"routine","question":"","consent_method":"written"}),
            "question",
            "required",
        ),
        (
            json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"routine","question":"x".repeat(2001),"consent_method":"written"}),
            "question",
            "too_long",
        ),
        (
            json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"routine","question":"q","preferred_centre":"county-renhe","consent_method":"written"}),
            "preferred_centre",
            "unknown_reference",
        ),
    ];
    for (body, field, want) in cases {
        let (status, v) = http(
            &server,
            "POST",
            "/api/v1/requests",
            Some(&doctor),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, code(&v)),
            (422, "validation_failed"),
            "{body}: {v}"
        );
        let fields = v["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("no fields in {v}"));
        assert!(
            fields
                .iter()
                .any(|f| f["field"] == field && f["code"] == want),
            "{body}: want {field}/{want} in {v}"
        );
    }
    // Several bad fields at once are all reported.
    let (_, v) = http(&server, "POST", "/api/v1/requests", Some(&doctor), Some(json!({"patient_pseudonym":"","specialty":"","urgency":"routine","question":"","consent_method":"written"}))).await;
    assert_eq!(v["fields"].as_array().map(Vec::len), Some(3), "{v}");
    // Enum, missing and unknown fields, wrong types, bad JSON, wrong content type, oversize.
    for body in [
        json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"whenever","question":"q","consent_method":"written"}),
        json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"routine","question":"q"}),
        json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"routine","question":"q","consent_method":"written","patient_name":"张三"}),
        json!({"patient_pseudonym":5,"specialty":"cardiology","urgency":"routine","question":"q","consent_method":"written"}),
    ] {
        let (status, v) = http(
            &server,
            "POST",
            "/api/v1/requests",
            Some(&doctor),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (status, code(&v)),
            (422, "validation_failed"),
            "{body}: {v}"
        );
    }
    let (status, v) = http_raw(
        &server,
        "POST",
        "/api/v1/requests",
        Some(&doctor),
        Some("{not json"),
        "application/json",
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.contains("bad_json"), "{v}");
    let (status, _) = http_raw(
        &server,
        "POST",
        "/api/v1/requests",
        Some(&doctor),
        Some("{}"),
        "text/plain",
    )
    .await;
    assert_eq!(status, 415);
    let big = json!({"patient_pseudonym":"P-1","specialty":"cardiology","urgency":"routine","question":"x".repeat(70_000),"consent_method":"written"});
    let (status, v) = http(
        &server,
        "POST",
        "/api/v1/requests",
        Some(&doctor),
        Some(big),
    )
    .await;
    assert_eq!((status, code(&v)), (413, "too_large"), "{v}");
    let (status, v) = http(
        &server,
        "GET",
        "/api/v1/requests?state=nonsense",
        Some(&doctor),
        None,
    )
    .await;
    assert_eq!((status, code(&v)), (422, "validation_failed"), "{v}");
    // Malformed query strings get the same JSON error, not a plain-text rejection.
    for (path, token) in [
        ("/api/v1/requests?bogus=1", &doctor),
        ("/api/v1/audit?limit=lots", &operator),
        ("/api/v1/audit?since=yesterday", &operator),
    ] {
        let (status, v) = http(&server, "GET", path, Some(token), None).await;
        assert_eq!(
            (status, code(&v)),
            (422, "validation_failed"),
            "{path}: {v}"
        );
    }
    let (status, v) = http(&server, "GET", "/api/v1/nothing-here", Some(&doctor), None).await;
    assert_eq!((status, code(&v)), (404, "not_found"), "{v}");
    let (status, v) = http(
        &server,
        "GET",
        "/api/v1/requests/does-not-exist",
        Some(&doctor),
        None,
    )
    .await;
    assert_eq!((status, code(&v)), (404, "not_found"), "{v}");

    // Nothing was written by any of the refused calls.
    let (_, mine) = http(&server, "GET", "/api/v1/requests", Some(&doctor), None).await;
    assert_eq!(mine, json!([]), "{mine}");
    let (_, audit) = http(
        &server,
        "GET",
        "/api/v1/audit?action=request.",
        Some(&operator),
        None,
    )
    .await;
    assert_eq!(audit, json!([]), "{audit}");

    // Operator account management validates too.
    let (status, v) = post(&server, &operator, "/api/v1/users", Some(json!({"username":"Bad Name","display_name":"","role":"specialist","site_id":"county-renhe","password":"short"}))).await;
    assert_eq!(status, 422, "{v}");
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for f in [
        "username",
        "display_name",
        "password",
        "site_id",
        "specialties",
    ] {
        assert!(fields.contains(&f), "{f} not reported: {v}");
    }
    let (status, v) = post(&server, &operator, "/api/v1/users", Some(json!({"username":"doctor","display_name":"Dup","role":"referring_doctor","site_id":"county-renhe","password":"long-enough-1"}))).await;
    assert_eq!((status, code(&v)), (409, "already_exists"), "{v}");
    let (status, u) = post(&server, &operator, "/api/v1/users", Some(json!({"username":"new.cardio","display_name":"周医生","role":"specialist","site_id":"centre-east","specialties":["cardiology"],"password":"long-enough-1"}))).await;
    assert_eq!(status, 201, "{u}");
    login(&server, "new.cardio", "long-enough-1").await;
    let (status, users) = http(&server, "GET", "/api/v1/users", Some(&operator), None).await;
    assert_eq!(status, 200);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "new.cardio")
    );
    assert!(
        !users.to_string().contains("argon2"),
        "password hashes leak: {users}"
    );
    let (status, _) = http(&server, "GET", "/api/v1/users", Some(&doctor), None).await;
    assert_eq!(status, 403);
    let (status, v) = http(
        &server,
        "PATCH",
        "/api/v1/users/operator",
        Some(&operator),
        Some(json!({"disabled":true})),
    )
    .await;
    assert_eq!((status, code(&v)), (422, "validation_failed"), "{v}");
    let (status, v) = http(
        &server,
        "PATCH",
        "/api/v1/users/nobody",
        Some(&operator),
        Some(json!({"display_name":"X"})),
    )
    .await;
    assert_eq!((status, code(&v)), (404, "not_found"), "{v}");

    // Sites: the operator adds one (validated); others may not.
    let site = json!({"id":"county-xide","name":"喜德县人民医院","kind":"county_hospital","region":"四川省凉山州","line_capacity_kbps":1000});
    let (status, v) = http(
        &server,
        "PUT",
        "/api/v1/sites/county-xide",
        Some(&doctor),
        Some(site.clone()),
    )
    .await;
    assert_eq!((status, code(&v)), (403, "wrong_role"), "{v}");
    let (status, v) = http(
        &server,
        "PUT",
        "/api/v1/sites/other-id",
        Some(&operator),
        Some(site.clone()),
    )
    .await;
    assert_eq!((status, code(&v)), (422, "validation_failed"), "{v}");
    let (status, v) = http(
        &server,
        "PUT",
        "/api/v1/sites/county-xide",
        Some(&operator),
        Some(site),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, sites) = http(&server, "GET", "/api/v1/sites", Some(&doctor), None).await;
    assert!(
        sites
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "county-xide"),
        "{sites}"
    );
    let (status, _) = post(&server, &doctor, "/api/v1/users", Some(json!({"username":"x.y","display_name":"X","role":"operator","site_id":"county-renhe","password":"long-enough-1"}))).await;
    assert_eq!(status, 403);
}

/// Two specialists accept the same queued request at the same moment: exactly one wins.
async fn concurrent_accepts(server: &Server) {
    let doctor = login(server, "doctor", "demo-doctor").await;
    let s1 = login(server, "specialist", "demo-specialist").await;
    let s2 = login(server, "specialist2", "demo-specialist2").await;
    for round in 0..5 {
        let r = create(server, &doctor, new_request(&format!("P-RACE-{round}"))).await;
        let id = r["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/requests/{id}/accept");
        let (a, b) = tokio::join!(
            post(server, &s1, &path, None),
            post(server, &s2, &path, None)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {a:?} {b:?}");
        let winner = if a.0 == 200 {
            "specialist"
        } else {
            "specialist2"
        };
        let loser = if a.0 == 200 { &b.1 } else { &a.1 };
        assert!(
            matches!(code(loser), "conflict" | "illegal_transition"),
            "{loser}"
        );
        let (_, r) = http(
            server,
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(&doctor),
            None,
        )
        .await;
        assert_eq!(
            (r["state"].as_str(), r["specialist"].as_str()),
            (Some("accepted"), Some(winner)),
            "{r}"
        );
        // Finish it so both specialists are free again.
        let (status, _) = post(
            server,
            &doctor,
            &format!("/api/v1/requests/{id}/cancel"),
            Some(json!({"reason":"test round over"})),
        )
        .await;
        assert_eq!(status, 200);
    }
}

/// Write a request through the workflow, restart the server on the same store, and find it intact.
async fn survives_restart(before: &Server) -> String {
    let doctor = login(before, "doctor", "demo-doctor").await;
    let operator = login(before, "operator", "demo-operator").await;
    create(before, &doctor, new_request("P-KEEP-1")).await;
    let c = common::consultation(before).await;
    let text = json!({"findings":"f","diagnosis":"d","recommendations":"r","follow_up":"u"});
    let (status, _) = http(
        before,
        "PUT",
        &format!("/api/v1/requests/{}/opinion", c.id),
        Some(&c.specialist),
        Some(text),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        before,
        &c.specialist,
        &format!("/api/v1/requests/{}/opinion/sign", c.id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, audit) = http(
        before,
        "GET",
        "/api/v1/audit?limit=1000",
        Some(&operator),
        None,
    )
    .await;
    audit.as_array().unwrap().len().to_string() + "|" + &c.id
}

async fn check_after_restart(after: &Server, marker: &str) {
    let (audit_len, id) = marker.split_once('|').unwrap();
    // The old token still works: the key is kept in the store (or the config).
    let doctor = login(after, "doctor", "demo-doctor").await;
    let operator = login(after, "operator", "demo-operator").await;
    let (_, mine) = http(after, "GET", "/api/v1/requests", Some(&doctor), None).await;
    let mine = mine.as_array().unwrap().clone();
    assert_eq!(mine.len(), 2, "{mine:?}");
    let queued = mine
        .iter()
        .find(|r| r["patient_pseudonym"] == "P-KEEP-1")
        .unwrap();
    assert!(
        matches!(queued["state"].as_str(), Some("queued" | "offered")),
        "{queued}"
    );
    let signed = mine.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(signed["state"], "opinion_written");
    assert_eq!(signed["opinion"]["diagnosis"], "d");
    assert!(signed["opinion"]["signature"]["digest"].is_string());
    let (_, audit) = http(
        after,
        "GET",
        "/api/v1/audit?limit=1000",
        Some(&operator),
        None,
    )
    .await;
    let n: usize = audit_len.parse().unwrap();
    assert!(
        audit.as_array().unwrap().len() > n,
        "audit events lost: {n} before, {} after",
        audit.as_array().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_accepts_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    concurrent_accepts(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let marker = survives_restart(&server).await;
    drop(server);
    let server = start(&dir, &[]);
    check_after_restart(&server, &marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_accepts_have_one_winner() {
    let redis = common::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let server = start(&dir, &["--storage", "redis", "--redis-url", &url]);
    concurrent_accepts(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing() {
    let mut redis = common::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let server = start(&dir, &["--storage", "redis", "--redis-url", &url]);
    let marker = survives_restart(&server).await;
    drop(server);
    redis.restart();
    let server = start(&dir, &["--storage", "redis", "--redis-url", &url]);
    check_after_restart(&server, &marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_served_and_matches_docs() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let (status, served) = http(&server, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths = served["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/login",
        "/api/v1/requests",
        "/api/v1/requests/{id}/accept",
        "/api/v1/audit",
        "/api/v1/quality",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let text = std::fs::read_to_string(&docs).expect("docs/openapi.json");
    let kept: Value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
    assert!(
        kept == served,
        "docs/openapi.json is out of date; regenerate it with `make openapi`"
    );
}
