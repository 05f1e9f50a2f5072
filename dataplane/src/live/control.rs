//! A live lab's control socket, `/run/vmcnet/LAB.sock` (root only), and the capture streams it
//! serves.
//!
//! The protocol is one request a connection: the client writes its arguments as one line of
//! JSON (`["show","eni","--json"]`); the lab answers with one line of JSON (`{"code":0}`), then
//! the output, then closes. A capture's output is a pcap stream, until the client goes away.
//!
//! An accept thread reads each request and hands it, with its connection, to the engine over a
//! channel, and wakes the engine through a socket pair that the engine polls; the engine
//! answers between two rounds of frames. A capture's frames go from the engine to a writer
//! thread over a bounded channel: when the writer falls behind, frames are dropped and
//! counted, never waited for.

use std::cell::RefCell;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use serde::{Deserialize, Serialize};

use crate::capture::FrameSink;
use crate::time::Instant;
use crate::wire::ipv4::Ipv4View;

/// The longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// Frames a capture holds for its writer before it drops, and bytes (super-frames are large).
pub const CAPTURE_QUEUE: usize = 4096;
pub const CAPTURE_QUEUE_BYTES: usize = 16 << 20;
/// How often an idle capture's writer looks whether its client went away.
const HANGUP_CHECK: Duration = Duration::from_millis(250);
/// A capture's snap length: a whole GSO super-frame, with room for a Geneve header.
pub const CAPTURE_SNAPLEN: u32 = 65_535 + 14 + 64;

/// A request, with the connection to answer on.
pub struct Request {
    pub args: Vec<String>,
    pub conn: UnixStream,
}

/// The first line of every answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// The exit status the client exits with.
    pub code: u8,
}

/// The control socket of a lab.
pub struct ControlServer {
    pub requests: Receiver<Request>,
    /// Readable when requests wait.
    pub wake: UnixStream,
}

impl ControlServer {
    /// Listen on `path` (replacing a stale socket), readable and writable by root only.
    pub fn listen(path: &Path) -> io::Result<ControlServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let (wake, waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        waker.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("vmcnet-control".into())
            .spawn(move || accept(listener, tx, waker))?;
        Ok(ControlServer { requests: rx, wake })
    }

    /// Empty the wake-up socket.
    pub fn drain_wake(&self) {
        let mut b = [0u8; 64];
        while matches!((&self.wake).read(&mut b), Ok(n) if n > 0) {}
    }
}

fn accept(listener: UnixListener, tx: Sender<Request>, mut waker: UnixStream) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        let read = BufReader::new((&conn).take(MAX_REQUEST)).read_line(&mut line);
        let args = match read.map(|_| serde_json::from_str::<Vec<String>>(&line)) {
            Ok(Ok(args)) => args,
            _ => {
                let _ = answer(
                    &conn,
                    2,
                    "vmcnet: a request is one line: a JSON array of strings\n",
                );
                continue;
            }
        };
        let _ = conn.set_read_timeout(None);
        if tx.send(Request { args, conn }).is_err() {
            return;
        }
        let _ = waker.write(&[1]);
    }
}

/// Answer a request with `code` and `text`, and close.
pub fn answer(mut conn: &UnixStream, code: u8, text: &str) -> io::Result<()> {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let header = serde_json::to_string(&Header { code }).map_err(io::Error::other)?;
    conn.write_all(format!("{header}\n").as_bytes())?;
    conn.write_all(text.as_bytes())?;
    conn.flush()
}

/// Send a request to lab socket `path`; returns the header and the connection, positioned at
/// the output.
pub fn request(path: &Path, args: &[String]) -> io::Result<(Header, BufReader<UnixStream>)> {
    let mut conn = UnixStream::connect(path)?;
    let line = serde_json::to_string(args).map_err(io::Error::other)?;
    conn.write_all(format!("{line}\n").as_bytes())?;
    let mut reader = BufReader::new(conn);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let header: Header = serde_json::from_str(&header).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the lab's answer: {e}: {header:?}"),
        )
    })?;
    Ok((header, reader))
}

/// Counts of one capture.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    pub frames: AtomicU64,
    /// Dropped because the writer fell behind.
    pub dropped: AtomicU64,
}

/// The engine's side of a capture: frames into a bounded channel, timestamped with the wall
/// clock (lab start + the instant), as tcpdump stamps them.
pub struct ChannelSink {
    tx: Sender<(Duration, Vec<u8>)>,
    /// Only the IPv4 packets between these two addresses, either way.
    between: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Bytes in the queue.
    queued: Arc<AtomicUsize>,
    epoch: Duration,
    pub closed: Arc<AtomicBool>,
    pub counters: Arc<CaptureCounters>,
}

impl FrameSink for ChannelSink {
    fn write(&mut self, now: Instant, frame: &[u8]) {
        if let Some((a, b)) = self.between {
            let ends = Ipv4View::parse(frame).map(|v| (v.src(), v.dst()));
            if ends != Some((a, b)) && ends != Some((b, a)) {
                return;
            }
        }
        let ts = self.epoch + Duration::from_nanos(now.as_nanos());
        if self.queued.load(Ordering::Relaxed) + frame.len() > CAPTURE_QUEUE_BYTES {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send((ts, frame.to_vec())) {
            Ok(()) => {
                self.queued.fetch_add(frame.len(), Ordering::Relaxed);
                self.counters.frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.closed.store(true, Ordering::Relaxed),
        }
    }
}

/// Start a capture stream on `conn`: a pcap header (nanosecond timestamps, a snap length that
/// holds a super-frame), then every frame the returned sink takes, until the client goes away
/// (then the sink's `closed` flag rises, and the engine removes it). `epoch` is the wall-clock
/// time of the lab's instant zero. The writer thread runs on `cpus`, if given (not on a pinned
/// engine's CPU), rather than on the CPUs of the thread that starts it.
pub fn capture_stream(
    conn: UnixStream,
    epoch: SystemTime,
    between: Option<(Ipv4Addr, Ipv4Addr)>,
    cpus: Option<nix::sched::CpuSet>,
) -> io::Result<ChannelSink> {
    let (tx, rx) = crossbeam_channel::bounded::<(Duration, Vec<u8>)>(CAPTURE_QUEUE);
    let closed = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(CaptureCounters::default());
    let epoch = epoch
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    {
        let header = serde_json::to_string(&Header { code: 0 }).map_err(io::Error::other)?;
        (&conn).write_all(format!("{header}\n").as_bytes())?;
    }
    let done = closed.clone();
    let queued = Arc::new(AtomicUsize::new(0));
    let taken = queued.clone();
    std::thread::Builder::new()
        .name("vmcnet-capture".into())
        .spawn(move || {
            if let Some(set) = cpus {
                // Only a matter of speed: refused, the writer runs where it was started.
                let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
            }
            let _ = write_pcap(conn, rx, &taken);
            done.store(true, Ordering::Relaxed);
        })?;
    Ok(ChannelSink {
        tx,
        between,
        queued,
        epoch,
        closed,
        counters,
    })
}

fn write_pcap(
    conn: UnixStream,
    rx: Receiver<(Duration, Vec<u8>)>,
    queued: &AtomicUsize,
) -> io::Result<()> {
    let peer = conn.try_clone()?;
    let header = PcapHeader {
        snaplen: CAPTURE_SNAPLEN,
        datalink: DataLink::ETHERNET,
        endianness: Endianness::Little,
        ts_resolution: TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let out = Shared(Rc::new(RefCell::new(BufWriter::new(conn))));
    let flush = out.clone();
    let mut w = PcapWriter::with_header(out, header).map_err(io::Error::other)?;
    flush.flush()?;
    // Flushed whenever the queue runs dry, so that a live reader sees each frame at once.
    loop {
        let (ts, frame) = match rx.recv_timeout(HANGUP_CHECK) {
            Ok(f) => f,
            // An idle link writes nothing that could fail: look whether the client is gone.
            Err(RecvTimeoutError::Timeout) if hung_up(&peer) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
        let pkt = PcapPacket::new(ts, frame.len() as u32, &frame);
        w.write_packet(&pkt).map_err(io::Error::other)?;
        if rx.is_empty() {
            flush.flush()?;
        }
    }
}

/// Whether the client at the other end of `conn` closed it: it never writes after its request,
/// so a read that finds the end of the stream means it went away.
fn hung_up(conn: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut b = [0u8; 1];
    matches!(
        recv(
            conn.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Ok(0)
    )
}

/// A buffered stream the pcap writer writes to while the loop decides when to flush it
/// (`PcapWriter` does not lend its writer out).
#[derive(Clone)]
struct Shared(Rc<RefCell<BufWriter<UnixStream>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl Shared {
    fn flush(&self) -> io::Result<()> {
        self.0.borrow_mut().flush()
    }
}
