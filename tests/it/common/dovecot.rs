//! A real Dovecot IMAP server for tests: a private configuration in a temp dir (passwd-file
//! users, one Maildir per user, loopback ports, its own TLS certificate from a test CA), run
//! as `dovecot -F -c CONF`, a child process of the test; no system service is touched.
//! Also a TCP proxy in front of it whose connections a test can cut.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

pub struct Dovecot {
    child: Child,
    pub dir: tempfile::TempDir,
    /// Plain IMAP (STARTTLS offered) and implicit-TLS IMAP ports on 127.0.0.1.
    pub imap_port: u16,
    pub imaps_port: u16,
    /// PEM of the CA that signed the server's certificate (for "localhost" and 127.0.0.1).
    pub ca_file: PathBuf,
    mail_uid: u32,
    mail_gid: u32,
    counter: AtomicU32,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Dovecot {
    pub fn start() -> Self {
        let dovecot = super::require_program("dovecot");
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        set_mode(root, 0o755);
        let is_root = command_output("id", &["-u"]) == "0";
        // As root, Dovecot's own unprivileged users (created by its Debian package) run its
        // helper and login processes, and mail is owned by nobody; otherwise everything runs
        // as the current user.
        let (internal_user, login_user, mail_uid, mail_gid) = if is_root {
            ("dovecot".to_string(), "dovenull".to_string(), 65534, 65534)
        } else {
            let me = command_output("id", &["-un"]);
            let uid = command_output("id", &["-u"]).parse().expect("uid");
            let gid = command_output("id", &["-g"]).parse().expect("gid");
            (me.clone(), me, uid, gid)
        };
        let (cert_pem, key_pem, ca_pem) = test_certificates();
        std::fs::write(root.join("cert.pem"), cert_pem).expect("cert");
        std::fs::write(root.join("key.pem"), key_pem).expect("key");
        let ca_file = root.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("ca");
        std::fs::write(
            root.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .expect("passwd");
        set_mode(&root.join("passwd"), 0o644);
        for d in ["run", "state", "home"] {
            std::fs::create_dir_all(root.join(d)).expect("dirs");
        }
        let imap_port = free_port();
        let imaps_port = free_port();
        let r = root.display();
        let conf = format!(
            r#"base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={r}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"#
        );
        let conf_path = root.join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let mut server = Dovecot {
            child: Command::new(dovecot)
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn dovecot"),
            dir,
            imap_port,
            imaps_port,
            ca_file,
            mail_uid,
            mail_gid,
            counter: AtomicU32::new(0),
        };
        server.create_folder("INBOX");
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                panic!("dovecot exited ({status}): {stderr}\nlog:\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.imap_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 256];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"* OK") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not answer; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("home").join(USER).join("Maildir")
    }

    /// The Maildir++ folder of an IMAP folder name (`INBOX` is the top).
    fn folder_dir(&self, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            self.maildir()
        } else {
            self.maildir().join(format!(".{folder}"))
        }
    }

    pub fn create_folder(&self, folder: &str) {
        let dir = self.folder_dir(folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("maildir");
        }
        self.chown_tree(&self.dir.path().join("home"));
    }

    /// Puts messages straight into the folder's Maildir (`cur/`, with Maildir flags such as
    /// "S" for seen, or none); Dovecot assigns UIDs in this order when it next looks.
    pub fn deliver(&self, folder: &str, messages: &[(Vec<u8>, &str)]) {
        let dir = self.folder_dir(folder);
        if !dir.join("cur").is_dir() {
            self.create_folder(folder);
        }
        for (raw, flags) in messages {
            let n = self.counter.fetch_add(1, Ordering::SeqCst);
            let name = format!("{}.M{n:08}P1.test:2,{flags}", 1_700_000_000 + n);
            let path = dir.join("cur").join(name);
            std::fs::write(&path, raw).expect("deliver");
        }
        self.chown_tree(&dir);
    }

    fn chown_tree(&self, path: &Path) {
        let _ = std::os::unix::fs::chown(path, Some(self.mail_uid), Some(self.mail_gid));
        if path.is_dir() {
            for e in std::fs::read_dir(path).expect("read dir").flatten() {
                self.chown_tree(&e.path());
            }
        }
    }

    /// Runs doveadm against this server's configuration.
    pub fn doveadm(&self, args: &[&str]) {
        super::run_ok(
            Command::new(super::require_program("doveadm"))
                .arg("-c")
                .arg(self.dir.path().join("dovecot.conf"))
                .args(args),
            &format!("doveadm {args:?}"),
        );
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// (server cert PEM, server key PEM, CA cert PEM): a test CA and a server certificate it
/// signed for localhost and 127.0.0.1.
fn test_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Postern test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    (cert.pem(), key.serialize_pem(), ca.pem())
}

/// A TCP proxy to `target` whose live connections `cut()` closes, as a dropped network does.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl CuttableProxy {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let registry = live.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(target) else {
                    continue;
                };
                for s in [&client, &upstream] {
                    if let (Ok(c), Ok(mut l)) = (s.try_clone(), registry.lock()) {
                        l.push(c);
                    }
                }
                pipe(&client, &upstream);
                pipe(&upstream, &client);
            }
        });
        Self { addr, live }
    }

    pub fn cut(&self) {
        if let Ok(mut l) = self.live.lock() {
            for s in l.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
