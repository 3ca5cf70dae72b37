//! Query-string parameters whose rejections are fleetmon errors (`{"error":{"code","message"}}`),
//! not axum's plain-text ones: `?limit=abc` is a 400 `invalid_query` naming the problem.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
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
