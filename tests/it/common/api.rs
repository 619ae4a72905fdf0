//! A client of the HTTP API for the tests: JSON calls with a bearer token, with or without
//! an expected status.

use super::{api_token, TestApp};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// A client of the HTTP API with one bearer token.
pub struct Api {
    pub client: Client,
    /// `http://` and the server's address.
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn new(app: &TestApp, token: &str) -> Self {
        Self {
            client: Client::new(),
            base: format!("http://{}", app.http_addr),
            token: token.to_string(),
        }
    }

    /// A client with a new API token of `role` in `account`.
    pub fn of_role(app: &TestApp, account: i64, role: &str) -> Self {
        Self::new(app, &api_token(app.dir.path(), account, role))
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    /// A request with a body that is not JSON, with or without the token.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        authenticated: bool,
    ) -> (StatusCode, String) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if authenticated {
            req = req.bearer_auth(&self.token);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    pub async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, text) = self.send(method, path, Some(body)).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request that must answer 200; its JSON answer.
    pub async fn call_ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {answer}");
        answer
    }

    /// POSTs a new object, which must answer 201 Created; the object created.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, created) = self.call(Method::POST, path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {created}");
        created
    }

    /// A GET with the token, answered as it comes (downloads, headers, errors).
    pub async fn download(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A request that must answer `status`; its JSON answer (null when it is not JSON).
    pub async fn answer(
        &self,
        status: u16,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let what = format!("{method} {path}");
        let (s, text) = self.send(method, path, body).await;
        assert_eq!(s.as_u16(), status, "{what}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A request: its status and its JSON answer (null when it is not JSON).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, text) = self.send(method, path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
