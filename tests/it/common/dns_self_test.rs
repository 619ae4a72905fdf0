//! Self-test of the loopback DNS server (`tests/it/common/dns.rs`) through a real hickory resolver
//! and through raw packets.

use crate::common::dns::{reverse_name, TestDns, Zone};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn resolver_with(dns: &TestDns, edns0: bool, timeout: Duration) -> TokioResolver {
    let mut ns = NameServerConfig::udp_and_tcp(dns.addr.ip());
    for connection in &mut ns.connections {
        connection.port = dns.addr.port();
    }
    let config = ResolverConfig::from_name_servers(vec![ns]);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.edns0 = edns0;
    opts.use_hosts_file = ResolveHosts::Never;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .unwrap()
}

fn resolver(dns: &TestDns) -> TokioResolver {
    resolver_with(dns, true, Duration::from_millis(500))
}

async fn txt(resolver: &TokioResolver, name: &str) -> Vec<Vec<Vec<u8>>> {
    let lookup = resolver.txt_lookup(name).await.unwrap();
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.to_vec()).collect()),
            _ => None,
        })
        .collect()
}

/// The answers' data as zone-file text (the address, "10 mx.example."), in order.
fn shown(answers: &[Record]) -> Vec<String> {
    answers.iter().map(|rec| rec.data.to_string()).collect()
}

fn response_code(err: &NetError) -> Option<ResponseCode> {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(no)) => Some(no.response_code),
        NetError::Dns(DnsError::ResponseCode(code)) => Some(*code),
        _ => None,
    }
}

fn sample_zone() -> Zone {
    Zone::new()
        .txt("example.com", "v=spf1 ip4:192.0.2.1 -all")
        .txt_multi("multi.example.com.", &["v=spf1 ", "ip4:192.0.2.2 ", "-all"])
        .a("mail.example.com", Ipv4Addr::new(192, 0, 2, 1))
        .a("mail.example.com", Ipv4Addr::new(192, 0, 2, 3))
        .aaaa("mail.example.com", "2001:db8::1".parse().unwrap())
        .mx("example.com", 10, "mail.example.com")
        .mx("example.com", 20, "backup.example.net.")
        .ptr(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), "mail.example.com")
        .ptr("2001:db8::1".parse().unwrap(), "mail6.example.com")
        .cname("alias.example.com", "mail.example.com")
        .txt("sel._domainkey.example.com", "v=DKIM1; k=rsa; p=AAAA")
        .servfail("broken.example.com")
        .timeout("slow.example.com")
        .nodata("empty.example.com")
}

#[tokio::test]
async fn every_record_type_resolves_through_hickory() {
    let dns = TestDns::start(sample_zone()).await;
    let r = resolver(&dns);

    assert_eq!(
        txt(&r, "example.com.").await,
        vec![vec![b"v=spf1 ip4:192.0.2.1 -all".to_vec()]]
    );
    // Case-insensitive, trailing dot optional, several character-strings kept apart.
    assert_eq!(
        txt(&r, "MULTI.Example.COM").await,
        vec![vec![
            b"v=spf1 ".to_vec(),
            b"ip4:192.0.2.2 ".to_vec(),
            b"-all".to_vec()
        ]]
    );

    let a = r.ipv4_lookup("mail.example.com.").await.unwrap();
    assert_eq!(shown(a.answers()), ["192.0.2.1", "192.0.2.3"]);
    let aaaa = r.ipv6_lookup("mail.example.com.").await.unwrap();
    assert_eq!(shown(aaaa.answers()), ["2001:db8::1"]);
    let mx = r.mx_lookup("example.com.").await.unwrap();
    assert_eq!(
        shown(mx.answers()),
        ["10 mail.example.com.", "20 backup.example.net."]
    );

    for (ip, expected) in [
        ("192.0.2.1", "mail.example.com."),
        ("2001:db8::1", "mail6.example.com."),
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        let name = Name::from_ascii(format!("{}.", reverse_name(ip))).unwrap();
        let ptr = r.lookup(name, RecordType::PTR).await.unwrap();
        assert_eq!(shown(ptr.answers()), [expected], "PTR of {ip}");
    }
    assert_eq!(
        reverse_name("192.0.2.1".parse().unwrap()),
        "1.2.0.192.in-addr.arpa"
    );
    assert_eq!(
        reverse_name("2001:db8::1".parse().unwrap()),
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    );

    // CNAME: the alias record plus the target's records of the asked type.
    let lookup = r.lookup("alias.example.com.", RecordType::A).await.unwrap();
    let answers = lookup.answers();
    assert!(matches!(&answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "mail.example.com."));
    let ips: Vec<Ipv4Addr> = answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(
        ips,
        vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 3)]
    );
    assert!(answers.iter().all(|rec| rec.ttl <= 300));
}

#[tokio::test]
async fn long_txt_is_truncated_over_udp_and_fetched_over_tcp() {
    let long: String = (0..1500)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let medium: String = "m".repeat(600);
    let dns = TestDns::start(
        Zone::new()
            .txt("long.example.com", &long)
            .txt("medium.example.com", &medium),
    )
    .await;

    // 1500 bytes exceed hickory's EDNS size (1232): truncated over UDP, retried over TCP.
    let r = resolver(&dns);
    let strings = txt(&r, "long.example.com.").await;
    assert_eq!(strings.len(), 1);
    assert!(strings[0].iter().all(|s| s.len() <= 255));
    assert_eq!(strings[0][0].len(), 255);
    assert_eq!(strings[0].concat(), long.as_bytes());
    assert_eq!(dns.queries(), 2);
    assert_eq!(dns.tcp_queries(), 1);

    // 600 bytes fit the advertised EDNS size: UDP only.
    dns.reset_counts();
    assert_eq!(
        txt(&r, "medium.example.com.").await[0].concat(),
        medium.as_bytes()
    );
    assert_eq!((dns.queries(), dns.tcp_queries()), (1, 0));

    // Without EDNS the limit is 512 bytes: TCP.
    dns.reset_counts();
    let plain = resolver_with(&dns, false, Duration::from_millis(500));
    assert_eq!(
        txt(&plain, "medium.example.com.").await[0].concat(),
        medium.as_bytes()
    );
    assert_eq!((dns.queries(), dns.tcp_queries()), (2, 1));
}

#[tokio::test]
async fn nxdomain_nodata_and_empty_non_terminals() {
    let dns = TestDns::start(sample_zone()).await;
    let r = resolver(&dns);

    let err = r.txt_lookup("nowhere.example.com.").await.unwrap_err();
    assert!(err.is_nx_domain(), "{err:?}");

    // A parent of a known name exists (empty non-terminal).
    for name in ["_domainkey.example.com.", "example.com.", "com."] {
        let err = r.txt_lookup(name).await;
        if name == "example.com." {
            assert!(err.is_ok());
            continue;
        }
        let err = err.unwrap_err();
        assert!(err.is_no_records_found(), "{name}: {err:?}");
        assert_eq!(response_code(&err), Some(ResponseCode::NoError), "{name}");
    }
    let err = r
        .txt_lookup("x.sel._domainkey.example.com.")
        .await
        .unwrap_err();
    assert!(err.is_nx_domain(), "{err:?}");

    // Records of another type only: NODATA.
    let err = r.txt_lookup("mail.example.com.").await.unwrap_err();
    assert_eq!(response_code(&err), Some(ResponseCode::NoError), "{err:?}");
    // nodata(): exists with nothing.
    for rtype in [RecordType::A, RecordType::TXT, RecordType::MX] {
        let err = r.lookup("empty.example.com.", rtype).await.unwrap_err();
        assert_eq!(response_code(&err), Some(ResponseCode::NoError), "{err:?}");
    }
}

#[tokio::test]
async fn servfail_and_timeout() {
    let dns = TestDns::start(sample_zone()).await;
    let r = resolver(&dns);

    let started = Instant::now();
    let err = r.txt_lookup("broken.example.com.").await.unwrap_err();
    assert!(!err.is_no_records_found(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let raw = udp_exchange(dns.addr, &query("broken.example.com.", RecordType::A, 7))
        .await
        .unwrap();
    assert_eq!(raw.metadata.response_code, ResponseCode::ServFail);

    let started = Instant::now();
    let err = r.txt_lookup("slow.example.com.").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(400), "took {elapsed:?}");
    assert!(!err.is_no_records_found(), "{err:?}");
    assert!(dns.queries_for("SLOW.example.com") >= 1);

    // Per-type failures: the other types still answer.
    dns.set(
        Zone::new()
            .txt("typed.example.com", "v=spf1 -all")
            .a("typed.example.com", Ipv4Addr::LOCALHOST)
            .timeout_type("typed.example.com", "TXT"),
    );
    assert!(r.ipv4_lookup("typed.example.com.").await.is_ok());
    assert!(r.txt_lookup("typed.example.com.").await.is_err());
}

#[tokio::test]
async fn set_changes_answers_and_queries_are_counted() {
    let dns = TestDns::start(sample_zone()).await;
    let r = resolver(&dns);
    assert_eq!(dns.queries(), 0);

    assert_eq!(
        txt(&r, "example.com.").await[0][0],
        b"v=spf1 ip4:192.0.2.1 -all"
    );
    assert_eq!(
        txt(&r, "example.com.").await[0][0],
        b"v=spf1 ip4:192.0.2.1 -all"
    );
    assert_eq!(
        dns.queries(),
        2,
        "cache_size 0: every lookup reaches the server"
    );
    assert_eq!(dns.queries_for("example.com"), 2);

    // Replace the TXT of example.com; its MX stays.
    dns.set(Zone::new().txt("example.com", "v=spf1 -all"));
    assert_eq!(
        txt(&r, "example.com.").await,
        vec![vec![b"v=spf1 -all".to_vec()]]
    );
    assert_eq!(
        r.mx_lookup("example.com.").await.unwrap().answers().len(),
        2
    );
    // Add a name; un-fail one.
    dns.set(
        Zone::new()
            .txt("new.example.com", "hello")
            .txt("broken.example.com", "fixed"),
    );
    assert_eq!(txt(&r, "new.example.com.").await[0][0], b"hello");
    assert_eq!(txt(&r, "broken.example.com.").await[0][0], b"fixed");
    // Remove a name; replace everything.
    dns.remove("new.example.com");
    assert!(r
        .txt_lookup("new.example.com.")
        .await
        .unwrap_err()
        .is_nx_domain());
    dns.replace(Zone::new().a("only.example.org", Ipv4Addr::new(198, 51, 100, 1)));
    assert!(r
        .txt_lookup("example.com.")
        .await
        .unwrap_err()
        .is_nx_domain());
    assert!(r.ipv4_lookup("only.example.org.").await.is_ok());
    assert_eq!(dns.queries(), 9);
}

// ---------------------------------------------------------------------------------------------
// Raw packets.

fn query(name: &str, rtype: RecordType, id: u16) -> Message {
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    msg
}

async fn udp_send(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(len);
    Some(buf)
}

async fn udp_exchange(addr: SocketAddr, msg: &Message) -> Option<Message> {
    let bytes = udp_send(addr, &msg.to_vec().unwrap()).await?;
    Some(Message::from_vec(&bytes).unwrap())
}

#[tokio::test]
async fn raw_header_fields_edns_truncation_and_tcp_framing() {
    let long = "x".repeat(700);
    let dns = TestDns::start(sample_zone().txt("long.example.com", &long)).await;

    // Id, RD and the question (with its case) echoed; AA set.
    let resp = udp_exchange(dns.addr, &query("Mail.EXAMPLE.com.", RecordType::A, 0xbeef))
        .await
        .unwrap();
    assert_eq!(resp.metadata.id, 0xbeef);
    assert!(resp.metadata.authoritative);
    assert!(resp.metadata.recursion_desired);
    assert!(!resp.metadata.truncation);
    assert_eq!(resp.queries[0].name().to_ascii(), "Mail.EXAMPLE.com.");
    assert_eq!(resp.answers.len(), 2);
    assert_eq!(resp.answers[0].name.to_ascii(), "Mail.EXAMPLE.com.");
    assert_eq!(resp.answers[0].ttl, 300);
    assert!(resp.edns.is_none());

    // RD clear stays clear.
    let mut no_rd = query("mail.example.com.", RecordType::A, 2);
    no_rd.metadata.recursion_desired = false;
    let resp = udp_exchange(dns.addr, &no_rd).await.unwrap();
    assert!(!resp.metadata.recursion_desired);

    // Negative answers carry an SOA for negative caching.
    let resp = udp_exchange(dns.addr, &query("nope.example.com.", RecordType::TXT, 3))
        .await
        .unwrap();
    assert_eq!(resp.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(resp.authorities.len(), 1);
    assert_eq!(resp.authorities[0].record_type(), RecordType::SOA);

    // 700 bytes without EDNS: truncated, empty, TC set.
    let resp = udp_exchange(dns.addr, &query("long.example.com.", RecordType::TXT, 4))
        .await
        .unwrap();
    assert!(resp.metadata.truncation);
    assert!(resp.answers.is_empty());
    assert_eq!(resp.queries.len(), 1);

    // With EDNS 4096: whole, and an OPT comes back.
    let mut big = query("long.example.com.", RecordType::TXT, 5);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    big.set_edns(edns);
    let resp = udp_exchange(dns.addr, &big).await.unwrap();
    assert!(!resp.metadata.truncation);
    assert_eq!(resp.answers.len(), 1);
    assert!(resp.edns.is_some());

    // TCP: two-byte length prefix, several queries on one connection.
    let mut stream = tokio::net::TcpStream::connect(dns.addr).await.unwrap();
    for id in [10u16, 11] {
        let bytes = query("long.example.com.", RecordType::TXT, id)
            .to_vec()
            .unwrap();
        stream.write_u16(bytes.len() as u16).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.unwrap();
        let resp = Message::from_vec(&buf).unwrap();
        assert_eq!(resp.metadata.id, id);
        assert!(!resp.metadata.truncation);
        match &resp.answers[0].data {
            RData::TXT(t) => assert_eq!(t.txt_data.concat(), long.as_bytes()),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_packets_are_ignored() {
    let dns = TestDns::start(sample_zone()).await;
    let good = query("example.com.", RecordType::TXT, 1).to_vec().unwrap();
    let mut response_bit = good.clone();
    response_bit[2] |= 0x80;
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut pointer_name = good.clone();
    pointer_name[12] = 0xc0;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 5],
        good[..11].to_vec(),
        good[..good.len() - 1].to_vec(),
        response_bit,
        two_questions,
        pointer_name,
        vec![0xff; 300],
    ];
    for packet in &garbage {
        assert!(udp_send(dns.addr, packet).await.is_none(), "{packet:?}");
    }
    // Garbage over TCP: the connection is dropped; the server keeps serving.
    let mut stream = tokio::net::TcpStream::connect(dns.addr).await.unwrap();
    stream.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut buf = [0u8; 2];
    let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(read.is_err(), "no answer expected: {read:?}");
    assert_eq!(dns.queries(), 0);
    assert!(
        udp_exchange(dns.addr, &query("example.com.", RecordType::TXT, 9))
            .await
            .is_some()
    );
    assert_eq!(dns.queries(), 1);
}

#[test]
fn zone_text_parses() {
    let zone = Zone::parse(
        r#"
        # a comment
        example.com      TXT   "v=spf1 " "a -all"   # two strings
        plain.example.com txt  v=spf1 -all
        esc.example.com  TXT   "quote\" hash# back\\ \065"
        example.com      MX    10 mail.example.com.
        mail.example.com A     192.0.2.1
        mail.example.com AAAA  2001:db8::1
        192.0.2.1        PTR   mail.example.com
        alias.example.com CNAME mail.example.com
        bad.example.com  SERVFAIL
        slow.example.com TIMEOUT
        half.example.com TIMEOUT TXT
        half.example.com A 192.0.2.9
        old.example.com  SPF   "v=spf1 -all"
        gone.example.com NODATA
        "#,
    )
    .unwrap();
    let debug = format!("{zone:?}");
    for name in [
        "1.2.0.192.in-addr.arpa",
        "esc.example.com",
        "gone.example.com",
    ] {
        assert!(debug.contains(name), "{debug}");
    }

    for (text, wanted) in [
        ("a.example TXT \"unterminated", "line 1"),
        ("a.example A 300.1.1.1", "IPv4"),
        ("a.example MX x mail", "preference"),
        ("a.example WKS x", "unsupported"),
        ("a..example A 1.2.3.4", "empty label"),
        ("a.example", "missing record type"),
        ("\n\na.example TXT \"x\" junk", "line 3"),
        ("a.example NODATA x", "unexpected value"),
    ] {
        let err = Zone::parse(text).unwrap_err();
        assert!(err.contains(wanted), "{text:?}: {err}");
    }
}

#[tokio::test]
async fn parsed_zone_is_served() {
    let zone = Zone::parse(
        "example.com TXT \"v=spf1 \" \"a -all\"\n\
         esc.example.com TXT \"q\\\" \\065\"\n\
         192.0.2.1 PTR mail.example.com\n\
         old.example.com SPF \"v=spf1 -all\"\n\
         half.example.com TIMEOUT TXT\n\
         half.example.com A 192.0.2.9\n",
    )
    .unwrap();
    let dns = TestDns::start(zone).await;
    let r = resolver(&dns);
    assert_eq!(
        txt(&r, "example.com.").await,
        vec![vec![b"v=spf1 ".to_vec(), b"a -all".to_vec()]]
    );
    assert_eq!(
        txt(&r, "esc.example.com.").await,
        vec![vec![b"q\" A".to_vec()]]
    );
    let spf = r.lookup("old.example.com.", RecordType::Unknown(99)).await;
    assert_eq!(spf.unwrap().answers().len(), 1);
    assert!(r.ipv4_lookup("half.example.com.").await.is_ok());
    assert!(r.txt_lookup("half.example.com.").await.is_err());
    let ptr = r
        .lookup("1.2.0.192.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(ptr.answers().len(), 1);
}

#[test]
fn server_on_its_own_thread_serves_blocking_code() {
    let dns = TestDns::start_in_thread(Zone::new().txt("example.com", "hi"));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let packet = query("example.com.", RecordType::TXT, 42).to_vec().unwrap();
    socket.send_to(&packet, dns.addr).unwrap();
    let mut buf = [0u8; 512];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    let resp = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(resp.metadata.id, 42);
    assert_eq!(resp.answers.len(), 1);
    assert_eq!(dns.queries(), 1);
    let addr = dns.addr;
    drop(dns);
    // Stopped: nothing answers any more.
    socket.send_to(&packet, addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(socket.recv_from(&mut buf).is_err());
}

#[tokio::test]
async fn dropping_stops_the_server() {
    let dns = TestDns::start(sample_zone()).await;
    let addr = dns.addr;
    assert!(
        udp_exchange(addr, &query("example.com.", RecordType::TXT, 1))
            .await
            .is_some()
    );
    drop(dns);
    tokio::task::yield_now().await;
    assert!(
        udp_exchange(addr, &query("example.com.", RecordType::TXT, 1))
            .await
            .is_none()
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// With `dig` (Debian package bind9-dnsutils) when installed; skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_agrees_when_installed() {
    let Ok(probe) = std::process::Command::new("dig").arg("-v").output() else {
        eprintln!("dig not installed: skipped");
        return;
    };
    if !probe.status.success() {
        eprintln!("dig not usable: skipped");
        return;
    }
    let long = "y".repeat(1500);
    let dns = TestDns::start(sample_zone().txt("long.example.com", &long)).await;
    let port = dns.addr.port().to_string();
    let dig = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("dig")
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let base = |name: &str, rtype: &str| {
        vec![
            "@127.0.0.1".to_string(),
            "-p".into(),
            port.clone(),
            "+tries=1".into(),
            "+time=2".into(),
            name.into(),
            rtype.into(),
        ]
    };
    let out = dig(base("example.com", "TXT")).await.unwrap();
    assert!(out.contains("\"v=spf1 ip4:192.0.2.1 -all\""), "{out}");
    assert!(out.contains("flags: qr aa rd ra"), "{out}");
    let out = dig(base("nowhere.example.com", "A")).await.unwrap();
    assert!(out.contains("NXDOMAIN"), "{out}");
    let out = dig(base("_domainkey.example.com", "TXT")).await.unwrap();
    assert!(out.contains("NOERROR"), "{out}");
    let mut short = base("long.example.com", "TXT");
    short.push("+short".into());
    short.push("+noedns".into());
    let out = dig(short).await.unwrap();
    assert_eq!(out.matches('y').count(), 1500, "{out}");
    assert!(dns.tcp_queries() >= 1);
}
