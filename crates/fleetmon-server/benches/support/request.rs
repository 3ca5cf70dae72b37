//! One timed request of a benchmark: a GET that must answer 200 (anything else is a broken run,
//! not a slow one).

/// GETs `url`, with `bearer` as the `Authorization` when given, and reads the whole body.
pub async fn get_ok(http: &reqwest::Client, url: &str, bearer: Option<&str>) {
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the in-process server answers");
    let status = response.status();
    let body = response.bytes().await.expect("the response body");
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
}
