//! Request bodies with a time limit. hyper bounds the wait for a request head but not for
//! its body: a client could send a body one byte a minute and hold its connection (and an
//! upload's file) for ever. Each wait for body bytes ends at the deadline of a
//! [`Pace`]: no bytes for `http.body_timeout`, or an average under `http.body_min_rate`
//! once `http.body_rate_grace` has passed. The clock starts when the handler first reads.

use crate::net::{Pace, PaceBreach, PaceLimits};
use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Read(BoxError),
    #[error("{}", too_slow(.0))]
    TooSlow(PaceBreach),
}

fn too_slow(breach: &PaceBreach) -> String {
    let d = |d: &Duration| humantime::format_duration(Duration::from_secs(d.as_secs().max(1)));
    match breach {
        PaceBreach::Idle(limit) => format!(
            "the request body stalled (no data for {}); the connection is closed, send the request again",
            d(limit)
        ),
        PaceBreach::Total(limit) => format!(
            "the request body took longer than {}; the connection is closed, send the request again",
            d(limit)
        ),
        PaceBreach::TooSlow {
            bytes,
            elapsed,
            min_rate,
        } => format!(
            "the request body arrives too slowly ({bytes} bytes in {}, the least is {min_rate} bytes per second); the connection is closed, send the request again over a faster link",
            d(elapsed)
        ),
    }
}

/// A request body whose reads give up at the pace's deadline.
pub struct PacedBody<B> {
    inner: B,
    limits: PaceLimits,
    /// Started at the first read.
    pace: Option<Pace>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The limit the armed timer stands for; `None` while not waiting.
    armed: Option<PaceBreach>,
}

impl<B> PacedBody<B> {
    pub fn new(inner: B, limits: PaceLimits) -> Self {
        Self {
            inner,
            limits,
            pace: None,
            timer: None,
            armed: None,
        }
    }
}

impl<B> Body for PacedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Self {
            inner,
            limits,
            pace,
            timer,
            armed,
        } = &mut *self;
        let pace = pace.get_or_insert_with(|| Pace::start(*limits));
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    pace.received(data.len());
                }
                *armed = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e.into())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let breach = match armed {
                    Some(breach) => *breach,
                    None => {
                        let (deadline, breach) = pace.deadline();
                        match timer {
                            Some(t) => t.as_mut().reset(deadline),
                            None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                        }
                        *armed = Some(breach);
                        breach
                    }
                };
                let expired = timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if expired {
                    *armed = None;
                    return Poll::Ready(Some(Err(BodyError::TooSlow(breach))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields its chunks one per `gap`.
    struct Trickle {
        chunks: Vec<&'static [u8]>,
        gap: Pin<Box<Sleep>>,
        every: Duration,
    }

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.chunks.is_empty() {
                return Poll::Ready(None);
            }
            if self.gap.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let next = tokio::time::Instant::now() + self.every;
            self.gap.as_mut().reset(next);
            let chunk = self.chunks.remove(0);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(chunk)))))
        }
    }

    fn trickle(chunks: Vec<&'static [u8]>, every: Duration) -> Trickle {
        Trickle {
            chunks,
            gap: Box::pin(tokio::time::sleep(every)),
            every,
        }
    }

    fn limits() -> PaceLimits {
        PaceLimits {
            idle: Duration::from_secs(30),
            total: None,
            min_rate: 100,
            grace: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_body_is_read_whole() {
        let body = PacedBody::new(
            trickle(vec![b"hello ", b"world"], Duration::from_secs(1)),
            limits(),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello world");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_trickles_fails_after_the_grace() {
        // One byte every 5 s: never idle for 30 s, but far under 100 bytes per second.
        let body = PacedBody::new(trickle(vec![b"x"; 100], Duration::from_secs(5)), limits());
        let started = tokio::time::Instant::now();
        let err = body.collect().await.expect_err("too slow");
        assert!(
            matches!(err, BodyError::TooSlow(PaceBreach::TooSlow { .. })),
            "{err}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(err.to_string().contains("too slowly"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_time() {
        let mut l = limits();
        l.min_rate = 0;
        let body = PacedBody::new(trickle(vec![b"x", b"y"], Duration::from_secs(60)), l);
        let err = body.collect().await.expect_err("stalled");
        assert!(
            matches!(err, BodyError::TooSlow(PaceBreach::Idle(_))),
            "{err}"
        );
    }
}
