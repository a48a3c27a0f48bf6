//! `felhom-protocol`: the typed allowlist between the unprivileged `felhom-agent` and the root
//! `felhom-helper`.
//!
//! - [`types`]: validated newtypes; serde decodes through their validating constructors, so an
//!   invalid value never reaches a handler.
//! - [`service`]: the tarpc service trait [`Helper`] — the complete list of what the helper
//!   does — with its request and reply types.
//! - [`error`]: [`HelperError`], the one error type that crosses the socket.
//! - [`transport`]: framing, frame limits and codec, shared by both sides.
//!
//! And the output policy both binaries share, kept here because it is the one crate both
//! depend on (std only, no dependency added):
//!
//! - [`text`]: how text from outside is made safe for each output (terminal, log line,
//!   journal field, audit record, metrics label), with the table of which output uses which.
//! - [`civil`]: the calendar (Unix seconds to and from UTC dates) behind every timestamp.
//! - [`journal`]: whether stderr is the journal stream systemd connected.
//!
//! The wire format is bincode, which is positional: never reorder fields or variants, avoid
//! serde attributes that need a self-describing format (`flatten`, `untagged`,
//! `skip_serializing_if`), and bump [`PROTOCOL_VERSION`] on any change.

pub mod civil;
pub mod error;
pub mod journal;
pub mod service;
pub mod text;
pub mod transport;
pub mod types;

pub use error::HelperError;
pub use service::*;
pub use types::*;

/// The protocol version both sides check in `hello`. Bump it on any change to a type that
/// crosses the socket.
pub const PROTOCOL_VERSION: u32 = 1;
