//! Lambda events as Lambda delivers them, for tests that drive a function the way Lambda does.

use serde_json::{json, Value};

/// A function URL request (payload format 2.0) for `method path` (`path` may carry a query
/// string after `?`, passed raw as `rawQueryString`).
pub fn function_url_request(method: &str, path: &str) -> Value {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    json!({
        "version": "2.0",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {"accept": "application/json", "host": "proof.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "proof",
            "domainName": "proof.lambda-url.us-east-1.on.aws",
            "domainPrefix": "proof",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "sequencer-tests"
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1_767_225_600_000_i64
        },
        "isBase64Encoded": false
    })
}
