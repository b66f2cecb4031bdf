//! Joins over stores: plain library code, so their state survives restarts, savepoints
//! and hot upgrades like any other.
//!
//! Two kinds: a stream–table join ([`TableJoin`]) and a windowed stream–stream join
//! ([`WindowJoin`]).
//!
//! A stream–table join keeps the table in a store, the latest value per key (a record
//! with an empty value deletes its key, as a tombstone in a compacted topic), and looks
//! each stream event's key up in it. As in Kafka Streams, a table update changes what
//! later stream events find and never what earlier ones found.
//!
//! ```
//! use eddy_guest::join::{Lookup, TableJoin};
//! use eddy_guest::prelude::*;
//!
//! struct Enrich {
//!     customers: TableJoin,
//! }
//!
//! impl Operator for Enrich {
//!     fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
//!         match event.input().as_deref() {
//!             Some("customers") => self.customers.update(ctx, &event),
//!             _ => {
//!                 let Some(found) = self.customers.join(ctx, &event)? else {
//!                     return Ok(()); // an inner join drops orders without a customer
//!                 };
//!                 let customer = match found {
//!                     Lookup::Found(row) => String::from_utf8_lossy(&row).into_owned(),
//!                     Lookup::Missing => "unknown".into(),
//!                 };
//!                 let value = format!("{}:{customer}", event.value_str()?);
//!                 ctx.emit(Event::new(event.key.clone().unwrap_or_default(), value));
//!                 Ok(())
//!             }
//!         }
//!     }
//! }
//!
//! let mut h = eddy_guest::testing::Harness::new(Enrich { customers: TableJoin::inner("customers") }).unwrap();
//! h.process_from("customers", Event::new("c1", "Ada")).unwrap();
//! let out = h.process_from("orders", Event::new("c1", "o1")).unwrap();
//! assert_eq!(out[0].event.value_str().unwrap(), "o1:Ada");
//! assert!(h.process_from("orders", Event::new("c2", "o2")).unwrap().is_empty());
//! ```

use crate::{Context, Error, Event};

pub use crate::join_window::{Joined, Pair, Side, WindowJoin, WindowJoinKind};

/// Which stream events a stream–table join lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Only events whose key has a row.
    Inner,
    /// Every event; those without a row join with [`Lookup::Missing`].
    Left,
}

/// What a stream event found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The key's latest row.
    Found(Vec<u8>),
    /// No row under the key (a left join's event without a match).
    Missing,
}

/// A stream–table join whose table lives in the store `store`.
#[derive(Debug, Clone)]
pub struct TableJoin {
    store: String,
    kind: JoinKind,
}

impl TableJoin {
    /// An inner join with the table in `store`.
    pub fn inner(store: &str) -> Self {
        Self::new(store, JoinKind::Inner)
    }

    /// A left join with the table in `store`.
    pub fn left(store: &str) -> Self {
        Self::new(store, JoinKind::Left)
    }

    pub fn new(store: &str, kind: JoinKind) -> Self {
        TableJoin {
            store: store.to_string(),
            kind,
        }
    }

    pub fn kind(&self) -> JoinKind {
        self.kind
    }

    /// Applies a record of the table input: its value becomes the key's row; an empty
    /// value deletes the row. A keyless record is refused (`Error::BadInput`): a table
    /// row needs a key.
    pub fn update(&self, ctx: &mut Context, event: &Event<'_>) -> Result<(), Error> {
        let Some(key) = &event.key else {
            return Err(Error::bad_input(format!(
                "a record of table {:?} has no key",
                self.store
            )));
        };
        let table = ctx.store(&self.store)?;
        if event.value.is_empty() {
            table.delete(key);
        } else {
            table.set(key, &event.value);
        }
        Ok(())
    }

    /// The row a stream event joins with: `None` when an inner join drops the event (no
    /// row, or no key), else what it found.
    pub fn join(&self, ctx: &mut Context, event: &Event<'_>) -> Result<Option<Lookup>, Error> {
        let row = match &event.key {
            Some(key) => self.row(ctx, key)?,
            None => None,
        };
        Ok(match (row, self.kind) {
            (Some(row), _) => Some(Lookup::Found(row)),
            (None, JoinKind::Left) => Some(Lookup::Missing),
            (None, JoinKind::Inner) => None,
        })
    }

    /// The table's current row under `key`.
    pub fn row(&self, ctx: &mut Context, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
        Ok(ctx.store(&self.store)?.get(key))
    }
}
