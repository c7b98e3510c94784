//! Xen's errno numbering (`public/errno.h`); hypercalls fail with `-errno`.

use core::fmt;

/// An error number as Xen reports it to guests.
///
/// The values follow Xen's `public/errno.h`, which in turn uses x86 Linux's
/// numbering. A failing hypercall returns the negated value in `rax`
/// (see [`Errno::as_ret`]).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory (also: no such object).
    ENOENT = 2,
    /// No such process (also: no such domain).
    ESRCH = 3,
    /// Interrupted system call. Xen-internal: never returned to a guest.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file number / handle.
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again (same number as `EWOULDBLOCK`).
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address (a guest pointer could not be accessed).
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// Already exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// No space left on device.
    ENOSPC = 28,
    /// Illegal seek. Not part of Xen's `errno.h` (Linux number, kept for
    /// completeness); Xen never returns it.
    ESPIPE = 29,
    /// Read-only file system.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Argument out of domain.
    EDOM = 33,
    /// Result out of range.
    ERANGE = 34,
    /// Resource deadlock would occur (same number as `EDEADLOCK`).
    EDEADLK = 35,
    /// Name too long.
    ENAMETOOLONG = 36,
    /// No record locks available.
    ENOLCK = 37,
    /// Function not implemented (unknown hypercall or sub-operation).
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// Timer expired (e.g. a single-shot timer deadline already passed).
    ETIME = 62,
    /// Not a data message.
    EBADMSG = 74,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// Restart the call. Xen-internal: never returned to a guest.
    ERESTART = 85,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Message too large.
    EMSGSIZE = 90,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Already connected.
    EISCONN = 106,
    /// Not connected.
    ENOTCONN = 107,
    /// Timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
}

impl Errno {
    /// Alias of [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Alias of [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// Every variant, in numeric order.
    pub const ALL: [Errno; 50] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EIO,
        Errno::ENXIO,
        Errno::E2BIG,
        Errno::ENOEXEC,
        Errno::EBADF,
        Errno::ECHILD,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EXDEV,
        Errno::ENODEV,
        Errno::ENOTDIR,
        Errno::EISDIR,
        Errno::EINVAL,
        Errno::ENFILE,
        Errno::EMFILE,
        Errno::ENOSPC,
        Errno::ESPIPE,
        Errno::EROFS,
        Errno::EMLINK,
        Errno::EDOM,
        Errno::ERANGE,
        Errno::EDEADLK,
        Errno::ENAMETOOLONG,
        Errno::ENOLCK,
        Errno::ENOSYS,
        Errno::ENOTEMPTY,
        Errno::ENODATA,
        Errno::ETIME,
        Errno::EBADMSG,
        Errno::EOVERFLOW,
        Errno::EILSEQ,
        Errno::ERESTART,
        Errno::ENOTSOCK,
        Errno::EMSGSIZE,
        Errno::EOPNOTSUPP,
        Errno::EADDRINUSE,
        Errno::EADDRNOTAVAIL,
        Errno::ENOBUFS,
        Errno::EISCONN,
        Errno::ENOTCONN,
        Errno::ETIMEDOUT,
        Errno::ECONNREFUSED,
    ];

    /// The positive error number.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The hypercall return value for this error: `-errno`.
    pub const fn as_ret(self) -> i64 {
        -(self as i32 as i64)
    }

    /// [`Errno::as_ret`] as the raw 64-bit value placed in `rax`.
    pub const fn as_rax(self) -> u64 {
        self.as_ret() as u64
    }

    /// The error for a positive error number, if Xen defines it.
    pub fn from_code(code: i32) -> Option<Errno> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The error a hypercall return value denotes: `Some` for `-errno` of a
    /// known error, `None` for success values and unknown numbers.
    pub fn from_ret(ret: i64) -> Option<Errno> {
        if ret >= 0 || ret < -(i32::MAX as i64) {
            return None;
        }
        Self::from_code((-ret) as i32)
    }

    /// The symbolic name, e.g. `"ENOSYS"` (as used in xenstore error replies).
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::ENXIO => "ENXIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOEXEC => "ENOEXEC",
            Errno::EBADF => "EBADF",
            Errno::ECHILD => "ECHILD",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EXDEV => "EXDEV",
            Errno::ENODEV => "ENODEV",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EINVAL => "EINVAL",
            Errno::ENFILE => "ENFILE",
            Errno::EMFILE => "EMFILE",
            Errno::ENOSPC => "ENOSPC",
            Errno::ESPIPE => "ESPIPE",
            Errno::EROFS => "EROFS",
            Errno::EMLINK => "EMLINK",
            Errno::EDOM => "EDOM",
            Errno::ERANGE => "ERANGE",
            Errno::EDEADLK => "EDEADLK",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::ENOLCK => "ENOLCK",
            Errno::ENOSYS => "ENOSYS",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::ENODATA => "ENODATA",
            Errno::ETIME => "ETIME",
            Errno::EBADMSG => "EBADMSG",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EILSEQ => "EILSEQ",
            Errno::ERESTART => "ERESTART",
            Errno::ENOTSOCK => "ENOTSOCK",
            Errno::EMSGSIZE => "EMSGSIZE",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EADDRINUSE => "EADDRINUSE",
            Errno::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::ENOBUFS => "ENOBUFS",
            Errno::EISCONN => "EISCONN",
            Errno::ENOTCONN => "ENOTCONN",
            Errno::ETIMEDOUT => "ETIMEDOUT",
            Errno::ECONNREFUSED => "ECONNREFUSED",
        }
    }

    /// The error with symbolic name `name` (inverse of [`Errno::name`]).
    pub fn from_name(name: &str) -> Option<Errno> {
        match name {
            "EWOULDBLOCK" => Some(Errno::EAGAIN),
            "EDEADLOCK" => Some(Errno::EDEADLK),
            _ => Self::ALL.iter().copied().find(|e| e.name() == name),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Errno> for i64 {
    fn from(e: Errno) -> i64 {
        e.as_ret()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbering() {
        assert_eq!(Errno::EPERM as i32, 1);
        assert_eq!(Errno::EFAULT as i32, 14);
        assert_eq!(Errno::EINVAL as i32, 22);
        assert_eq!(Errno::ENOSYS as i32, 38);
        assert_eq!(Errno::ENOTEMPTY as i32, 39);
        assert_eq!(Errno::ECONNREFUSED as i32, 111);
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
    }

    #[test]
    fn all_is_complete_sorted_and_named() {
        for w in Errno::ALL.windows(2) {
            assert!(w[0].code() < w[1].code());
        }
        for e in Errno::ALL {
            assert!(e.name().starts_with('E'));
            assert_eq!(Errno::from_name(e.name()), Some(e));
            assert_eq!(Errno::from_code(e.code()), Some(e));
        }
    }

    #[test]
    fn ret_round_trip() {
        for e in Errno::ALL {
            let r = e.as_ret();
            assert!(r < 0);
            assert_eq!(Errno::from_ret(r), Some(e));
            assert_eq!(e.as_rax() as i64, r);
        }
        assert_eq!(Errno::ENOSYS.as_ret(), -38);
        assert_eq!(Errno::ENOSYS.as_rax(), 0xffff_ffff_ffff_ffda);
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(5), None);
        assert_eq!(Errno::from_ret(-15), None);
        assert_eq!(Errno::from_ret(i64::MIN), None);
        assert_eq!(Errno::ENOSYS.name(), "ENOSYS");
        assert_eq!(format!("{}", Errno::EINVAL), "EINVAL");
    }
}
