//! Making events: the SDK picks the id and the time, which are the two fields agents get wrong.

use chrono::Utc;
use fleetmon_proto::ingest::{Event, EventBody};
use uuid::Uuid;

/// An event happening now, with a fresh random id.
///
/// The id is the server's idempotency key: create the event once and resend that same value
/// (the client does so on retries), never call `event` again for the same occurrence.
pub fn event(body: EventBody) -> Event {
    Event {
        id: Uuid::new_v4(),
        at: Utc::now(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use fleetmon_proto::ingest::JobRef;

    use super::*;

    #[test]
    fn each_event_gets_its_own_id() {
        let body = EventBody::JobStarted(JobRef::new("job-1"));
        let (a, b) = (event(body.clone()), event(body));
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.get_version_num(), 4);
    }
}
