//! The TCP connections under gRPC, shaped so that one small call is one packet each way.
//!
//! h2 writes a DATA frame of 256 bytes or more by reference (a vectored write of its own buffer
//! and the payload) when the socket takes vectored writes, and must send what it holds before it
//! can take the next frame. A unary gRPC response of a few hundred bytes then leaves as two
//! writes, headers and data, then trailers, and a request as three: headers, data, then the
//! empty frame that ends the stream. On a socket that says it takes no vectored writes, h2 copies
//! frames below 1 KiB into its buffer and sends a small call's frames in one write: each side
//! makes one system call and the peer wakes once. Both ends of every connection aide makes
//! (client calls, node-to-node calls, accepted connections) use [`Unvectored`].

use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;
use tonic::transport::Uri;

/// A stream that reports no vectored writes (see the module documentation).
#[derive(Debug)]
pub struct Unvectored<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for Unvectored<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Unvectored<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: Connected> Connected for Unvectored<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

/// Opens plain TCP connections (`TCP_NODELAY`, [`Unvectored`]) for a tonic channel; TLS, when
/// the endpoint has it, is layered on top by tonic.
#[derive(Clone, Copy, Debug, Default)]
pub struct Connector;

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<Unvectored<TcpStream>>>> + Send>>;

impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<Unvectored<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(80);
            // The client tells a node that cannot be reached from one that answered by these
            // words, as tonic's own connector writes them.
            let stream = TcpStream::connect((host, port)).await.map_err(|e| {
                io::Error::new(e.kind(), format!("tcp connect error to {host}:{port}: {e}"))
            })?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(Unvectored(stream)))
        })
    }
}
