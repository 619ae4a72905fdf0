"""The processes and resources the soak starts, breaks and restores: `postern serve`, the
flapping relay (Postfix's smtp-sink), the loopback DNS server and the data disk."""

import http.client
import os
import shutil
import signal
import subprocess
import threading
import time

from common import port_open


class PosternServer:
    """`postern serve` with the soak's configuration. Every start is logged to the same file;
    a process that exits when the soak did not kill or stop it is a crash, recorded in the
    journal and restarted (so the run goes on and the crash is reported)."""

    def __init__(self, binary, config, log_path, smtp_port, http_port, journal, log):
        self.binary = binary
        self.config = config
        self.log_path = log_path
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.journal = journal
        self.log = log
        self.lock = threading.RLock()
        self.proc = None
        self.starts = 0
        self.crashes = []
        self.stopped = False

    @property
    def pid(self):
        p = self.proc
        return p.pid if p is not None and p.poll() is None else None

    def start(self, timeout=120):
        with self.lock:
            self.starts += 1
            with open(self.log_path, "ab") as f:
                f.write(f"\n===== soak: start {self.starts} at {time.time():.3f} =====\n".encode())
            out = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--config", self.config],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            out.close()
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"postern serve exited with {self.proc.returncode} while starting; see {self.log_path}")
                if port_open(self.smtp_port) and self.ready():
                    self.journal.add("server_ready", start=self.starts, pid=self.proc.pid,
                                     seconds=round(time.monotonic() - t0, 3))
                    return time.monotonic() - t0
                time.sleep(0.1)
            raise RuntimeError(f"postern serve not ready after {timeout}s; see {self.log_path}")

    def ready(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
            c.request("GET", "/readyz")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except (OSError, http.client.HTTPException):
            return False

    def kill(self):
        """SIGKILL: no graceful anything."""
        with self.lock:
            p = self.proc
            if p is None or p.poll() is not None:
                return None
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            self.proc = None  # not a crash: check_alive leaves it alone until start()
            self.journal.add("kill", pid=p.pid)
            return p.pid

    def stop(self, timeout=90):
        """SIGTERM and wait: returns (exit status, seconds taken)."""
        with self.lock:
            self.stopped = True
            p = self.proc
            if p is None or p.poll() is not None:
                return (p.returncode if p else None, 0.0)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                rc = "killed after %ds without exiting on SIGTERM" % timeout
                p.wait()
            return rc, time.monotonic() - t0

    def check_alive(self):
        """Called often: restarts a process that died on its own, and records the crash."""
        with self.lock:
            p = self.proc
            if self.stopped or p is None or p.poll() is None:
                return
            crash = {"t": time.time(), "pid": p.pid, "status": p.returncode}
            self.crashes.append(crash)
            self.journal.add("crash", **crash)
            self.log(f"POSTERN DIED ON ITS OWN: pid {p.pid}, status {p.returncode}; restarting")
            self.proc = None
            try:
                self.start()
            except RuntimeError as e:
                self.log(f"restart after crash failed: {e}")


class SmtpSink:
    """Postfix's smtp-sink as the relay peer, started and stopped on one port. Modes:
    accept (dumps every transaction to a file), down (not running), and three temporary
    refusals: 4xx to RCPT, 4xx after the data, 421 and hang-up after MAIL."""

    MODES = {
        "accept": [],
        "tempfail_rcpt": ["-r", "RCPT"],
        "tempfail_data": ["-r", "."],
        "close_421": ["-Q", "MAIL"],
    }

    def __init__(self, port, dump_dir, log_path, journal):
        self.port = port
        self.dump_dir = dump_dir
        self.log_path = log_path
        self.journal = journal
        self.proc = None
        self.mode = "down"
        self.binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        os.makedirs(dump_dir, exist_ok=True)
        os.chmod(dump_dir, 0o777)  # smtp-sink writes as the unprivileged user

    def set_mode(self, mode):
        if mode == self.mode and (mode == "down" or (self.proc and self.proc.poll() is None)):
            return
        self.stop()
        if mode == "down":
            return
        args = [self.binary]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        args += self.MODES[mode]
        if mode == "accept":
            args += ["-d", os.path.join(self.dump_dir, "%Y%m%d%H%M%S.")]
        args += ["-h", "relay.soak.test", f"127.0.0.1:{self.port}", "64"]
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        for _ in range(100):
            if port_open(self.port) or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError(f"smtp-sink did not start (mode {mode}); see {self.log_path}")
        self.mode = mode
        self.journal.add("sink_mode", mode=mode)

    def stop(self):
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            self.journal.add("sink_stop", was=self.mode)
        self.proc = None
        self.mode = "down"


class DnsServer:
    """scripts/soak/dns_server.py on a fixed port. Down as "refused" (the process is gone:
    port unreachable, lookups fail at once) or "silent" (SIGSTOP: lookups time out)."""

    def __init__(self, python, script, zone_path, port_file, log_path, journal):
        self.python = python
        self.script = script
        self.zone_path = zone_path
        self.port_file = port_file
        self.log_path = log_path
        self.journal = journal
        self.proc = None
        self.port = 0
        self.state = "down"

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        out = open(self.log_path, "ab")
        args = [self.python, self.script, self.zone_path, self.port_file]
        if self.port:
            args += ["--port", str(self.port)]
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        for _ in range(200):
            if os.path.exists(self.port_file):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the DNS server did not start; see {self.log_path}")
            time.sleep(0.05)
        self.port = int(open(self.port_file).read())
        self.state = "up"

    def down(self, how):
        if how == "silent":
            os.kill(self.proc.pid, signal.SIGSTOP)
        else:
            self.proc.kill()
            self.proc.wait()
        self.state = how
        self.journal.add("dns_down", how=how)

    def up(self):
        if self.state == "silent":
            os.kill(self.proc.pid, signal.SIGCONT)
        elif self.state == "refused":
            self.start()
        self.state = "up"
        self.journal.add("dns_up")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.state == "silent":
                os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.state = "down"


class DataDisk:
    """The file system of Postern's data directory, small enough to fill: an ext4 image
    mounted through a loop device (needs root), else a tmpfs, else none (the disk-full
    fault is then skipped, and the report says why)."""

    def __init__(self, mount_point, image_path, size_mb, journal, log):
        self.mount_point = mount_point
        self.image_path = image_path
        self.size_mb = size_mb
        self.journal = journal
        self.log = log
        self.kind = None
        self.why_not = None
        self.ballast = os.path.join(mount_point, "soak-ballast")

    def setup(self):
        os.makedirs(self.mount_point, exist_ok=True)
        if os.geteuid() != 0:
            self.kind = "none"
            self.why_not = "not root: cannot mount a small file system for the data directory"
            return
        try:
            with open(self.image_path, "wb") as f:
                f.truncate(self.size_mb * 1024 * 1024)
            # -m 0: no blocks reserved for root (Postern runs as root here and would use them).
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", self.image_path], check=True,
                           capture_output=True)
            subprocess.run(["mount", "-o", "loop", self.image_path, self.mount_point],
                           check=True, capture_output=True)
            self.kind = "ext4 on a loop device"
            return
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            err = getattr(e, "stderr", b"") or b""
            self.log(f"loop-mounted ext4 unavailable ({e}: {err.decode(errors='replace').strip()}); trying tmpfs")
            if os.path.exists(self.image_path):
                os.unlink(self.image_path)
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs",
                            self.mount_point], check=True, capture_output=True)
            self.kind = "tmpfs"
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            self.kind = "none"
            self.why_not = f"neither a loop device nor a tmpfs could be mounted: {e}"

    @property
    def can_fill(self):
        return self.kind in ("ext4 on a loop device", "tmpfs")

    def free_bytes(self):
        st = os.statvfs(self.mount_point)
        return st.f_bavail * st.f_frsize

    def fill(self):
        """Takes every free block: fallocate the free space, then write until ENOSPC."""
        free = self.free_bytes()
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, max(free - 64 * 1024, 4096))
            except OSError:
                pass
            os.lseek(fd, 0, os.SEEK_END)
            chunk = b"\0" * 4096
            while True:
                try:
                    os.write(fd, chunk)
                except OSError:
                    break
            try:
                os.fsync(fd)
            except OSError:
                pass
        finally:
            os.close(fd)
        self.journal.add("disk_full", ballast_bytes=os.path.getsize(self.ballast),
                         free_after=self.free_bytes())

    def free(self):
        if os.path.exists(self.ballast):
            os.unlink(self.ballast)
        self.journal.add("disk_freed", free=self.free_bytes())

    def teardown(self, keep_image=False):
        if os.path.exists(self.ballast):
            os.unlink(self.ballast)
        if self.kind in ("ext4 on a loop device", "tmpfs"):
            for _ in range(20):
                r = subprocess.run(["umount", self.mount_point], capture_output=True)
                if r.returncode == 0:
                    break
                time.sleep(0.5)
            else:
                self.log(f"could not unmount {self.mount_point}: {r.stderr.decode(errors='replace').strip()}")
        if os.path.exists(self.image_path) and not keep_image:
            os.unlink(self.image_path)
