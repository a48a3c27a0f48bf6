//! The helper's end of a connection: [`felhom_protocol::transport`]'s framing and codec, plus
//! one check that has to run before tarpc decodes a request.
//!
//! tarpc turns a request's relative deadline into an `Instant` with `Instant::now() +
//! deadline`, which panics on overflow. A client could send `u64::MAX` seconds and panic the
//! connection's task; and it keeps deadlines in a `DelayQueue` that panics on deadlines more
//! than about 2.2 years away. [`GuardedCodec`] reads the deadline's seconds from the frame
//! first and refuses anything over [`MAX_DEADLINE_SECS`], so no input reaches either.

use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use felhom_protocol::transport::{FrameCodec, MAX_REPLY_FRAME, MAX_REQUEST_FRAME, WireCodec};
use felhom_protocol::{HelperRequest, HelperResponse};
use tarpc::tokio_serde::{Deserializer, Serializer};
use tarpc::tokio_util::codec::Framed;
use tarpc::{ClientMessage, Response};
use tokio::net::UnixStream;

/// The longest client deadline the helper decodes: one year. tarpc keeps deadlines in a
/// tokio-util `DelayQueue`, which panics beyond about 2.2 years; the server caps every
/// operation far below either anyway.
pub const MAX_DEADLINE_SECS: u64 = 365 * 24 * 3600;

/// Reads one bincode varint (`DefaultOptions`): a byte below 251 is the value; 251, 252, 253
/// and 254 announce a little-endian u16, u32, u64 or u128.
fn varint(b: &[u8]) -> Option<(u128, usize)> {
    let first = *b.first()?;
    let width = match first {
        0..=250 => return Some((u128::from(first), 1)),
        251 => 2,
        252 => 4,
        253 => 8,
        254 => 16,
        _ => return None,
    };
    let bytes = b.get(1..1 + width)?;
    let mut v: u128 = 0;
    for (i, byte) in bytes.iter().enumerate() {
        v |= u128::from(*byte) << (8 * i);
    }
    Some((v, 1 + width))
}

/// Refuses a `ClientMessage::Request` frame whose deadline is beyond [`MAX_DEADLINE_SECS`].
/// Anything it cannot read is left to the real decoder, which refuses it.
pub fn check_deadline(frame: &[u8]) -> io::Result<()> {
    let Some((tag, used)) = varint(frame) else {
        return Ok(());
    };
    // Variant 0 is `Request`; its first field is the context, whose first field is the
    // deadline, a `Duration` encoded as (secs: u64, nanos: u32).
    if tag != 0 {
        return Ok(());
    }
    match varint(&frame[used..]) {
        Some((secs, _)) if secs > u128::from(MAX_DEADLINE_SECS) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request deadline of {secs} s is out of range"),
        )),
        _ => Ok(()),
    }
}

type Inner = WireCodec<ClientMessage<HelperRequest>, Response<HelperResponse>>;

/// The protocol's [`WireCodec`] with [`check_deadline`] in front of decoding.
#[derive(Debug)]
pub struct GuardedCodec(Inner);

impl Deserializer<ClientMessage<HelperRequest>> for GuardedCodec {
    type Error = io::Error;

    fn deserialize(
        self: Pin<&mut Self>,
        src: &BytesMut,
    ) -> Result<ClientMessage<HelperRequest>, Self::Error> {
        check_deadline(src)?;
        Pin::new(&mut self.get_mut().0).deserialize(src)
    }
}

impl Serializer<Response<HelperResponse>> for GuardedCodec {
    type Error = io::Error;

    fn serialize(
        self: Pin<&mut Self>,
        item: &Response<HelperResponse>,
    ) -> Result<Bytes, Self::Error> {
        Pin::new(&mut self.get_mut().0).serialize(item)
    }
}

/// The helper's transport type.
pub type HelperTransport = tarpc::tokio_serde::Framed<
    Framed<UnixStream, FrameCodec>,
    ClientMessage<HelperRequest>,
    Response<HelperResponse>,
    GuardedCodec,
>;

/// Wraps an accepted, authorized connection: the same framing and limits as
/// [`felhom_protocol::transport::server_transport`], with the deadline check.
pub fn server_transport(stream: UnixStream) -> HelperTransport {
    let framed = Framed::new(stream, FrameCodec::new(MAX_REQUEST_FRAME, MAX_REPLY_FRAME));
    tarpc::tokio_serde::Framed::new(
        framed,
        GuardedCodec(WireCodec::new(MAX_REQUEST_FRAME, MAX_REPLY_FRAME)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode() {
        assert_eq!(varint(&[7]), Some((7, 1)));
        assert_eq!(varint(&[251, 0x34, 0x12]), Some((0x1234, 3)));
        assert_eq!(
            varint(&[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some((u128::from(u64::MAX), 9))
        );
        assert_eq!(varint(&[252, 1]), None);
        assert_eq!(varint(&[255]), None);
        assert_eq!(varint(&[]), None);
    }

    #[test]
    fn absurd_deadlines_are_refused_before_decoding() {
        let mut huge = vec![0u8, 253];
        huge.extend(u64::MAX.to_le_bytes());
        huge.extend([0, 0, 0]);
        assert!(check_deadline(&huge).is_err());
        assert!(check_deadline(&[0, 10, 0]).is_ok());
        // Cancel messages and garbage are the decoder's business.
        assert!(check_deadline(&[1, 253]).is_ok());
        assert!(check_deadline(&[]).is_ok());
        assert!(check_deadline(&[0]).is_ok());
    }

    #[tokio::test]
    async fn real_requests_pass_the_check() {
        use futures::{SinkExt, StreamExt};
        let (a, b) = UnixStream::pair().unwrap();
        let mut client = felhom_protocol::transport::client_transport(a);
        let mut server = server_transport(b);
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        client
            .send(ClientMessage::Request(tarpc::Request {
                context: ctx,
                id: 7,
                message: HelperRequest::UsbList {},
            }))
            .await
            .unwrap();
        let got = server.next().await.unwrap().unwrap();
        assert!(matches!(got, ClientMessage::Request(r) if r.id == 7));
    }

    fn encoded_requests() -> Vec<Vec<u8>> {
        use felhom_protocol::*;
        let mut enc = WireCodec::<Response<HelperResponse>, ClientMessage<HelperRequest>>::new(
            MAX_REPLY_FRAME,
            MAX_REQUEST_FRAME,
        );
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let golden = GoldenImageRequest {
            vmid: Vmid::new(9000).unwrap(),
            template: TemplateVolid::new("local:vztmpl/debian-12.tar.zst").unwrap(),
            hostname: Hostname::new("golden").unwrap(),
            storage: StorageId::new("local-lvm").unwrap(),
            rootfs_gib: RootfsGib::DEFAULT,
            memory_mib: MemoryMib::DEFAULT,
            cores: Cores::DEFAULT,
            bridge: Bridge::new("vmbr0").unwrap(),
        };
        let messages = vec![
            HelperRequest::Hello { agent_protocol: 1 },
            HelperRequest::GoldenImageCreate { req: golden },
            HelperRequest::UsbMount {
                req: UsbMountRequest {
                    uuid: FsUuid::new("DEAD-BEEF").unwrap(),
                    name: MountName::new("usb").unwrap(),
                },
            },
            HelperRequest::UsbUnmount {
                name: MountName::new("usb").unwrap(),
            },
            HelperRequest::SmartRead {
                disk: DiskName::new("sda").unwrap(),
            },
            HelperRequest::SensorsRead {},
        ];
        let mut out: Vec<Vec<u8>> = messages
            .into_iter()
            .map(|message| {
                let msg = ClientMessage::Request(tarpc::Request {
                    context: ctx,
                    id: 1,
                    message,
                });
                Pin::new(&mut enc).serialize(&msg).unwrap().to_vec()
            })
            .collect();
        let cancel = ClientMessage::Cancel {
            trace_context: Default::default(),
            request_id: 1,
        };
        out.push(Pin::new(&mut enc).serialize(&cancel).unwrap().to_vec());
        out
    }

    fn decode(frame: &[u8]) -> bool {
        let mut codec = GuardedCodec(WireCodec::new(MAX_REQUEST_FRAME, MAX_REPLY_FRAME));
        let src = BytesMut::from(frame);
        Pin::new(&mut codec).deserialize(&src).is_ok()
    }

    #[test]
    fn no_mutated_or_truncated_request_panics_the_decoder() {
        let hostile_bytes = [0u8, 1, 2, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];
        let mut tried = 0usize;
        for frame in encoded_requests() {
            assert!(decode(&frame), "the valid frame must decode");
            for cut in 0..frame.len() {
                let r = std::panic::catch_unwind(|| decode(&frame[..cut]));
                assert!(r.is_ok(), "truncation at {cut} of {frame:?} panicked");
                tried += 1;
            }
            for pos in 0..frame.len() {
                for b in hostile_bytes {
                    let mut m = frame.clone();
                    m[pos] = b;
                    // The byte at `pos` replaced by a maximal 8-byte varint, the rest kept.
                    let mut long = frame[..pos].to_vec();
                    long.push(0xfd);
                    long.extend([0xff; 8]);
                    long.extend(&frame[pos + 1..]);
                    for candidate in [m, long] {
                        let r = std::panic::catch_unwind(|| decode(&candidate));
                        assert!(r.is_ok(), "mutation at {pos} to {b:#x} panicked");
                        tried += 1;
                    }
                }
            }
        }
        assert!(tried > 1000, "{tried}");
    }
}
