//! The dashboard's own CSS, JavaScript and icon, compiled into the binary and served under names
//! that carry a hash of their content: a browser may keep them for a year, and a new build's
//! pages name new files.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::page;

pub struct Asset {
    /// `/assets/<stem>.<hash>.<ext>`.
    pub path: String,
    content_type: &'static str,
    body: &'static [u8],
}

impl Asset {
    fn new(stem: &str, ext: &str, content_type: &'static str, body: &'static [u8]) -> Self {
        let hash = Sha256::digest(body);
        let short: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            path: format!("/assets/{stem}.{short}.{ext}"),
            content_type,
            body,
        }
    }
}

pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    )
});
pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "app",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    )
});
pub static ICON: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "icon",
        "svg",
        "image/svg+xml",
        include_bytes!("assets/icon.svg"),
    )
});

/// `GET /assets/{file}`: only the current build's names; anything else is the 404 page.
pub async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/assets/{file}");
    let Some(asset) = [&*CSS, &*JS, &*ICON]
        .into_iter()
        .find(|asset| asset.path == wanted)
    else {
        return page::not_found();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
