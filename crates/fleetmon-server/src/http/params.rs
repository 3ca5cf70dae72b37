//! Query-string parameters whose rejections are fleetmon errors, not axum's plain-text ones, and
//! the time-window parameters the overview and the metrics share.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Deserialize;

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

/// `range`, `since`, `until` (see [`Window::parse`]).
#[derive(Debug, Default, Deserialize)]
pub struct WindowQuery {
    range: Option<String>,
    since: Option<String>,
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
