//! IMAP account settings (from `imaps://user@host[:port]/Folder`), the connection (implicit
//! TLS, STARTTLS, or plain on loopback only) and the login (LOGIN or AUTHENTICATE PLAIN).

use super::date_range::DateRange;
use super::source::{Position, SourceError, DEFAULT_MAX_MESSAGE_SIZE};
use async_imap::{Client, Session};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapSecurity {
    /// TLS from the first byte (`imaps://`, port 993).
    ImplicitTls,
    /// Plain connection upgraded with STARTTLS before login (`imap://`, port 143).
    StartTls,
    /// No TLS at all: refused unless the server is on a loopback address (tests).
    Plain,
}

/// How the password is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapAuth {
    /// AUTHENTICATE PLAIN when the server announces it, else LOGIN.
    Auto,
    Login,
    Plain,
}

/// Everything needed to read an IMAP account.
#[derive(Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Never part of the URL or the command line: from an environment variable or a prompt.
    pub password: String,
    pub security: ImapSecurity,
    pub auth: ImapAuth,
    /// Folders to read, in this order; empty means INBOX.
    pub folders: Vec<String>,
    /// Only these UIDs (inclusive), in each folder.
    pub uid_range: Option<(u32, u32)>,
    /// Restricts the server-side SEARCH (on INTERNALDATE).
    pub date_range: DateRange,
    /// Extra CA certificate(s) to trust, PEM (a private CA, or a test's self-signed cert).
    pub ca_file: Option<PathBuf>,
    /// Trust the system's CA certificates too (off in tests, so only `ca_file` counts).
    pub system_roots: bool,
    /// Messages fetched per round trip, at most; a batch also stops at `batch_bytes`.
    pub batch_size: usize,
    pub batch_bytes: u64,
    pub max_message_size: u64,
    /// Longest wait for any server answer before the connection counts as lost.
    pub timeout: Duration,
    /// Resume strictly after this `Position::Imap`: its folder's earlier folders (in
    /// `folders` order) are skipped, its folder resumes at the next UID.
    pub resume_after: Option<Position>,
    /// Refuse servers that resolve only to non-public addresses (loopback, private
    /// networks, ...): set for imports started through the API, so that a web request
    /// cannot make Postern connect to services inside its own network.
    pub public_only: bool,
}

impl std::fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("security", &self.security)
            .field("folders", &self.folders)
            .finish_non_exhaustive()
    }
}

impl ImapConfig {
    /// Settings from `imaps://user@host[:port]/Folder` (or `imap://` for STARTTLS). The user
    /// may be percent-encoded (`me%40example.com@imap.example.com`); a password in the URL is
    /// refused. The folder in the URL, if any, is the one folder read.
    pub fn from_url(url: &str, password: String) -> Result<Self, SourceError> {
        let bad = |reason: &str| SourceError::BadImapUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let (security, default_port) = match parsed.scheme() {
            "imaps" => (ImapSecurity::ImplicitTls, 993),
            "imap" => (ImapSecurity::StartTls, 143),
            _ => return Err(bad("the scheme must be imaps:// (or imap:// for STARTTLS)")),
        };
        if parsed.password().is_some() {
            let mut shown = parsed.clone();
            let _ = shown.set_password(Some("***"));
            return Err(SourceError::BadImapUrl {
                url: shown.to_string(),
                reason:
                    "the password must not be in the URL (it would show in the process list and \
                 the shell history); give it in the environment or at the prompt"
                        .to_string(),
            });
        }
        let user = percent_decode(parsed.username());
        if user.is_empty() {
            return Err(bad("the user name is missing"));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("the host is missing"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let folder = percent_decode(parsed.path().trim_start_matches('/'));
        Ok(Self {
            host,
            port: parsed.port().unwrap_or(default_port),
            user,
            password,
            security,
            auth: ImapAuth::Auto,
            folders: if folder.is_empty() {
                Vec::new()
            } else {
                vec![folder]
            },
            uid_range: None,
            date_range: DateRange::default(),
            ca_file: None,
            system_roots: true,
            batch_size: 200,
            batch_bytes: 32 * 1024 * 1024,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            timeout: Duration::from_secs(120),
            resume_after: None,
            public_only: false,
        })
    }

    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain or TLS connection, one type for the IMAP client.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub type ImapSession = Session<ImapStream>;

/// The TCP connection to the server. With `public_only`, the name is resolved here and only
/// a public address is dialled (the address checked is the address used).
async fn open_tcp(config: &ImapConfig) -> Result<TcpStream, String> {
    if !config.public_only {
        return TcpStream::connect((config.host.as_str(), config.port))
            .await
            .map_err(|e| e.to_string());
    }
    let resolved: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((config.host.as_str(), config.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", config.host))?
            .collect();
    let public: Vec<_> = resolved
        .iter()
        .copied()
        .filter(|a| crate::domain::is_public_ip(a.ip()))
        .collect();
    if public.is_empty() {
        let list: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
        return Err(format!(
            "refused: {} resolves only to non-public addresses ({}); this server imports over \
             IMAP only from hosts on the public Internet (the operator can set \
             imports.allow_private_imap = true)",
            config.host,
            list.join(", ")
        ));
    }
    let mut last = String::new();
    for addr in public {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// Connects, protects the connection as configured and logs in.
pub async fn connect_and_login(config: &ImapConfig) -> Result<ImapSession, SourceError> {
    let server = config.server();
    let timeout = config.timeout;
    let connect_error = |reason: String| SourceError::ImapConnect {
        server: server.clone(),
        reason,
    };
    let tcp = tokio::time::timeout(timeout, open_tcp(config))
        .await
        .map_err(|_| connect_error(format!("no answer within {timeout:?}")))?
        .map_err(connect_error)?;
    if config.security == ImapSecurity::Plain {
        let loopback = tcp.peer_addr().is_ok_and(|a| a.ip().is_loopback());
        if !loopback {
            return Err(connect_error(
                "a plain (unencrypted) connection is only allowed to a loopback address; use \
                 imaps:// or STARTTLS"
                    .into(),
            ));
        }
    }
    let stream = match config.security {
        ImapSecurity::ImplicitTls => ImapStream::Tls(Box::new(tls_handshake(config, tcp).await?)),
        _ => ImapStream::Plain(tcp),
    };
    let mut client = Client::new(stream);
    let greeting = tokio::time::timeout(timeout, client.read_response())
        .await
        .map_err(|_| connect_error("no greeting from the server".into()))?
        .map_err(|e| connect_error(e.to_string()))?
        .ok_or_else(|| connect_error("the server closed the connection at once".into()))?;
    let mut capabilities = greeting_capabilities(greeting.parsed());
    if config.security == ImapSecurity::StartTls {
        tokio::time::timeout(timeout, client.run_command_and_check_ok("STARTTLS", None))
            .await
            .map_err(|_| connect_error("no answer to STARTTLS".into()))?
            .map_err(|e| SourceError::Tls {
                server: server.clone(),
                reason: format!("the server refused STARTTLS ({e})"),
            })?;
        let ImapStream::Plain(tcp) = client.into_inner() else {
            return Err(connect_error("STARTTLS on a TLS connection".into()));
        };
        client = Client::new(ImapStream::Tls(Box::new(tls_handshake(config, tcp).await?)));
        // Capabilities seen before TLS are not trusted after it.
        capabilities = None;
    }
    let use_plain = match config.auth {
        ImapAuth::Plain => true,
        ImapAuth::Login => false,
        ImapAuth::Auto => capabilities
            .as_deref()
            .is_some_and(|c| c.iter().any(|c| c.eq_ignore_ascii_case("AUTH=PLAIN"))),
    };
    let refused = |method: &'static str, e: async_imap::error::Error| match e {
        async_imap::error::Error::No(reason) | async_imap::error::Error::Bad(reason) => {
            SourceError::ImapLoginRefused {
                server: server.clone(),
                user: config.user.clone(),
                method,
                reason,
            }
        }
        other => connect_error(format!("{method} failed: {other}")),
    };
    let login = async {
        if use_plain {
            client
                .authenticate(
                    "PLAIN",
                    PlainAuth {
                        user: config.user.clone(),
                        password: config.password.clone(),
                    },
                )
                .await
                .map_err(|(e, _)| refused("AUTHENTICATE PLAIN", e))
        } else {
            client
                .login(&config.user, &config.password)
                .await
                .map_err(|(e, _)| refused("LOGIN", e))
        }
    };
    tokio::time::timeout(timeout, login)
        .await
        .map_err(|_| connect_error("no answer to the login".into()))?
}

/// The CAPABILITY list in the greeting (`* OK [CAPABILITY ...]`), when the server sends one.
fn greeting_capabilities(greeting: &async_imap::imap_proto::Response<'_>) -> Option<Vec<String>> {
    use async_imap::imap_proto::{Capability, Outcome, Response, ResponseCode};
    match greeting {
        Response::Data {
            outcome:
                Outcome {
                    code: Some(ResponseCode::Capabilities(caps)),
                    ..
                },
            ..
        } => Some(
            caps.iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4rev1".to_string(),
                    Capability::Auth(a) => format!("AUTH={a}"),
                    Capability::Atom(a) => a.to_string(),
                })
                .collect(),
        ),
        _ => None,
    }
}

struct PlainAuth {
    user: String,
    password: String,
}

impl async_imap::Authenticator for PlainAuth {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        // RFC 4616: authzid NUL authcid NUL password, with an empty authzid.
        let mut r = Vec::with_capacity(self.user.len() + self.password.len() + 2);
        r.push(0);
        r.extend_from_slice(self.user.as_bytes());
        r.push(0);
        r.extend_from_slice(self.password.as_bytes());
        r
    }
}

async fn tls_handshake(
    config: &ImapConfig,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, SourceError> {
    let server = config.server();
    let tls_error = |reason: String| SourceError::Tls {
        server: server.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    if config.system_roots {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system certificate is skipped, as every TLS client does.
            let _ = roots.add(cert);
        }
    }
    if let Some(ca_file) = &config.ca_file {
        let pem = std::fs::read(ca_file)
            .map_err(|e| tls_error(format!("cannot read CA file {}: {e}", ca_file.display())))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert
                .map_err(|e| tls_error(format!("CA file {} is not PEM: {e}", ca_file.display())))?;
            roots.add(cert).map_err(|e| {
                tls_error(format!(
                    "CA file {}: unusable certificate: {e}",
                    ca_file.display()
                ))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(tls_error(format!(
                "CA file {} holds no certificate",
                ca_file.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(config.host.clone())
        .map_err(|e| tls_error(format!("invalid server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    tokio::time::timeout(config.timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| tls_error("no answer during the TLS handshake".into()))?
        .map_err(|e| tls_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_imap_urls() {
        let c = ImapConfig::from_url(
            "imaps://me%40shop.example@mail.example:1993/Archive%202023",
            "pw".into(),
        );
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.user, "me@shop.example");
        assert_eq!(c.host, "mail.example");
        assert_eq!(c.port, 1993);
        assert_eq!(c.folders, vec!["Archive 2023".to_string()]);
        assert_eq!(c.security, ImapSecurity::ImplicitTls);
        let c = ImapConfig::from_url("imap://u@h", String::new())
            .map(|c| (c.port, c.security, c.folders));
        assert_eq!(c.ok(), Some((143, ImapSecurity::StartTls, Vec::new())));
        for bad in [
            "imaps://u:secret@h/INBOX",
            "imaps://h/INBOX",
            "https://u@h/",
            "nonsense",
        ] {
            assert!(ImapConfig::from_url(bad, String::new()).is_err(), "{bad}");
        }
        let err = ImapConfig::from_url("imaps://u:secret@h/", String::new()).err();
        let shown = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            shown.contains("must not be in the URL") && !shown.contains("secret"),
            "{shown}"
        );
    }
}
