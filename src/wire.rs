//! The TCP connections under gRPC, shaped so that one small call is one packet each way.
//!
//! h2 writes a DATA frame of 256 bytes or more by reference (a vectored write of its own buffer
//! and the payload) when the socket takes vectored writes, and must send what it holds before it
//! can take the next frame. A unary gRPC response of a few hundred bytes then leaves as two
//! writes, headers and data, then trailers, and a request as three: headers, data, then the
//! empty frame that ends the stream. On a socket that says it takes no vectored writes, h2 copies
//! frames below 1 KiB into its buffer and sends a small call's frames in one write: each side
//! makes one system call and the peer wakes once. Accepted connections use [`Unvectored`]; the
//! connections aide makes (client calls, node-to-node calls) use [`ClientStream`], which also
//! sends a request's HEADERS frame together with the DATA frame hyper sends a moment after it.

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

/// How long [`ClientStream`] holds a request's HEADERS frame for the DATA frame behind it (tokio's
/// timer counts whole milliseconds, so up to about 2 ms). A unary call's DATA follows within
/// microseconds; this only bounds a stream whose body comes later.
const HOLD: std::time::Duration = std::time::Duration::from_millis(1);
/// The most bytes [`ClientStream`] gathers before it writes them regardless.
const MAX_GATHERED: usize = 64 * 1024;
/// HTTP/2 frame header: 3 bytes of length, type, flags, 4 bytes of stream id.
const FRAME_HEADER: usize = 9;
const HEADERS_FRAME: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Where the last frame of `bytes` starts, when `bytes` are whole HTTP/2 frames and that last
/// one is a complete HEADERS frame opening a request whose body is still to come.
fn open_headers_at(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut last = None;
    while at < bytes.len() {
        let header = bytes.get(at..at + FRAME_HEADER)?;
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        last = Some((at, header[3], header[4]));
        at += FRAME_HEADER + len;
    }
    match last {
        Some((start, HEADERS_FRAME, flags))
            if at == bytes.len() && flags & END_HEADERS != 0 && flags & END_STREAM == 0 =>
        {
            Some(start)
        }
        _ => None,
    }
}

/// The client end of the connections aide makes: no vectored writes (see the module
/// documentation), and on a plain TCP connection a request leaves as one packet. hyper sends a
/// request's HEADERS frame as soon as h2 queues it and its DATA frame only once h2 has opened the
/// stream, a moment later, so each small call cost two packets and woke the server twice. This
/// stream gathers what h2 writes and sends it at each flush, except that a flush ending in such a
/// HEADERS frame sends what comes before it and holds the frame for its DATA (at most [`HOLD`]). Under TLS the bytes are records,
/// not frames, and go out as written.
pub struct ClientStream {
    tcp: TcpStream,
    coalesce: bool,
    /// Written by h2, not yet sent.
    gathered: Vec<u8>,
    /// Whether `gathered` starts at a frame boundary (it does after every complete flush).
    aligned: bool,
    /// When a held HEADERS frame goes out even if nothing follows it.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ClientStream {
    fn new(tcp: TcpStream, coalesce: bool) -> ClientStream {
        ClientStream {
            tcp,
            coalesce,
            gathered: Vec::new(),
            aligned: true,
            deadline: None,
        }
    }

    /// Sends the first `len` bytes gathered. Should the socket take only part of them, what
    /// stays may start inside a frame.
    fn send_gathered_up_to(
        &mut self,
        cx: &mut Context<'_>,
        mut len: usize,
    ) -> Poll<io::Result<()>> {
        while len > 0 {
            let n =
                std::task::ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.gathered[..len]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.gathered.drain(..n);
            len -= n;
            if len > 0 {
                self.aligned = false;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends everything gathered.
    fn send_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.send_gathered_up_to(cx, self.gathered.len())
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        if !me.coalesce {
            return Pin::new(&mut me.tcp).poll_write(cx, buf);
        }
        if me.gathered.len() + buf.len() > MAX_GATHERED {
            std::task::ready!(me.send_gathered(cx))?;
            // h2 writes a frame's header and its payload in separate calls: `buf` may start
            // inside a frame.
            me.aligned = false;
            if buf.len() > MAX_GATHERED {
                // A large write goes straight out.
                return Pin::new(&mut me.tcp).poll_write(cx, buf);
            }
        }
        me.gathered.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.coalesce && !me.gathered.is_empty() {
            if let Some(at) = me.aligned.then(|| open_headers_at(&me.gathered)).flatten() {
                std::task::ready!(me.send_gathered_up_to(cx, at))?;
                let deadline = me
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(HOLD)));
                // Until the deadline, h2 is told the frame is out. This relies on h2 0.4 calling
                // poll_flush each time its connection task runs (`FramedWrite::flush`, reached
                // from `Streams::poll_complete` whenever the connection has nothing to read):
                // the deadline wakes that task, and its next flush sends the frame.
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Ready(Ok(()));
                }
            }
            std::task::ready!(me.send_gathered(cx))?;
        }
        me.deadline = None;
        me.aligned = true;
        Pin::new(&mut me.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.send_gathered(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Opens TCP connections (`TCP_NODELAY`, [`ClientStream`]) for a tonic channel; TLS, when the
/// endpoint has it, is layered on top by tonic (and then `coalesce` must be off).
#[derive(Clone, Copy, Debug, Default)]
pub struct Connector {
    /// Whether the bytes written are HTTP/2 frames (no TLS), whose requests can be gathered.
    pub coalesce: bool,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientStream>>> + Send>>;

impl tonic::codegen::Service<Uri> for Connector {
    type Response = TokioIo<ClientStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let coalesce = self.coalesce;
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(80);
            // The client tells a node that cannot be reached from one that answered by these
            // words, as tonic's own connector writes them.
            let stream = TcpStream::connect((host, port)).await.map_err(|e| {
                io::Error::new(e.kind(), format!("tcp connect error to {host}:{port}: {e}"))
            })?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(ClientStream::new(stream, coalesce)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tokio::io::AsyncWriteExt;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    fn headers(end_stream: bool) -> Vec<u8> {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        frame(HEADERS_FRAME, flags, b"header block")
    }

    fn data() -> Vec<u8> {
        frame(0x0, END_STREAM, b"the request message")
    }

    #[test]
    fn only_a_trailing_headers_frame_that_leaves_the_stream_open_is_held() {
        assert_eq!(open_headers_at(&headers(false)), Some(0));
        let settings_ack = frame(0x4, 0x1, b"");
        assert_eq!(
            open_headers_at(&[settings_ack.clone(), headers(false)].concat()),
            Some(settings_ack.len())
        );
        assert_eq!(open_headers_at(&headers(true)), None, "no body follows");
        assert_eq!(open_headers_at(&[headers(false), data()].concat()), None);
        let mut cut = headers(false);
        cut.pop();
        assert_eq!(open_headers_at(&cut), None, "not a whole frame");
        assert_eq!(open_headers_at(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), None);
        let continued = frame(HEADERS_FRAME, 0, b"continued");
        assert_eq!(open_headers_at(&continued), None);
    }

    /// A client stream and the server's end of its connection (plain blocking std socket, whose
    /// reads see exactly what has arrived).
    async fn pair(coalesce: bool) -> (ClientStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        (ClientStream::new(client, coalesce), server)
    }

    /// Reads as many bytes as `want` holds from `server` and checks they are `want`.
    fn expect(server: &mut std::net::TcpStream, want: &[u8]) {
        let mut got = vec![0u8; want.len()];
        server.read_exact(&mut got).unwrap();
        assert_eq!(got, want);
    }

    /// Whether anything has arrived at `server`.
    fn arrived(server: &std::net::TcpStream) -> bool {
        server.set_nonblocking(true).unwrap();
        let got = server.peek(&mut [0u8; 1]);
        server.set_nonblocking(false).unwrap();
        got.is_ok()
    }

    /// Flushes until nothing is held, as h2's connection task does each time it is woken.
    async fn flush_out(s: &mut ClientStream) {
        std::future::poll_fn(|cx| {
            std::task::ready!(Pin::new(&mut *s).poll_flush(cx))?;
            if s.gathered.is_empty() {
                Poll::Ready(Ok::<(), io::Error>(()))
            } else {
                Poll::Pending
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_request_leaves_with_its_body_and_a_lone_headers_frame_still_goes_out() {
        let (mut client, mut server) = pair(true).await;
        client.write_all(&headers(false)).await.unwrap();
        client.flush().await.unwrap();
        assert!(!arrived(&server), "the HEADERS frame waits for its DATA");
        client.write_all(&data()).await.unwrap();
        client.flush().await.unwrap();
        expect(&mut server, &[headers(false), data()].concat());

        // A HEADERS frame with nothing behind it goes out once the hold is over.
        client.write_all(&headers(false)).await.unwrap();
        flush_out(&mut client).await;
        expect(&mut server, &headers(false));
    }

    #[tokio::test]
    async fn what_comes_before_a_held_headers_frame_goes_out_at_once() {
        let (mut client, mut server) = pair(true).await;
        let before = [headers(false), data()].concat();
        client
            .write_all(&[before.clone(), headers(false)].concat())
            .await
            .unwrap();
        client.flush().await.unwrap();
        expect(&mut server, &before);
        assert!(!arrived(&server), "the new request's HEADERS frame waits");
        client.write_all(&data()).await.unwrap();
        client.flush().await.unwrap();
        expect(&mut server, &[headers(false), data()].concat());
    }

    #[tokio::test]
    async fn large_writes_in_pieces_arrive_whole_and_in_order() {
        let (mut client, mut server) = pair(true).await;
        // A 200 KB DATA frame written as h2 does, its header and then the payload in pieces,
        // and a new request behind it.
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = frame(0x0, END_STREAM, &[])[..FRAME_HEADER].to_vec();
        sent[..3].copy_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; FRAME_HEADER + 200_000 + headers(false).len() + 3];
            server.read_exact(&mut got).unwrap();
            got
        });
        client.write_all(&sent).await.unwrap();
        for piece in payload.chunks(30_000) {
            client.write_all(piece).await.unwrap();
        }
        sent.extend_from_slice(&payload);
        let tail = [headers(false), vec![1, 2, 3]].concat();
        client.write_all(&tail).await.unwrap();
        sent.extend_from_slice(&tail);
        flush_out(&mut client).await;
        assert_eq!(reader.join().unwrap(), sent);
    }

    #[tokio::test]
    async fn without_coalescing_every_write_goes_straight_out() {
        let (mut client, mut server) = pair(false).await;
        client.write_all(&headers(false)).await.unwrap();
        assert!(arrived(&server), "loopback delivers within the write");
        expect(&mut server, &headers(false));
    }
}
