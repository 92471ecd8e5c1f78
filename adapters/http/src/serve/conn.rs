//! One connection: hyper's HTTP/1.1 state machine over a [`Tracked`] socket, a service that
//! counts requests in flight, and a watchdog ([`Watched`]) that closes the connection when its
//! current wait has a deadline and the deadline has passed.
//!
//! hyper's own `header_read_timeout` is not used: it starts whenever hyper waits for a head,
//! so it also bounds the gap between keep-alive requests (with the same duration), and it
//! needs hyper's timer on every connection. Here the waits are told apart by [`Activity`]:
//!
//! | the connection is                                   | its deadline                      |
//! |-----------------------------------------------------|-----------------------------------|
//! | new, no request yet                                  | accepted + header time-out        |
//! | between requests, no byte of the next one yet        | last answer written + idle time-out |
//! | reading a later request's head                       | its first byte + header time-out  |
//! | handling a request (service called, answer not yet all handed to hyper) | none      |
//! | writing the tail of an answer to a slow reader       | last write progress + idle time-out |
//!
//! The watchdog only moves its timer earlier when a deadline comes earlier; when the timer
//! fires it looks again and re-arms for the current deadline, so a busy keep-alive connection
//! costs no timer work per request.

use super::refusal::{self, Refusal};
use super::{ServeOptions, HEAD_BUFFER};
use axum::body::{Body, Bytes};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// hyper's HTTP/1.1 settings for every connection.
pub(super) fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).max_buf_size(HEAD_BUFFER);
    builder
}

/// What one connection's task needs.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) http: Arc<http1::Builder>,
    pub(super) router: Router,
    pub(super) options: ServeOptions,
    /// Changes (or closes) when the server shuts down.
    pub(super) draining: watch::Receiver<()>,
}

impl Connection {
    pub(super) async fn run(mut self, tcp: TcpStream) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Tracked::new(tcp, Arc::clone(&activity)));
        let service = Service {
            router: self.router,
            activity: Arc::clone(&activity),
        };
        let conn = self.http.serve_connection(io, service);
        let mut watched = Watched::new(conn, activity, self.options);
        let end = tokio::select! {
            end = &mut watched => end,
            _ = self.draining.changed() => {
                watched.graceful_shutdown();
                watched.await
            }
        };
        if let End::Refused(tcp) = end {
            linger(tcp).await;
        }
    }
}

/// After a refusal: the client may still be sending what was refused (a 1 MiB head, say).
/// Closing a socket with unread data resets it, and the reset can destroy the answer before
/// the client reads it; so the write side is shut and what comes is read and dropped for a
/// short while first.
async fn linger(mut tcp: TcpStream) {
    const LINGER: Duration = Duration::from_secs(2);
    const AT_MOST: u64 = 4 * 1024 * 1024;
    let _ = tcp.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 8 * 1024];
        let mut read = 0u64;
        while read < AT_MOST {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n as u64,
            }
        }
    })
    .await;
}

/// What the socket, the service and the watchdog of one connection tell each other.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    /// Requests handed to the service.
    started: AtomicU64,
    /// Requests whose answer hyper has not yet taken whole (service called, body not dropped).
    live: AtomicU64,
    /// `started` as of the last flush with nothing live: every answer up to there is written.
    flushed: AtomicU64,
    /// When quiet: whether a head is being waited for (else the connection is idle).
    head: AtomicBool,
    /// Nanoseconds from `epoch` to the start of the current wait.
    mark: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            started: AtomicU64::new(0),
            live: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            head: AtomicBool::new(true),
            mark: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nothing in flight and every answer written: what hyper writes now is its own.
    fn quiet(&self) -> bool {
        self.live.load(Relaxed) == 0 && self.started.load(Relaxed) == self.flushed.load(Relaxed)
    }

    /// Bytes came in: on an idle connection they start the next request's head.
    fn read(&self) {
        if !self.head.load(Relaxed) && self.quiet() {
            self.mark.store(self.now(), Relaxed);
            self.head.store(true, Relaxed);
        }
    }

    /// Bytes of an answer went out: a slow reader that is still reading is not idle.
    fn wrote(&self) {
        if self.live.load(Relaxed) == 0 && self.started.load(Relaxed) != self.flushed.load(Relaxed)
        {
            self.mark.store(self.now(), Relaxed);
        }
    }

    /// hyper flushed: if every answer was complete, the connection is now idle.
    fn flushed(&self) {
        let started = self.started.load(Relaxed);
        if self.live.load(Relaxed) == 0 && started != self.flushed.load(Relaxed) {
            self.flushed.store(started, Relaxed);
            self.head.store(false, Relaxed);
            self.mark.store(self.now(), Relaxed);
        }
    }

    fn call(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Relaxed);
        self.live.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    /// When the connection's current wait ends, if it has a deadline.
    fn deadline(&self, options: &ServeOptions) -> Option<Instant> {
        if self.live.load(Relaxed) > 0 {
            return None;
        }
        let wait = if self.started.load(Relaxed) != self.flushed.load(Relaxed) {
            options.idle_timeout
        } else if self.head.load(Relaxed) {
            options.header_timeout
        } else {
            options.idle_timeout
        };
        Some(self.epoch + Duration::from_nanos(self.mark.load(Relaxed)) + wait)
    }
}

/// A request in flight, from the service call until hyper drops the answer's body.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The last answer is ready: its writing gets a whole idle time-out from now, however
        // long the handler took (not from when the request's head began).
        if self.0.live.fetch_sub(1, Relaxed) == 1 {
            self.0.mark.store(self.0.now(), Relaxed);
        }
    }
}

/// The router as hyper's service, counting requests in flight.
#[derive(Debug, Clone)]
struct Service {
    router: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = hyper::Response<Guarded>;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, req: hyper::Request<Incoming>) -> Answering {
        let guard = self.activity.call();
        let mut router = self.router.clone();
        Answering {
            inner: tower::Service::call(&mut router, req),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// The router's answer, its body carrying the request's [`InFlight`].
    struct Answering {
        #[pin]
        inner: axum::routing::future::RouteFuture<Infallible>,
        guard: Option<InFlight>,
    }
}

impl Future for Answering {
    type Output = Result<hyper::Response<Guarded>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|body| Guarded {
            inner: body,
            _guard: guard,
        })))
    }
}

pin_project! {
    /// An answer's body; the request stops being in flight when hyper drops it.
    struct Guarded {
        #[pin]
        inner: Body,
        _guard: Option<InFlight>,
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket as hyper sees it: reads and flushes move [`Activity`] along, and a head hyper
/// writes on its own (its answer to a request it could not parse) is replaced by the envelope.
#[derive(Debug)]
pub(super) struct Tracked {
    tcp: TcpStream,
    activity: Arc<Activity>,
    /// Whether a line end was read since the connection went quiet: without one, a head too
    /// large for the buffer is a request line (a target) too long.
    line_seen: bool,
    refusal: Option<Refusal>,
}

impl Tracked {
    fn new(tcp: TcpStream, activity: Arc<Activity>) -> Self {
        Tracked {
            tcp,
            activity,
            line_seen: false,
            refusal: None,
        }
    }

    /// Whether `head` (what hyper writes while quiet) is hyper's own refusal; if so the
    /// envelope answer takes its place.
    fn refuse(&mut self, head: &[u8]) -> bool {
        if self.refusal.is_some() {
            return true;
        }
        if !self.activity.quiet() {
            return false;
        }
        self.refusal = refusal::replacing(head, self.line_seen);
        self.refusal.is_some()
    }

    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.refusal {
            Some(refusal) => refusal.poll_write_to(&mut self.tcp, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            this.activity.read();
            if !this.line_seen && this.activity.quiet() {
                this.line_seen = new.contains(&b'\n');
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.refuse(buf) {
            // hyper's bytes are taken and dropped; the envelope goes out instead.
            let _ = this.poll_refusal(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut this.tcp).poll_write(cx, buf))?;
        this.activity.wrote();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if this.refuse(first) {
            let _ = this.poll_refusal(cx)?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        let n = ready!(Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs))?;
        this.activity.wrote();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_refusal(cx))?;
        ready!(Pin::new(&mut this.tcp).poll_flush(cx))?;
        if !this.activity.quiet() {
            this.activity.flushed();
            if this.activity.quiet() {
                this.line_seen = false;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_refusal(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

type HyperConnection = http1::Connection<TokioIo<Tracked>, Service>;

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// hyper finished it (the client closed, or a drain).
    Done,
    /// The watchdog closed it: a head or an idle wait outlasted its time-out.
    TimedOut,
    /// hyper refused a request it could not parse and the envelope was sent: the socket, to
    /// close gently.
    Refused(TcpStream),
}

/// A connection and its watchdog.
struct Watched {
    conn: Option<HyperConnection>,
    activity: Arc<Activity>,
    options: ServeOptions,
    timer: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("activity", &self.activity)
            .finish_non_exhaustive()
    }
}

impl Watched {
    fn new(conn: HyperConnection, activity: Arc<Activity>, options: ServeOptions) -> Self {
        let first = activity.epoch + options.header_timeout;
        Watched {
            conn: Some(conn),
            activity,
            options,
            timer: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    fn graceful_shutdown(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            Pin::new(conn).graceful_shutdown();
        }
    }

    fn finished(&mut self, result: hyper::Result<()>) -> End {
        let Some(conn) = self.conn.take() else {
            return End::Done;
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        let tracked = conn.into_parts().io.into_inner();
        if tracked.refusal.is_some() {
            End::Refused(tracked.tcp)
        } else {
            End::Done
        }
    }
}

impl Future for Watched {
    type Output = End;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(End::Done);
        };
        if let Poll::Ready(result) = Pin::new(conn).poll(cx) {
            return Poll::Ready(this.finished(result));
        }
        // Only an earlier deadline moves the timer now; a later one is looked at when it fires.
        if let Some(deadline) = this.activity.deadline(&this.options) {
            if deadline < this.timer.deadline() {
                this.timer.as_mut().reset(deadline);
            }
        }
        while this.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match this.activity.deadline(&this.options) {
                Some(deadline) if deadline <= now => {
                    this.conn = None;
                    return Poll::Ready(End::TimedOut);
                }
                Some(deadline) => this.timer.as_mut().reset(deadline),
                // Busy: look again later.
                None => this
                    .timer
                    .as_mut()
                    .reset(now + this.options.idle_timeout.min(this.options.header_timeout)),
            }
        }
        Poll::Pending
    }
}
