//! A TAP device opened with `IFF_VNET_HDR`, on `libc`.
//!
//! Every frame read or written carries a 12-byte virtio-net header in front: with offloads
//! switched on (`TUNSETOFFLOAD`) it says whether the checksum is still to be completed and
//! whether the frame is a GSO super-frame; with none switched on it is all zeroes on the way in
//! and must be all zeroes on the way out. The tun-tap crate cannot open a TAP this way (it
//! issues `TUNSETIFF` once, without `IFF_VNET_HDR`), so, as Firecracker, cloud-hypervisor and
//! crosvm do, the three ioctls are ours; they are the only `unsafe` code of the project.
//!
//! The device lives in the network namespace of the thread that opens it, and goes away when
//! its file descriptor is closed (it is never made persistent), so a crashed runtime leaves no
//! TAP behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

/// The virtio-net header in front of every frame: `struct virtio_net_hdr_v1` (12 bytes, with
/// `num_buffers`), as `TUNSETVNETHDRSZ` is told.
pub const VNET_HDR_LEN: usize = 12;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is to be completed.
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// `gso_type` values.
pub const VNET_GSO_NONE: u8 = 0;
pub const VNET_GSO_TCPV4: u8 = 1;
pub const VNET_GSO_UDP_L4: u8 = 5;

/// The offload metadata of a frame, as the virtio-net header carries it (little-endian, the
/// byte order of virtio 1.0, which a TAP uses on a little-endian host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Read the header from the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Write the header into the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].fill(0);
    }

    /// A plain frame: complete checksums, no segmentation.
    pub fn is_plain(&self) -> bool {
        self.flags == 0 && self.gso_type == VNET_GSO_NONE
    }
}

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

/// Offloads a TAP may take (`TUN_F_*`), passed to [`Tap::open`].
pub mod offload {
    pub const CSUM: u32 = libc::TUN_F_CSUM;
    pub const TSO4: u32 = libc::TUN_F_TSO4;
    pub const TSO6: u32 = libc::TUN_F_TSO6;
    pub const USO4: u32 = libc::TUN_F_USO4;
    pub const USO6: u32 = libc::TUN_F_USO6;
}

impl Tap {
    /// Create the TAP `name` (at most 15 bytes) in the calling thread's network namespace, with
    /// a virtio-net header on every frame and the given offloads (`0` for none), non-blocking.
    pub fn open(name: &str, offloads: u32) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0', ' ']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}: 1 to 15 bytes, no '/', space or NUL"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;

        // SAFETY: `ifreq` is plain old data (bytes, integers and a union of them); all zeroes is
        // a valid value of it.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: the fd is an open /dev/net/tun; TUNSETIFF reads an `ifreq` through the pointer,
        // which points at one that lives across the call.
        check(
            unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) },
            "TUNSETIFF",
        )?;

        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which outlives the call.
        check(
            unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) },
            "TUNSETVNETHDRSZ",
        )?;
        // SAFETY: TUNSETOFFLOAD takes its flags by value; the fd is the TAP set up above.
        check(
            unsafe {
                libc::ioctl(
                    file.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    offloads as libc::c_ulong,
                )
            },
            "TUNSETOFFLOAD",
        )?;
        Ok(Tap {
            file,
            name: name.to_string(),
        })
    }

    /// [`Tap::open`] with every offload the lab takes: checksums, TCP segmentation, and UDP
    /// segmentation where the kernel has it (Linux 6.2 on); without it, the rest.
    pub fn open_with_offloads(name: &str) -> io::Result<Tap> {
        use offload::*;
        let base = CSUM | TSO4 | TSO6;
        match Tap::open(name, base | USO4 | USO6) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Tap::open(name, base),
            other => other,
        }
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read one frame with its virtio-net header into `buf` (which must hold
    /// [`VNET_HDR_LEN`] + 65,535 bytes or more for a super-frame). `WouldBlock` when none waits.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Write one frame that starts with its virtio-net header.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.file).write(buf)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_round_trips_little_endian() {
        let h = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: VNET_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0xffu8; VNET_HDR_LEN];
        h.write(&mut b);
        assert_eq!(b, [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 0, 0]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert!(!h.is_plain());
        assert!(VnetHdr::parse(&[0; VNET_HDR_LEN]).unwrap().is_plain());
        assert_eq!(VnetHdr::parse(&[0; 11]), None);
    }

    #[test]
    fn names_the_kernel_would_refuse_are_refused_before_any_ioctl() {
        for bad in ["", "sixteen-chars-xx", "a/b", "a b"] {
            let e = Tap::open(bad, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
