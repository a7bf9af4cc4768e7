//! The DynamoDB capacity a store's requests consume: as DynamoDB reports it
//! (`ReturnConsumedCapacity` on every request) and as DynamoDB's on-demand pricing counts it.
//! The two differ for transactions on DynamoDB Local, which reports twice the summed size of
//! a transaction's items in 1 KB units (three 40-byte puts: 2 units), where DynamoDB charges
//! each item on its own (2 units per KB of each item, rounded up: three small puts, 6).

use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, TransactWriteItem};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Capacity units consumed, in thousandths (units come in halves).
#[derive(Debug, Default)]
pub struct Capacity {
    read: AtomicU64,
    write: AtomicU64,
    index_write: AtomicU64,
    priced_write: AtomicU64,
}

/// What [`Capacity`] has counted, in capacity units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CapacityFigures {
    /// Read units as reported: reads, queries and scans.
    pub read: f64,
    /// Write units as reported: puts, deletes, batch writes and transactions, their global
    /// secondary indexes included.
    pub write: f64,
    /// The part of `write` spent on global secondary indexes.
    pub index_write: f64,
    /// Write units with each transaction priced item by item, as DynamoDB charges it (its
    /// indexes as reported); the other writes as reported.
    pub priced_write: f64,
}

impl Capacity {
    /// What has been counted so far.
    pub fn figures(&self) -> CapacityFigures {
        let units = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
        CapacityFigures {
            read: units(&self.read),
            write: units(&self.write),
            index_write: units(&self.index_write),
            priced_write: units(&self.priced_write),
        }
    }

    /// Notes the read capacity a response reports.
    pub fn read<'a>(&self, consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        let total: u64 = consumed
            .into_iter()
            .map(|c| milli(c.capacity_units()))
            .sum();
        self.read.fetch_add(total, Ordering::Relaxed);
    }

    /// Notes the write capacity a response of a single write or a batch write reports.
    pub fn wrote<'a>(&self, consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) {
        let (total, indexes) = reported(consumed);
        self.write.fetch_add(total, Ordering::Relaxed);
        self.index_write.fetch_add(indexes, Ordering::Relaxed);
        self.priced_write.fetch_add(total, Ordering::Relaxed);
    }

    /// Notes the write capacity a committed transaction reports, and what it costs priced
    /// item by item (`priced`, from [`transaction_units`] of its items).
    pub fn wrote_transaction<'a>(
        &self,
        consumed: impl IntoIterator<Item = &'a ConsumedCapacity>,
        priced: u64,
    ) {
        let (total, indexes) = reported(consumed);
        self.write.fetch_add(total, Ordering::Relaxed);
        self.index_write.fetch_add(indexes, Ordering::Relaxed);
        self.priced_write
            .fetch_add(priced * 1000 + indexes, Ordering::Relaxed);
    }
}

fn milli(units: Option<f64>) -> u64 {
    units.map_or(0, |u| (u * 1000.0).round() as u64)
}

/// A response's total units and the part of them its global secondary indexes took.
fn reported<'a>(consumed: impl IntoIterator<Item = &'a ConsumedCapacity>) -> (u64, u64) {
    let mut total = 0;
    let mut indexes = 0;
    for c in consumed {
        total += milli(c.capacity_units());
        indexes += c
            .global_secondary_indexes()
            .into_iter()
            .flat_map(HashMap::values)
            .map(|index| milli(index.capacity_units()))
            .sum::<u64>();
    }
    (total, indexes)
}

/// What a transaction of `items` costs on its table, priced item by item.
pub fn transaction_units(items: &[TransactWriteItem]) -> u64 {
    items.iter().map(transactional_units).sum()
}

/// What one action of a transaction costs: 2 write units per KB of its item, rounded up
/// (a put's item is known; an update, a delete or a condition check is counted as 1 KB).
fn transactional_units(item: &TransactWriteItem) -> u64 {
    let bytes = item.put().map_or(0, |put| item_size(put.item()));
    2 * bytes.div_ceil(1024).max(1) as u64
}

/// An item's size as DynamoDB counts it: each attribute's name and value in bytes (a number
/// as about one byte per two digits plus one; 3 bytes and 1 a member for maps and lists).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        _ => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::Put;

    fn put(size: usize) -> TransactWriteItem {
        let put = Put::builder()
            .table_name("t")
            .item("pk", AttributeValue::S("a".into()))
            .item("v", AttributeValue::S("x".repeat(size)))
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    }

    #[test]
    fn a_transaction_is_priced_item_by_item() {
        assert_eq!(transactional_units(&put(10)), 2);
        assert_eq!(transactional_units(&put(1024)), 4);
        assert_eq!(transactional_units(&put(3000)), 6);
        let capacity = Capacity::default();
        let reported = ConsumedCapacity::builder().capacity_units(2.0).build();
        capacity.wrote_transaction([&reported], transaction_units(&[put(10), put(10), put(10)]));
        let figures = capacity.figures();
        assert_eq!(figures.write, 2.0);
        assert_eq!(figures.priced_write, 6.0);
        assert_eq!(figures.index_write, 0.0);
    }

    #[test]
    fn sizes_count_names_and_values() {
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("LEAD#u1".into())),
            ("version".to_owned(), AttributeValue::N("12".into())),
        ]);
        assert_eq!(item_size(&item), 2 + 7 + 7 + 2);
    }
}
