//! Round trips of every message type through the real codec, and the frame limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bincode::Options;
use felhom_protocol::transport::{MAX_REQUEST_FRAME, client_transport, server_transport};
use felhom_protocol::*;
use futures::{SinkExt, StreamExt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::AsyncWriteExt;

fn opts() -> impl Options {
    bincode::DefaultOptions::new().with_limit(1 << 20)
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = opts().serialize(v).unwrap();
    let back: T = opts().deserialize(&bytes).unwrap();
    assert_eq!(&back, v);
}

fn golden() -> GoldenImageRequest {
    GoldenImageRequest {
        vmid: Vmid::new(9000).unwrap(),
        template: TemplateVolid::new("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst")
            .unwrap(),
        hostname: Hostname::new("golden").unwrap(),
        storage: StorageId::new("local-lvm").unwrap(),
        rootfs_gib: RootfsGib::new(8).unwrap(),
        memory_mib: MemoryMib::new(1024).unwrap(),
        cores: Cores::new(2).unwrap(),
        bridge: Bridge::new("vmbr0").unwrap(),
    }
}

fn mount_info() -> MountInfo {
    MountInfo {
        name: MountName::new("backup").unwrap(),
        uuid: FsUuid::new("ada110f6-bd6d-49db-955d-342c27627b61").unwrap(),
        fstype: FsType::Ext4,
        mount_point: "/mnt/felhom/backup".into(),
        options: "nodev,nosuid,noexec,nofail".into(),
        mounted: true,
        backend: MountBackend::Systemd,
        unit: Some("mnt-felhom-backup.mount".into()),
    }
}

#[test]
fn every_message_type_round_trips() {
    round_trip(&golden());
    round_trip(&GoldenImageReply {
        vmid: Vmid::new(9000).unwrap(),
        output: ToolOutput {
            exit_code: Some(0),
            stdout: "extracting archive\n".into(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: true,
        },
    });
    round_trip(&UsbMountRequest {
        uuid: FsUuid::new("DEAD-BEEF").unwrap(),
        name: MountName::new("usb-1").unwrap(),
    });
    round_trip(&mount_info());
    round_trip(&vec![mount_info(), mount_info()]);
    round_trip(&UnmountReply {
        name: MountName::new("backup").unwrap(),
        was_mounted: false,
    });
    round_trip(&DiskInfo {
        name: DiskName::new("nvme0n1").unwrap(),
        size_bytes: 512_110_190_592,
        model: Some("KIOXIA".into()),
        removable: false,
        rotational: None,
    });
    round_trip(&SmartReport {
        disk: DiskName::new("sda").unwrap(),
        device_type: Some("sat".into()),
        exit_status: 0b1101_1000,
        json: "{\"json_format_version\":[1,0]}".into(),
        truncated: false,
    });
    round_trip(&vec![SensorReading {
        chip: "coretemp".into(),
        device: "hwmon1".into(),
        label: "Package id 0".into(),
        kind: SensorKind::Temperature,
        value: 41.5,
    }]);
    round_trip(&HelloReply {
        protocol_version: PROTOCOL_VERSION,
        helper_version: "0.1.0".into(),
        capabilities: vec![
            Capability::GoldenImage,
            Capability::UsbMount,
            Capability::Smart,
            Capability::Sensors,
        ],
        mount_backend: MountBackend::Direct,
    });
    for e in [
        HelperError::Rejected {
            field: "uuid".into(),
            reason: "bad".into(),
        },
        HelperError::NotFound { what: "x".into() },
        HelperError::Busy { what: "x".into() },
        HelperError::ToolFailed {
            tool: "pct".into(),
            exit_code: None,
            stderr_tail: "killed".into(),
        },
        HelperError::TimedOut {
            operation: "smart_read".into(),
            after_secs: 30,
        },
        HelperError::Unavailable { what: "x".into() },
        HelperError::Internal {
            message: "x".into(),
        },
        HelperError::VersionMismatch {
            helper: 1,
            agent: 2,
        },
    ] {
        round_trip(&e);
        assert!(!e.to_string().is_empty());
    }
    for r in [
        HelperRequest::Hello {
            agent_protocol: PROTOCOL_VERSION,
        },
        HelperRequest::GoldenImageCreate { req: golden() },
        HelperRequest::UsbMount {
            req: UsbMountRequest {
                uuid: FsUuid::new("DEAD-BEEF").unwrap(),
                name: MountName::new("usb").unwrap(),
            },
        },
        HelperRequest::UsbUnmount {
            name: MountName::new("usb").unwrap(),
        },
        HelperRequest::UsbList {},
        HelperRequest::SmartScan {},
        HelperRequest::SmartRead {
            disk: DiskName::new("sda").unwrap(),
        },
        HelperRequest::SensorsRead {},
    ] {
        let bytes = opts().serialize(&r).unwrap();
        let back: HelperRequest = opts().deserialize(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{r:?}"));
    }
}

/// A request whose field was tampered with after encoding (as a hostile client could send)
/// fails to decode: validation runs during deserialization.
#[test]
fn tampered_request_does_not_decode() {
    let r = HelperRequest::UsbUnmount {
        name: MountName::new("aaaa").unwrap(),
    };
    let mut bytes = opts().serialize(&r).unwrap();
    let pos = bytes.windows(4).position(|w| w == b"aaaa").unwrap();
    bytes[pos..pos + 4].copy_from_slice(b"../x");
    assert!(opts().deserialize::<HelperRequest>(&bytes).is_err());

    let r = HelperRequest::SmartRead {
        disk: DiskName::new("sdaa").unwrap(),
    };
    let mut bytes = opts().serialize(&r).unwrap();
    let pos = bytes.windows(4).position(|w| w == b"sdaa").unwrap();
    bytes[pos..pos + 4].copy_from_slice(b"/dev");
    assert!(opts().deserialize::<HelperRequest>(&bytes).is_err());

    // An unknown method index does not decode either.
    let mut bytes = opts().serialize(&HelperRequest::UsbList {}).unwrap();
    bytes[0] = 200;
    assert!(opts().deserialize::<HelperRequest>(&bytes).is_err());
}

/// A message goes through both real transports over a socket pair in each direction.
#[tokio::test]
async fn transports_carry_messages_over_a_socket() {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let mut client = client_transport(a);
    let mut server = server_transport(b);
    let req = tarpc::ClientMessage::Request(tarpc::Request {
        context: tarpc::context::current(),
        id: 7,
        message: HelperRequest::SmartRead {
            disk: DiskName::new("sda").unwrap(),
        },
    });
    client.send(req).await.unwrap();
    match server.next().await.unwrap().unwrap() {
        tarpc::ClientMessage::Request(r) => {
            assert_eq!(r.id, 7);
            assert!(
                matches!(r.message, HelperRequest::SmartRead { ref disk } if disk.as_str() == "sda")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let big = "x".repeat(MAX_REQUEST_FRAME * 4);
    server
        .send(tarpc::Response {
            request_id: 7,
            message: Ok(HelperResponse::SmartRead(Ok(SmartReport {
                disk: DiskName::new("sda").unwrap(),
                device_type: None,
                exit_status: 0,
                json: big.clone(),
                truncated: false,
            }))),
        })
        .await
        .unwrap();
    let resp = client.next().await.unwrap().unwrap();
    match resp.message {
        Ok(HelperResponse::SmartRead(Ok(r))) => assert_eq!(r.json.len(), big.len()),
        other => panic!("unexpected {other:?}"),
    }
}

/// The helper's side refuses a frame larger than the request limit: the stream errors
/// instead of allocating.
#[tokio::test]
async fn oversized_request_frame_is_refused() {
    let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
    let mut server = server_transport(b);
    let len = (MAX_REQUEST_FRAME as u32) + 1;
    a.write_all(&len.to_be_bytes()).await.unwrap();
    a.write_all(&[0u8; 64]).await.unwrap();
    let got = server.next().await;
    assert!(matches!(got, Some(Err(_))), "got {got:?}");
}

/// Garbage inside a well-sized frame is a decode error, not a panic.
#[tokio::test]
async fn garbage_frame_is_a_decode_error() {
    let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
    let mut server = server_transport(b);
    let garbage = [0xffu8; 32];
    a.write_all(&(garbage.len() as u32).to_be_bytes())
        .await
        .unwrap();
    a.write_all(&garbage).await.unwrap();
    let got = server.next().await;
    assert!(matches!(got, Some(Err(_))), "got {got:?}");
}

/// A minimal helper used to prove that the transports plug into tarpc's client and server.
#[derive(Clone)]
struct EchoHelper;

impl Helper for EchoHelper {
    async fn hello(
        self,
        _: tarpc::context::Context,
        agent_protocol: u32,
    ) -> Result<HelloReply, HelperError> {
        if agent_protocol != PROTOCOL_VERSION {
            return Err(HelperError::VersionMismatch {
                helper: PROTOCOL_VERSION,
                agent: agent_protocol,
            });
        }
        Ok(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            helper_version: "test".into(),
            capabilities: vec![Capability::Sensors],
            mount_backend: MountBackend::Direct,
        })
    }
    async fn golden_image_create(
        self,
        _: tarpc::context::Context,
        req: GoldenImageRequest,
    ) -> Result<GoldenImageReply, HelperError> {
        Ok(GoldenImageReply {
            vmid: req.vmid,
            output: ToolOutput::default(),
        })
    }
    async fn usb_mount(
        self,
        _: tarpc::context::Context,
        req: UsbMountRequest,
    ) -> Result<MountInfo, HelperError> {
        Err(HelperError::NotFound {
            what: format!("no filesystem with UUID {}", req.uuid),
        })
    }
    async fn usb_unmount(
        self,
        _: tarpc::context::Context,
        name: MountName,
    ) -> Result<UnmountReply, HelperError> {
        Ok(UnmountReply {
            name,
            was_mounted: false,
        })
    }
    async fn usb_list(self, _: tarpc::context::Context) -> Result<Vec<MountInfo>, HelperError> {
        Ok(vec![mount_info()])
    }
    async fn smart_scan(self, _: tarpc::context::Context) -> Result<Vec<DiskInfo>, HelperError> {
        Ok(vec![])
    }
    async fn smart_read(
        self,
        _: tarpc::context::Context,
        disk: DiskName,
    ) -> Result<SmartReport, HelperError> {
        Err(HelperError::Unavailable {
            what: format!("smartctl for {disk}"),
        })
    }
    async fn sensors_read(
        self,
        _: tarpc::context::Context,
    ) -> Result<Vec<SensorReading>, HelperError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn tarpc_client_and_server_work_over_the_transports() {
    use tarpc::server::{BaseChannel, Channel};
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = BaseChannel::with_defaults(server_transport(b));
    tokio::spawn(
        server
            .execute(EchoHelper.serve())
            .for_each(|fut| async move {
                tokio::spawn(fut);
            }),
    );
    let client = HelperClient::new(tarpc::client::Config::default(), client_transport(a)).spawn();
    let ctx = tarpc::context::current();
    let hello = client.hello(ctx, PROTOCOL_VERSION).await.unwrap().unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    let err = client.hello(ctx, 999).await.unwrap().unwrap_err();
    assert_eq!(
        err,
        HelperError::VersionMismatch {
            helper: PROTOCOL_VERSION,
            agent: 999
        }
    );
    let list = client.usb_list(ctx).await.unwrap().unwrap();
    assert_eq!(list, vec![mount_info()]);
    let err = client
        .usb_mount(
            ctx,
            UsbMountRequest {
                uuid: FsUuid::new("DEAD-BEEF").unwrap(),
                name: MountName::new("x").unwrap(),
            },
        )
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("DEAD-BEEF"), "{err}");
}

mod deadlines {
    use std::pin::Pin;

    use bytes::BytesMut;
    use felhom_protocol::transport::{
        MAX_DEADLINE_SECS, MAX_REPLY_FRAME, MAX_REQUEST_FRAME, WireCodec, check_request_deadline,
    };
    use felhom_protocol::*;
    use tarpc::tokio_serde::{Deserializer, Serializer};
    use tarpc::{ClientMessage, Response};

    type ServerCodec = WireCodec<ClientMessage<HelperRequest>, Response<HelperResponse>>;

    fn server_codec() -> ServerCodec {
        WireCodec::new(MAX_REQUEST_FRAME, MAX_REPLY_FRAME).checking_deadlines()
    }

    fn encode(msg: &ClientMessage<HelperRequest>) -> Vec<u8> {
        let mut enc = WireCodec::<Response<HelperResponse>, ClientMessage<HelperRequest>>::new(
            MAX_REPLY_FRAME,
            MAX_REQUEST_FRAME,
        );
        Pin::new(&mut enc).serialize(msg).unwrap().to_vec()
    }

    fn request(message: HelperRequest, secs: u64) -> ClientMessage<HelperRequest> {
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        ClientMessage::Request(tarpc::Request {
            context: ctx,
            id: 1,
            message,
        })
    }

    fn decodes(frame: &[u8]) -> bool {
        let mut codec = server_codec();
        Pin::new(&mut codec)
            .deserialize(&BytesMut::from(frame))
            .is_ok()
    }

    /// A frame equal to a real request but with the deadline's seconds replaced by `secs`
    /// (bincode varint: 253 announces a little-endian u64).
    fn with_deadline(secs: u64) -> Vec<u8> {
        let mut frame = vec![0u8, 253];
        frame.extend(secs.to_le_bytes());
        let real = encode(&request(HelperRequest::UsbList {}, 30));
        // Skip the real frame's variant byte and its deadline seconds (30 fits one byte).
        frame.extend(&real[2..]);
        frame
    }

    #[test]
    fn sane_deadlines_pass_and_absurd_ones_are_refused() {
        assert!(decodes(&encode(&request(HelperRequest::UsbList {}, 3600))));
        assert!(decodes(&with_deadline(MAX_DEADLINE_SECS)));
        assert!(!decodes(&with_deadline(MAX_DEADLINE_SECS + 1)));
        assert!(!decodes(&with_deadline(u64::MAX)));
        assert!(check_request_deadline(&with_deadline(u64::MAX)).is_err());
        // Cancel messages, truncated frames and garbage are the decoder's business.
        assert!(check_request_deadline(&[1, 253]).is_ok());
        assert!(check_request_deadline(&[]).is_ok());
    }

    fn encoded_requests() -> Vec<Vec<u8>> {
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
            .map(|m| encode(&request(m, 30)))
            .collect();
        out.push(encode(&ClientMessage::Cancel {
            trace_context: Default::default(),
            request_id: 1,
        }));
        out
    }

    /// Every truncation and many single-byte mutations of real request frames decode to an
    /// error or a value, never a panic.
    #[test]
    fn no_mutated_or_truncated_request_panics_the_decoder() {
        let hostile_bytes = [0u8, 1, 2, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];
        let mut tried = 0usize;
        for frame in encoded_requests() {
            assert!(decodes(&frame), "the valid frame must decode");
            for cut in 0..frame.len() {
                let r = std::panic::catch_unwind(|| decodes(&frame[..cut]));
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
                        let r = std::panic::catch_unwind(|| decodes(&candidate));
                        assert!(r.is_ok(), "mutation at {pos} to {b:#x} panicked");
                        tried += 1;
                    }
                }
            }
        }
        assert!(tried > 1000, "{tried}");
    }
}
