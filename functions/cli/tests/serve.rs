//! `leadscore serve` end to end: the real binary on a free port, real Segment payloads over
//! TCP, a restart that must keep the state, and a clean stop on SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{events, rules, Server, TOKEN};
use serde_json::{json, Value};
use std::process::Command;

#[test]
fn serve_scores_events_and_keeps_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("LEADSCORE_ALLOW_UNSIGNED", "1"),
        ("LEADSCORE_API_TOKEN", TOKEN),
    ];
    let events = events();
    let server = Server::start(dir.path(), &vars);

    // the first half one call at a time, the rest as one batch
    let half = events.len() / 2;
    let mut duplicates = 0;
    for line in &events[..half] {
        let (status, body) = server.post(line);
        assert_eq!(status, 200, "{line}: {body}");
        if body["results"][0]["duplicate"] == json!(true) {
            duplicates += 1;
        }
    }
    let batch = format!("{{\"batch\": [{}]}}", events[half..].join(","));
    let (status, body) = server.post(&batch);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        events.len() - half
    );

    // the sample has a redelivered messageId (msg-0005)
    assert!(duplicates + body["duplicates"].as_u64().unwrap() >= 1);

    let (status, ann) = server.get_lead("usr_ann");
    assert_eq!(status, 200, "{ann}");
    assert_eq!(ann["id"], json!("usr_ann"));
    assert_eq!(ann["source"], json!("newsletter"));

    // the same lead as `replay --format json` gives
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["replay", "--format", "json", "--rules"])
        .arg(rules())
        .arg("--events")
        .arg(rules().join("events.jsonl"))
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let replayed = doc["leads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == json!("usr_ann"))
        .unwrap();
    // the lead object of replay, plus what the latest call did
    let mut without_hits = ann.clone();
    let hits = without_hits
        .as_object_mut()
        .unwrap()
        .remove("latest_hits")
        .unwrap();
    assert!(
        hits["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{hits}"
    );
    assert!(hits["hits"].is_array(), "{hits}");
    // and the rules it is read under, which replay prints once for the document
    let rules = without_hits.as_object_mut().unwrap().remove("rules");
    assert_eq!(rules.as_ref(), Some(&doc["rules"]));
    assert_eq!(doc["rules"]["ruleset"], json!("acme-b2b"));
    assert_eq!(&without_hits, replayed);

    // a duplicate messageId changes nothing
    let (status, body) = server.post(&events[0]);
    assert_eq!(status, 200);
    assert_eq!(body["results"][0]["duplicate"], json!(true));
    assert_eq!(server.get_lead("usr_ann").1, ann);

    // a call without time: accepted at receipt
    let (status, body) =
        server.post(r#"{"type":"track","event":"Webinar Registered","userId":"fresh"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["score"], json!(20));

    // 413, 415, 400, 404, 405
    let big = format!(
        r#"{{"event":"X","userId":"big","properties":{{"pad":"{}"}}}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let (status, body) = server.post(&big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], json!("payload_too_large"));
    let (status, body) = server.request(
        "POST",
        "/events",
        &[("Content-Type", "text/plain")],
        events[0].as_bytes(),
    );
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], json!("unsupported_media_type"));
    let (status, body) =
        server.post(r#"{"type":"track","userId":"u","timestamp":"2026-01-01T00:00:00Z"}"#);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["path"], json!("event"));
    assert_eq!(server.request("GET", "/nowhere", &[], b"").0, 404);
    assert_eq!(server.request("GET", "/events", &[], b"").0, 405);
    let (status, _) = server.request(
        "GET",
        "/leads/usr_ann",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(status, 401);
    assert_eq!(server.get_lead("big").0, 404);

    let all_before: Vec<(String, Value)> = ["usr_ann", "fresh"]
        .iter()
        .map(|id| (id.to_string(), server.get_lead(id).1))
        .collect();
    assert_eq!(server.interrupt(), 0);

    // restart: the journal brings every lead back
    let server = Server::start(dir.path(), &vars);
    for (id, before) in &all_before {
        let (status, after) = server.get_lead(id);
        assert_eq!(status, 200);
        assert_eq!(&after, before, "{id}");
    }
    let (_, body) = server.post(&events[0]);
    assert_eq!(body["results"][0]["duplicate"], json!(true));

    // erase a lead: gone now, after a restart, and from the journal
    let auth = format!("Bearer {TOKEN}");
    let (status, body) =
        server.request("DELETE", "/leads/usr_ann", &[("Authorization", &auth)], b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get_lead("usr_ann").0, 404);
    assert_eq!(server.interrupt(), 0);
    let journal = std::fs::read_to_string(dir.path().join("data/journal.jsonl")).unwrap();
    assert!(!journal.contains("usr_ann"));
    assert!(journal.contains("fresh"));

    let server = Server::start(dir.path(), &vars);
    assert_eq!(server.get_lead("usr_ann").0, 404);
    assert_eq!(server.get_lead("fresh").1, all_before[1].1);
    // its messageIds are free again
    let (_, body) = server.post(&events[0]);
    assert_eq!(body["results"][0]["duplicate"], Value::Null);
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn serve_with_a_secret_refuses_forged_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LEADSCORE_WEBHOOK_SECRET", "s3cret")]);
    // python3 -c "import hmac,hashlib; print(hmac.new(b's3cret', BODY, hashlib.sha1).hexdigest())"
    let body = r#"{"type":"track","event":"Signed Up","userId":"u1"}"#;
    let signed = |sig: &'static str| [("Content-Type", "application/json"), ("X-Signature", sig)];
    let (status, reply) = server.request(
        "POST",
        "/events",
        &signed("c36f3ec91e0efcc6f4be57e6a49d803f51e7eb51"),
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["lead"], json!("u1"));
    let (status, reply) = server.request(
        "POST",
        "/events",
        &signed("0000000000000000000000000000000000000000"),
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    assert_eq!(reply["error"]["code"], json!("unauthorized"));
    assert_eq!(server.post(body).0, 401);
    // a Standard Webhooks signature from another key
    let (status, _) = server.request(
        "POST",
        "/events",
        &[
            ("Content-Type", "application/json"),
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    // no token configured: the lead routes do not exist
    assert_eq!(server.get_lead("u1").0, 404);
    assert_eq!(server.interrupt(), 0);
}

#[test]
fn serve_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["serve", "--port", "0", "--rules"])
        .arg(rules())
        .env_remove("LEADSCORE_WEBHOOK_SECRET")
        .env_remove("LEADSCORE_ALLOW_UNSIGNED")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LEADSCORE_WEBHOOK_SECRET"), "{stderr}");
}

#[test]
fn serve_drops_a_torn_last_line_and_refuses_a_corrupt_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let journal = data.join("journal.jsonl");
    let first = &events()[0];
    std::fs::write(&journal, format!("{first}\n{{\"type\":\"tra")).unwrap();
    let vars = [
        ("LEADSCORE_ALLOW_UNSIGNED", "1"),
        ("LEADSCORE_API_TOKEN", TOKEN),
    ];
    let server = Server::start(dir.path(), &vars);
    assert_eq!(server.get_lead("usr_ann").1["events"], json!(1));
    assert_eq!(server.interrupt(), 0);
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        format!("{first}\n")
    );

    // a valid last line without its newline (edited by hand) is kept
    std::fs::write(&journal, first.as_str()).unwrap();
    let server = Server::start(dir.path(), &vars);
    assert_eq!(server.get_lead("usr_ann").1["events"], json!(1));
    assert_eq!(server.interrupt(), 0);
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        format!("{first}\n")
    );

    // a bad line before the last (not JSON, not UTF-8) stops the start with its number and
    // a way to repair, and the journal is left as it was
    let second = &events()[1];
    for bad in [
        b"not json".to_vec(),
        b"{\"type\":\"page\",\"userId\":\"\xff\"}".to_vec(),
    ] {
        let mut text = format!("{first}\n").into_bytes();
        text.extend_from_slice(&bad);
        text.extend_from_slice(format!("\n{second}\n").as_bytes());
        std::fs::write(&journal, &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .args(["serve", "--port", "0", "--rules"])
            .arg(rules())
            .arg("--data")
            .arg(&journal)
            .env("LEADSCORE_ALLOW_UNSIGNED", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("line 2:"), "{stderr}");
        assert!(stderr.contains("sed -i '2d'"), "{stderr}");
        assert_eq!(std::fs::read(&journal).unwrap(), text);
    }
}

/// SPEC §7: `serve` keeps each rule set it has run and when it came into force; a restart
/// on new rules rescores every lead, a restart on the same (or cosmetically edited) rules
/// changes nothing, and a later restart replays each call under the rules of its time.
#[test]
fn serve_records_rule_changes_and_replays_them_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1.rules");
    let v2 = dir.path().join("v2.rules");
    let rules = "ruleset \"points\"\nscore \"Webinar\" +10 on \"Webinar Registered\"\nstage mql when engagement >= 20\nnotify sales when reached mql\n";
    std::fs::write(&v1, rules).unwrap();
    std::fs::write(&v2, rules.replace("+10 on", "+20 on")).unwrap();
    let vars = [
        ("LEADSCORE_ALLOW_UNSIGNED", "1"),
        ("LEADSCORE_API_TOKEN", TOKEN),
    ];
    let call = |user: &str, id: &str, at: &str| {
        json!({"type": "track", "event": "Webinar Registered", "userId": user,
               "messageId": id, "timestamp": at})
        .to_string()
    };
    let server = Server::start_with_rules(dir.path(), &v1, &vars);
    assert_eq!(
        server.post(&call("u1", "m1", "2026-03-02T10:00:00Z")).0,
        200
    );
    assert_eq!(
        server.post(&call("u2", "m2", "2026-03-02T11:00:00Z")).0,
        200
    );
    assert_eq!(server.get_lead("u1").1["engagement"], json!(10));
    assert_eq!(server.interrupt(), 0);

    // new points: every lead rescored at start
    let server = Server::start_with_rules(dir.path(), &v2, &vars);
    let (_, u1) = server.get_lead("u1");
    assert_eq!(u1["engagement"], json!(20), "{u1}");
    assert_eq!(u1["reached"]["mql"], "2026-03-02T10:00:00Z", "{u1}");
    // a call under the new rules
    let (_, resp) = server.post(&call("u1", "m3", "2026-03-03T10:00:00Z"));
    assert_eq!(resp["results"][0]["score"], json!(40), "{resp}");
    assert_eq!(server.interrupt(), 0);
    let log = dir.path().join("data/journal.jsonl.rules.jsonl");
    let changes: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        (changes[0]["after"].clone(), changes[1]["after"].clone()),
        (json!(0), json!(2))
    );
    for change in &changes {
        let kept = dir.path().join(format!(
            "data/rules/{}.rules",
            change["version"].as_str().unwrap()
        ));
        assert!(kept.exists(), "{}", kept.display());
    }

    // the same rules, reformatted: no change recorded, the same state
    std::fs::write(
        &v2,
        format!("# reformatted\n{}", rules.replace("+10 on", "+20    on")),
    )
    .unwrap();
    let server = Server::start_with_rules(dir.path(), &v2, &vars);
    assert_eq!(server.get_lead("u1").1["engagement"], json!(40));
    // erasing u2 moves the later change's place in the journal
    let auth = format!("Bearer {TOKEN}");
    let (status, _) = server.request("DELETE", "/leads/u2", &[("Authorization", &auth)], b"");
    assert_eq!(status, 200);
    assert_eq!(server.interrupt(), 0);
    let after: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(after.len(), 2, "a cosmetic edit is no change");
    assert_eq!(
        after[1]["after"],
        json!(1),
        "u2's call before the change is gone"
    );

    // back on the first rules: a change again; the calls replay under the rules of their time
    let server = Server::start_with_rules(dir.path(), &v1, &vars);
    let (_, u1) = server.get_lead("u1");
    assert_eq!(
        u1["engagement"],
        json!(20),
        "two webinars at +10, rescored: {u1}"
    );
    assert_eq!(u1["reached"]["mql"], "2026-03-02T10:00:00Z", "{u1}");
    assert_eq!(server.get_lead("u2").0, 404);
    assert_eq!(server.interrupt(), 0);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
}
