//! A table's real DynamoDB stream, read as Lambda reads it for a function mapped to it.

use std::collections::HashMap;

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use leadscore_tests::DynamoLocal;
use serde_json::{json, Value};

use super::TestResult;

/// A DynamoDB-JSON attribute value, as Lambda writes it in a stream event.
pub fn attribute_json(value: &StreamValue) -> Value {
    match value {
        StreamValue::S(s) => json!({ "S": s }),
        StreamValue::N(n) => json!({ "N": n }),
        StreamValue::B(b) => json!({ "B": BASE64.encode(b.as_ref()) }),
        StreamValue::Bool(b) => json!({ "BOOL": b }),
        StreamValue::Null(b) => json!({ "NULL": b }),
        StreamValue::Ss(v) => json!({ "SS": v }),
        StreamValue::Ns(v) => json!({ "NS": v }),
        StreamValue::Bs(v) => {
            json!({ "BS": v.iter().map(|b| BASE64.encode(b.as_ref())).collect::<Vec<_>>() })
        }
        StreamValue::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        StreamValue::M(m) => json!({ "M": item_json(m) }),
        other => json!({ "S": format!("{other:?}") }),
    }
}

pub fn item_json(item: &HashMap<String, StreamValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
}

/// Every record of the table's stream so far, from `TRIM_HORIZON`, as the JSON records of
/// the event Lambda delivers to a function mapped to the stream.
pub async fn stream_records(
    dynamo: &DynamoLocal,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> TestResult<Vec<Value>> {
    let stream_arn = client
        .describe_table()
        .table_name(table)
        .send()
        .await?
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or("the table has no stream")?;
    let streams = aws_sdk_dynamodbstreams::Client::new(&dynamo.sdk_config());
    let description = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await?
        .stream_description
        .ok_or("no stream description")?;
    assert_eq!(
        description.stream_view_type().map(|v| v.as_str()),
        Some("NEW_IMAGE")
    );
    let mut records = Vec::new();
    for shard in description.shards() {
        let shard_id = shard.shard_id().ok_or("a shard without id")?;
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator;
        // Bounded: DynamoDB Local hands a shard's records over 1,000 at a time, and an empty
        // answer ends the shard.
        for _ in 0..10_000 {
            let Some(current) = iterator.take() else {
                break;
            };
            let output = streams.get_records().shard_iterator(current).send().await?;
            if output.records().is_empty() {
                break;
            }
            for record in output.records() {
                let change = record.dynamodb().ok_or("a record without its change")?;
                let created = change
                    .approximate_creation_date_time()
                    .map_or(0.0, |t| t.as_secs_f64());
                records.push(json!({
                    "eventID": record.event_id(),
                    "eventName": record.event_name().map(|n| n.as_str()),
                    "eventVersion": record.event_version().unwrap_or("1.1"),
                    "eventSource": record.event_source().unwrap_or("aws:dynamodb"),
                    "awsRegion": record.aws_region(),
                    "dynamodb": {
                        "ApproximateCreationDateTime": created,
                        "Keys": item_json(change.keys().ok_or("a record without keys")?),
                        "NewImage": change.new_image().map(item_json),
                        "SequenceNumber": change.sequence_number(),
                        "SizeBytes": change.size_bytes(),
                        "StreamViewType": change.stream_view_type().map(|v| v.as_str()),
                    },
                    "eventSourceARN": stream_arn,
                }));
            }
            iterator = output.next_shard_iterator;
        }
    }
    Ok(records)
}

/// The event Lambda would deliver for these records, through its JSON form.
pub fn lambda_event(records: &[Value]) -> TestResult<Event> {
    let event = json!({ "Records": records });
    Ok(serde_json::from_value(event)?)
}

/// The JSON records of the notification inserts, in stream order.
pub fn note_inserts(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| {
            r["eventName"] == "INSERT"
                && r["dynamodb"]["Keys"]["sk"]["S"]
                    .as_str()
                    .is_some_and(|sk| sk.starts_with("NOTE#"))
        })
        .cloned()
        .collect()
}
