//! One HTTP exchange with `POST /api/v1/ingest`, and what its answer means for the batch:
//! stored, worth retrying, or refused for good. No retry logic lives here; see `deliver`.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use chrono::Utc;
use flate2::write::GzEncoder;
use flate2::Compression;
use fleetmon_proto::ingest::{Batch, IngestResponse};
use fleetmon_proto::{ErrorBody, ErrorDetail};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{redirect, StatusCode, Url};

use crate::backoff::parse_retry_after;
use crate::{ClientConfig, StartError};

const USER_AGENT: &str = concat!("fleetmon-client/", env!("CARGO_PKG_VERSION"));

/// An HTTP client bound to one server and one token.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    url: Url,
    /// `Bearer <token>`, marked sensitive so that HTTP-level debug output hides it.
    authorization: HeaderValue,
    gzip: bool,
}

/// What an attempt came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server processed the batch; rejected events are listed in the response.
    Ingested(IngestResponse),
    /// Nothing is known to have gone wrong with the batch itself: resend it.
    Transient {
        cause: TransientCause,
        retry_after: Option<Duration>,
    },
    /// The server refused the whole request; resending it unchanged would be refused again.
    Refused {
        status: StatusCode,
        error: Option<ErrorDetail>,
    },
    /// A success status with a body that is not an ingest response (a proxy's page, say). The
    /// events may or may not be stored; retrying forever on a misrouted URL would not help.
    Unreadable { status: StatusCode, reason: String },
}

#[derive(Debug)]
pub(crate) enum TransientCause {
    /// Connection refused or reset, timeout, or a body cut short.
    Network(reqwest::Error),
    /// 429 or 5xx.
    Status(StatusCode),
}

impl fmt::Display for TransientCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(error) => write!(f, "{error}"),
            Self::Status(status) => write!(f, "HTTP {status}"),
        }
    }
}

impl Transport {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, StartError> {
        let url = ingest_url(&config.base_url)?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", config.token))
            .map_err(|_| StartError::InvalidToken)?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // An ingest endpoint has no business redirecting, and following one would turn the
            // POST into a GET (301/302) or carry the token to another host.
            .redirect(redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Self {
            http,
            url,
            authorization,
            gzip: config.gzip,
        })
    }

    /// The request body for `batch`, compressed if so configured. Done once per batch, so that
    /// retries resend the very same bytes.
    pub(crate) fn encode(&self, batch: &Batch) -> io::Result<Vec<u8>> {
        let json = serde_json::to_vec(batch)?;
        if !self.gzip {
            return Ok(json);
        }
        // The fastest level already gets most of the gain on repetitive JSON, for a fraction
        // of the CPU of the default level: the agent's host is busy with real work.
        let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        encoder.write_all(&json)?;
        encoder.finish()
    }

    /// Sends one encoded batch and classifies the answer.
    pub(crate) async fn post(&self, body: Vec<u8>) -> Outcome {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json");
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => return network(error),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        match response.bytes().await {
            Ok(body) => classify(status, retry_after, &body),
            Err(error) => network(error),
        }
    }
}

fn network(error: reqwest::Error) -> Outcome {
    Outcome::Transient {
        cause: TransientCause::Network(error),
        retry_after: None,
    }
}

/// The meaning of a status and body, per the ingest API: 2xx carries per-event results, 429 and
/// 5xx are the server's transient trouble, any other status is about the request as a whole.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    if status.is_success() {
        return match serde_json::from_slice::<IngestResponse>(body) {
            Ok(response) => Outcome::Ingested(response),
            Err(error) => Outcome::Unreadable {
                status,
                reason: error.to_string(),
            },
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Outcome::Transient {
            cause: TransientCause::Status(status),
            retry_after,
        };
    }
    Outcome::Refused {
        status,
        // Only the parsed error body is kept: a raw body from some proxy could echo anything,
        // and it must not end up in logs.
        error: serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .map(|body| body.error),
    }
}

/// `{base_url}/api/v1/ingest`, checked up front so that a typo fails `start` instead of being
/// retried forever in the background.
fn ingest_url(base_url: &str) -> Result<Url, StartError> {
    let invalid = |reason: &str| StartError::InvalidUrl {
        url: base_url.to_string(),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(base_url).map_err(|error| invalid(&error.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "rustls") => {}
        "https" => return Err(StartError::HttpsUnsupported),
        _ => return Err(invalid("the scheme must be http or https")),
    }
    if url.host().is_none() {
        return Err(invalid("there is no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL takes no query or fragment"));
    }
    let path = format!("{}/api/v1/ingest", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn the_ingest_path_is_appended_to_the_base_url() {
        let url = |base: &str| ingest_url(base).map(|url| url.to_string());
        assert_eq!(
            url("http://localhost:8080").unwrap(),
            "http://localhost:8080/api/v1/ingest"
        );
        assert_eq!(
            url("http://proxy/fleetmon/").unwrap(),
            "http://proxy/fleetmon/api/v1/ingest"
        );
        assert!(matches!(
            url("localhost:8080"),
            Err(StartError::InvalidUrl { .. })
        ));
        assert!(matches!(
            url("ftp://host"),
            Err(StartError::InvalidUrl { .. })
        ));
        assert!(matches!(
            url("http://host/?x=1"),
            Err(StartError::InvalidUrl { .. })
        ));
    }

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn https_needs_the_rustls_feature() {
        assert!(matches!(
            ingest_url("https://fleetmon.example"),
            Err(StartError::HttpsUnsupported)
        ));
    }

    #[test]
    fn statuses_are_classified_per_the_ingest_api() {
        let ok = br#"{"accepted":2,"duplicates":1,"rejected":[]}"#;
        assert!(matches!(
            classify(StatusCode::OK, None, ok),
            Outcome::Ingested(IngestResponse {
                accepted: 2,
                duplicates: 1,
                ..
            })
        ));
        assert!(matches!(
            classify(StatusCode::OK, None, b"<html>"),
            Outcome::Unreadable { .. }
        ));
        for status in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(
                matches!(
                    classify(status, Some(Duration::ZERO), b""),
                    Outcome::Transient {
                        retry_after: Some(Duration::ZERO),
                        ..
                    }
                ),
                "{status}"
            );
        }
        let refused =
            br#"{"error":{"code":"revoked_token","message":"the token has been revoked"}}"#;
        match classify(StatusCode::UNAUTHORIZED, None, refused) {
            Outcome::Refused {
                status,
                error: Some(error),
            } => {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                assert_eq!(error.code, "revoked_token");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, None, b"nope"),
            Outcome::Refused { error: None, .. }
        ));
        assert!(matches!(
            classify(StatusCode::MOVED_PERMANENTLY, None, b""),
            Outcome::Refused { .. }
        ));
    }

    #[test]
    fn gzip_bodies_decode_to_the_batch() {
        let mut config = ClientConfig::new("http://localhost", "t");
        let batch = Batch {
            events: vec![crate::event(fleetmon_proto::ingest::EventBody::JobStarted(
                fleetmon_proto::ingest::JobRef::new("job-1"),
            ))],
        };
        let gzipped = Transport::new(&config).unwrap().encode(&batch).unwrap();
        let mut json = Vec::new();
        GzDecoder::new(gzipped.as_slice())
            .read_to_end(&mut json)
            .unwrap();
        assert_eq!(serde_json::from_slice::<Batch>(&json).unwrap(), batch);

        config.gzip = false;
        let plain = Transport::new(&config).unwrap().encode(&batch).unwrap();
        assert_eq!(plain, json);
    }
}
