//! The framing and codec both sides use: length-delimited frames with a per-direction size
//! limit, carrying bincode with a matching byte limit.
//!
//! Each side bounds what it reads and what it writes: the helper reads small request frames and
//! writes replies up to the reply limit (smartctl JSON); the agent the other way round.
//! Bincode's own limit stops a length prefix inside a frame from asking for a huge allocation.

use std::marker::PhantomData;
use std::pin::Pin;

use bincode::Options;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tarpc::tokio_serde::{Deserializer, Serializer};
use tarpc::tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};
use tarpc::{ClientMessage, Response};
use tokio::net::UnixStream;

use crate::service::{HelperRequest, HelperResponse};

/// The largest request frame the helper decodes. Requests are a few hundred bytes at most.
pub const MAX_REQUEST_FRAME: usize = 16 * 1024;

/// The largest reply frame the agent decodes. The helper bounds smartctl JSON and tool output
/// well below this.
pub const MAX_REPLY_FRAME: usize = 4 * 1024 * 1024;

/// The longest client deadline the helper accepts: one year. tarpc turns the relative deadline
/// it decodes into an `Instant` with `Instant::now() + deadline`, which panics on overflow, and
/// keeps deadlines in a tokio-util `DelayQueue`, which panics beyond about 2.2 years. The server
/// side refuses a frame whose deadline exceeds this before tarpc sees it, so no input reaches
/// either panic. Every operation's own cap is far shorter anyway.
pub const MAX_DEADLINE_SECS: u64 = 365 * 24 * 3600;

/// The first fields of an encoded `tarpc::ClientMessage`: the variant index (0 is `Request`)
/// and, for a request, the whole seconds of the context's deadline, which tarpc encodes first
/// as a `Duration`.
#[derive(Deserialize)]
struct RequestPrefix {
    variant: u32,
    deadline_secs: u64,
}

/// Refuses a request frame whose deadline is beyond [`MAX_DEADLINE_SECS`]. Frames it cannot
/// read (a `Cancel`, a truncated frame, garbage) are left to the real decoder, which refuses
/// what is invalid.
pub fn check_request_deadline(frame: &[u8]) -> std::io::Result<()> {
    let prefix = bincode::DefaultOptions::new()
        .with_limit(MAX_REQUEST_FRAME as u64)
        .allow_trailing_bytes()
        .deserialize::<RequestPrefix>(frame);
    match prefix {
        Ok(p) if p.variant == 0 && p.deadline_secs > MAX_DEADLINE_SECS => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "request deadline of {} s is beyond the {MAX_DEADLINE_SECS} s limit",
                p.deadline_secs
            ),
        )),
        _ => Ok(()),
    }
}

/// Bincode with separate byte limits for what a side decodes and what it encodes, so the
/// helper can refuse large requests and still send large replies. Both directions use
/// bincode's default encoding (varint, little endian, no trailing bytes); a limit does not
/// change the encoding.
#[derive(Debug)]
pub struct WireCodec<Item, SinkItem> {
    decode_limit: u64,
    encode_limit: u64,
    check_deadlines: bool,
    _types: PhantomData<fn(SinkItem) -> Item>,
}

impl<Item, SinkItem> WireCodec<Item, SinkItem> {
    /// A codec that decodes at most `decode_limit` and encodes at most `encode_limit` bytes a
    /// message.
    pub fn new(decode_limit: usize, encode_limit: usize) -> Self {
        Self {
            decode_limit: decode_limit as u64,
            encode_limit: encode_limit as u64,
            check_deadlines: false,
            _types: PhantomData,
        }
    }

    /// The same codec, but refusing request frames whose deadline is beyond
    /// [`MAX_DEADLINE_SECS`] before decoding them (see [`check_request_deadline`]). The helper's
    /// side uses this.
    pub fn checking_deadlines(mut self) -> Self {
        self.check_deadlines = true;
        self
    }
}

impl<Item: DeserializeOwned, SinkItem> Deserializer<Item> for WireCodec<Item, SinkItem> {
    type Error = std::io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, Self::Error> {
        if self.check_deadlines {
            check_request_deadline(src)?;
        }
        bincode::DefaultOptions::new()
            .with_limit(self.decode_limit)
            .deserialize(src)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

impl<Item, SinkItem: Serialize> Serializer<SinkItem> for WireCodec<Item, SinkItem> {
    type Error = std::io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, Self::Error> {
        bincode::DefaultOptions::new()
            .with_limit(self.encode_limit)
            .serialize(item)
            .map(Bytes::from)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Length-delimited framing (4-byte big-endian length prefix) with separate limits for the
/// frames a side reads and the frames it writes. tokio-util's codec applies one limit to both
/// directions; the helper needs small incoming and larger outgoing frames.
#[derive(Debug)]
pub struct FrameCodec {
    incoming: LengthDelimitedCodec,
    outgoing: LengthDelimitedCodec,
}

impl FrameCodec {
    /// Framing that reads frames of at most `max_in` and writes frames of at most `max_out`
    /// bytes.
    pub fn new(max_in: usize, max_out: usize) -> Self {
        Self {
            incoming: LengthDelimitedCodec::builder()
                .max_frame_length(max_in)
                .new_codec(),
            outgoing: LengthDelimitedCodec::builder()
                .max_frame_length(max_out)
                .new_codec(),
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Self::Error> {
        self.incoming.decode(src)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.outgoing.encode(item, dst)
    }
}

/// A framed, serializing connection: a `Stream` of `Item` and a `Sink` of `SinkItem`, which is
/// what tarpc's client and server take as a transport.
pub type WireTransport<Item, SinkItem> = tarpc::tokio_serde::Framed<
    Framed<UnixStream, FrameCodec>,
    Item,
    SinkItem,
    WireCodec<Item, SinkItem>,
>;

/// The helper's end of a connection: decodes requests, encodes replies.
pub type ServerTransport = WireTransport<ClientMessage<HelperRequest>, Response<HelperResponse>>;

/// The agent's end of a connection: encodes requests, decodes replies.
pub type ClientTransport = WireTransport<Response<HelperResponse>, ClientMessage<HelperRequest>>;

/// Wraps an accepted connection for the helper: request frames over [`MAX_REQUEST_FRAME`]
/// or with a deadline beyond [`MAX_DEADLINE_SECS`] end the connection; replies may be up to
/// [`MAX_REPLY_FRAME`].
pub fn server_transport(stream: UnixStream) -> ServerTransport {
    let framed = Framed::new(stream, server_frame_codec());
    tarpc::tokio_serde::Framed::new(framed, server_wire_codec())
}

/// The helper's framing: the exact limits [`server_transport`] uses. Public so the fuzz
/// targets decode request frames exactly as the helper does.
pub fn server_frame_codec() -> FrameCodec {
    FrameCodec::new(MAX_REQUEST_FRAME, MAX_REPLY_FRAME)
}

/// The helper's codec: the exact limits and deadline check [`server_transport`] uses.
pub fn server_wire_codec() -> WireCodec<ClientMessage<HelperRequest>, Response<HelperResponse>> {
    WireCodec::new(MAX_REQUEST_FRAME, MAX_REPLY_FRAME).checking_deadlines()
}

/// Wraps a connected stream for the agent: reply frames over [`MAX_REPLY_FRAME`] end the
/// connection; requests may be up to [`MAX_REQUEST_FRAME`].
pub fn client_transport(stream: UnixStream) -> ClientTransport {
    let framed = Framed::new(stream, FrameCodec::new(MAX_REPLY_FRAME, MAX_REQUEST_FRAME));
    tarpc::tokio_serde::Framed::new(framed, WireCodec::new(MAX_REPLY_FRAME, MAX_REQUEST_FRAME))
}
