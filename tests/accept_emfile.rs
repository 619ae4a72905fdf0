//! The SMTP and HTTP listeners survive running out of file descriptors: while `accept`
//! fails with EMFILE they pause instead of spinning, and they serve again as soon as
//! descriptors are free. This test binary holds this one test only, because it lowers the
//! open-file limit of its own process, which would break any test running beside it.

#[path = "it/common/session_config.rs"]
mod shared_session_config;

use postern::domain::{EmailAddress, Envelope};
use postern::http::server::HttpLimits;
use postern::net::{ConnectionLimits, PaceLimits, PrefixLengths};
use postern::smtp::{
    Accepted, Delivery, DeliveryError, RecipientVerdict, SessionConfig, SmtpServer,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

struct NoMail;

impl Delivery for NoMail {
    async fn check_recipient(&self, _: &EmailAddress) -> RecipientVerdict {
        RecipientVerdict::UnknownUser
    }

    async fn deliver(&self, _: Envelope, _: Vec<u8>) -> Result<Accepted, DeliveryError> {
        Err(DeliveryError::temporary("4.3.0", "not in this test"))
    }
}

/// The shared session settings with 30 s timeouts: the listeners here pause for seconds
/// while descriptors run out, and a session must not time out meanwhile.
fn session_config() -> SessionConfig {
    let mut cfg = shared_session_config::session_config();
    cfg.command_timeout = Duration::from_secs(30);
    cfg.data_pace.idle = Duration::from_secs(30);
    cfg
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd (this test needs Linux)")
        .count()
}

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(lim: libc::rlimit) {
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// CPU time this process has used.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec * 1000) as u32);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test]
async fn listeners_pause_while_out_of_descriptors_and_serve_again_after() {
    let shutdown = CancellationToken::new();
    let smtp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_addr = smtp_listener.local_addr().unwrap();
    let smtp = SmtpServer::new(
        smtp_listener,
        session_config(),
        ConnectionLimits::new(10, 10, PrefixLengths::default()),
        None,
        Arc::new(NoMail),
    );
    let smtp_task = tokio::spawn(smtp.run(shutdown.clone(), Duration::from_secs(1)));
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let limits = HttpLimits {
        connections: ConnectionLimits::new(10, 10, PrefixLengths::default()),
        header_timeout: Duration::from_secs(30),
        body: PaceLimits {
            idle: Duration::from_secs(30),
            total: None,
            min_rate: 0,
            grace: Duration::from_secs(5),
        },
    };
    let http_task = tokio::spawn(postern::http::server::serve(
        http_listener,
        router,
        limits,
        shutdown.clone(),
    ));

    // The client sockets exist before the descriptors run out; connecting needs no more.
    let smtp_client = TcpSocket::new_v4().unwrap();
    let http_client = TcpSocket::new_v4().unwrap();
    let original = nofile();
    set_nofile(libc::rlimit {
        rlim_cur: (open_files() + 16) as libc::rlim_t,
        rlim_max: original.rlim_max,
    });
    let mut hogs = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hogs.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    let mut smtp_conn = smtp_client.connect(smtp_addr).await.unwrap();
    let mut http_conn = http_client.connect(http_addr).await.unwrap();
    http_conn
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();

    // Out of descriptors for 2 s: nothing can be accepted, and the listeners must not spin.
    let cpu_before = cpu_time();
    let mut greeting = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(2), smtp_conn.read(&mut greeting)).await;
    assert!(
        early.is_err(),
        "nothing can be accepted without a descriptor"
    );
    let cpu = cpu_time() - cpu_before;
    assert!(
        cpu < Duration::from_millis(200),
        "the accept loops spun: {cpu:?} of CPU in 2 s"
    );

    // Descriptors come back: both listeners serve again without a restart.
    drop(hogs);
    set_nofile(original);
    let n = tokio::time::timeout(Duration::from_secs(10), smtp_conn.read(&mut greeting))
        .await
        .expect("SMTP greets once descriptors are free")
        .unwrap();
    assert!(
        greeting[..n].starts_with(b"220 mx.test"),
        "{:?}",
        &greeting[..n]
    );
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        http_conn.read_to_end(&mut response),
    )
    .await
    .expect("HTTP answers once descriptors are free")
    .unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );

    shutdown.cancel();
    smtp_task.await.unwrap();
    http_task.await.unwrap();
}
