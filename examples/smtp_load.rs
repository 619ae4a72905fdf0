//! SMTP load generator for the benchmarks: sends one message template over N sessions,
//! each message with a fresh Message-ID prepended, and prints messages per second.
//!
//! cargo run --release --example smtp_load -- ADDR RCPT TEMPLATE.eml SESSIONS MESSAGES

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn reply(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
    }
}

fn session(
    addr: &str,
    rcpt: &str,
    template: &[u8],
    next: &AtomicUsize,
    total: usize,
    worker: usize,
) -> std::io::Result<usize> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    reply(&mut r)?;
    w.write_all(b"EHLO load.bench.test\r\n")?;
    reply(&mut r)?;
    let mut ok = 0;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            break;
        }
        let mut msg = format!("Message-ID: <load-{n}-{worker}@bench.test>\r\n").into_bytes();
        msg.extend_from_slice(template);
        // Pipelined envelope and chunk, one reply each.
        w.write_all(
            format!(
                "MAIL FROM:<sender@customer.bench.test>\r\nRCPT TO:<{rcpt}>\r\nBDAT {} LAST\r\n",
                msg.len()
            )
            .as_bytes(),
        )?;
        w.write_all(&msg)?;
        let codes = [reply(&mut r)?, reply(&mut r)?, reply(&mut r)?];
        if codes == [250, 250, 250] {
            ok += 1;
        } else {
            eprintln!("message {n}: replies {codes:?}");
        }
    }
    w.write_all(b"QUIT\r\n")?;
    Ok(ok)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: smtp_load ADDR RCPT TEMPLATE.eml SESSIONS MESSAGES");
        std::process::exit(2);
    }
    let template = match std::fs::read(&args[3]) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("smtp_load: {}: {e}", args[3]);
            std::process::exit(1);
        }
    };
    let (sessions, total): (usize, usize) = match (args[4].parse(), args[5].parse()) {
        (Ok(s), Ok(m)) => (s, m),
        _ => {
            eprintln!("smtp_load: SESSIONS and MESSAGES must be numbers");
            std::process::exit(2);
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..sessions)
        .map(|i| {
            let (addr, rcpt, template, next) = (
                args[1].clone(),
                args[2].clone(),
                template.clone(),
                next.clone(),
            );
            std::thread::spawn(move || session(&addr, &rcpt, &template, &next, total, i))
        })
        .collect();
    let mut ok = 0;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => ok += n,
            Ok(Err(e)) => eprintln!("smtp_load: session error: {e}"),
            Err(_) => eprintln!("smtp_load: a session panicked"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{ok} {secs:.3} {:.1}", ok as f64 / secs);
}
