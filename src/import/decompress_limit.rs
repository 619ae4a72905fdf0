//! Limits on decompressing an uploaded or imported `.gz` mailbox, against gzip bombs: a few
//! hundred kilobytes of deflate can stand for gigabytes of zeros. Two limits: the total
//! decompressed size, and the ratio of decompressed to compressed bytes (real mail
//! compresses 3 to 10 times, a bomb several hundred). The ratio is only judged past
//! [`RATIO_FLOOR`] decompressed bytes, so that a small, very regular file is not refused.
//!
//! The same check serves the upload (refused with 413 while it arrives) and the reading of
//! the file by an import (the CLI's, or a job resumed after the limits changed).

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Below this many decompressed bytes the ratio is not judged.
pub const RATIO_FLOOR: u64 = 64 * 1024 * 1024;

/// `imports.max_decompressed_size` and `imports.max_compression_ratio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressLimits {
    /// Most bytes a compressed mailbox may decompress to.
    pub max_size: u64,
    /// Most decompressed bytes per compressed byte.
    pub max_ratio: u64,
}

impl Default for DecompressLimits {
    fn default() -> Self {
        Self {
            max_size: super::DEFAULT_MAX_DECOMPRESSED_SIZE,
            max_ratio: super::DEFAULT_MAX_COMPRESSION_RATIO,
        }
    }
}

/// Which limit a compressed mailbox went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "it decompresses to more than imports.max_decompressed_size ({limit} bytes); if this \
         mailbox is genuine, raise imports.max_decompressed_size (environment: \
         POSTERN__IMPORTS__MAX_DECOMPRESSED_SIZE), or split it into smaller files"
    )]
    Size { limit: u64 },
    #[error(
        "{compressed} compressed bytes decompress to {decompressed}, more than \
         imports.max_compression_ratio ({ratio} to 1) allows for real mail: it looks like a \
         gzip bomb; if this mailbox is genuine, raise imports.max_compression_ratio \
         (environment: POSTERN__IMPORTS__MAX_COMPRESSION_RATIO)"
    )]
    Ratio {
        compressed: u64,
        decompressed: u64,
        ratio: u64,
    },
}

impl DecompressLimits {
    /// Whether `decompressed` bytes out of `compressed` are still within the limits.
    pub fn check(&self, compressed: u64, decompressed: u64) -> Result<(), LimitExceeded> {
        if decompressed > self.max_size {
            return Err(LimitExceeded::Size {
                limit: self.max_size,
            });
        }
        if decompressed > RATIO_FLOOR
            && decompressed > compressed.max(1).saturating_mul(self.max_ratio)
        {
            return Err(LimitExceeded::Ratio {
                compressed,
                decompressed,
                ratio: self.max_ratio,
            });
        }
        Ok(())
    }
}

/// Counts the bytes read through it (the compressed side of a decoder).
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A decoder's output, stopped with an error carrying [`LimitExceeded`] once it passes the
/// limits (`compressed`: the count of a [`CountingReader`] under the decoder).
pub struct LimitedReader<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    decompressed: u64,
    limits: DecompressLimits,
}

impl<R> LimitedReader<R> {
    pub fn new(inner: R, compressed: Arc<AtomicU64>, limits: DecompressLimits) -> Self {
        Self {
            inner,
            compressed,
            decompressed: 0,
            limits,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.decompressed += n as u64;
        self.limits
            .check(self.compressed.load(Ordering::Relaxed), self.decompressed)
            .map_err(io::Error::other)?;
        Ok(n)
    }
}

/// The limit an I/O error of a [`LimitedReader`] stands for, if it is one.
pub fn exceeded(e: &io::Error) -> Option<LimitExceeded> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitExceeded>())
        .copied()
}

/// Follows a gzip upload as it arrives, decompressing it to nowhere, to refuse a bomb
/// before it is stored whole.
pub struct UploadCheck {
    decoder: flate2::write::MultiGzDecoder<Counter>,
    compressed: u64,
    /// The data stopped being valid gzip: the import will report where; nothing more is
    /// judged here.
    damaged: bool,
}

/// Counts what the decoder writes and stops it past the limits.
struct Counter {
    written: u64,
    compressed: u64,
    limits: DecompressLimits,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        self.limits
            .check(self.compressed, self.written)
            .map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UploadCheck {
    pub fn new(limits: DecompressLimits) -> Self {
        Self {
            decoder: flate2::write::MultiGzDecoder::new(Counter {
                written: 0,
                compressed: 0,
                limits,
            }),
            compressed: 0,
            damaged: false,
        }
    }

    /// The next piece of the upload.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), LimitExceeded> {
        if self.damaged {
            return Ok(());
        }
        use std::io::Write;
        self.compressed += chunk.len() as u64;
        self.decoder.get_mut().compressed = self.compressed;
        let written = self.decoder.write_all(chunk);
        self.judge(written)
    }

    /// The upload is whole: what the decoder still holds is judged too.
    pub fn finish(&mut self) -> Result<(), LimitExceeded> {
        if self.damaged {
            return Ok(());
        }
        let finished = self.decoder.try_finish();
        self.judge(finished)
    }

    /// A decoder error past a limit refuses the upload; any other means the gzip is damaged,
    /// which the import itself reports later, so checking stops there.
    fn judge(&mut self, decoded: io::Result<()>) -> Result<(), LimitExceeded> {
        match decoded {
            Ok(()) => Ok(()),
            Err(e) => match exceeded(&e) {
                Some(limit) => Err(limit),
                None => {
                    self.damaged = true;
                    Ok(())
                }
            },
        }
    }

    /// Decompressed bytes so far.
    pub fn decompressed(&self) -> u64 {
        self.decoder.get_ref().written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip_of_zeros(n: usize) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![0u8; 1024 * 1024];
        let mut left = n;
        while left > 0 {
            let k = left.min(block.len());
            if enc.write_all(&block[..k]).is_err() {
                break;
            }
            left -= k;
        }
        enc.finish().unwrap_or_default()
    }

    #[test]
    fn a_bomb_is_refused_by_its_ratio_and_a_large_file_by_its_size() {
        let bomb = gzip_of_zeros(100 * 1024 * 1024);
        assert!(bomb.len() < 150 * 1024, "{}", bomb.len());
        let mut check = UploadCheck::new(DecompressLimits {
            max_size: u64::MAX,
            max_ratio: 100,
        });
        let refused = bomb.chunks(16 * 1024).find_map(|c| check.feed(c).err());
        assert!(
            matches!(refused, Some(LimitExceeded::Ratio { ratio: 100, .. })),
            "{refused:?}"
        );
        assert!(check.decompressed() < 90 * 1024 * 1024, "stopped early");

        // The same through the reading side, with a size cap.
        let limits = DecompressLimits {
            max_size: 10 * 1024 * 1024,
            max_ratio: 100_000,
        };
        let (counted, compressed) = CountingReader::new(bomb.as_slice());
        let mut reader = LimitedReader::new(
            flate2::read::MultiGzDecoder::new(counted),
            compressed,
            limits,
        );
        let e = io::copy(&mut reader, &mut io::sink()).err();
        assert_eq!(
            e.as_ref().and_then(exceeded),
            Some(LimitExceeded::Size {
                limit: 10 * 1024 * 1024
            })
        );
    }

    #[test]
    fn ordinary_mail_passes() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!(
                "From c{i}@x.test Mon Jan  1 00:00:00 2024\nFrom: c{i}@x.test\nSubject: order {i}\n\nhello {}\n\n",
                i * 7919 % 104_729
            ));
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap_or_default();
        let gz = enc.finish().unwrap_or_default();
        let mut check = UploadCheck::new(DecompressLimits::default());
        for c in gz.chunks(8 * 1024) {
            assert_eq!(check.feed(c), Ok(()));
        }
        assert_eq!(check.finish(), Ok(()));
        assert_eq!(check.decompressed(), text.len() as u64);
    }
}
