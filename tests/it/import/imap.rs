//! IMAP import source against a real Dovecot on loopback (tests/it/common/dovecot.rs).

use crate::common::dovecot::{CuttableProxy, Dovecot, PASSWORD, USER};
use postern::import::{
    list_imap_folders, Content, DateRange, DateSource, ImapAuth, ImapConfig, ImapSecurity,
    ImapSource, Position, SourceError, SourceMessage,
};

fn message(n: usize, date: &str) -> Vec<u8> {
    format!(
        "From: customer{n}@example.com\r\nTo: support@shop.example\r\nSubject: order {n}\r\nDate: {date}\r\nMessage-ID: <m{n}@example.com>\r\n\r\nHello, about order {n}.\r\n"
    )
    .into_bytes()
}

fn plain_config(port: u16) -> ImapConfig {
    let mut c = ImapConfig::from_url(&format!("imap://{USER}@127.0.0.1:{port}/"), PASSWORD.into())
        .unwrap_or_else(|e| panic!("{e}"));
    c.security = ImapSecurity::Plain;
    c.system_roots = false;
    c
}

fn read_all(config: ImapConfig) -> Vec<SourceMessage> {
    ImapSource::connect(config)
        .unwrap_or_else(|e| panic!("connect: {e}"))
        .map(|m| m.unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}

fn uid(m: &SourceMessage) -> u32 {
    match m.position {
        Position::Imap { uid, .. } => uid,
        ref other => panic!("not an IMAP position: {other}"),
    }
}

const DATE: &str = "Tue, 02 Jan 2024 10:00:00 +0000";

#[test]
fn login_reads_inbox_with_bytes_flags_dates_and_positions() {
    let server = Dovecot::start();
    let msgs: Vec<(Vec<u8>, &str)> = vec![
        (message(1, DATE), ""),
        (message(2, DATE), "S"),
        (message(3, DATE), "RS"),
    ];
    server.deliver("INBOX", &msgs);
    let mut config = plain_config(server.imap_port);
    config.auth = ImapAuth::Login;
    let got = read_all(config);
    assert_eq!(got.len(), 3);
    for (m, (raw, _)) in got.iter().zip(&msgs) {
        assert_eq!(m.raw(), Some(raw.as_slice()), "bytes of {}", m.origin);
        assert_eq!(m.folder.as_deref(), Some("INBOX"));
        assert_eq!(m.date_source, DateSource::Header);
        assert!(
            m.origin.contains("INBOX") && m.origin.contains("UID"),
            "{}",
            m.origin
        );
    }
    let flags: Vec<(bool, bool)> = got
        .iter()
        .map(|m| m.flags.map(|f| (f.seen, f.answered)).unwrap_or_default())
        .collect();
    assert_eq!(flags, vec![(false, false), (true, false), (true, true)]);
    let uids: Vec<u32> = got.iter().map(uid).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
    // Checkpoint text round trip.
    let p = got[2].position.to_string();
    assert_eq!(p.parse::<Position>().ok(), Some(got[2].position.clone()));
}

#[test]
fn authenticate_plain_works_and_a_wrong_password_is_refused_clearly() {
    let server = Dovecot::start();
    server.deliver("INBOX", &[(message(1, DATE), "")]);
    let mut config = plain_config(server.imap_port);
    config.auth = ImapAuth::Plain;
    assert_eq!(read_all(config).len(), 1);

    for (auth, method) in [
        (ImapAuth::Plain, "AUTHENTICATE PLAIN"),
        (ImapAuth::Login, "LOGIN"),
    ] {
        let mut bad = plain_config(server.imap_port);
        bad.password = "wrong".into();
        bad.auth = auth;
        match ImapSource::connect(bad) {
            Err(e @ SourceError::ImapLoginRefused { .. }) => {
                let text = e.to_string();
                assert!(text.contains(USER) && text.contains(method), "{text}");
                assert!(
                    !text.contains("wrong"),
                    "the password must not show: {text}"
                );
            }
            Err(other) => panic!("expected a refused login, got {other}"),
            Ok(_) => panic!("a wrong password was accepted"),
        }
    }
}

#[test]
fn folders_are_listed_selected_and_missing_ones_named() {
    let server = Dovecot::start();
    server.deliver("INBOX", &[(message(1, DATE), "")]);
    server.deliver("Sent", &[(message(2, DATE), "S"), (message(3, DATE), "S")]);
    server.deliver("Archive", &[(message(4, DATE), "")]);
    let config = plain_config(server.imap_port);
    let names: Vec<String> = list_imap_folders(&config)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|f| f.name)
        .collect();
    for wanted in ["INBOX", "Sent", "Archive"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }

    let mut config = plain_config(server.imap_port);
    config.folders = vec!["Sent".into(), "Archive".into()];
    let got = read_all(config);
    let folders: Vec<&str> = got.iter().filter_map(|m| m.folder.as_deref()).collect();
    assert_eq!(folders, vec!["Sent", "Sent", "Archive"]);

    // Default: INBOX only.
    assert_eq!(read_all(plain_config(server.imap_port)).len(), 1);

    let mut config = plain_config(server.imap_port);
    config.folders = vec!["Nope".into()];
    match ImapSource::connect(config) {
        Err(e @ SourceError::FolderNotFound { .. }) => {
            let text = e.to_string();
            assert!(text.contains("Nope") && text.contains("Sent"), "{text}");
        }
        Err(other) => panic!("expected folder not found, got {other}"),
        Ok(_) => panic!("a missing folder was accepted"),
    }
}

#[test]
fn a_large_folder_is_fetched_in_batches_and_stays_unread_on_the_server() {
    let server = Dovecot::start();
    let msgs: Vec<(Vec<u8>, &str)> = (0..3000).map(|n| (message(n, DATE), "")).collect();
    server.deliver("INBOX", &msgs);
    let mut config = plain_config(server.imap_port);
    config.batch_size = 250;
    let got = read_all(config.clone());
    assert_eq!(got.len(), 3000);
    assert_eq!(got[2999].raw(), Some(msgs[2999].0.as_slice()));
    let uids: Vec<u32> = got.iter().map(uid).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]));
    // Reading changed no flag: a second pass still sees every message unread.
    let again = read_all(config);
    assert!(again.iter().all(|m| m.flags.is_some_and(|f| !f.seen)));
    // And the Maildir files were not renamed with an S flag.
    let seen_files = std::fs::read_dir(server.maildir().join("cur"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(":2,S"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(seen_files, 0);
}

#[test]
fn resume_uid_range_and_dates_select_exactly_the_wanted_messages() {
    let server = Dovecot::start();
    let msgs: Vec<(Vec<u8>, &str)> = (0..10).map(|n| (message(n, DATE), "")).collect();
    server.deliver("INBOX", &msgs);
    let all = read_all(plain_config(server.imap_port));
    assert_eq!(all.len(), 10);

    let mut config = plain_config(server.imap_port);
    config.resume_after = Some(all[3].position.clone());
    let rest = read_all(config);
    assert_eq!(rest, all[4..].to_vec());

    let mut config = plain_config(server.imap_port);
    config.uid_range = Some((uid(&all[2]), uid(&all[5])));
    assert_eq!(read_all(config), all[2..6].to_vec());

    // The server's INTERNALDATE of these deliveries is today: a range in the past is empty,
    // one around today takes all.
    let today = chrono::Utc::now().date_naive();
    let mut config = plain_config(server.imap_port);
    config.date_range = DateRange {
        since: None,
        until: today.checked_sub_days(chrono::Days::new(30)),
    };
    assert_eq!(read_all(config).len(), 0);
    let mut config = plain_config(server.imap_port);
    config.date_range = DateRange {
        since: today.checked_sub_days(chrono::Days::new(1)),
        until: Some(today),
    };
    assert_eq!(read_all(config).len(), 10);
}

#[test]
fn a_connection_dropped_mid_fetch_says_where_to_resume() {
    let server = Dovecot::start();
    let msgs: Vec<(Vec<u8>, &str)> = (0..500).map(|n| (message(n, DATE), "")).collect();
    server.deliver("INBOX", &msgs);
    let proxy = CuttableProxy::start(
        format!("127.0.0.1:{}", server.imap_port)
            .parse()
            .expect("addr"),
    );
    let mut config = plain_config(proxy.addr.port());
    config.batch_size = 100;
    config.timeout = std::time::Duration::from_secs(10);
    let mut source = ImapSource::connect(config).unwrap_or_else(|e| panic!("{e}"));
    let mut delivered = Vec::new();
    let error = loop {
        match source.next() {
            Some(Ok(m)) => {
                delivered.push(m);
                if delivered.len() == 150 {
                    proxy.cut();
                }
            }
            Some(Err(e)) => break e,
            None => panic!("the source ended without noticing the cut connection"),
        }
    };
    assert!(source.next().is_none(), "nothing after an error");
    // The batch already received is delivered, then the error.
    assert_eq!(delivered.len(), 200);
    let last = delivered.last().map(uid);
    match &error {
        SourceError::ImapConnectionLost {
            last_uid, folder, ..
        } => {
            assert_eq!(*last_uid, last);
            assert_eq!(folder, "INBOX");
        }
        other => panic!("expected a lost connection, got {other}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&format!("UID {}", last.unwrap_or(0))),
        "{text}"
    );

    let mut config = plain_config(server.imap_port);
    config.resume_after = error.resume_position();
    let rest = read_all(config);
    assert_eq!(rest.len(), 300);
    assert!(uid(&rest[0]) > last.unwrap_or(0));
}

#[test]
fn a_changed_uidvalidity_is_detected() {
    let server = Dovecot::start();
    server.deliver("Archive", &[(message(1, DATE), ""), (message(2, DATE), "")]);
    let mut config = plain_config(server.imap_port);
    config.folders = vec!["Archive".into()];
    let first = read_all(config.clone());
    let checkpoint = first[0].position.clone();

    // The folder is deleted and made again: the server gives it a new UIDVALIDITY.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    server.doveadm(&["mailbox", "delete", "-u", USER, "Archive"]);
    server.doveadm(&["mailbox", "create", "-u", USER, "Archive"]);
    server.deliver("Archive", &[(message(3, DATE), "")]);

    config.resume_after = Some(checkpoint);
    match ImapSource::connect(config).map(|mut s| s.next()) {
        Ok(Some(Err(e @ SourceError::UidValidityChanged { .. }))) => {
            let text = e.to_string();
            assert!(
                text.contains("Archive") && text.contains("UIDVALIDITY"),
                "{text}"
            );
        }
        Ok(Some(Err(other))) | Err(other) => panic!("expected UIDVALIDITY changed, got {other}"),
        Ok(other) => panic!("expected UIDVALIDITY changed, got {other:?}"),
    }
}

#[test]
fn tls_is_accepted_only_with_the_trusted_ca() {
    let server = Dovecot::start();
    server.deliver("INBOX", &[(message(1, DATE), "")]);
    let url = format!("imaps://{USER}@localhost:{}/INBOX", server.imaps_port);
    let mut config = ImapConfig::from_url(&url, PASSWORD.into()).unwrap_or_else(|e| panic!("{e}"));
    config.system_roots = true;
    // Not trusted: the test CA is not among the system's.
    match ImapSource::connect(config.clone()) {
        Err(SourceError::Tls { reason, .. }) => assert!(!reason.is_empty()),
        Err(other) => panic!("expected a TLS failure, got {other}"),
        Ok(_) => panic!("an untrusted certificate was accepted"),
    }
    config.ca_file = Some(server.ca_file.clone());
    assert_eq!(read_all(config).len(), 1);

    // STARTTLS on the plain port.
    let url = format!("imap://{USER}@localhost:{}/", server.imap_port);
    let mut config = ImapConfig::from_url(&url, PASSWORD.into()).unwrap_or_else(|e| panic!("{e}"));
    config.system_roots = false;
    config.ca_file = Some(server.ca_file.clone());
    assert_eq!(read_all(config.clone()).len(), 1);
    config.ca_file = None;
    assert!(matches!(
        ImapSource::connect(config),
        Err(SourceError::Tls { .. })
    ));
}

#[test]
fn oversized_messages_are_reported_not_downloaded() {
    let server = Dovecot::start();
    let big = {
        let mut m = message(2, DATE);
        m.extend(std::iter::repeat_n(b'x', 50_000));
        m.extend_from_slice(b"\r\n");
        m
    };
    server.deliver(
        "INBOX",
        &[
            (message(1, DATE), ""),
            (big.clone(), ""),
            (message(3, DATE), ""),
        ],
    );
    let mut config = plain_config(server.imap_port);
    config.max_message_size = 10_000;
    let got = read_all(config);
    assert_eq!(got.len(), 3);
    assert!(got[0].raw().is_some() && got[2].raw().is_some());
    match &got[1].content {
        Content::Oversized { size, .. } => assert_eq!(*size, big.len() as u64),
        other => panic!("expected oversized, got {other:?}"),
    }
    assert_eq!(got[1].date_source, DateSource::ImapInternalDate);
}

#[test]
fn plain_connections_are_refused_off_loopback() {
    let mut config = plain_config(9);
    config.host = "192.0.2.1".into(); // TEST-NET-1: never routed
    config.timeout = std::time::Duration::from_secs(2);
    assert!(matches!(
        ImapSource::connect(config),
        Err(SourceError::ImapConnect { .. })
    ));
}
