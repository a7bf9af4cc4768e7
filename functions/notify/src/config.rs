//! Where notifications go: `LEADSCORE_TARGETS`, `LEADSCORE_EVENT_BUS` and `LEADSCORE_TABLE`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use reqwest::Url;
use serde::Deserialize;

/// The environment variable naming the table (SPEC §6).
pub const TABLE_VAR: &str = "LEADSCORE_TABLE";
/// The environment variable holding the targets, a JSON object (SPEC §6).
pub const TARGETS_VAR: &str = "LEADSCORE_TARGETS";
/// The environment variable naming the EventBridge bus for targets not in
/// [`TARGETS_VAR`].
pub const EVENT_BUS_VAR: &str = "LEADSCORE_EVENT_BUS";

/// Why notify cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `LEADSCORE_TABLE` is not set.
    #[error("no table: set `LEADSCORE_TABLE`")]
    NoTable,
    /// `LEADSCORE_TARGETS` is not a JSON object.
    #[error("`LEADSCORE_TARGETS` is not a JSON object of targets: {0}")]
    Json(String),
    /// A target's description does not fit the expected shape.
    #[error("`LEADSCORE_TARGETS`: target `{target}`: {reason}")]
    Target {
        /// The target's name.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `LEADSCORE_EVENT_BUS` is set but blank.
    #[error("`LEADSCORE_EVENT_BUS` is blank")]
    BlankEventBus,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The rules notify a target that has no configuration, and there is no catch-all bus.
    #[error("the rules notify `{target}`, which is not in `LEADSCORE_TARGETS`{hint}, and no catch-all bus is set (`LEADSCORE_EVENT_BUS`)")]
    Unconfigured {
        /// The first such target.
        target: String,
        /// `" (did you mean `X`?)"` when a configured name differs only in case or
        /// punctuation, else what is configured.
        hint: String,
    },
}

impl ConfigError {
    fn target(target: &str, reason: impl Into<String>) -> Self {
        ConfigError::Target {
            target: target.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A webhook target: an HTTPS URL and its Standard Webhooks signing key.
///
/// Its `Debug` shows neither the key nor the URL's path and query, which often carry a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    url: Url,
    key: Vec<u8>,
}

impl Webhook {
    /// Checks a webhook target: the URL must be `https`, or `http` to a loopback host
    /// (`127.0.0.1`, `::1`, `localhost`) for local use; the secret must be `whsec_` followed
    /// by base64 (Standard Webhooks). `name` is the target's name, for the error.
    pub fn new(name: &str, url: &str, secret: &str) -> Result<Self, ConfigError> {
        let url = Url::parse(url)
            .map_err(|err| ConfigError::target(name, format!("the URL is not valid: {err}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(ConfigError::target(
                    name,
                    "the URL must use `https` (plain `http` only to 127.0.0.1, ::1 or localhost)",
                ))
            }
            other => {
                return Err(ConfigError::target(
                    name,
                    format!("the URL's scheme `{other}` is not `https`"),
                ))
            }
        }
        if url.host().is_none() {
            return Err(ConfigError::target(name, "the URL has no host"));
        }
        Ok(Webhook {
            url,
            key: webhook_key(secret).map_err(|reason| ConfigError::target(name, reason))?,
        })
    }

    /// Where the notification is posted.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The HMAC-SHA256 key: the base64-decoded part of the `whsec_` secret.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field(
                "url",
                &format_args!(
                    "{}://{}/…",
                    self.url.scheme(),
                    self.url.host_str().unwrap_or_default()
                ),
            )
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub use leadscore_wire::webhook_key;

/// Where one target delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A signed HTTPS webhook.
    Webhook(Webhook),
    /// An EventBridge bus, by name or ARN.
    EventBridge {
        /// The bus name or ARN (`event_bus_name` of `PutEvents`).
        bus: String,
    },
}

/// One target as written in `LEADSCORE_TARGETS`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum TargetSpec {
    Webhook { url: String, secret: String },
    Eventbridge { bus: String },
}

/// The notification targets: the ones named in `LEADSCORE_TARGETS`, and the bus of
/// `LEADSCORE_EVENT_BUS` for any other name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    named: BTreeMap<String, Target>,
    default_bus: Option<String>,
}

impl Targets {
    /// Parses `LEADSCORE_TARGETS` (`json`; `None` or blank: no named targets) with the
    /// fallback bus `default_bus` (`LEADSCORE_EVENT_BUS`; `None` or empty: no fallback).
    ///
    /// `json` is an object of target name → `{"type": "webhook", "url": "https://...",
    /// "secret": "whsec_..."}` or `{"type": "eventbridge", "bus": "<name or ARN>"}`.
    pub fn parse(json: Option<&str>, default_bus: Option<&str>) -> Result<Self, ConfigError> {
        let default_bus = match default_bus {
            None | Some("") => None,
            Some(bus) if bus.trim().is_empty() => return Err(ConfigError::BlankEventBus),
            Some(bus) => Some(bus.trim().to_owned()),
        };
        let json = json.map(str::trim).filter(|json| !json.is_empty());
        let Some(json) = json else {
            return Ok(Targets {
                named: BTreeMap::new(),
                default_bus,
            });
        };
        let specs: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|err| ConfigError::Json(err.to_string()))?;
        let mut named = BTreeMap::new();
        for (name, spec) in specs {
            if name.is_empty() {
                return Err(ConfigError::Json("a target's name is empty".into()));
            }
            let spec: TargetSpec = serde_json::from_value(spec)
                .map_err(|err| ConfigError::target(&name, err.to_string()))?;
            let target = match spec {
                TargetSpec::Webhook { url, secret } => {
                    Target::Webhook(Webhook::new(&name, &url, &secret)?)
                }
                TargetSpec::Eventbridge { bus } if bus.trim().is_empty() => {
                    return Err(ConfigError::target(&name, "the bus is empty"))
                }
                TargetSpec::Eventbridge { bus } => Target::EventBridge {
                    bus: bus.trim().to_owned(),
                },
            };
            named.insert(name, target);
        }
        Ok(Targets { named, default_bus })
    }

    /// Reads [`TARGETS_VAR`] and [`EVENT_BUS_VAR`] through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Targets::parse(var(TARGETS_VAR).as_deref(), var(EVENT_BUS_VAR).as_deref())
    }

    /// Where the target `name` delivers: its entry in `LEADSCORE_TARGETS`, else the
    /// fallback bus, else `None` (a configuration error for that notification).
    pub fn resolve(&self, name: &str) -> Option<Target> {
        match self.named.get(name) {
            Some(target) => Some(target.clone()),
            None => self
                .default_bus
                .as_ref()
                .map(|bus| Target::EventBridge { bus: bus.clone() }),
        }
    }

    /// The targets named in `LEADSCORE_TARGETS`, by name.
    pub fn named(&self) -> &BTreeMap<String, Target> {
        &self.named
    }

    /// The fallback bus (`LEADSCORE_EVENT_BUS`).
    pub fn default_bus(&self) -> Option<&str> {
        self.default_bus.as_deref()
    }

    /// Checks that every target the rules notify (`rule_targets`, their `notify TARGET`
    /// names) has somewhere to go: an entry of its own, or the catch-all bus. A misspelt
    /// entry (`CRM` for `crm`) is an error that names both, never a silent misroute.
    pub fn check_rules<'a>(
        &self,
        rule_targets: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        if self.default_bus.is_some() {
            return Ok(());
        }
        let fold = |name: &str| -> String {
            name.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        for target in rule_targets {
            if self.named.contains_key(target) {
                continue;
            }
            let near = self.named.keys().find(|name| fold(name) == fold(target));
            let hint = match near {
                Some(name) => format!(" (did you mean `{name}`?)"),
                None if self.named.is_empty() => " (it names no targets)".to_owned(),
                None => format!(
                    " (it names {})",
                    self.named
                        .keys()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(ConfigError::Unconfigured {
                target: target.to_owned(),
                hint,
            });
        }
        Ok(())
    }
}

/// notify's configuration (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `LEADSCORE_TABLE`: the table holding the notifications (their delivered marks).
    pub table: String,
    /// The targets.
    pub targets: Targets,
}

impl Config {
    /// Reads the configuration from the environment; see [`Config::from_vars`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `var`: [`TABLE_VAR`] (required), [`TARGETS_VAR`] and
    /// [`EVENT_BUS_VAR`]. Invalid targets stop the start.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table = var(TABLE_VAR)
            .map(|table| table.trim().to_owned())
            .filter(|table| !table.is_empty())
            .ok_or(ConfigError::NoTable)?;
        Ok(Config {
            table,
            targets: Targets::from_vars(var)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(json: &str) -> Result<Targets, ConfigError> {
        Targets::parse(Some(json), None)
    }

    #[test]
    fn every_rules_target_needs_an_entry_or_the_catch_all_bus() {
        let json = format!(
            r#"{{"CRM": {{"type": "webhook", "url": "https://crm.example.com/h", "secret": "{SECRET}"}},
                "sales": {{"type": "eventbridge", "bus": "leadscore"}}}}"#
        );
        let targets = parse(&json).unwrap();
        assert!(targets.check_rules(["sales", "CRM"]).is_ok());
        let err = targets
            .check_rules(["sales", "crm"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`crm`") && err.contains("did you mean `CRM`?"),
            "{err}"
        );
        let err = targets.check_rules(["revenue"]).unwrap_err().to_string();
        assert!(
            err.contains("`revenue`") && err.contains("`CRM`, `sales`"),
            "{err}"
        );
        let none = Targets::parse(None, None).unwrap();
        let err = none.check_rules(["sales"]).unwrap_err().to_string();
        assert!(err.contains("names no targets"), "{err}");
        // an explicit catch-all takes whatever has no entry
        let catch_all = Targets::parse(Some(&json), Some("leadscore")).unwrap();
        assert!(catch_all.check_rules(["crm", "revenue"]).is_ok());
    }

    fn reason(result: Result<Targets, ConfigError>) -> String {
        match result {
            Err(err) => err.to_string(),
            Ok(targets) => format!("unexpectedly valid: {targets:?}"),
        }
    }

    #[test]
    fn parses_webhook_and_eventbridge_targets() {
        let json = format!(
            r#"{{"crm": {{"type": "webhook", "url": "https://crm.example.com/hooks/leads?token=x", "secret": "{SECRET}"}},
                "sales_slack": {{"type": "eventbridge", "bus": "arn:aws:events:eu-west-1:123456789012:event-bus/sales"}}}}"#
        );
        let targets = Targets::parse(Some(&json), Some("leadscore")).unwrap();
        assert_eq!(targets.named().len(), 2);
        let Some(Target::Webhook(crm)) = targets.resolve("crm") else {
            panic!("crm is a webhook");
        };
        assert_eq!(
            crm.url().as_str(),
            "https://crm.example.com/hooks/leads?token=x"
        );
        assert_eq!(crm.key(), webhook_key(SECRET).unwrap().as_slice());
        assert_eq!(
            targets.resolve("sales_slack"),
            Some(Target::EventBridge {
                bus: "arn:aws:events:eu-west-1:123456789012:event-bus/sales".into()
            })
        );
        // not listed: the fallback bus
        assert_eq!(
            targets.resolve("revenue"),
            Some(Target::EventBridge {
                bus: "leadscore".into()
            })
        );
    }

    #[test]
    fn unlisted_target_without_bus_has_nowhere_to_go() {
        let targets = Targets::parse(None, None).unwrap();
        assert_eq!(targets.resolve("crm"), None);
        let targets = Targets::parse(Some("  "), Some("")).unwrap();
        assert_eq!(targets.resolve("crm"), None);
        assert_eq!(targets.default_bus(), None);
        let targets = Targets::parse(Some("{}"), Some("bus")).unwrap();
        assert_eq!(targets.default_bus(), Some("bus"));
    }

    #[test]
    fn debug_hides_the_secret_and_the_path() {
        let json = format!(
            r#"{{"crm": {{"type": "webhook", "url": "https://hooks.example.com/T000/B000/XXXX", "secret": "{SECRET}"}}}}"#
        );
        let shown = format!("{:?}", parse(&json).unwrap());
        assert!(shown.contains("hooks.example.com"), "{shown}");
        assert!(!shown.contains("XXXX"), "{shown}");
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn loopback_http_is_allowed_for_local_use() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]:8080/hook",
            "http://localhost/hook",
            "http://LOCALHOST:1/hook",
        ] {
            let json = format!(
                r#"{{"local": {{"type": "webhook", "url": "{url}", "secret": "{SECRET}"}}}}"#
            );
            assert!(parse(&json).is_ok(), "{url}");
        }
    }

    #[test]
    fn rejects_insecure_or_bad_urls() {
        for (url, expected) in [
            ("http://crm.example.com/hook", "must use `https`"),
            ("http://10.0.0.1/hook", "must use `https`"),
            ("http://localhost.example.com/hook", "must use `https`"),
            ("ftp://crm.example.com/hook", "scheme `ftp`"),
            ("crm.example.com/hook", "not valid"),
        ] {
            let json = format!(
                r#"{{"crm": {{"type": "webhook", "url": "{url}", "secret": "{SECRET}"}}}}"#
            );
            let message = reason(parse(&json));
            assert!(
                message.starts_with("`LEADSCORE_TARGETS`: target `crm`: "),
                "{message}"
            );
            assert!(message.contains(expected), "{url}: {message}");
        }
    }

    #[test]
    fn rejects_bad_secrets_without_repeating_them() {
        for (secret, expected) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "must start with `whsec_`",
            ),
            ("whsec_not*base64!", "not base64"),
            ("whsec_", "empty"),
        ] {
            let json = format!(
                r#"{{"crm": {{"type": "webhook", "url": "https://crm.example.com", "secret": "{secret}"}}}}"#
            );
            let message = reason(parse(&json));
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("base64!"), "{message}");
        }
    }

    #[test]
    fn rejects_invalid_json_and_shapes() {
        let message = reason(parse("{not json"));
        assert!(
            message.starts_with("`LEADSCORE_TARGETS` is not a JSON object of targets: "),
            "{message}"
        );
        let message = reason(parse(r#"["crm"]"#));
        assert!(
            message.starts_with("`LEADSCORE_TARGETS` is not a JSON object"),
            "{message}"
        );
        let message = reason(parse(r#"{"crm": {"type": "sns", "topic": "x"}}"#));
        assert!(
            message.contains("target `crm`: unknown variant `sns`"),
            "{message}"
        );
        let message = reason(parse(
            r#"{"crm": {"type": "webhook", "url": "https://a.example"}}"#,
        ));
        assert!(message.contains("missing field `secret`"), "{message}");
        let message = reason(parse(
            r#"{"crm": {"type": "eventbridge", "bus": "b", "secert": "x"}}"#,
        ));
        assert!(message.contains("unknown field `secert`"), "{message}");
        let message = reason(parse(r#"{"crm": {"type": "eventbridge", "bus": " "}}"#));
        assert!(message.contains("the bus is empty"), "{message}");
        let message = reason(parse(r#"{"crm": {"bus": "b"}}"#));
        assert!(message.contains("missing field `type`"), "{message}");
    }

    #[test]
    fn config_needs_a_table() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(Config::from_vars(vars(&[])), Err(ConfigError::NoTable));
        assert_eq!(
            Config::from_vars(vars(&[("LEADSCORE_TABLE", " ")])),
            Err(ConfigError::NoTable)
        );
        let config = Config::from_vars(vars(&[
            ("LEADSCORE_TABLE", "leadscore"),
            ("LEADSCORE_EVENT_BUS", "leadscore-bus"),
        ]))
        .unwrap();
        assert_eq!(config.table, "leadscore");
        assert_eq!(config.targets.default_bus(), Some("leadscore-bus"));
        let err = Config::from_vars(vars(&[
            ("LEADSCORE_TABLE", "leadscore"),
            ("LEADSCORE_TARGETS", "{\"crm\": 1"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::Json(_)), "{err}");
    }
}
