//! Typed metadata attached to a backend by discovery or by the user.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

/// A small typed map (one value per type) carried by a [`Backend`](crate::Backend).
///
/// Metadata never takes part in a backend's equality, order or hash: two discoveries
/// of the same server with different labels are the same backend. Cloning is cheap
/// (values are shared), and inserting copies the map, so a backend already handed to a
/// selector never changes under it.
///
/// ```
/// use lb_core::Metadata;
///
/// #[derive(Debug, PartialEq)]
/// struct Zone(&'static str);
///
/// let meta = Metadata::new().with(Zone("eu-west-1a"));
/// assert_eq!(meta.get::<Zone>(), Some(&Zone("eu-west-1a")));
/// assert_eq!(meta.get::<u32>(), None);
/// ```
#[derive(Clone, Default)]
pub struct Metadata {
    entries: Option<Arc<[Entry]>>,
}

/// One stored value, under the id of its type.
type Entry = (TypeId, Arc<dyn Any + Send + Sync>);

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// This map with `value` stored under its type, replacing any previous value of that type.
    #[must_use]
    pub fn with<T: Any + Send + Sync>(&self, value: T) -> Self {
        let id = TypeId::of::<T>();
        let mut entries: Vec<_> = self
            .entries
            .iter()
            .flat_map(|e| e.iter())
            .filter(|(t, _)| *t != id)
            .cloned()
            .collect();
        entries.push((id, Arc::new(value)));
        Self {
            entries: Some(entries.into()),
        }
    }

    /// The value stored for type `T`, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .as_deref()?
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.as_deref().is_none_or(|e| e.is_empty())
    }
}

/// The position of a backend in its configuration (0 for the first `server` line).
///
/// Attach it as metadata where the order of the configuration matters: nginx's `hash` and
/// `ip_hash` balancers walk servers in the order they were written, so an nginx-compatible
/// mapping needs that order, while a [`BackendSet`](crate::BackendSet) is sorted by address.
/// Backends without it sort after those with it, in set order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigOrder(pub u32);

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.entries.as_deref().map_or(0, |e| e.len());
        f.debug_struct("Metadata").field("entries", &len).finish()
    }
}
