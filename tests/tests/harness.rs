//! The harness itself: DynamoDB Local starts, stores and reads items, keeps its data across a
//! stop and restart on the same port, and is gone when dropped; moto answers EventBridge.

use std::error::Error;
use std::net::{Ipv4Addr, TcpStream};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use leadscore_tests::{unique_name, DynamoLocal, HarnessError, Moto, Storage};

type TestResult = Result<(), Box<dyn Error>>;

/// Creates a table keyed by the string `pk`.
async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) -> TestResult {
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await?;
    Ok(())
}

async fn put(client: &aws_sdk_dynamodb::Client, table: &str, pk: &str, score: i64) -> TestResult {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.to_string()))
        .item("score", AttributeValue::N(score.to_string()))
        .send()
        .await?;
    Ok(())
}

async fn get_score(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> Result<Option<String>, Box<dyn Error>> {
    let out = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_string()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out
        .item()
        .and_then(|item| item.get("score"))
        .and_then(|v| v.as_n().ok())
        .cloned())
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[tokio::test]
async fn dynamodb_local_in_memory_creates_puts_and_gets() -> TestResult {
    let mut ddb = DynamoLocal::start(Storage::InMemory)?;
    assert!(ddb.endpoint().starts_with("http://"), "{}", ddb.endpoint());
    let client = ddb.client().await;
    let table = unique_name("harness-mem");

    create_table(&client, &table).await?;
    put(&client, &table, "lead-1", 42).await?;
    assert_eq!(
        get_score(&client, &table, "lead-1").await?.as_deref(),
        Some("42")
    );
    assert_eq!(get_score(&client, &table, "lead-2").await?, None);

    let tables = client.list_tables().send().await?;
    assert!(tables.table_names().contains(&table));

    if ddb.is_owned() {
        // An in-memory restart would come back empty: refused.
        assert!(matches!(ddb.restart(), Err(HarnessError::Unsupported(_))));
        // Dropping it ends the process: nothing listens on its port any more.
        let port = ddb.port();
        assert!(accepts_connections(port));
        drop(ddb);
        assert!(
            !accepts_connections(port),
            "DynamoDB Local still listens on {port}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn dynamodb_local_on_disk_keeps_data_across_restart_on_the_same_port() -> TestResult {
    let mut ddb = DynamoLocal::start(Storage::OnDisk)?;
    assert!(
        ddb.is_owned(),
        "this test restarts the DynamoDB Local it starts; with LEADSCORE_DYNAMODB_ENDPOINT set there is none to restart"
    );
    let client = ddb.client().await;
    let (port, endpoint) = (ddb.port(), ddb.endpoint().to_string());
    let table = unique_name("harness-disk");
    create_table(&client, &table).await?;
    put(&client, &table, "lead-1", 7).await?;

    ddb.stop()?;
    assert!(!ddb.is_running());
    assert!(!accepts_connections(port));
    // While it is down, requests fail (quickly: the test config retries briefly).
    let started = std::time::Instant::now();
    assert!(get_score(&client, &table, "lead-1").await.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));

    ddb.restart()?;
    assert!(ddb.is_running());
    assert_eq!(ddb.port(), port);
    assert_eq!(ddb.endpoint(), endpoint);
    // The client made before the stop works again, and the data is back.
    assert_eq!(
        get_score(&client, &table, "lead-1").await?.as_deref(),
        Some("7")
    );
    put(&client, &table, "lead-2", 9).await?;

    // A crash (SIGKILL) keeps committed writes too.
    ddb.kill()?;
    ddb.restart()?;
    assert_eq!(
        get_score(&client, &table, "lead-2").await?.as_deref(),
        Some("9")
    );
    Ok(())
}

#[tokio::test]
async fn moto_answers_eventbridge() -> TestResult {
    let moto = match Moto::start() {
        Ok(moto) => moto,
        Err(err @ HarnessError::MotoMissing { .. }) => return Err(err.into()),
        Err(err) => return Err(err.into()),
    };
    let events = aws_sdk_eventbridge::Client::new(&moto.sdk_config());
    let bus = unique_name("harness-bus");

    let created = events.create_event_bus().name(&bus).send().await?;
    assert!(
        created
            .event_bus_arn()
            .is_some_and(|arn| arn.ends_with(&bus)),
        "{created:?}"
    );
    let out = events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(&bus)
                .source("leadscore")
                .detail_type("lead.qualified")
                .detail(r#"{"lead":"lead-1","score":42}"#)
                .build(),
        )
        .send()
        .await?;
    assert_eq!(out.failed_entry_count(), 0, "{out:?}");
    assert_eq!(out.entries().len(), 1);
    Ok(())
}
