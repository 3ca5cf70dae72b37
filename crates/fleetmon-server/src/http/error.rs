//! The HTTP layer's error type: every failure becomes `{"error":{"code","message"}}` with a
//! fitting status. Internal details are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fleetmon_proto::ErrorBody;

use crate::auth::stack_sync::StackSyncError;
use crate::auth::svix::SvixError;
use crate::db::DbError;
use crate::ingest::IngestError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// No or unusable credentials; answered with `WWW-Authenticate`.
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Too many attempts; retry after the given number of seconds.
    #[error("{message}")]
    TooManyRequests { retry_after: u64, message: String },
    /// Over a rate limit; retry after the given number of seconds.
    #[error("{message}")]
    RateLimited { retry_after: u64, message: String },
    /// An upstream identity provider failed.
    #[error("{message}")]
    BadGateway { code: &'static str, message: String },
    #[error("{message}")]
    PayloadTooLarge { code: &'static str, message: String },
    #[error("{message}")]
    UnsupportedMediaType { code: &'static str, message: String },
    /// The service cannot answer right now; clients should retry shortly.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// A bug or an unexpected failure: logged in full, reported without details.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::BadGateway { code, .. } => (StatusCode::BAD_GATEWAY, code),
            Self::PayloadTooLarge { code, .. } => (StatusCode::PAYLOAD_TOO_LARGE, code),
            Self::UnsupportedMediaType { code, .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, code),
            Self::Unavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match &error {
            // Every pooled connection stayed busy for the whole acquire timeout: shed the load
            // rather than queue without end.
            DbError::Sql(sqlx::Error::PoolTimedOut) => Self::Unavailable {
                code: "database_busy",
                message: "every database connection is in use; retry shortly".into(),
            },
            DbError::Sql(sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => Self::Unavailable {
                code: "database_unavailable",
                message: "the database is unreachable; retry shortly".into(),
            },
            // The server is shutting down, starting up or out of connections, or dropped ours.
            DbError::Sql(sqlx::Error::Database(db))
                if db.code().is_some_and(|code| {
                    code.starts_with("08") || code.starts_with("57P") || code == "53300"
                }) =>
            {
                Self::Unavailable {
                    code: "database_unavailable",
                    message: "the database is unreachable; retry shortly".into(),
                }
            }
            _ => Self::Internal(error.to_string()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        let code = error.code();
        let message = error.to_string();
        match error {
            IngestError::BodyTooLarge { .. } | IngestError::TooManyEvents { .. } => {
                Self::PayloadTooLarge { code, message }
            }
            _ => Self::BadRequest { code, message },
        }
    }
}

impl From<SvixError> for ApiError {
    fn from(error: SvixError) -> Self {
        Self::Unauthorized {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

impl From<StackSyncError> for ApiError {
    fn from(error: StackSyncError) -> Self {
        let message = error.to_string();
        match error {
            StackSyncError::Malformed(_) => Self::BadRequest {
                code: "malformed_event",
                message,
            },
            StackSyncError::Replayed(_) => Self::Conflict {
                code: "replayed_delivery",
                message,
            },
            StackSyncError::Contended => Self::Unavailable {
                code: "contended",
                message,
            },
            StackSyncError::Db(error) => error.into(),
            StackSyncError::NoSlug(_) => Self::Internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        };
        let body = Json(ErrorBody::new(code, self.to_string()));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        response
    }
}
