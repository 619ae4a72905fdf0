//! One SMTP transaction to one server (an MX host or the relay), with mail-send's client:
//! greeting, EHLO, STARTTLS (required or opportunistic) or implicit TLS, AUTH, MAIL, one
//! RCPT per recipient, DATA. Errors carry the server's code and whether retrying may help.

use mail_send::{Credentials, SmtpClient};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use smtp_proto::{EhloResponse, Response, EXT_START_TLS};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a delivery (or one recipient of it) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// The SMTP reply code, when a server answered, or the one Postern failed the
    /// recipient with itself ([`Self::refused`]).
    pub code: Option<u16>,
    /// What happened, with the server's words.
    pub message: String,
    transient: bool,
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            code: None,
            message: message.into(),
            transient: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            code: None,
            message: message.into(),
            transient: false,
        }
    }

    /// A recipient Postern fails itself, before any connection, with the reply code a
    /// server would have given (`550` with the enhanced status in `message`): final.
    pub fn refused(code: u16, message: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            message: message.into(),
            transient: false,
        }
    }

    /// A server's negative reply: 4xx is worth retrying, 5xx is final.
    pub fn from_reply(stage: &str, r: &Response<String>) -> Self {
        let esc = if r.esc[0] > 0 {
            format!("{}.{}.{} ", r.esc[0], r.esc[1], r.esc[2])
        } else {
            String::new()
        };
        Self {
            code: Some(r.code),
            message: format!(
                "{stage}: {} {esc}{}",
                r.code,
                r.message.replace(['\r', '\n'], " ")
            ),
            transient: !(500..600).contains(&r.code),
        }
    }

    /// Retrying may succeed: 4xx replies, timeouts, refused or dropped connections.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    fn from_client(stage: &str, e: mail_send::Error) -> Self {
        match e {
            mail_send::Error::UnexpectedReply(r) => Self::from_reply(stage, &r),
            mail_send::Error::AuthenticationFailed(r) => {
                // A relay refusing our credentials is the operator's to fix; the mail must
                // wait for that, not bounce.
                let mut err = Self::from_reply(
                    &format!("{stage} (check outbound.relay.username/password)"),
                    &r,
                );
                err.transient = true;
                err
            }
            mail_send::Error::Timeout => Self::transient(format!("{stage}: timed out")),
            other => Self::transient(format!("{stage}: {other}")),
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// TLS towards the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when offered; the certificate is not checked (RFC 7435 opportunistic
    /// security: better than plain text, no worse when the name does not match).
    Opportunistic,
    /// STARTTLS must succeed.
    Required,
    /// TLS from the first byte.
    Implicit,
    /// Never.
    Off,
}

/// Where and how to connect.
pub struct Connection<'a> {
    pub addr: SocketAddr,
    /// Name for SNI and certificate checks.
    pub tls_name: &'a str,
    pub tls: TlsMode,
    /// Check the certificate against the system's roots (relays), or not (MX hosts).
    pub verify_certs: bool,
    pub helo: &'a str,
    pub credentials: Option<(&'a str, &'a str)>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// What the server said of each recipient; the whole transaction failed when `Err`.
pub type RecipientResults = Vec<(String, Result<(), DeliveryError>)>;

/// Delivers `message` (ending in CRLF, as stored) to `recipients` through one connection.
pub async fn deliver(
    c: &Connection<'_>,
    mail_from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<RecipientResults, DeliveryError> {
    let stream = tokio::time::timeout(c.connect_timeout, TcpStream::connect(c.addr))
        .await
        .map_err(|_| DeliveryError::transient(format!("connecting to {}: timed out", c.addr)))?
        .map_err(|e| DeliveryError::transient(format!("connecting to {}: {e}", c.addr)))?;
    let mut client = SmtpClient {
        stream,
        timeout: c.command_timeout,
    };
    let connector = || tls_connector(c.verify_certs);
    if c.tls == TlsMode::Implicit {
        let mut client = client
            .into_tls(&connector()?, c.tls_name)
            .await
            .map_err(|e| DeliveryError::from_client("TLS handshake", e))?;
        greeting(&mut client).await?;
        let caps = ehlo(&mut client, c.helo).await?;
        return transact(&mut client, &caps, c, mail_from, recipients, message).await;
    }
    greeting(&mut client).await?;
    let caps = ehlo(&mut client, c.helo).await?;
    let offers_tls = caps.has_capability(EXT_START_TLS);
    match c.tls {
        TlsMode::Required if !offers_tls => Err(DeliveryError::transient(format!(
            "{} does not offer STARTTLS, which outbound.relay.tls = \"starttls\" requires",
            c.tls_name
        ))),
        TlsMode::Required | TlsMode::Opportunistic if offers_tls => {
            let mut client = client
                .start_tls(&connector()?, c.tls_name)
                .await
                .map_err(|e| DeliveryError::from_client("STARTTLS", e))?;
            let caps = ehlo(&mut client, c.helo).await?;
            transact(&mut client, &caps, c, mail_from, recipients, message).await
        }
        _ => transact(&mut client, &caps, c, mail_from, recipients, message).await,
    }
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
) -> Result<(), DeliveryError> {
    let r = tokio::time::timeout(client.timeout, client.read())
        .await
        .map_err(|_| DeliveryError::transient("greeting: timed out"))?
        .map_err(|e| DeliveryError::from_client("greeting", e))?;
    if r.is_positive_completion() {
        Ok(())
    } else {
        Err(DeliveryError::from_reply("greeting", &r))
    }
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    helo: &str,
) -> Result<EhloResponse<String>, DeliveryError> {
    client
        .ehlo(helo)
        .await
        .map_err(|e| DeliveryError::from_client("EHLO", e))
}

async fn transact<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    caps: &EhloResponse<String>,
    c: &Connection<'_>,
    mail_from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<RecipientResults, DeliveryError> {
    if let Some((user, secret)) = c.credentials {
        client
            .authenticate(Credentials::new(user, secret), caps)
            .await
            .map_err(|e| DeliveryError::from_client("AUTH", e))?;
    }
    let params = mail_send::smtp::message::Parameters::default();
    client
        .mail_from(mail_from, &params)
        .await
        .map_err(|e| DeliveryError::from_client("MAIL FROM", e))?;
    let mut results = Vec::with_capacity(recipients.len());
    let mut accepted = 0;
    for rcpt in recipients {
        let r = client.rcpt_to(rcpt, &params).await;
        match r {
            Ok(()) => {
                accepted += 1;
                results.push((rcpt.clone(), Ok(())));
            }
            Err(mail_send::Error::UnexpectedReply(r)) => {
                results.push((rcpt.clone(), Err(DeliveryError::from_reply("RCPT TO", &r))));
            }
            // The connection broke: the whole transaction failed.
            Err(e) => return Err(DeliveryError::from_client("RCPT TO", e)),
        }
    }
    if accepted == 0 {
        let _ = client.rset().await;
        return Ok(results);
    }
    // mail-send ends the data with CRLF.CRLF itself: hand it the message without its
    // last line break so the bytes delivered are the bytes signed and stored.
    let body = message.strip_suffix(b"\r\n").unwrap_or(message);
    if let Err(e) = client.data(body).await {
        let err = DeliveryError::from_client("DATA", e);
        for (_, r) in results.iter_mut() {
            if r.is_ok() {
                *r = Err(err.clone());
            }
        }
        return Ok(results);
    }
    let _ = client.cmd(b"QUIT\r\n").await;
    Ok(results)
}

fn tls_connector(verify: bool) -> Result<TlsConnector, DeliveryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DeliveryError::transient(format!("TLS set-up: {e}")))?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Opportunistic TLS to MX hosts: the certificate is not checked, signatures still are.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_retry() {
        let r = |code| Response {
            code,
            esc: [4, 3, 0],
            message: "busy\r\nnow".to_string(),
        };
        let e = DeliveryError::from_reply("DATA", &r(451));
        assert!(e.is_transient());
        assert_eq!(e.code, Some(451));
        assert_eq!(e.message, "DATA: 451 4.3.0 busy  now");
        assert!(!DeliveryError::from_reply("RCPT TO", &r(550)).is_transient());
        assert!(DeliveryError::transient("connection reset").is_transient());
    }
}
