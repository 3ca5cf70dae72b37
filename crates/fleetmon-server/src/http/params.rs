//! Query-string parameters whose rejections are fleetmon errors, not axum's plain-text ones, and
//! the time-window parameters the overview and the metrics share.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;
use crate::query::window::{Window, WindowError, WindowParams};

pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest {
                code: "invalid_query",
                message: rejection.body_text(),
            }),
        }
    }
}

/// The window `[since, until)`: both, or either with `range` (its length); `until` defaults to
/// now and `range` to 24h.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// A duration: `1h`, `24h`, `7d`, `30d`, or any `<n>s|m|h|d`.
    range: Option<String>,
    /// RFC 3339, e.g. `2026-01-31T12:00:00Z`.
    since: Option<String>,
    /// RFC 3339; the window ends just before it.
    until: Option<String>,
}

impl WindowQuery {
    pub fn window(&self) -> Result<Window, ApiError> {
        let params = WindowParams {
            range: self.range.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        };
        Ok(Window::parse(params, Utc::now())?)
    }
}

/// A parameter's value; an empty one (as HTML forms send for an unset field) is no value.
pub fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl From<WindowError> for ApiError {
    fn from(error: WindowError) -> Self {
        Self::BadRequest {
            code: error.code(),
            message: error.to_string(),
        }
    }
}
