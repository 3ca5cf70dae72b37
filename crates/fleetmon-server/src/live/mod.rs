//! Live updates across replicas: writes announce what they changed with `NOTIFY` in their own
//! transaction ([`changes`]); one listener per process receives every announcement
//! ([`listener`]) and hands it to the streaming clients of that org ([`hub`]), whose streams
//! load the new state under row-level security (`http::stream`, one load per org at a time).

pub mod changes;
pub mod hub;
pub mod listener;

pub use changes::{Changes, MAX_IDS};
pub use hub::{Hub, HubStats, Owed, Resync, Subscription, RECENT_IDS};
