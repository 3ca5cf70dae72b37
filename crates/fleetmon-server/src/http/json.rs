//! A JSON request body whose rejections are fleetmon errors (`{"error":{"code","message"}}`),
//! not axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use super::ApiError;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Err(ApiError::UnsupportedMediaType {
                    code: "unsupported_media_type",
                    message: "send the body as application/json".into(),
                })
            }
            Err(rejection) => Err(ApiError::BadRequest {
                code: "invalid_body",
                message: rejection.body_text(),
            }),
        }
    }
}
