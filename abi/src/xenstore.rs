//! Xenstore wire protocol and ring page (`public/io/xs_wire.h`).
//!
//! Each message is an [`XsdSockmsg`] header followed by `len` payload bytes
//! (at most [`XENSTORE_PAYLOAD_MAX`]), usually NUL-separated strings. Messages
//! are streamed through the rings without regard to wrap-around. Replies
//! echo `type_` (or carry `XS_ERROR` with an errno name such as `"ENOENT"`),
//! `req_id` and `tx_id`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::errno::Errno;

/// Control command (was `XS_DEBUG`).
pub const XS_CONTROL: u32 = 0;
/// List a node's children.
pub const XS_DIRECTORY: u32 = 1;
/// Read a node's value.
pub const XS_READ: u32 = 2;
/// Get a node's permissions.
pub const XS_GET_PERMS: u32 = 3;
/// Watch a path (payload `"path\0token\0"`).
pub const XS_WATCH: u32 = 4;
/// Remove a watch.
pub const XS_UNWATCH: u32 = 5;
/// Start a transaction (reply: transaction id as a decimal string).
pub const XS_TRANSACTION_START: u32 = 6;
/// End a transaction (payload `"T\0"` commit or `"F\0"` abort).
pub const XS_TRANSACTION_END: u32 = 7;
/// Introduce a new domain to xenstored (toolstack).
pub const XS_INTRODUCE: u32 = 8;
/// Release a domain (toolstack).
pub const XS_RELEASE: u32 = 9;
/// Get a domain's home path (`/local/domain/<id>`).
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// Write a node's value (payload `"path\0value"`).
pub const XS_WRITE: u32 = 11;
/// Create a node.
pub const XS_MKDIR: u32 = 12;
/// Remove a node and its children.
pub const XS_RM: u32 = 13;
/// Set a node's permissions.
pub const XS_SET_PERMS: u32 = 14;
/// Asynchronous watch event (server to client; payload `"path\0token\0"`).
pub const XS_WATCH_EVENT: u32 = 15;
/// Error reply (payload: errno name, NUL terminated).
pub const XS_ERROR: u32 = 16;
/// Query whether a domain was introduced (toolstack).
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
/// Resume a domain (toolstack).
pub const XS_RESUME: u32 = 18;
/// Set a domain's target (toolstack).
pub const XS_SET_TARGET: u32 = 19;
/// Type 20 (`XS_RESTRICT`) was removed and is invalid.
pub const XS_RESTRICT_REMOVED: u32 = 20;
/// Remove all of the connection's watches.
pub const XS_RESET_WATCHES: u32 = 21;
/// Partial directory listing (optional).
pub const XS_DIRECTORY_PART: u32 = 22;
/// Get per-domain feature bits (optional).
pub const XS_GET_FEATURE: u32 = 23;
/// Set per-domain feature bits (optional).
pub const XS_SET_FEATURE: u32 = 24;
/// Get quota values (optional, recent xenstored).
pub const XS_GET_QUOTA: u32 = 25;
/// Set quota values (optional, recent xenstored).
pub const XS_SET_QUOTA: u32 = 26;
/// Guaranteed-invalid message type.
pub const XS_INVALID: u32 = 0xffff;

/// Message types (C `enum xsd_sockmsg_type`) as a Rust enum; the numbers
/// are the `XS_*` constants above.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsdSockmsgType {
    /// [`XS_CONTROL`].
    Control = XS_CONTROL,
    /// [`XS_DIRECTORY`].
    Directory = XS_DIRECTORY,
    /// [`XS_READ`].
    Read = XS_READ,
    /// [`XS_GET_PERMS`].
    GetPerms = XS_GET_PERMS,
    /// [`XS_WATCH`].
    Watch = XS_WATCH,
    /// [`XS_UNWATCH`].
    Unwatch = XS_UNWATCH,
    /// [`XS_TRANSACTION_START`].
    TransactionStart = XS_TRANSACTION_START,
    /// [`XS_TRANSACTION_END`].
    TransactionEnd = XS_TRANSACTION_END,
    /// [`XS_INTRODUCE`].
    Introduce = XS_INTRODUCE,
    /// [`XS_RELEASE`].
    Release = XS_RELEASE,
    /// [`XS_GET_DOMAIN_PATH`].
    GetDomainPath = XS_GET_DOMAIN_PATH,
    /// [`XS_WRITE`].
    Write = XS_WRITE,
    /// [`XS_MKDIR`].
    Mkdir = XS_MKDIR,
    /// [`XS_RM`].
    Rm = XS_RM,
    /// [`XS_SET_PERMS`].
    SetPerms = XS_SET_PERMS,
    /// [`XS_WATCH_EVENT`].
    WatchEvent = XS_WATCH_EVENT,
    /// [`XS_ERROR`].
    Error = XS_ERROR,
    /// [`XS_IS_DOMAIN_INTRODUCED`].
    IsDomainIntroduced = XS_IS_DOMAIN_INTRODUCED,
    /// [`XS_RESUME`].
    Resume = XS_RESUME,
    /// [`XS_SET_TARGET`].
    SetTarget = XS_SET_TARGET,
    /// [`XS_RESET_WATCHES`].
    ResetWatches = XS_RESET_WATCHES,
    /// [`XS_DIRECTORY_PART`].
    DirectoryPart = XS_DIRECTORY_PART,
    /// [`XS_GET_FEATURE`].
    GetFeature = XS_GET_FEATURE,
    /// [`XS_SET_FEATURE`].
    SetFeature = XS_SET_FEATURE,
    /// [`XS_GET_QUOTA`].
    GetQuota = XS_GET_QUOTA,
    /// [`XS_SET_QUOTA`].
    SetQuota = XS_SET_QUOTA,
}

impl XsdSockmsgType {
    /// The type for a wire value, if it is a valid message type.
    pub const fn from_u32(v: u32) -> Option<XsdSockmsgType> {
        use XsdSockmsgType::*;
        Some(match v {
            XS_CONTROL => Control,
            XS_DIRECTORY => Directory,
            XS_READ => Read,
            XS_GET_PERMS => GetPerms,
            XS_WATCH => Watch,
            XS_UNWATCH => Unwatch,
            XS_TRANSACTION_START => TransactionStart,
            XS_TRANSACTION_END => TransactionEnd,
            XS_INTRODUCE => Introduce,
            XS_RELEASE => Release,
            XS_GET_DOMAIN_PATH => GetDomainPath,
            XS_WRITE => Write,
            XS_MKDIR => Mkdir,
            XS_RM => Rm,
            XS_SET_PERMS => SetPerms,
            XS_WATCH_EVENT => WatchEvent,
            XS_ERROR => Error,
            XS_IS_DOMAIN_INTRODUCED => IsDomainIntroduced,
            XS_RESUME => Resume,
            XS_SET_TARGET => SetTarget,
            XS_RESET_WATCHES => ResetWatches,
            XS_DIRECTORY_PART => DirectoryPart,
            XS_GET_FEATURE => GetFeature,
            XS_SET_FEATURE => SetFeature,
            XS_GET_QUOTA => GetQuota,
            XS_SET_QUOTA => SetQuota,
            _ => return None,
        })
    }

    /// Name without the `XS_` prefix (e.g. `"READ"`).
    pub fn name(self) -> &'static str {
        TYPE_NAMES[self as usize]
    }
}

/// Names of message types 0..=26, indexed by type (`""` for the removed type 20).
const TYPE_NAMES: [&str; 27] = [
    "CONTROL",
    "DIRECTORY",
    "READ",
    "GET_PERMS",
    "WATCH",
    "UNWATCH",
    "TRANSACTION_START",
    "TRANSACTION_END",
    "INTRODUCE",
    "RELEASE",
    "GET_DOMAIN_PATH",
    "WRITE",
    "MKDIR",
    "RM",
    "SET_PERMS",
    "WATCH_EVENT",
    "ERROR",
    "IS_DOMAIN_INTRODUCED",
    "RESUME",
    "SET_TARGET",
    "",
    "RESET_WATCHES",
    "DIRECTORY_PART",
    "GET_FEATURE",
    "SET_FEATURE",
    "GET_QUOTA",
    "SET_QUOTA",
];

/// Name of a message type without the `XS_` prefix (e.g. `2` → `"READ"`).
pub fn type_name(ty: u32) -> Option<&'static str> {
    match TYPE_NAMES.get(ty as usize) {
        Some(n) if !n.is_empty() => Some(n),
        _ => None,
    }
}

/// The errors xenstored reports by name in `XS_ERROR` replies
/// (`xsd_errors[]`); the payload is [`Errno::name`] plus a NUL.
pub const XSD_ERRORS: [Errno; 16] = [
    Errno::EINVAL,
    Errno::EACCES,
    Errno::EEXIST,
    Errno::EISDIR,
    Errno::ENOENT,
    Errno::ENOMEM,
    Errno::ENOSPC,
    Errno::EIO,
    Errno::ENOTEMPTY,
    Errno::ENOSYS,
    Errno::EROFS,
    Errno::EBUSY,
    Errno::EAGAIN,
    Errno::EISCONN,
    Errno::E2BIG,
    Errno::EPERM,
];

/// Message header (C `struct xsd_sockmsg`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XsdSockmsg {
    /// `XS_*` message type.
    pub type_: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0: none).
    pub tx_id: u32,
    /// Payload length in bytes.
    pub len: u32,
}

assert_layout!(XsdSockmsg, size = 16, { type_: 0, req_id: 4, tx_id: 8, len: 12 });

/// Size of each xenstore ring.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Maximum payload length of one message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Maximum absolute path length.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Maximum relative path length.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `server_features` bit: the ring can be reconnected via `connection`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features` bit: the `error` field is valid.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;

/// `connection`: steady state.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: reconnect in progress.
pub const XENSTORE_RECONNECT: u32 = 1;

/// `error`: no error.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// The xenstore ring page (C `struct xenstore_domain_interface`,
/// `public/io/xs_wire.h`), 0x820 bytes at the start of the page.
///
/// Indices are free-running `u32`s; a byte's slot is `idx & (XENSTORE_RING_SIZE - 1)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenstoreDomainInterface {
    /// Requests (guest produces, xenstored consumes).
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and watch events (xenstored produces, guest consumes).
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Request consumer index (server).
    pub req_cons: u32,
    /// Request producer index (guest).
    pub req_prod: u32,
    /// Response consumer index (guest).
    pub rsp_cons: u32,
    /// Response producer index (server).
    pub rsp_prod: u32,
    /// `XENSTORE_SERVER_FEATURE_*` bits offered by the server.
    pub server_features: u32,
    /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
    pub connection: u32,
    /// `XENSTORE_ERROR_*` (valid with `XENSTORE_SERVER_FEATURE_ERROR`).
    pub error: u32,
    /// Event channel of the ring (newest interface revision; older
    /// servers leave it 0).
    pub evtchn_port: u32,
}

assert_layout!(XenstoreDomainInterface, size = 0x820, {
    req: 0x000,
    rsp: 0x400,
    req_cons: 0x800,
    req_prod: 0x804,
    rsp_cons: 0x808,
    rsp_prod: 0x80C,
    server_features: 0x810,
    connection: 0x814,
    error: 0x818,
    evtchn_port: 0x81C,
});

impl_zeroed_default!(XenstoreDomainInterface);

impl XenstoreDomainInterface {
    /// Ring slot of a free-running index.
    pub const fn slot(idx: u32) -> usize {
        idx as usize & (XENSTORE_RING_SIZE - 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_and_ring() {
        let h = XsdSockmsg {
            type_: XS_READ,
            req_id: 7,
            tx_id: 0,
            len: 6,
        };
        let mut ring = XenstoreDomainInterface::default();
        ring.req[..16].copy_from_slice(h.as_bytes());
        ring.req[16..22].copy_from_slice(b"domid\0");
        ring.req_prod = 22;
        let b = ring.as_bytes();
        assert_eq!(&b[0x804..0x808], &22u32.to_le_bytes());
        let (back, rest) = XsdSockmsg::read_from_prefix(&b[..22]).unwrap();
        assert_eq!(back, h);
        assert_eq!(rest, b"domid\0");
        assert_eq!(XenstoreDomainInterface::slot(1024 + 5), 5);
    }

    #[test]
    fn names() {
        assert_eq!(type_name(XS_DIRECTORY), Some("DIRECTORY"));
        assert_eq!(type_name(XS_RESET_WATCHES), Some("RESET_WATCHES"));
        assert_eq!(type_name(20), None);
        assert_eq!(type_name(XS_INVALID), None);
        assert_eq!(XSD_ERRORS[4].name(), "ENOENT");
        for v in 0..=XS_SET_QUOTA {
            match XsdSockmsgType::from_u32(v) {
                Some(t) => {
                    assert_eq!(t as u32, v);
                    assert_eq!(Some(t.name()), type_name(v));
                }
                None => assert_eq!(v, XS_RESTRICT_REMOVED),
            }
        }
        assert_eq!(XsdSockmsgType::from_u32(XS_INVALID), None);
    }
}
