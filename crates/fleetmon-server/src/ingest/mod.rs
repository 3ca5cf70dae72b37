//! Ingestion: decoding and validating what agents send, storing it exactly once, and deriving
//! the current state of machines, workers and jobs from it.

pub mod decode;
pub mod fleet;
pub mod jobs;
pub mod series;
pub mod store;

pub use decode::{Framing, Limits};

/// Problems with a whole ingest request (problems with single events are rejections).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request has more than {limit} events; send smaller batches")]
    TooManyEvents { limit: usize },
    #[error("the gzip body could not be decompressed: {0}")]
    BadGzip(String),
    #[error("the body is not valid UTF-8 (at byte {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be {{\"events\": [ … ]}}: {0}")]
    BadBatch(String),
}

impl IngestError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::BadGzip(_) => "bad_gzip",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::MalformedJson(_) => "malformed_json",
            Self::BadBatch(_) => "bad_batch",
        }
    }
}
