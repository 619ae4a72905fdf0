//! Scaffolding of the SAML end-to-end tests: a tiny HTTP/1.1 client (the browser) and the
//! pysaml2 identity provider (tests/peers/saml_idp.py).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

pub const IDP_ENTITY_ID: &str = "http://idp.test/metadata";
pub const IDP_SSO_URL: &str = "http://idp.test/sso";

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection (Connection: close), as a browser would send it.
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    http_from(None, addr, method, target, headers, body)
}

/// A connection to `addr`, from the local address `from` when given (any of 127.0.0.0/8 on
/// loopback), so that the server sees distinct clients.
fn connect(from: Option<IpAddr>, addr: SocketAddr) -> TcpStream {
    let Some(ip) = from else {
        return TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    socket
        .bind(&SocketAddr::new(ip, 0).into())
        .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    socket.into()
}

/// [`http`] from the local address `from`.
pub fn http_from(
    from: Option<IpAddr>,
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = connect(from, addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

impl HttpResponse {
    /// Every Set-Cookie header of the response.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A browser: its own cookies (kept from Set-Cookie, sent back on every request, attributes
/// ignored as this test server is plain http) and the address it connects from.
pub struct Browser {
    pub from: Option<IpAddr>,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Browser {
    pub fn new(from: Option<IpAddr>) -> Self {
        Self {
            from,
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("jar").get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .expect("jar")
            .insert(name.to_string(), value.to_string());
    }

    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let jar = self
            .cookies
            .lock()
            .expect("jar")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !jar.is_empty() {
            all.push(("Cookie", &jar));
        }
        let r = http_from(self.from, addr, method, target, &all, body);
        for set in r.set_cookies() {
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let mut jar = self.cookies.lock().expect("jar");
                if value.is_empty() || set.contains("Max-Age=0") {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_string(), value.trim().to_string());
                }
            }
        }
        r
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The Python of the venv that scripts/install-deps.sh fills (pysaml2), checked once.
pub fn idp_python() -> PathBuf {
    postern_test_require_xmlsec1();
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import saml2"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test drives the real SAML IdP pysaml2 from {}, which is not installed: run `make test` or scripts/install-deps.sh test",
        python.display()
    );
    python
}

fn postern_test_require_xmlsec1() {
    crate::common::require_program("xmlsec1");
    crate::common::require_program("openssl");
}

/// The IdP's key and certificate, made with openssl in `dir`.
pub fn make_idp_key(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=idp.test",
            "-keyout",
        ])
        .arg(dir.join("idp.key"))
        .arg("-out")
        .arg(dir.join("idp.crt"))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_idp(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/saml_idp.py");
    let out = crate::common::run_ok(
        Command::new(idp_python())
            .arg("-W")
            .arg("ignore")
            .arg(script)
            .args(args),
        &format!("saml_idp.py {args:?} failed"),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn idp_metadata(dir: &Path, with_cert: bool) -> String {
    let d = dir.display().to_string();
    let mut args = vec![
        "metadata",
        "--dir",
        &d,
        "--entity-id",
        IDP_ENTITY_ID,
        "--sso-url",
        IDP_SSO_URL,
    ];
    if !with_cert {
        args.push("--no-signing-cert");
    }
    run_idp(&args)
}

#[derive(Debug, Clone)]
pub struct IdpAnswer {
    pub acs_url: String,
    pub saml_response: String,
    pub relay_state: String,
}

/// The IdP's answer to the sign-in request in `request_url`.
pub fn idp_respond(
    dir: &Path,
    request_url: &str,
    email: &str,
    attrs: &[&str],
    variant: &str,
    in_response_to: Option<&str>,
) -> IdpAnswer {
    let d = dir.display().to_string();
    let sp = dir.join("sp.xml").display().to_string();
    let mut args = vec![
        "respond",
        "--dir",
        &d,
        "--entity-id",
        IDP_ENTITY_ID,
        "--sso-url",
        IDP_SSO_URL,
        "--sp-metadata",
        &sp,
        "--request-url",
        request_url,
        "--email",
        email,
        "--variant",
        variant,
    ];
    for a in attrs {
        args.push("--attr");
        args.push(a);
    }
    if let Some(id) = in_response_to {
        args.push("--in-response-to");
        args.push(id);
    }
    let v: serde_json::Value = serde_json::from_str(&run_idp(&args)).expect("IdP JSON");
    IdpAnswer {
        acs_url: v["acs_url"].as_str().expect("acs_url").to_string(),
        saml_response: v["SAMLResponse"]
            .as_str()
            .expect("SAMLResponse")
            .to_string(),
        relay_state: v["RelayState"].as_str().unwrap_or_default().to_string(),
    }
}
