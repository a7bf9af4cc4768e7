//! Rules published in the table (SPEC §7 `publish`): deployed rules change without a
//! redeploy, and old and new instances never fight over a lead.
//!
//! One item, `pk` `RULES`, `sk` `PUBLISHED`, holds the rule set's text, its version and a
//! generation one higher than the last, written only if the generation read is still the
//! last. The functions run the published rules when there are any ([`DynamoStore::use_published`]
//! at start), and every state they write is stamped with their generation. An instance that
//! meets a lead stamped with a newer generation loads the published rules before it touches
//! the lead (see `DynamoStore::apply`); it never rewrites the lead under older ones.

use crate::api::StoreError;
use crate::store::dynamo::DynamoStore;
use aws_sdk_dynamodb::types::AttributeValue;
use leadscore_rules::{Program, SourceFile};
use std::sync::Arc;

/// The partition key of the published rules.
pub const RULES_PK: &str = "RULES";
/// Their sort key.
pub const RULES_SK: &str = "PUBLISHED";

/// The rules published in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// One higher at each publish.
    pub generation: u64,
    /// The rule set's version.
    pub version: String,
    /// Its name.
    pub ruleset: String,
    /// Its text (the files in name order, one after the other).
    pub text: String,
}

/// What [`DynamoStore::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Stored as this generation.
    Published(u64),
    /// The same version is already the last published, as this generation.
    Unchanged(u64),
}

/// The files of a rule set as one text.
pub fn joined(files: &[SourceFile]) -> String {
    let mut text = String::new();
    for f in files {
        text.push_str(&f.text);
        if !f.text.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

fn text_of(item: &std::collections::HashMap<String, AttributeValue>, key: &str) -> String {
    match item.get(key) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    }
}

impl DynamoStore {
    /// The rules published in the table, if any (one consistent read).
    pub async fn published(&self) -> Result<Option<Published>, StoreError> {
        self.counters
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(RULES_PK.into()))
            .key("sk", AttributeValue::S(RULES_SK.into()))
            .consistent_read(true)
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(|e| super::dynamo::store_error("read the published rules", &e))?;
        self.counters.capacity.read(out.consumed_capacity());
        let Some(item) = out.item else {
            return Ok(None);
        };
        let generation = match item.get("generation") {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        };
        Ok(Some(Published {
            generation,
            version: text_of(&item, "version"),
            ruleset: text_of(&item, "ruleset"),
            text: text_of(&item, "text"),
        }))
    }

    /// Publishes a checked rule set (`program`, compiled from `files`): stored with a
    /// generation one higher than the last, unless another publish came in between (then an
    /// error: read and try again). The version already published last is left as it is.
    pub async fn publish(
        &self,
        program: &Program,
        files: &[SourceFile],
    ) -> Result<PublishOutcome, StoreError> {
        let last = self.published().await?;
        if let Some(last) = last.as_ref().filter(|p| p.version == program.version) {
            return Ok(PublishOutcome::Unchanged(last.generation));
        }
        let generation = last.as_ref().map_or(1, |p| p.generation + 1);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(RULES_PK.into()))
            .item("sk", AttributeValue::S(RULES_SK.into()))
            .item("generation", AttributeValue::N(generation.to_string()))
            .item("version", AttributeValue::S(program.version.clone()))
            .item("ruleset", AttributeValue::S(program.name.clone()))
            .item("text", AttributeValue::S(joined(files)));
        put = match &last {
            Some(p) => put
                .condition_expression("generation = :g")
                .expression_attribute_values(":g", AttributeValue::N(p.generation.to_string())),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        self.counters
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        put.send().await.map_err(|e| {
            super::dynamo::store_error(
                &format!("publish generation {generation} (another publish came first? read and try again)"),
                &e,
            )
        })?;
        Ok(PublishOutcome::Published(generation))
    }

    /// Runs the published rules from now on (this store and every clone of it) when the
    /// table holds a generation newer than this store's; returns whether it changed. Published text that no longer compiles is
    /// an error (the store keeps its rules).
    pub async fn use_published(&mut self) -> Result<bool, StoreError> {
        let Some(published) = self.published().await? else {
            return Ok(false);
        };
        if published.generation <= self.generation {
            return Ok(false);
        }
        let name = format!("<published rules, generation {}>", published.generation);
        let (program, _, _) = crate::rules::compile_text(&name, &published.text)
            .map_err(|e| StoreError::Failed(format!("{name}: {e}")))?;
        tracing::info!(
            generation = published.generation,
            ruleset = %program.name,
            version = %program.version,
            "running the published rules"
        );
        self.program = Arc::new(program);
        self.generation = published.generation;
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // another request of the same instance may have loaded a newer one meanwhile
        if current.generation < self.generation {
            current.program = Arc::clone(&self.program);
            current.generation = self.generation;
        }
        Ok(true)
    }

    /// The store of a deployed function (SPEC §6, §7), configured from the environment
    /// ([`DynamoStore::from_env`]) and on the rules it must run
    /// ([`DynamoStore::use_function_rules`]).
    pub async fn for_function() -> Result<DynamoStore, StoreError> {
        let (program, explicit) = function_program()?;
        let mut store = DynamoStore::from_env(program).await?;
        store.use_function_rules(explicit).await?;
        Ok(store)
    }

    /// Runs the rules a deployed function must run: those published in the table when there
    /// are any, else the configured ones (`explicit`, from [`function_program`]). With
    /// neither it refuses, saying what to do: a function never runs the example rules unless
    /// `LEADSCORE_RULES=builtin` says so.
    pub async fn use_function_rules(&mut self, explicit: bool) -> Result<(), StoreError> {
        if self.use_published().await? || explicit {
            return Ok(());
        }
        Err(StoreError::Failed(format!(
            "no rules to run: the table `{}` has no published rules and `LEADSCORE_RULES` is \
             not set; publish rules (`leadscore dynamodb publish RULES`) or set \
             `LEADSCORE_RULES` to a rules file or folder (`{}` runs the example rules built \
             into the binary)",
            self.table(),
            crate::rules::BUILTIN_SETTING
        )))
    }

    /// The generation of the published rules this store and its clones run now (0: not
    /// published rules).
    pub fn generation(&self) -> u64 {
        self.current().generation
    }
}

/// The rules a deployed function is configured with ([`crate::rules::load_for_function`])
/// and whether any are (`false`: the returned rules only stand in until the published ones
/// are read by [`DynamoStore::use_function_rules`], which refuses to run them).
pub fn function_program() -> Result<(Arc<Program>, bool), StoreError> {
    let configured = crate::rules::load_for_function()
        .map_err(|e| StoreError::Failed(format!("`LEADSCORE_RULES`: {e}")))?;
    let explicit = configured.is_some();
    let program = match configured {
        Some(program) => program,
        None => {
            crate::rules::load_or_builtin(None)
                .map_err(|e| StoreError::Failed(e.to_string()))?
                .0
        }
    };
    Ok((Arc::new(program), explicit))
}
