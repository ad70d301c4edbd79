//! `on_change = { webhook = "...", command = [...] }` of a health check: the hooks run on a
//! backend's health transitions (delivered by the proxy's notifier).

use std::fmt;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Deserializer};

use super::PositiveDuration;

/// `on_change = { webhook = "http://...", command = ["prog", "arg"], timeout = "5s" }`.
///
/// Parsing runs [`check`](OnChangeConfig::check), so a file cannot hold an invalid one;
/// call it for values built in code.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "Raw")]
pub struct OnChangeConfig {
    /// Where to POST each event.
    pub webhook: Option<WebhookUrl>,
    /// The program and its arguments, run for each event without a shell.
    pub command: Option<Vec<String>>,
    /// How long one hook run (a POST or a command) may take; default 5s.
    pub timeout: PositiveDuration,
}

impl OnChangeConfig {
    /// An error when neither hook is set, or `command` names no program.
    pub fn check(&self) -> Result<(), String> {
        match (&self.webhook, self.command.as_deref()) {
            (None, None) => Err("needs `webhook`, `command` or both".into()),
            (_, Some([])) => Err("`command` needs at least the program to run".into()),
            (_, Some([program, ..])) if program.is_empty() => {
                Err("`command` starts with an empty program name".into())
            }
            _ => Ok(()),
        }
    }
}

/// The file's spelling of [`OnChangeConfig`], before [`OnChangeConfig::check`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    webhook: Option<WebhookUrl>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    timeout: PositiveDuration,
}

fn default_timeout() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(5))
}

impl TryFrom<Raw> for OnChangeConfig {
    type Error = String;

    fn try_from(raw: Raw) -> Result<Self, String> {
        let (webhook, command, timeout) = (raw.webhook, raw.command, raw.timeout);
        let config = Self {
            webhook,
            command,
            timeout,
        };
        config.check().map(|()| config)
    }
}

/// An absolute `http://` URL (not `https://`: the proxy has no TLS client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(Uri);

impl WebhookUrl {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL ({e})"))?;
        match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") if uri.authority().is_some_and(|a| a.as_str().contains('@')) => Err(
                format!("{text:?}: credentials in the URL are not supported"),
            ),
            Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(Self(uri)),
            Some("http") => Err(format!("{text:?} has no host")),
            Some("https") => Err(format!("{text:?}: https is not supported; use http://")),
            _ => Err(format!(
                "{text:?} is not an http:// URL such as \"http://127.0.0.1:9000/hook\""
            )),
        }
    }

    /// The URL.
    pub fn uri(&self) -> &Uri {
        &self.0
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}
