//! notify end to end: notifications written to DynamoDB Local, read back from its real stream,
//! turned into the exact event Lambda delivers, handled by `leadscore_notify`, and delivered to
//! real receivers: an HTTP server on loopback (Standard Webhooks) and moto's EventBridge.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use leadscore_notify::{Config, Notifier, Targets};
use leadscore_tests::{unique_name, DynamoLocal, Moto, Storage};
use serde_json::{json, Value};
use sha2::Sha256;

mod common;

use common::receiver::{Received, Receiver};
use common::stream::{lambda_event, note_inserts, stream_records};
use common::TestResult;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_c2VjcmV0LW9mLXRoZS1zYWxlcy1yZWNlaXZlcg==";

// ---------------------------------------------------------------------------------------
// What an HTTP receiver on loopback (`common::receiver`) got
// ---------------------------------------------------------------------------------------

/// Checks a request as a Standard Webhooks receiver would: headers present, timestamp
/// recent, `v1` signature over `id.timestamp.body` with the secret's key.
fn verify_standard_webhook(request: &Received, secret: &str) -> TestResult<String> {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .cloned()
            .ok_or_else(|| format!("missing `{name}` header in {request:?}"))
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signature = header("webhook-signature")?;
    assert_eq!(header("content-type")?, "application/json");
    let sent: i64 = timestamp.parse()?;
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())?;
    assert!(
        (now - sent).abs() <= 300,
        "stale webhook-timestamp {sent} (now {now})"
    );
    let key = BASE64.decode(secret.strip_prefix("whsec_").ok_or("not a whsec_ secret")?)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{id}.{timestamp}.{}", request.body).as_bytes());
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert!(
        signature.split(' ').any(|s| s == expected),
        "bad signature {signature} (expected {expected})"
    );
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// The table, its notifications and its real stream
// ---------------------------------------------------------------------------------------

/// A notification as the score and decay functions write it.
struct Note {
    lead: &'static str,
    id: String,
    target: &'static str,
    kind: &'static str,
    at: &'static str,
}

impl Note {
    fn new(lead: &'static str, n: u32, target: &'static str, kind: &'static str) -> Self {
        Note {
            lead,
            id: format!("ntf_{n:016x}"),
            target,
            kind,
            at: "2024-05-01T10:00:00Z",
        }
    }

    fn pk(&self) -> String {
        format!("LEAD#{}", self.lead)
    }

    fn sk(&self) -> String {
        format!("NOTE#{}#{}", self.at, self.id)
    }

    fn message(&self) -> String {
        let (key, name) = match self.kind {
            "converted" => ("conversion", "Purchase"),
            _ => ("stage", "sql"),
        };
        json!({
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            key: name,
            "at": self.at,
            "lead": {"id": self.lead, "score": 120, "fit": 20, "engagement": 100, "stage": "sql",
                     "profile": {"email": format!("{}@example.com", self.lead), "plan": "trial"}}
        })
        .to_string()
    }

    async fn put(&self, client: &aws_sdk_dynamodb::Client, table: &str) -> TestResult {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        client
            .put_item()
            .table_name(table)
            .item("pk", s(&self.pk()))
            .item("sk", s(&self.sk()))
            .item("id", s(&self.id))
            .item("target", s(self.target))
            .item("kind", s(self.kind))
            .item("lead", s(self.lead))
            .item("at", s(self.at))
            .item("message", s(&self.message()))
            .item("expires_at", AttributeValue::N("1900000000".into()))
            .send()
            .await?;
        Ok(())
    }

    /// The item's `delivered` mark: `None` when the item is gone, else whether it is set.
    async fn delivered(
        &self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> TestResult<Option<bool>> {
        let item = client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(self.pk()))
            .key("sk", AttributeValue::S(self.sk()))
            .consistent_read(true)
            .send()
            .await?
            .item;
        Ok(item.map(|item| matches!(item.get("delivered"), Some(AttributeValue::Bool(true)))))
    }
}

/// Puts an item that is not a notification (a lead state).
async fn put_state(client: &aws_sdk_dynamodb::Client, table: &str, lead: &str) -> TestResult {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(format!("LEAD#{lead}")))
        .item("sk", AttributeValue::S("STATE".into()))
        .item("version", AttributeValue::N("1".into()))
        .send()
        .await?;
    Ok(())
}

/// DynamoDB Local with a table created as `leadscore dynamodb create-table` does.
async fn table() -> TestResult<(DynamoLocal, aws_sdk_dynamodb::Client, String)> {
    let dynamo = DynamoLocal::start(Storage::InMemory)?;
    let client = dynamo.client().await;
    let table = unique_name("notify");
    leadscore_core::store::dynamo::create_table(&client, &table).await?;
    Ok((dynamo, client, table))
}

fn sequence_of(records: &[Value], note: &Note) -> TestResult<String> {
    records
        .iter()
        .find(|r| {
            r["eventName"] == "INSERT" && r["dynamodb"]["NewImage"]["id"]["S"] == note.id.as_str()
        })
        .and_then(|r| r["dynamodb"]["SequenceNumber"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no INSERT of `{}` in the stream", note.id).into())
}

fn failures(response: &DynamoDbEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

/// An EventBridge client that nothing answers: for tests without an EventBridge target.
fn no_eventbridge() -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::new(&leadscore_tests::local_sdk_config("http://127.0.0.1:9"))
}

fn notifier(
    client: &aws_sdk_dynamodb::Client,
    events: aws_sdk_eventbridge::Client,
    table: &str,
    targets: &Value,
    bus: Option<&str>,
) -> TestResult<Notifier> {
    let targets = Targets::parse(Some(&targets.to_string()), bus)?;
    let config = Config {
        table: table.to_owned(),
        targets,
    };
    Ok(Notifier::new(client.clone(), events, config)?)
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// Notifications read from the real stream reach a real webhook once each, signed, and are
/// marked; the same batch again, and the stream's later records, deliver nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivery_from_the_real_stream_is_signed_marked_and_once() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let receiver = Receiver::start()?;
    let notes = [
        Note::new("u1", 1, "crm", "stage_reached"),
        Note::new("u1", 2, "crm", "converted"),
        Note::new("u2", 3, "crm", "stage_reached"),
    ];
    put_state(&client, &table, "u1").await?;
    for note in &notes {
        note.put(&client, &table).await?;
    }
    // An erased lead's notification: inserted, then deleted before notify sees it.
    let erased = Note::new("u3", 4, "crm", "converted");
    erased.put(&client, &table).await?;
    client
        .delete_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(erased.pk()))
        .key("sk", AttributeValue::S(erased.sk()))
        .send()
        .await?;

    let records = stream_records(&dynamo, &client, &table).await?;
    // The state item, four notification inserts and one removal.
    assert_eq!(records.len(), 6, "{records:#?}");
    // The mapping's filter passes only the notification inserts; the handler must also cope
    // with whatever else a batch holds, so it gets them all here.
    let batch = lambda_event(&records)?;
    assert_eq!(note_inserts(&records).len(), 4);

    let targets = json!({"crm": {"type": "webhook", "url": receiver.url("/hooks/leadscore"), "secret": SECRET}});
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?;
    let response = leadscore_notify::handle(batch.clone(), &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    for note in &notes {
        let request = requests
            .iter()
            .find(|r| r.headers.get("webhook-id") == Some(&note.id))
            .ok_or_else(|| format!("`{}` was not delivered", note.id))?;
        assert_eq!(verify_standard_webhook(request, SECRET)?, note.id);
        assert_eq!(request.path, "/hooks/leadscore");
        assert_eq!(
            request.body,
            note.message(),
            "the message is delivered as written"
        );
        let body: Value = serde_json::from_str(&request.body)?;
        assert_eq!(body["id"], note.id.as_str());
        assert_eq!(body["lead"]["id"], note.lead);
        assert_eq!(
            note.delivered(&client, &table).await?,
            Some(true),
            "{}",
            note.id
        );
    }
    // not resurrected by a delivered mark
    assert_eq!(erased.delivered(&client, &table).await?, None);

    // Lambda retries the same batch: nothing is sent again.
    let response = leadscore_notify::handle(batch, &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(receiver.requests().len(), 3);

    // The marks are MODIFY records on the stream: read it all again and hand it over.
    let records = stream_records(&dynamo, &client, &table).await?;
    assert_eq!(
        records
            .iter()
            .filter(|r| r["eventName"] == "MODIFY")
            .count(),
        3
    );
    let response = leadscore_notify::handle(lambda_event(&records)?, &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(receiver.delivered_ids().len(), 3);
    Ok(())
}

/// One target failing (500) does not stop other leads; a lead's later notifications (to
/// any target) are held back behind its failed one, so they arrive in order. The failed and
/// held records are reported by sequence number, and once the receiver recovers only they
/// are delivered: no loss, no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_reported_and_retried_without_duplicates() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let crm = Receiver::start()?;
    let sales = Receiver::start()?;
    crm.answer(500);
    // Interleaved, so that the failures sit between deliveries in the shard.
    let notes = [
        Note::new("u1", 11, "crm", "stage_reached"),
        Note::new("u1", 12, "sales", "stage_reached"),
        Note::new("u2", 13, "crm", "converted"),
        Note::new("u2", 14, "sales", "converted"),
        Note::new("u3", 15, "sales", "stage_reached"),
    ];
    for note in &notes {
        note.put(&client, &table).await?;
    }
    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    assert_eq!(records.len(), 5);
    let batch = lambda_event(&records)?;
    let targets = json!({
        "crm": {"type": "webhook", "url": crm.url("/crm"), "secret": SECRET},
        "sales": {"type": "webhook", "url": sales.url("/sales"), "secret": OTHER_SECRET},
    });
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?;

    let response = leadscore_notify::handle(batch.clone(), &notifier).await;
    let failed = failures(&response);
    assert_eq!(
        failed,
        vec![
            sequence_of(&records, &notes[0])?,
            sequence_of(&records, &notes[1])?,
            sequence_of(&records, &notes[2])?,
            sequence_of(&records, &notes[3])?
        ],
        "every failed or held record, in stream order"
    );
    let mut tried: Vec<String> = crm
        .requests()
        .iter()
        .map(|r| r.headers.get("webhook-id").cloned().unwrap_or_default())
        .collect();
    tried.sort();
    assert_eq!(
        tried,
        [notes[0].id.clone(), notes[2].id.clone()],
        "each tried once"
    );
    assert!(crm.delivered_ids().is_empty());
    // u1's and u2's sales notifications wait behind their failed crm ones; u3 goes
    assert_eq!(sales.delivered_ids(), [notes[4].id.clone()]);
    for request in sales.requests() {
        verify_standard_webhook(&request, OTHER_SECRET)?;
    }
    for (note, marked) in notes.iter().zip([false, false, false, false, true]) {
        assert_eq!(
            note.delivered(&client, &table).await?,
            Some(marked),
            "{}",
            note.id
        );
    }

    // Still failing: the retry reports the same records and sends nothing to sales.
    let response = leadscore_notify::handle(batch.clone(), &notifier).await;
    assert_eq!(failures(&response), failed);
    assert_eq!(sales.requests().len(), 1);

    // The receiver recovers; the retry delivers exactly what had failed.
    crm.answer(200);
    let response = leadscore_notify::handle(batch.clone(), &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    let mut delivered = crm.delivered_ids();
    delivered.sort();
    assert_eq!(delivered, [notes[0].id.clone(), notes[2].id.clone()]);
    for request in crm.requests() {
        verify_standard_webhook(&request, SECRET)?;
    }
    let mut delivered = sales.delivered_ids();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            notes[1].id.clone(),
            notes[3].id.clone(),
            notes[4].id.clone()
        ],
        "the held ones now, and no duplicate to the target that worked"
    );
    for note in &notes {
        assert_eq!(
            note.delivered(&client, &table).await?,
            Some(true),
            "{}",
            note.id
        );
    }

    // And once more: nothing at all.
    let response = leadscore_notify::handle(batch, &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(crm.requests().len(), 2 + 2 + 2);
    assert_eq!(sales.requests().len(), 3);
    Ok(())
}

/// A lead's notifications reach the receiver in the order they were committed (SPEC §6),
/// however many leads share a batch: 25 leads each reach a stage and then convert, handed
/// over 25 records at a time as the template's event source mapping does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leads_notifications_arrive_in_commit_order() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let receiver = Receiver::start()?;
    const LEADS: [&str; 25] = [
        "l00", "l01", "l02", "l03", "l04", "l05", "l06", "l07", "l08", "l09", "l10", "l11", "l12",
        "l13", "l14", "l15", "l16", "l17", "l18", "l19", "l20", "l21", "l22", "l23", "l24",
    ];
    let mut notes = Vec::new();
    for (n, lead) in (0u32..).zip(LEADS) {
        notes.push(Note::new(lead, 100 + 2 * n, "crm", "stage_reached"));
        notes.push(Note::new(lead, 101 + 2 * n, "crm", "converted"));
    }
    for note in &notes {
        note.put(&client, &table).await?;
    }
    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    assert_eq!(records.len(), 50);
    let targets =
        json!({"crm": {"type": "webhook", "url": receiver.url("/crm"), "secret": SECRET}});
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?;
    for chunk in records.chunks(25) {
        let response = leadscore_notify::handle(lambda_event(chunk)?, &notifier).await;
        assert_eq!(failures(&response), Vec::<String>::new());
    }
    let arrived = receiver.delivered_ids();
    assert_eq!(arrived.len(), 50);
    let place = |id: &str| arrived.iter().position(|a| a == id);
    let inverted: Vec<&str> = notes
        .chunks(2)
        .filter(|pair| place(&pair[0].id) > place(&pair[1].id))
        .map(|pair| pair[0].lead)
        .collect();
    assert!(
        inverted.is_empty(),
        "converted arrived before stage reached for {inverted:?}"
    );
    Ok(())
}

/// A slow receiver and an invocation about to end: deliveries are started only while the
/// margin is left; the rest are reported failed (nothing is cut off unreported), each lead's
/// delivered ones are the first of its notifications, and the retry delivers the rest in
/// order, without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_stop_before_the_invocation_ends_and_the_rest_are_retried() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let receiver = Receiver::start()?;
    receiver.slow(300);
    let mut notes = Vec::new();
    for (n, lead) in (0u32..).zip(["s1", "s2", "s3"]) {
        for k in 0..3 {
            let kind = if k == 2 { "converted" } else { "stage_reached" };
            notes.push(Note::new(lead, 200 + 3 * n + k, "crm", kind));
        }
    }
    for note in &notes {
        note.put(&client, &table).await?;
    }
    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    let targets =
        json!({"crm": {"type": "webhook", "url": receiver.url("/crm"), "secret": SECRET}});
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?
        .with_deadline_margin(std::time::Duration::from_millis(200));
    // 700 ms left: each lead's three deliveries of 300 ms one after the other do not fit
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(700);
    let response = notifier
        .handle_until(lambda_event(&records)?, Some(deadline))
        .await;
    let failed = failures(&response);
    let delivered = receiver.delivered_ids();
    assert!(!failed.is_empty(), "some deliveries must not have started");
    assert!(!delivered.is_empty(), "the first ones had time");
    assert_eq!(failed.len() + delivered.len(), notes.len(), "none lost");
    for lead in notes.chunks(3) {
        let sent: Vec<bool> = lead.iter().map(|n| delivered.contains(&n.id)).collect();
        assert!(
            sent.windows(2).all(|w| w[0] || !w[1]),
            "{}: delivered {sent:?} is not a prefix",
            lead[0].lead
        );
        for note in lead {
            let seq = sequence_of(&records, note)?;
            assert_eq!(
                failed.contains(&seq),
                !delivered.contains(&note.id),
                "{}",
                note.id
            );
        }
    }
    // the next invocation, with time: the rest, in order, and nothing twice
    receiver.slow(0);
    let response = leadscore_notify::handle(lambda_event(&records)?, &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());
    let all = receiver.delivered_ids();
    assert_eq!(all.len(), notes.len(), "{all:?}");
    for lead in notes.chunks(3) {
        let places: Vec<usize> = lead
            .iter()
            .filter_map(|n| all.iter().position(|a| *a == n.id))
            .collect();
        assert!(places.windows(2).all(|w| w[0] < w[1]), "{places:?}");
    }
    Ok(())
}

/// notify learns the rules' targets as `score` does (the published rules in the table) and
/// refuses to start when one has no configuration: `notify crm` with only `CRM` configured
/// is an error naming both, never a silent delivery to a bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_refuses_to_start_on_a_target_the_rules_name_and_nothing_configures() -> TestResult {
    let (_dynamo, client, table) = table().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("t.rules");
    std::fs::write(
        &path,
        "ruleset \"t\"\nscore \"Ping\" +10 on \"Ping\"\nstage mql when engagement >= 10\nnotify crm when reached mql\n",
    )?;
    let (program, _, files) = leadscore_core::rules::load(&[path])?;
    let store = leadscore_core::store::dynamo::DynamoStore::new(
        client.clone(),
        table.clone(),
        Arc::new(program.clone()),
        400,
    );
    store.publish(&program, &files).await?;
    assert_eq!(
        leadscore_notify::rule_targets(&client, &table).await?.1,
        ["crm"]
    );
    let misnamed =
        json!({"CRM": {"type": "webhook", "url": "https://crm.example.com/h", "secret": SECRET}});
    let targets = Targets::parse(Some(&misnamed.to_string()), None)?;
    let Err(err) = targets.check_rules(["crm"]) else {
        return Err("a misnamed target passed the check".into());
    };
    let err = err.to_string();
    assert!(
        err.contains("`crm`") && err.contains("did you mean `CRM`?"),
        "{err}"
    );
    // named right, or sent to an explicit catch-all bus: it starts
    let right =
        json!({"crm": {"type": "webhook", "url": "https://crm.example.com/h", "secret": SECRET}});
    assert!(Targets::parse(Some(&right.to_string()), None)?
        .check_rules(["crm"])
        .is_ok());
    assert!(
        Targets::parse(Some(&misnamed.to_string()), Some("leadscore"))?
            .check_rules(["crm"])
            .is_ok()
    );
    Ok(())
}

/// The whole path (SPEC §6): events into `score` on DynamoDB Local, the outbox item it
/// commits, the table's real stream, `notify`, and a webhook receiver that checks the
/// signature and the whole message: id, kind, stage, the lead with its profile and scores,
/// the rules and the lead's sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_commits_notify_delivers_the_whole_message_signed() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let program = common::program_text(
        "ruleset \"e2e\"\nscore \"Webinar\" +10 on \"Webinar Registered\"\nstage mql when engagement >= 20\nnotify crm when reached mql\n",
    );
    let store = leadscore_core::store::dynamo::DynamoStore::new(
        client.clone(),
        table.clone(),
        Arc::clone(&program),
        400,
    );
    let score = leadscore_score::Score::new(common::signed_config(), store.clone());
    let calls = [
        json!({"type": "identify", "userId": "u1", "messageId": "i1", "timestamp": "2026-03-01T09:00:00Z",
               "traits": {"email": "ada@example.com", "plan": "trial"}}),
        json!({"type": "track", "event": "Webinar Registered", "userId": "u1", "messageId": "w1",
               "timestamp": "2026-03-01T10:00:00Z"}),
        json!({"type": "track", "event": "Webinar Registered", "userId": "u1", "messageId": "w2",
               "timestamp": "2026-03-02T10:00:00Z"}),
    ];
    for call in &calls {
        let (status, body) = common::send(&score, common::signed_post(&call.to_string())).await;
        assert_eq!(status, 200, "{body}");
    }
    let outbox = common::outbox(&store).await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");

    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    assert_eq!(records.len(), 1);
    let receiver = Receiver::start()?;
    let targets =
        json!({"crm": {"type": "webhook", "url": receiver.url("/hooks"), "secret": SECRET}});
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?;
    let response = leadscore_notify::handle(lambda_event(&records)?, &notifier).await;
    assert_eq!(failures(&response), Vec::<String>::new());

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let id = verify_standard_webhook(&requests[0], SECRET)?;
    let body: Value = serde_json::from_str(&requests[0].body)?;
    assert_eq!(body, outbox[0], "delivered as committed");
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["kind"], "stage_reached");
    assert_eq!(body["stage"], "mql");
    assert_eq!(body["target"], "crm");
    assert_eq!(body["at"], "2026-03-02T10:00:00Z");
    assert_eq!(body["sequence"], 1);
    assert_eq!(
        body["rules"],
        json!({"ruleset": "e2e", "version": program.version})
    );
    let lead = &body["lead"];
    assert_eq!(lead["id"], "u1");
    assert_eq!(lead["stage"], "mql");
    assert_eq!(lead["score"], 20);
    assert_eq!(lead["engagement"], 20);
    assert_eq!(
        lead["profile"],
        json!({"email": "ada@example.com", "plan": "trial"})
    );
    Ok(())
}

/// Failed deliveries stay findable without a scan (the sparse `undelivered` index of the
/// outbox items `score` writes) and `redeliver` sends them once the cause is fixed: by
/// target, then all, each once; what is delivered leaves the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_notifications_are_redelivered_from_their_index() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let program = common::program_text(
        "ruleset \"r\"\nscore \"Webinar\" +10 on \"Webinar Registered\"\nstage mql when engagement >= 10\nnotify crm when reached mql\nnotify sales when reached mql\n",
    );
    let store = leadscore_core::store::dynamo::DynamoStore::new(
        client.clone(),
        table.clone(),
        Arc::clone(&program),
        400,
    );
    let score = leadscore_score::Score::new(common::signed_config(), store);
    // u2's time has a fraction: `--since 10:00:00Z` must still find it (as a time, not as
    // the keys' text, where `.5Z` sorts before `Z`)
    for (user, m, at) in [
        ("u1", "w1", "2026-03-01T10:00:00Z"),
        ("u2", "w2", "2026-03-01T10:00:00.5Z"),
    ] {
        let call = json!({"type": "track", "event": "Webinar Registered", "userId": user,
                          "messageId": m, "timestamp": at});
        let (status, body) = common::send(&score, common::signed_post(&call.to_string())).await;
        assert_eq!(status, 200, "{body}");
    }
    let crm = Receiver::start()?;
    let sales = Receiver::start()?;
    crm.answer(500);
    let targets = json!({
        "crm": {"type": "webhook", "url": crm.url("/crm"), "secret": SECRET},
        "sales": {"type": "webhook", "url": sales.url("/sales"), "secret": OTHER_SECRET},
    });
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?;
    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    assert_eq!(records.len(), 4);
    let response = leadscore_notify::handle(lambda_event(&records)?, &notifier).await;
    assert!(!failures(&response).is_empty());
    let undelivered = 4 - sales.delivered_ids().len();
    assert!(undelivered >= 2, "both crm notifications failed");

    // crm still down: only sales is asked for
    let done = notifier.redeliver(Some("sales"), None).await?;
    assert_eq!(done.failed.len(), 0);
    assert_eq!(
        sales.delivered_ids().len(),
        2,
        "every sales notification, once"
    );
    // a time after them finds nothing
    let later = notifier
        .redeliver(
            None,
            leadscore_rules::time::parse_rfc3339("2026-03-02T00:00:00Z"),
        )
        .await?;
    assert_eq!(later.found, 0);
    // crm recovers: the rest, once
    crm.answer(200);
    let done = notifier
        .redeliver(
            None,
            leadscore_rules::time::parse_rfc3339("2026-03-01T10:00:00Z"),
        )
        .await?;
    assert_eq!((done.found, done.delivered, done.failed.len()), (2, 2, 0));
    let mut got = crm.delivered_ids();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 2);
    for request in crm.requests().iter().filter(|r| r.status == 200) {
        verify_standard_webhook(request, SECRET)?;
    }
    // delivered notifications left the index: the operator's command finds nothing more
    let exe = std::env::current_exe()?;
    let leadscore = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join("leadscore"))
        .ok_or("no target folder")?;
    let out = std::process::Command::new(leadscore)
        .args(["dynamodb", "redeliver"])
        .env("LEADSCORE_TABLE", &table)
        .env("LEADSCORE_TARGETS", targets.to_string())
        .env_remove("LEADSCORE_EVENT_BUS")
        .env("AWS_ENDPOINT_URL", dynamo.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("found 0, delivered 0"), "{stdout}");
    assert_eq!(sales.delivered_ids().len(), 2);
    Ok(())
}

/// A target that is configured nowhere fails (to end in the dead-letter queue), never is
/// dropped, and does not stop other leads' notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_target_fails_without_stopping_the_others() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let receiver = Receiver::start()?;
    let notes = [
        Note::new("u1", 21, "nowhere", "stage_reached"),
        Note::new("u2", 22, "crm", "stage_reached"),
    ];
    for note in &notes {
        note.put(&client, &table).await?;
    }
    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    let targets = json!({"crm": {"type": "webhook", "url": receiver.url("/"), "secret": SECRET}});
    let notifier = notifier(&client, no_eventbridge(), &table, &targets, None)?;
    let response = leadscore_notify::handle(lambda_event(&records)?, &notifier).await;
    assert_eq!(failures(&response), vec![sequence_of(&records, &notes[0])?]);
    assert_eq!(receiver.delivered_ids(), [notes[1].id.clone()]);
    assert_eq!(notes[0].delivered(&client, &table).await?, Some(false));
    assert_eq!(notes[1].delivered(&client, &table).await?, Some(true));
    Ok(())
}

/// The number of events an archive of moto's EventBridge holds.
async fn archived(events: &aws_sdk_eventbridge::Client, archive: &str) -> TestResult<i64> {
    Ok(events
        .describe_archive()
        .archive_name(archive)
        .send()
        .await?
        .event_count())
}

/// EventBridge targets against moto: events land on the bus with the right source and
/// detail-type (counted by archives that match on them), the fallback bus takes unlisted
/// targets, and a bus that does not exist is a reported failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventbridge_delivery_against_moto() -> TestResult {
    let (dynamo, client, table) = table().await?;
    let moto = Moto::start()?;
    let events = aws_sdk_eventbridge::Client::new(&moto.sdk_config());
    let bus = unique_name("leadscore");
    let bus_arn = events
        .create_event_bus()
        .name(&bus)
        .send()
        .await?
        .event_bus_arn
        .ok_or("no bus ARN")?;
    let notes = [
        // listed, by ARN
        Note::new("u1", 31, "sales", "stage_reached"),
        // not listed: the fallback bus (LEADSCORE_EVENT_BUS)
        Note::new("u2", 32, "revenue", "converted"),
        // a bus that does not exist
        Note::new("u3", 33, "ghost", "converted"),
    ];
    let archive = |suffix: &str| format!("{}-{suffix}", unique_name("a"));
    let (stages, conversions, by_id) = (archive("stages"), archive("conversions"), archive("byid"));
    for (name, pattern) in [
        (
            &stages,
            json!({"source": ["leadscore"], "detail-type": ["Lead Stage Reached"]}),
        ),
        (
            &conversions,
            json!({"source": ["leadscore"], "detail-type": ["Lead Converted"]}),
        ),
        (
            &by_id,
            json!({"detail": {"id": [notes[0].id], "lead": {"id": ["u1"]}}}),
        ),
    ] {
        events
            .create_archive()
            .archive_name(name)
            .event_source_arn(&bus_arn)
            .event_pattern(pattern.to_string())
            .send()
            .await?;
    }

    for note in &notes {
        note.put(&client, &table).await?;
    }
    let records = note_inserts(&stream_records(&dynamo, &client, &table).await?);
    let batch = lambda_event(&records)?;
    let targets = json!({
        "sales": {"type": "eventbridge", "bus": bus_arn},
        "ghost": {"type": "eventbridge", "bus": "no-such-bus"},
    });
    let notifier = notifier(&client, events.clone(), &table, &targets, Some(&bus))?;

    let response = leadscore_notify::handle(batch.clone(), &notifier).await;
    assert_eq!(failures(&response), vec![sequence_of(&records, &notes[2])?]);
    assert_eq!(archived(&events, &stages).await?, 1, "{}", moto.output());
    assert_eq!(archived(&events, &conversions).await?, 1);
    assert_eq!(
        archived(&events, &by_id).await?,
        1,
        "the detail is the message"
    );
    assert_eq!(notes[0].delivered(&client, &table).await?, Some(true));
    assert_eq!(notes[1].delivered(&client, &table).await?, Some(true));
    assert_eq!(notes[2].delivered(&client, &table).await?, Some(false));

    // The retry publishes nothing twice.
    let response = leadscore_notify::handle(batch, &notifier).await;
    assert_eq!(failures(&response), vec![sequence_of(&records, &notes[2])?]);
    assert_eq!(archived(&events, &stages).await?, 1);
    assert_eq!(archived(&events, &conversions).await?, 1);
    Ok(())
}
