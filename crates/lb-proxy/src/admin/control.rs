//! The admin listener's control-plane state: operator actions on backends (disable,
//! drain, enable) and since when they hold. When a backend's health last changed is the
//! health monitor's ([`BackendState::health_since`](lb_core::BackendState::health_since)).
//!
//! Disabling and draining both set the backend's maintenance bit
//! ([`BackendState::set_maintenance`](lb_core::BackendState::set_maintenance)): selection
//! skips it at once, requests in flight finish. The two differ only in what `/status`
//! reports: a draining backend says when its last in-flight request ended. Nothing here is
//! touched by the request path.

use std::collections::HashMap;
use std::time::SystemTime;

use lb_core::{Backend, BackendAddr};
use parking_lot::Mutex;

/// What an operator asked of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// No new requests until enabled again.
    Disable,
    /// No new requests; in-flight ones finish; `/status` reports when it is drained.
    Drain,
    /// Undoes disable and drain.
    Enable,
}

/// The operator's hold on a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `disable`.
    Disabled,
    /// `drain`.
    Draining,
}

/// Per (upstream, backend address).
type Key = (String, BackendAddr);

/// Operator holds, and when the proxy started.
#[derive(Debug)]
pub(crate) struct Control {
    /// When the proxy started: "since" for backends that never changed.
    started: SystemTime,
    /// Operator holds, with when they began.
    modes: Mutex<HashMap<Key, (Mode, SystemTime)>>,
}

impl Action {
    /// `disable`, `drain` or `enable`.
    pub(crate) fn parse(word: &str) -> Option<Self> {
        match word {
            "disable" => Some(Self::Disable),
            "drain" => Some(Self::Drain),
            "enable" => Some(Self::Enable),
            _ => None,
        }
    }
}

impl Mode {
    /// The word `/status` shows.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Draining => "draining",
        }
    }
}

impl Control {
    /// State as of now.
    pub(crate) fn new() -> Self {
        Self {
            started: SystemTime::now(),
            modes: Mutex::new(HashMap::new()),
        }
    }

    /// Applies `action` to `backend` of `upstream`.
    pub(crate) fn apply(&self, upstream: &str, backend: &Backend, action: Action) {
        let key = (upstream.to_owned(), backend.addr().clone());
        let mut modes = self.modes.lock();
        match action {
            Action::Enable => {
                backend.state().set_maintenance(false);
                modes.remove(&key);
            }
            Action::Disable | Action::Drain => {
                let mode = if action == Action::Drain {
                    Mode::Draining
                } else {
                    Mode::Disabled
                };
                backend.state().set_maintenance(true);
                let since = match modes.get(&key) {
                    Some((m, since)) if *m == mode => *since,
                    _ => SystemTime::now(),
                };
                modes.insert(key, (mode, since));
            }
        }
        tracing::info!(upstream, backend = %backend, action = ?action, "admin action");
    }

    /// The operator's hold on `backend`, if it is in maintenance, and since when.
    pub(crate) fn mode(&self, upstream: &str, backend: &Backend) -> Option<(Mode, SystemTime)> {
        if !backend.state().in_maintenance() {
            return None;
        }
        let key = (upstream.to_owned(), backend.addr().clone());
        Some(
            self.modes
                .lock()
                .get(&key)
                .copied()
                .unwrap_or((Mode::Disabled, self.started)),
        )
    }

    /// When `backend`'s health last changed, as its monitor published it (the start of
    /// the proxy if it never did).
    pub(crate) fn health_since(&self, backend: &Backend) -> SystemTime {
        backend.state().health_since().unwrap_or(self.started)
    }
}
