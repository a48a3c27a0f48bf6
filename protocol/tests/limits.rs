//! Where the wire limits lie: the request frame limit (16 KiB), the reply frame limit (4 MiB)
//! and the longest accepted client deadline (one year). The limits are part of the protocol:
//! each test puts a frame or deadline exactly at its limit (accepted) and one unit over it
//! (refused), so a limit that drifts in either direction fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{BufMut, BytesMut};
use felhom_protocol::transport::{
    FrameCodec, MAX_DEADLINE_SECS, MAX_REPLY_FRAME, MAX_REQUEST_FRAME, check_request_deadline,
    server_frame_codec,
};
use tarpc::tokio_util::codec::Decoder;

/// A length-prefixed frame (4-byte big-endian length) with a body of `len` bytes.
fn frame(len: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(4 + len);
    b.put_u32(u32::try_from(len).unwrap());
    b.put_bytes(0x5a, len);
    b
}

/// Whether `codec` takes a whole frame of `len` body bytes.
fn decodes(codec: &mut FrameCodec, len: usize) -> bool {
    let mut src = frame(len);
    match codec.decode(&mut src) {
        Ok(Some(body)) => body.len() == len,
        Ok(None) => panic!("a whole frame of {len} bytes was not decoded"),
        Err(_) => false,
    }
}

#[test]
fn request_frames_are_limited_to_16_kib() {
    assert_eq!(MAX_REQUEST_FRAME, 16 * 1024);
    assert!(decodes(&mut server_frame_codec(), 16 * 1024));
    assert!(!decodes(&mut server_frame_codec(), 16 * 1024 + 1));
}

#[test]
fn reply_frames_are_limited_to_4_mib() {
    assert_eq!(MAX_REPLY_FRAME, 4 * 1024 * 1024);
    // The agent's side reads replies with the reply limit.
    let mut agent = FrameCodec::new(MAX_REPLY_FRAME, MAX_REQUEST_FRAME);
    assert!(decodes(&mut agent, 4 * 1024 * 1024));
    let mut agent = FrameCodec::new(MAX_REPLY_FRAME, MAX_REQUEST_FRAME);
    assert!(!decodes(&mut agent, 4 * 1024 * 1024 + 1));
}

/// The start of an encoded request (`ClientMessage::Request`, variant 0) whose context
/// deadline is `secs` seconds away, in bincode's default (varint) encoding, as tarpc writes it.
fn request_prefix(secs: u64) -> Vec<u8> {
    use bincode::Options;
    let mut v = bincode::DefaultOptions::new().serialize(&0u32).unwrap();
    v.extend(bincode::DefaultOptions::new().serialize(&secs).unwrap());
    // The deadline's nanoseconds and the rest of the request follow.
    v.extend([0u8; 8]);
    v
}

#[test]
fn client_deadlines_are_limited_to_one_year() {
    let year = 365 * 24 * 3600;
    assert_eq!(MAX_DEADLINE_SECS, year);
    assert!(check_request_deadline(&request_prefix(30 * 24 * 3600)).is_ok());
    assert!(check_request_deadline(&request_prefix(year)).is_ok());
    let e = check_request_deadline(&request_prefix(year + 1)).unwrap_err();
    assert!(e.to_string().contains("beyond"), "{e}");
}
