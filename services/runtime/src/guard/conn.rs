//! Accepted connections the guard can close.
//!
//! hyper waits for HTTP/2 send capacity before it polls a response body again (it keeps the
//! chunk it last took until the peer's flow-control window lets it out), so a call whose peer
//! advertises a window of 0 can neither be answered nor reset by the server: its trailers
//! never get polled, and hyper offers no handle on the stream. When the guard has ended such a
//! call (its slot is free, its pages dropped) and the peer still takes nothing, the one way
//! left to end the stream on the wire is to close its connection. [`GuardedStream`] wraps each
//! accepted TCP stream; its [`GuardedConnection`] (tonic puts it in every request's
//! extensions) carries the handle that closes it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted TCP connection that [`ConnectionHandle::close`] ends.
#[derive(Debug)]
pub struct GuardedStream {
    inner: TcpStream,
    handle: ConnectionHandle,
}

impl GuardedStream {
    /// Wraps an accepted connection.
    pub fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            handle: ConnectionHandle::default(),
        }
    }
}

/// Closes one connection: its reads and writes fail from then on, so the HTTP/2 connection
/// ends and every stream on it with it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionHandle(Arc<Closer>);

#[derive(Debug, Default)]
struct Closer {
    closed: AtomicBool,
    /// The task that reads the connection (hyper's connection task always has a read pending).
    reader: Mutex<Option<Waker>>,
}

impl ConnectionHandle {
    /// Closes the connection.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        let reader = self
            .0
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = reader {
            waker.wake();
        }
    }

    /// Whether [`ConnectionHandle::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    fn closed_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed by the server: the peer did not take a call's status",
        )
    }
}

/// What tonic puts in the extensions of every request of a [`GuardedStream`]: the TCP
/// addresses (the guard puts them back as the `TcpConnectInfo` tonic's `remote_addr` reads)
/// and the handle that closes the connection.
#[derive(Debug, Clone)]
pub struct GuardedConnection {
    /// Local and remote addresses.
    pub tcp: TcpConnectInfo,
    /// Closes the connection.
    pub handle: ConnectionHandle,
}

impl Connected for GuardedStream {
    type ConnectInfo = GuardedConnection;

    fn connect_info(&self) -> GuardedConnection {
        GuardedConnection {
            tcp: self.inner.connect_info(),
            handle: self.handle.clone(),
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        {
            let mut reader = self
                .handle
                .0
                .reader
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
        }
        if self.handle.is_closed() {
            return Poll::Ready(Err(ConnectionHandle::closed_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.handle.is_closed() {
            return Poll::Ready(Err(ConnectionHandle::closed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.handle.is_closed() {
            return Poll::Ready(Err(ConnectionHandle::closed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.is_closed() {
            return Poll::Ready(Err(ConnectionHandle::closed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
