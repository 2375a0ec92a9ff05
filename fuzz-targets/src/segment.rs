//! The `segment` target: arbitrary bytes as a topic's segment (its header
//! and ring), mapped and read the way a subscriber does: `Segment::open`
//! (the checks a client runs on the descriptors the daemon sends), then a
//! `Reader` on subscriber slot 0 receiving with a deadline.
//!
//! Input: `flags (1) | back (u16) | segment image`. The image is laid over
//! a sealed memfd of the template geometry ([`params`]: a 4 KiB ring, so
//! 12 KiB in all; shorter images are padded with zeros, longer ones cut).
//! The control, waiters and cursor pages are the template's, stamped with
//! the image's salt so that a valid image opens. `back`: where the reader
//! starts, in 64-byte steps before the tail (0xffff: at the tail). Flags:
//! bit 0: each receive waits 50 µs (else not at all); bit 1: a claim is
//! abandoned at once (else after 50 µs); bit 2: `next` + `consume` (else
//! `receive_into`); bit 3: a 16-byte buffer (else `max_message`); bit 4: the default
//! spins before a wait (else none).

use aether::ring::{Deadline, Reader};
use aether::segment::{Cursor, Header, Meta, PageMeta, Policy, Segment, TopicParams, Waiters};
use aether::Status;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The template's ring: the smallest there is.
pub const RING: u64 = 4096;
/// The template's largest message (the image may say less).
pub const MAX_MESSAGE: u64 = 500;
/// Receives per input at most.
const RECEIVES: usize = 64;
/// The wait of a receive that waits, and the abandon timeout that is not 0.
const SHORT: Duration = Duration::from_micros(50);
/// A receive that outlives its deadline by this much is a hang.
const HANG: Duration = Duration::from_secs(1);

/// Where the segment's salt is in its header.
pub const SALT_AT: usize = std::mem::offset_of!(Header, meta) + std::mem::offset_of!(Meta, salt);
const PAGE_SALT_AT: usize = std::mem::offset_of!(PageMeta, salt);

/// The template's parameters (the image's header names its own policy).
pub fn params(policy: Policy) -> TopicParams {
    TopicParams {
        policy,
        ring_size: RING,
        max_message: MAX_MESSAGE,
        max_subscribers: 4,
        wal: None,
        huge_pages: false,
        retain_bytes: None,
        retain_seconds: None,
    }
}

/// The descriptors every input is laid over, and the pristine pages.
struct Template {
    seg: OwnedFd,
    control: OwnedFd,
    waiters: OwnedFd,
    cursor: OwnedFd,
    /// The same four, for pread and pwrite.
    files: [File; 4],
    /// The control, waiters and cursor pages as made (slot 0 joined).
    pristine: [Vec<u8>; 3],
    size: usize,
}

fn file(fd: &OwnedFd) -> File {
    File::from(fd.try_clone().expect("dup a memfd"))
}

fn contents(f: &File) -> Vec<u8> {
    let len = f.metadata().expect("fstat a memfd").len() as usize;
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, 0).expect("read a memfd");
    v
}

impl Template {
    fn new() -> Template {
        let (seg_fd, control_fd, seg) = Segment::create("fuzz", &params(Policy::Lossy), 1, 0).expect("a segment");
        let salt = seg.geometry().salt;
        let (waiters_fd, _w) = Waiters::create("fuzz", salt).expect("a waiters page");
        let (cursor_fd, cursor) = Cursor::create("fuzz", salt, 0).expect("a cursor page");
        seg.join(0, std::process::id(), &cursor).expect("join slot 0");
        let files = [&seg_fd, &control_fd, &waiters_fd, &cursor_fd].map(file);
        let pristine = [contents(&files[1]), contents(&files[2]), contents(&files[3])];
        let size = seg.geometry().file_size() as usize;
        Template {
            seg: seg_fd,
            control: control_fd,
            waiters: waiters_fd,
            cursor: cursor_fd,
            files,
            pristine,
            size,
        }
    }

    /// Lays `image` and the pristine pages (salted as the image) over the descriptors.
    fn lay(&self, image: &[u8]) {
        let mut img = vec![0u8; self.size];
        let n = image.len().min(self.size);
        img[..n].copy_from_slice(&image[..n]);
        let salt = &img[SALT_AT..SALT_AT + 8];
        self.files[0].write_all_at(&img, 0).expect("write the segment");
        for (f, page) in self.files[1..].iter().zip(&self.pristine) {
            let mut p = page.clone();
            p[PAGE_SALT_AT..PAGE_SALT_AT + 8].copy_from_slice(salt);
            f.write_all_at(&p, 0).expect("write a page");
        }
    }
}

thread_local! {
    static TEMPLATE: Template = Template::new();
}

/// See the module documentation.
pub fn segment(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let flags = data[0];
    let back = u16::from_le_bytes([data[1], data[2]]);
    TEMPLATE.with(|t| run(t, flags, back, &data[3..]));
}

fn run(t: &Template, flags: u8, back: u16, image: &[u8]) {
    t.lay(image);
    let seg = match Segment::open(&t.seg, &t.control) {
        Ok(s) => s,
        Err(e) => {
            assert!(matches!(e.status, Status::Corrupt), "Segment::open: {e}");
            return;
        }
    };
    let geo = *seg.geometry();
    assert_eq!(geo.ring_size, RING, "opened with another ring size");
    assert!(geo.max_message >= 1 && geo.max_message <= RING / 2 - 32, "{geo:?}");
    let waiters = Waiters::open(&t.waiters, geo.salt).expect("the waiters page opens");
    let cursor = Cursor::open(&t.cursor, geo.salt, 0).expect("the cursor page opens");
    let start = (back != u16::MAX).then(|| {
        let (tail, seq) = seg.tail().load_shared();
        (tail.wrapping_sub(back as u64 * 64), seq.saturating_sub(back as u64))
    });
    let seg = Arc::new(seg);
    let ring = seg.ring_ptr() as usize;
    let mut r = match Reader::new_at(Arc::clone(&seg), Arc::new(waiters), Some((0, Arc::new(cursor))), start) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                matches!(e.status, Status::Corrupt | Status::Protocol),
                "Reader::new_at: {e}"
            );
            return;
        }
    };
    r.abandon_timeout = if flags & 2 != 0 { Duration::ZERO } else { SHORT };
    let wait = if flags & 1 != 0 { SHORT } else { Duration::ZERO };
    if flags & 16 == 0 {
        // The default spins cost ~100 µs per empty receive: most inputs go without.
        r.wait.spin = 0;
    }
    let mut buf = vec![0u8; if flags & 8 != 0 { 16 } else { geo.max_message as usize }];
    let mut delivered = 0u64;
    for _ in 0..RECEIVES {
        let deadline = Deadline::after(Some(wait));
        let t0 = Instant::now();
        let got = if flags & 4 != 0 {
            r.next(&deadline).map(|rec| {
                let data = rec.data as usize;
                assert!(
                    data >= ring && data + rec.len <= ring + RING as usize,
                    "record at {} of {} bytes lies outside the ring",
                    rec.pos,
                    rec.len
                );
                assert!(rec.len as u64 <= geo.max_message, "{} bytes > max_message", rec.len);
                r.consume(&rec);
                rec.len
            })
        } else {
            r.receive_into(&mut buf, &deadline).map(|(len, _, _)| len)
        };
        let took = t0.elapsed();
        assert!(
            took < wait + HANG,
            "a receive with a deadline of {wait:?} took {took:?}"
        );
        match got {
            Ok(len) => {
                assert!(len as u64 <= geo.max_message, "{len} bytes > max_message");
                delivered += 1;
            }
            Err(e) if e.status == Status::TooLarge => assert!(r.too_large_len() > buf.len(), "{e}"),
            Err(e) if e.status == Status::Timeout => break,
            Err(e) => {
                assert!(matches!(e.status, Status::Corrupt), "receive: {e}");
                break;
            }
        }
    }
    assert_eq!(r.delivered(), delivered, "delivered count");
}
