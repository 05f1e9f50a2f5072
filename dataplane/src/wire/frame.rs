//! [`Frame`]: one Ethernet frame in an owned buffer with headroom.
//!
//! A frame is a single pointer. It moves from node to node in a register, every node owns the
//! frame it holds and edits it in place, and a tunnel header is written into the headroom in
//! front of it instead of into a new buffer. Copies are explicit: [`Clone`] copies the bytes
//! (only a flood or a test clones a frame; a capture reads it by reference).

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::BytesMut;

use super::gso::{Gso, GsoKind};

/// Room kept in front of a frame built here, enough for the Geneve encapsulation (50 bytes),
/// so encapsulating does not move the frame.
pub const HEADROOM: usize = 64;

/// One Ethernet frame, from destination MAC to the end of the payload (no FCS). A frame may be
/// larger than the MTU (a GSO super-frame); nodes forward it whole.
#[derive(Clone, Default)]
pub struct Frame(Box<Buf>);

#[derive(Default)]
struct Buf {
    /// `bytes[head..]` is the frame; `bytes[..head]` is headroom.
    head: u32,
    /// A GSO super-frame's metadata, packed so that a frame's buffer stays 32 bytes (the
    /// fast path allocates one per frame): 0 for a plain frame; else the segment size in the
    /// high 16 bits, [`GSO_UDP`] for a UDP one, and where the L4 checksum's coverage starts,
    /// from the start of `bytes` (so putting a header on or taking one off moves nothing).
    gso: u32,
    bytes: Vec<u8>,
}

/// In [`Buf::gso`]: a UDP super-frame (else TCP).
const GSO_UDP: u32 = 1 << 15;
/// In [`Buf::gso`]: the bits of the checksum's start.
const GSO_START: u32 = GSO_UDP - 1;

impl Clone for Buf {
    fn clone(&self) -> Self {
        let mut b = Buf::with_headroom(&self.bytes[self.head as usize..]);
        if self.gso != 0 {
            // The copy's frame starts at HEADROOM: the checksum's start moves with it.
            let start = (self.gso & GSO_START) + HEADROOM as u32 - self.head;
            b.gso = (self.gso & !GSO_START) | (start & GSO_START);
        }
        b
    }
}

impl Buf {
    fn with_headroom(data: &[u8]) -> Buf {
        let mut bytes = Vec::with_capacity(HEADROOM + data.len());
        bytes.resize(HEADROOM, 0);
        bytes.extend_from_slice(data);
        Buf {
            head: HEADROOM as u32,
            gso: 0,
            bytes,
        }
    }
}

impl Frame {
    /// An empty frame.
    pub fn new() -> Frame {
        Frame::default()
    }

    /// A frame holding a copy of `data`, with [`HEADROOM`] in front.
    pub fn copy_from_slice(data: &[u8]) -> Frame {
        Frame(Box::new(Buf::with_headroom(data)))
    }

    /// A frame of `len` zero bytes, with [`HEADROOM`] in front (to be written in place).
    pub fn zeroed(len: usize) -> Frame {
        Frame(Box::new(Buf {
            head: HEADROOM as u32,
            gso: 0,
            bytes: vec![0; HEADROOM + len],
        }))
    }

    /// Drop the first `n` bytes (a header taken off). Panics if `n` exceeds the length.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len(), "advance past the end of a frame");
        self.0.head += n as u32;
    }

    /// The frame's GSO metadata, if it is a super-frame (its L4 checksum then holds only the
    /// pseudo-header's sum).
    #[inline]
    pub fn gso(&self) -> Option<Gso> {
        let g = self.0.gso;
        if g == 0 {
            return None;
        }
        let kind = if g & GSO_UDP != 0 {
            GsoKind::Udp4
        } else {
            GsoKind::Tcp4
        };
        Some(Gso {
            kind,
            size: (g >> 16) as u16,
            csum_start: (g & GSO_START).checked_sub(self.0.head)? as u16,
            csum_offset: kind.csum_offset(),
        })
    }

    /// Mark the frame a GSO super-frame, or (`None`) a plain frame. False (and a plain frame)
    /// for metadata a frame cannot carry: a segment size of 0, a checksum offset that is not
    /// its kind's, a checksum start past 32 KiB.
    pub fn set_gso(&mut self, gso: Option<Gso>) -> bool {
        self.0.gso = 0;
        let Some(g) = gso else {
            return true;
        };
        let start = self.0.head + u32::from(g.csum_start);
        if g.size == 0 || g.csum_offset != g.kind.csum_offset() || start > GSO_START {
            return false;
        }
        let udp = if g.kind == GsoKind::Udp4 { GSO_UDP } else { 0 };
        self.0.gso = (u32::from(g.size) << 16) | udp | start;
        true
    }

    /// Keep only the first `len` bytes (no-op if the frame is shorter).
    pub fn truncate(&mut self, len: usize) {
        let end = self.0.head as usize + len;
        self.0.bytes.truncate(end);
    }

    /// Grow the frame by `n` bytes in front (a header put on) and return them, to be written.
    /// Uses the headroom when there is enough; otherwise moves the frame once into a buffer
    /// with [`HEADROOM`] again.
    pub fn prepend(&mut self, n: usize) -> &mut [u8] {
        let buf = &mut *self.0;
        if (buf.head as usize) < n {
            let data_len = buf.bytes.len() - buf.head as usize;
            let mut bytes = Vec::with_capacity(HEADROOM + n + data_len);
            bytes.resize(HEADROOM + n, 0);
            bytes.extend_from_slice(&buf.bytes[buf.head as usize..]);
            buf.bytes = bytes;
            let head = (HEADROOM + n) as u32;
            if buf.gso != 0 {
                // The frame moved: so did its checksum's start.
                let start = (buf.gso & GSO_START) + head - buf.head;
                buf.gso = if start > GSO_START {
                    0
                } else {
                    (buf.gso & !GSO_START) | start
                };
            }
            buf.head = head;
        }
        buf.head -= n as u32;
        let head = buf.head as usize;
        &mut buf.bytes[head..head + n]
    }

    /// The frame's length in bytes. (The slice's `len` through `Deref` would check the
    /// headroom against the buffer first; the frame keeps `head` within it.)
    #[inline]
    pub fn len(&self) -> usize {
        self.0.bytes.len() - self.0.head as usize
    }

    /// Whether the frame holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes free in front of the frame.
    pub fn headroom(&self) -> usize {
        self.0.head as usize
    }
}

impl Deref for Frame {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.0.bytes[self.0.head as usize..]
    }
}

impl DerefMut for Frame {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let head = self.0.head as usize;
        &mut self.0.bytes[head..]
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for Frame {
    /// Takes the vector's buffer as it is (no headroom): a frame built to be sent whole.
    fn from(bytes: Vec<u8>) -> Frame {
        Frame(Box::new(Buf {
            head: 0,
            gso: 0,
            bytes,
        }))
    }
}

impl From<BytesMut> for Frame {
    fn from(b: BytesMut) -> Frame {
        Frame::from(Vec::from(b))
    }
}

impl From<&[u8]> for Frame {
    fn from(data: &[u8]) -> Frame {
        Frame::copy_from_slice(data)
    }
}

impl<const N: usize> From<&[u8; N]> for Frame {
    fn from(data: &[u8; N]) -> Frame {
        Frame::copy_from_slice(data)
    }
}

/// Frames are equal when their bytes are (headroom aside).
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        **self == **other
    }
}

impl Eq for Frame {}

impl PartialEq<[u8]> for Frame {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({} bytes:", self.len())?;
        for b in self.iter().take(64) {
            write!(f, " {b:02x}")?;
        }
        if self.len() > 64 {
            write!(f, " …")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepend_uses_headroom_then_grows() {
        let mut f = Frame::copy_from_slice(b"payload");
        assert_eq!(f.headroom(), HEADROOM);
        f.prepend(4).copy_from_slice(b"hdr:");
        assert_eq!(&f[..], b"hdr:payload");
        assert_eq!(f.headroom(), HEADROOM - 4);
        // No headroom left: the frame moves once, and keeps its bytes.
        let mut g = Frame::from(b"abc".to_vec());
        assert_eq!(g.headroom(), 0);
        g.prepend(2).copy_from_slice(b"xy");
        assert_eq!(&g[..], b"xyabc");
        assert_eq!(g.headroom(), HEADROOM);
    }

    #[test]
    fn advance_truncate_and_equality_see_only_the_frame() {
        let mut f = Frame::copy_from_slice(b"0123456789");
        f.advance(2);
        f.truncate(5);
        assert_eq!(&f[..], b"23456");
        assert_eq!(
            f,
            Frame::from(b"23456".to_vec()),
            "headroom is not compared"
        );
        f.truncate(50);
        assert_eq!(f.len(), 5);
        let c = f.clone();
        f[0] = b'x';
        assert_eq!(&c[..], b"23456", "a clone is a copy");
        assert_eq!(Frame::zeroed(3).as_ref(), &[0, 0, 0]);
        assert!(Frame::new().is_empty());
    }

    #[test]
    #[should_panic(expected = "advance past the end")]
    fn advance_past_the_end_panics() {
        Frame::copy_from_slice(b"ab").advance(3);
    }
}
