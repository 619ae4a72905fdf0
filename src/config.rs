//! Settings: the embedded `config/default.toml`, then `--config FILE`, then
//! `POSTERN__SECTION__KEY` environment variables, each layer overriding the one before.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub smtp: SmtpSettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    pub sso: SsoSettings,
    pub inbound: InboundSettings,
    pub threading: ThreadingSettings,
    pub dns: DnsSettings,
    pub auth: AuthSettings,
    pub store: StoreSettings,
    pub rules: RulesSettings,
    pub log: LogSettings,
    pub outbound: OutboundSettings,
    pub imports: ImportSettings,
}

/// Import jobs started through the HTTP API (`postern serve`).
#[derive(Debug, Clone, Deserialize)]
pub struct ImportSettings {
    /// Jobs running at once in the whole server; one more start answers 429.
    pub max_concurrent: usize,
    /// Largest upload (mbox, mbox.gz or .eml), in bytes; a larger one answers 413.
    pub max_upload_size: u64,
    /// Accept `imap://` URLs (STARTTLS after a plain-text greeting) besides `imaps://`.
    pub allow_plain_imap: bool,
    /// Accept IMAP servers on loopback or private networks (tests, an on-premises server).
    pub allow_private_imap: bool,
    /// Messages per transaction.
    pub batch_size: usize,
    /// Most messages per second a job reads, and then commits; 0: no limit.
    pub max_rate: u32,
    /// Per-message size cap; larger messages are quarantined.
    pub max_message_size: u64,
    /// Most bytes a .gz mailbox may decompress to (uploads and `postern import`).
    pub max_decompressed_size: u64,
    /// Most decompressed bytes per compressed byte of a .gz mailbox.
    pub max_compression_ratio: u64,
    /// Most bytes of messages an import's staging copy may hold (API and CLI).
    pub max_staged_size: u64,
}

/// How replies leave: the queue worker, the route (relay or MX) and the retry schedule.
#[derive(Debug, Clone, Deserialize)]
pub struct OutboundSettings {
    pub enabled: bool,
    pub mode: OutboundMode,
    pub helo_name: String,
    pub dkim_selector: String,
    pub dkim_ed25519: bool,
    pub spf_ips: Vec<String>,
    pub spf_include: String,
    pub mx_port: u16,
    pub allow_private_mx: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub command_timeout: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub lease: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: std::time::Duration,
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub lifetime: std::time::Duration,
    pub retry_schedule: Vec<String>,
    pub max_message_size: usize,
    pub max_attachments: usize,
    pub max_recipients: usize,
    pub relay: RelaySettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundMode {
    Mx,
    Relay,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelaySettings {
    pub host: String,
    pub port: u16,
    pub tls: RelayTls,
    pub username: String,
    pub password: String,
    pub allow_invalid_certs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// STARTTLS required.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS when offered, else plain text (local relays only).
    Opportunistic,
    /// Plain text (a relay on this machine).
    None,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RulesSettings {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub scheduler_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub reply_window: Duration,
    pub max_depth: i64,
    pub scheduler_batch: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DnsSettings {
    pub nameservers: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub cache_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub enabled: bool,
    pub trusted_arc_forwarders: Vec<String>,
    pub strict_dmarc: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ThreadingSettings {
    #[serde(with = "humantime_serde")]
    pub subject_window: Duration,
    pub secret: String,
    /// Participant rows one message may add to its ticket (the sender first, then To and
    /// Cc in order); the message itself keeps every address.
    pub max_participants_per_message: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    pub listen: SocketAddr,
    pub hostname: String,
    pub max_message_size: usize,
    pub max_inflight_data: usize,
    /// Message bytes the sessions of one client (see `ipv4_prefix`, `ipv6_prefix`) may hold.
    pub max_inflight_data_per_ip: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Client addresses that count as one for the per-IP limits: IPv4 /32, IPv6 /64.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub max_line_length: usize,
    pub max_received_headers: usize,
    pub max_errors: usize,
    /// Time for a whole command line (not reset by the bytes that trickle in).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Share of `max_connections` in use (percent) from which the server is busy; 0: never.
    pub busy_percent: u8,
    /// Time for a whole command line while the server is busy.
    #[serde(with = "humantime_serde")]
    pub busy_command_timeout: Duration,
    /// Longest wait for the next bytes of message data.
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// Longest time for the data of one message (DATA) or one BDAT chunk.
    #[serde(with = "humantime_serde")]
    pub data_total_timeout: Duration,
    /// Least average rate of message data, in bytes per second, once `data_rate_grace`
    /// has passed; 0: no minimum.
    pub data_min_rate: u64,
    #[serde(with = "humantime_serde")]
    pub data_rate_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TlsSettings {
    pub enabled: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub public_url: String,
    /// Connections served at once (lowered at start if the open-file limit is short).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Time for a whole request head, from the connection's start or the previous response
    /// (so also the keep-alive idle time).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Least average rate of a request body in bytes per second after `body_rate_grace`.
    pub body_min_rate: u64,
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Duration,
    /// Open files kept for everything but connections (see `net::fds`).
    pub reserved_descriptors: u64,
    /// Reverse proxies whose X-Forwarded-For is believed: IP addresses or CIDR networks.
    pub trusted_proxies: Vec<String>,
}

impl HttpSettings {
    /// `trusted_proxies` as networks (a bare address is a network of one). Checked when the
    /// settings load, so this only skips what [`Settings::load`] would have refused.
    pub fn trusted_proxy_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_network(p))
            .collect()
    }
}

/// "10.0.0.0/8", "2001:db8::/32" or a single address such as "127.0.0.1".
fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// API tokens made through the API.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ApiSettings {
    /// Lifetime of a token whose request names no expiry.
    #[serde(with = "humantime_serde")]
    pub token_default_ttl: Duration,
    /// Longest lifetime a request may ask for.
    #[serde(with = "humantime_serde")]
    pub token_max_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SsoSettings {
    #[serde(with = "humantime_serde")]
    pub login_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Length of a session opened by single sign-on (shorter when the IdP asks).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Sign-ins one client address may start per `login_rate_window`; 0: no limit.
    pub login_rate_limit: u32,
    #[serde(with = "humantime_serde")]
    pub login_rate_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InboundSettings {
    pub domain: String,
    #[serde(with = "humantime_serde")]
    pub lookup_cache: std::time::Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub batch_max: usize,
    pub read_connections: u32,
    pub max_size: u64,
    /// Gather the writer's appends to the WAL into one write per commit.
    pub wal_append_buffer: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {source}")]
    File {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("configuration: {0}")]
    Invalid(String),
}

impl OutboundSettings {
    /// The waits between attempts; the last one repeats.
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_schedule
            .iter()
            .filter_map(|d| humantime::parse_duration(d).ok())
            .collect()
    }

    /// The name given in EHLO: `outbound.helo_name`, else `smtp.hostname`.
    pub fn helo<'a>(&'a self, smtp_hostname: &'a str) -> &'a str {
        if self.helo_name.trim().is_empty() {
            smtp_hostname
        } else {
            self.helo_name.trim()
        }
    }
}

impl Settings {
    /// Loads the three layers. `file` is the `--config` argument, if any.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Same as [`Settings::load`] with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_CONFIG,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "configuration file {} does not exist or is not a file",
                    path.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(path.to_path_buf()).format(config::FileFormat::Toml),
            );
        }
        let env_map: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("POSTERN__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("POSTERN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("dns.nameservers")
                .with_list_parse_key("auth.trusted_arc_forwarders")
                .with_list_parse_key("outbound.spf_ips")
                .with_list_parse_key("outbound.retry_schedule")
                .with_list_parse_key("http.trusted_proxies")
                .source(Some(env_map)),
        );
        let built = builder.build().map_err(|source| ConfigError::File {
            path: file.map(Path::to_path_buf).unwrap_or_default(),
            source,
        })?;
        let settings: Settings = built
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.smtp;
        let check = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid(msg.to_string()))
            }
        };
        check(
            s.max_line_length >= 512,
            "smtp.max_line_length must be at least 512 (RFC 5321)",
        )?;
        check(
            s.max_message_size >= 1024,
            "smtp.max_message_size is too small",
        )?;
        check(
            s.max_recipients >= 1,
            "smtp.max_recipients must be at least 1",
        )?;
        check(
            s.max_connections >= 1 && s.max_connections_per_ip >= 1,
            "smtp.max_connections and smtp.max_connections_per_ip must be at least 1",
        )?;
        check(
            s.max_inflight_data / 8 * 7 >= s.max_message_size,
            "smtp.max_inflight_data must be at least 8/7 of smtp.max_message_size (an eighth of it is kept for small messages)",
        )?;
        check(
            s.max_inflight_data_per_ip >= s.max_message_size,
            "smtp.max_inflight_data_per_ip must be at least smtp.max_message_size",
        )?;
        check(
            s.command_timeout >= Duration::from_secs(1)
                && s.data_timeout >= Duration::from_secs(1)
                && s.data_total_timeout >= s.data_timeout,
            "smtp.command_timeout and smtp.data_timeout must be at least 1s, and smtp.data_total_timeout at least smtp.data_timeout",
        )?;
        check(
            s.busy_percent <= 100 && s.busy_command_timeout >= Duration::from_secs(1),
            "smtp.busy_percent must be 0 to 100, and smtp.busy_command_timeout at least 1s (a busy server uses the shorter of it and smtp.command_timeout)",
        )?;
        self.smtp_prefixes()?;
        self.http_prefixes()?;
        let h = &self.http;
        check(
            h.max_connections >= 1 && h.max_connections_per_ip >= 1,
            "http.max_connections and http.max_connections_per_ip must be at least 1",
        )?;
        check(
            h.header_timeout >= Duration::from_secs(1) && h.body_timeout >= Duration::from_secs(1),
            "http.header_timeout and http.body_timeout must be at least 1s",
        )?;
        check(
            self.store.batch_max >= 1,
            "store.batch_max must be at least 1",
        )?;
        check(
            self.store.read_connections >= 1,
            "store.read_connections must be at least 1",
        )?;
        check(
            !self.inbound.domain.trim().is_empty() && !self.inbound.domain.contains('@'),
            "inbound.domain must be a domain name such as in.example.com",
        )?;
        check(
            s.tls.cert.as_os_str().is_empty() == s.tls.key.as_os_str().is_empty(),
            "smtp.tls.cert and smtp.tls.key must be given together",
        )?;
        let public = self.http.public_url.trim();
        check(
            public.is_empty()
                || ((public.starts_with("http://") || public.starts_with("https://"))
                    && !public.contains('?')
                    && !public.contains('#')),
            "http.public_url must be empty or an http(s) URL such as https://helpdesk.example.com",
        )?;
        check(
            !self.api.token_default_ttl.is_zero()
                && self.api.token_default_ttl <= self.api.token_max_ttl,
            "api.token_default_ttl must be more than 0s and at most api.token_max_ttl",
        )?;
        let o = &self.outbound;
        check(
            o.mode == OutboundMode::Mx || !o.relay.host.trim().is_empty(),
            "outbound.relay.host must be set when outbound.mode = \"relay\"",
        )?;
        check(
            o.workers >= 1 && o.max_recipients >= 1,
            "outbound.workers and outbound.max_recipients must be at least 1",
        )?;
        check(
            o.attempt_timeout < o.lease,
            "outbound.attempt_timeout must be shorter than outbound.lease (a worker must finish or give up an attempt before another may take the message over)",
        )?;
        check(
            o.retry_schedule
                .iter()
                .all(|d| humantime::parse_duration(d).is_ok())
                && !o.retry_schedule.is_empty(),
            "outbound.retry_schedule must be a non-empty list of durations such as \"1m\", \"6h\"",
        )?;
        check(
            !o.dkim_selector.is_empty()
                && o.dkim_selector
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            "outbound.dkim_selector must be letters, digits, '-' or '.'",
        )?;
        check(
            self.rules.scheduler_interval.is_zero()
                || self.rules.scheduler_interval >= Duration::from_secs(1),
            "rules.scheduler_interval must be 0s (off) or at least 1s",
        )?;
        check(
            self.rules.poll_interval >= Duration::from_millis(50),
            "rules.poll_interval must be at least 50ms",
        )?;
        check(
            (0..=10).contains(&self.rules.max_depth),
            "rules.max_depth must be between 0 and 10",
        )?;
        check(
            self.rules.scheduler_batch >= 1,
            "rules.scheduler_batch must be at least 1",
        )?;
        check(
            self.threading.max_participants_per_message >= 1,
            "threading.max_participants_per_message must be at least 1 (the sender)",
        )?;
        check(
            self.imports.max_concurrent >= 1,
            "imports.max_concurrent must be at least 1",
        )?;
        check(
            (1..=10_000).contains(&self.imports.batch_size),
            "imports.batch_size must be between 1 and 10000",
        )?;
        check(
            self.imports.max_message_size >= 1024,
            "imports.max_message_size is too small (at least 1024 bytes)",
        )?;
        let bad_proxies: Vec<&str> = self
            .http
            .trusted_proxies
            .iter()
            .map(String::as_str)
            .filter(|p| parse_network(p).is_none())
            .collect();
        check(
            bad_proxies.is_empty(),
            &format!(
                "http.trusted_proxies: {bad_proxies:?} is not an IP address or a network such as 10.0.0.0/8"
            ),
        )?;
        check(
            self.sso.login_rate_limit == 0
                || (self.sso.login_rate_window >= Duration::from_secs(1)
                    && self.sso.login_rate_window <= Duration::from_secs(86_400)),
            "sso.login_rate_window must be between 1s and 1d",
        )?;
        check(
            self.imports.max_decompressed_size >= 1024 * 1024
                && self.imports.max_staged_size >= 1024 * 1024,
            "imports.max_decompressed_size and imports.max_staged_size must be at least 1048576 (1 MiB)",
        )?;
        check(
            self.imports.max_compression_ratio >= 10,
            "imports.max_compression_ratio must be at least 10 (ordinary mail compresses up to about 10 to 1)",
        )?;
        check(
            self.sso.clock_skew <= Duration::from_secs(600),
            "sso.clock_skew must be at most 10m",
        )?;
        check(
            self.sso.session_ttl >= Duration::from_secs(300)
                && self.sso.session_ttl <= Duration::from_secs(30 * 86_400),
            "sso.session_ttl must be between 5m and 30d",
        )?;
        Ok(())
    }

    /// How SMTP groups client addresses for its per-IP limits.
    pub fn smtp_prefixes(&self) -> Result<crate::net::PrefixLengths, ConfigError> {
        crate::net::PrefixLengths::new(self.smtp.ipv4_prefix, self.smtp.ipv6_prefix)
            .map_err(|e| ConfigError::Invalid(format!("smtp.ipv4_prefix / smtp.ipv6_prefix: {e}")))
    }

    /// How HTTP groups client addresses for its per-IP limit.
    pub fn http_prefixes(&self) -> Result<crate::net::PrefixLengths, ConfigError> {
        crate::net::PrefixLengths::new(self.http.ipv4_prefix, self.http.ipv6_prefix)
            .map_err(|e| ConfigError::Invalid(format!("http.ipv4_prefix / http.ipv6_prefix: {e}")))
    }

    /// The base URL browsers use to reach the HTTP server (no trailing slash); `bound` is the
    /// address actually listened on, used when `http.public_url` is empty.
    pub fn public_base_url(&self, bound: SocketAddr) -> String {
        let public = self.http.public_url.trim().trim_end_matches('/');
        if public.is_empty() {
            format!("http://{bound}")
        } else {
            public.to_string()
        }
    }

    /// Where the database lives.
    pub fn database_path(&self) -> PathBuf {
        if self.store.path.as_os_str().is_empty() {
            self.data_dir.join("postern.db")
        } else {
            self.store.path.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_defaults_load() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.smtp.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.smtp.command_timeout, Duration::from_secs(300));
        assert_eq!(s.database_path(), PathBuf::from("./data/postern.db"));
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[smtp]\nmax_recipients = 7\nhostname = \"mx.file\"\n",
        )
        .unwrap();
        let s = Settings::load_with_env(
            Some(&path),
            env(&[
                ("POSTERN__SMTP__HOSTNAME", "mx.env"),
                ("POSTERN__SMTP__DATA_TIMEOUT", "10s"),
                ("POSTERN__DNS__NAMESERVERS", "127.0.0.1:5353,10.0.0.1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.smtp.max_recipients, 7);
        assert_eq!(s.smtp.hostname, "mx.env");
        assert_eq!(s.smtp.data_timeout, Duration::from_secs(10));
        assert_eq!(s.dns.nameservers, vec!["127.0.0.1:5353", "10.0.0.1"]);
    }

    /// The WAL append buffer is on unless turned off, in the file or the environment.
    #[test]
    fn the_wal_append_buffer_can_be_turned_off() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert!(s.store.wal_append_buffer);
        let s =
            Settings::load_with_env(None, env(&[("POSTERN__STORE__WAL_APPEND_BUFFER", "false")]))
                .unwrap();
        assert!(!s.store.wal_append_buffer);
    }

    #[test]
    fn bad_values_are_reported() {
        let err = Settings::load_with_env(None, env(&[("POSTERN__SMTP__MAX_LINE_LENGTH", "100")]))
            .unwrap_err();
        assert!(err.to_string().contains("max_line_length"), "{err}");
        let err = Settings::load_with_env(None, env(&[("POSTERN__SMTP__IPV6_PREFIX", "129")]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("smtp.ipv4_prefix / smtp.ipv6_prefix"),
            "{err}"
        );
        let err = Settings::load_with_env(
            None,
            env(&[("POSTERN__SMTP__MAX_INFLIGHT_DATA_PER_IP", "1024")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("max_inflight_data_per_ip"),
            "{err}"
        );
        let err =
            Settings::load_with_env(None, env(&[("POSTERN__SMTP__DATA_TOTAL_TIMEOUT", "1m")]))
                .unwrap_err();
        assert!(err.to_string().contains("data_total_timeout"), "{err}");
        let err =
            Settings::load_with_env(Some(Path::new("/nonexistent.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let err = Settings::load_with_env(
            None,
            env(&[("POSTERN__HTTP__TRUSTED_PROXIES", "10.0.0.0/8,proxy.example")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("proxy.example"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let s = Settings::load_with_env(
            None,
            env(&[(
                "POSTERN__HTTP__TRUSTED_PROXIES",
                "127.0.0.1, 10.0.0.0/8,::1",
            )]),
        )
        .unwrap();
        let nets = s.http.trusted_proxy_networks();
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!nets[0].contains(&"127.0.0.2".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[1].contains(&"10.9.8.7".parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(s.sso.login_rate_limit, 30);
    }
}
