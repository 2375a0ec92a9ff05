//! The C boundary's own checks, with no broker and no system call: NULL
//! handles and arguments, versioned structs of every size a caller may
//! pass, and the static strings. They run under Miri
//! (`scripts/sanitizers.sh`), which checks the raw-pointer code for
//! out-of-bounds, misaligned and uninitialised reads.

use super::error::aether_status as S;
use super::*;
use std::ffi::CStr;
use std::ptr::{null, null_mut};

fn last_error() -> String {
    // SAFETY: aether_last_error never returns NULL and its string is NUL-terminated.
    unsafe { CStr::from_ptr(aether_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A caller's struct of `size` bytes (the first word its struct_size),
/// 8-aligned, filled with `fill` after the size.
fn caller_bytes(size: usize, fill: u8) -> Vec<u64> {
    let mut words = vec![u64::from_ne_bytes([fill; 8]); size.div_ceil(8).max(1)];
    words[0] = size as u64;
    words
}

#[test]
fn null_handles_and_arguments_are_invalid_and_named() {
    let invalid = S::AETHER_E_INVALID as c_int;
    let mut n = 0usize;
    let mut b = 0u64;
    let mut p: *mut c_void = null_mut();
    // SAFETY: every pointer is NULL or points to a live local; NULL is what is tested.
    unsafe {
        assert_eq!(aether_connect(null(), null_mut()), invalid);
        assert!(last_error().contains("out"), "{}", last_error());
        assert_eq!(aether_topic_create(null_mut(), c"t".as_ptr(), null()), invalid);
        assert!(last_error().contains("client"), "{}", last_error());
        assert_eq!(aether_topic_delete(null_mut(), null()), invalid);
        assert_eq!(aether_publisher_open(null_mut(), c"t".as_ptr(), null_mut()), invalid);
        assert_eq!(aether_publish(null_mut(), null(), 0), invalid);
        assert!(last_error().contains("publisher"), "{}", last_error());
        assert_eq!(aether_loan(null_mut(), 8, &mut p), invalid);
        assert_eq!(aether_commit(null_mut(), 8), invalid);
        assert_eq!(aether_abort(null_mut()), invalid);
        assert_eq!(aether_publisher_reopen(null_mut()), invalid);
        assert_eq!(aether_publisher_set_timeout(null_mut(), 0), invalid);
        assert_eq!(aether_publisher_set_large_laps(null_mut(), 1), invalid);
        assert_eq!(aether_publisher_set_timestamps(null_mut(), 1), invalid);
        assert_eq!(
            aether_subscriber_open(null_mut(), c"t".as_ptr(), null(), null_mut()),
            invalid
        );
        assert_eq!(aether_receive(null_mut(), null_mut(), 0, &mut n, 0), invalid);
        assert!(last_error().contains("subscriber"), "{}", last_error());
        assert_eq!(aether_release(null_mut(), null_mut()), invalid);
        assert_eq!(aether_subscriber_commit(null_mut()), invalid);
        assert_eq!(aether_subscriber_origin(null(), &mut b, &mut b), invalid);
        assert_eq!(aether_topic_stats(null_mut(), c"t".as_ptr(), null_mut()), invalid);
        assert_eq!(aether_subscriber_stats(null(), null_mut()), invalid);
        assert_eq!(aether_subscriber_reopen(null_mut()), invalid);
        assert_eq!(aether_set_thread_affinity(null(), 0), invalid);
        assert_eq!(aether_broker_id(null()), 0);
        // Closing NULL is a no-op, as free(NULL) is.
        aether_client_close(null_mut());
        aether_publisher_close(null_mut());
        aether_subscriber_close(null_mut());
    }
}

#[test]
fn strings_are_static_and_terminated() {
    for status in -20..=1 {
        // SAFETY: aether_strerror never returns NULL; its strings are static and terminated.
        let s = unsafe { CStr::from_ptr(aether_strerror(status)) };
        assert!(!s.to_bytes().is_empty(), "status {status}");
    }
    // SAFETY: a static, terminated string.
    let v = unsafe { CStr::from_ptr(aether_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    // SAFETY: a terminated literal.
    let id = unsafe { aether_broker_id(c"host-a".as_ptr()) };
    assert_eq!(id, crate::broker_id("host-a"));
}

/// Reads the caller's bytes as a topic config (as aether_topic_create does).
fn topic_params_of(words: &[u64]) -> crate::error::Result<TopicParams> {
    topic_params(words.as_ptr().cast())
}

#[test]
fn topic_config_of_every_size() {
    let d = aether_topic_config_default();
    assert_eq!(d.struct_size, std::mem::size_of::<aether_topic_config>());
    assert_eq!(topic_params(null()).unwrap(), TopicParams::default());
    assert_eq!(topic_params(&d).unwrap(), TopicParams::default());
    // Older layouts: only their fields are read; the bytes after them (0xff,
    // which would be invalid settings; 0, which would be retain_* 0 on a
    // topic that is not durable) are not.
    for (size, fields, fill) in [
        (TOPIC_CONFIG_V1_SIZE, TOPIC_CONFIG_V1.fields, 0xff),
        (TOPIC_CONFIG_V2_SIZE, TOPIC_CONFIG_V2_SIZE, 0xff),
        (TOPIC_CONFIG_V3_SIZE, TOPIC_CONFIG_V3.fields, 0xff),
        (TOPIC_CONFIG_V3_SIZE, TOPIC_CONFIG_V3.fields, 0),
    ] {
        let mut words = caller_bytes(size, fill);
        // SAFETY: `words` has room for `fields` bytes; the default is plain data.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&d as *const aether_topic_config).cast::<u8>(),
                words.as_mut_ptr().cast::<u8>(),
                fields,
            )
        };
        words[0] = size as u64;
        assert_eq!(topic_params_of(&words).unwrap(), TopicParams::default(), "size {size}");
    }
    // A newer, bigger struct: accepted while the fields we do not know are zero.
    let mut words = caller_bytes(d.struct_size + 16, 0);
    // SAFETY: as above, `words` is bigger than the default.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&d as *const aether_topic_config).cast::<u8>(),
            words.as_mut_ptr().cast::<u8>(),
            d.struct_size,
        )
    };
    words[0] = (d.struct_size + 16) as u64;
    assert_eq!(topic_params_of(&words).unwrap(), TopicParams::default());
    let last = words.len() - 1;
    words[last] = 1;
    let e = topic_params_of(&words).unwrap_err();
    assert!(e.message.contains("does not know"), "{e}");
    // Sizes no version has, and absurd ones: refused, nothing read past the size word.
    for size in [0usize, 7, 8, 39, 41, 4097, usize::MAX] {
        let words = caller_bytes(8, 0);
        let mut w = words.clone();
        w[0] = size as u64;
        let e = topic_params_of(&w).unwrap_err();
        assert_eq!(e.status, Status::Invalid, "size {size}");
        assert!(e.message.contains("struct_size"), "{e}");
    }
    // Field values out of range.
    for bad in [
        aether_topic_config { policy: 9, ..d },
        aether_topic_config { durability: 7, ..d },
        aether_topic_config {
            durability: 1,
            fsync: 9,
            ..d
        },
        aether_topic_config { huge_pages: 2, ..d },
        aether_topic_config { ring_size: 3, ..d },
        // Retention is for durable topics only.
        aether_topic_config { retain_bytes: 0, ..d },
        aether_topic_config {
            retain_seconds: 3600,
            ..d
        },
    ] {
        assert_eq!(topic_params(&bad).unwrap_err().status, Status::Invalid, "{bad:?}");
    }
    // AETHER_RETAIN_DEFAULT: not set; 0: no limit; else the limit.
    let durable = aether_topic_config {
        policy: Policy::Reliable as u32,
        durability: aether_durability::AETHER_DURABILITY_WAL as u32,
        ..d
    };
    for (bytes, seconds, want) in [
        (AETHER_RETAIN_DEFAULT, AETHER_RETAIN_DEFAULT, (None, None)),
        (0, AETHER_RETAIN_DEFAULT, (Some(0), None)),
        (AETHER_RETAIN_DEFAULT, 0, (None, Some(0))),
        (1 << 20, 60, (Some(1 << 20), Some(60))),
    ] {
        let p = topic_params(&aether_topic_config {
            retain_bytes: bytes,
            retain_seconds: seconds,
            ..durable
        })
        .unwrap();
        assert_eq!((p.retain_bytes, p.retain_seconds), want);
        assert_eq!(p.wal, Some(Fsync::Never));
    }
}

#[test]
fn out_structs_get_what_both_sides_know() {
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Out {
        struct_size: usize,
        a: u64,
        b: u64,
    }
    let v = Out {
        struct_size: 24,
        a: 1,
        b: 2,
    };
    // A caller built against an older, 16-byte layout: `b` is not written
    // (the word after its struct stays as it was).
    let mut words = [16u64, 0, 0xdead];
    // SAFETY: `words` has the 16 bytes the caller claims (and more).
    unsafe { write_versioned(words.as_mut_ptr().cast::<Out>(), v, 16, "out").unwrap() };
    assert_eq!(words, [16, 1, 0xdead]);
    // A newer, 32-byte caller: our fields written, its extra one untouched.
    let mut words = [32u64, 0, 0, 0xbeef];
    // SAFETY: `words` has the 32 bytes the caller claims.
    unsafe { write_versioned(words.as_mut_ptr().cast::<Out>(), v, 16, "out").unwrap() };
    assert_eq!(words, [32, 1, 2, 0xbeef]);
    // Too small or absurd: refused, nothing written.
    for size in [0u64, 8, 15, 1 << 40] {
        let mut words = [size, 7, 7];
        // SAFETY: the call must not write past the size word for a refused size.
        let e = unsafe { write_versioned(words.as_mut_ptr().cast::<Out>(), v, 16, "out") }.unwrap_err();
        assert_eq!(e.status, Status::Invalid);
        assert_eq!(words, [size, 7, 7]);
    }
}

#[test]
fn string_arguments() {
    // SAFETY: NULL, or terminated byte strings.
    unsafe {
        assert_eq!(handles::str_arg(null(), "topic").unwrap_err().status, Status::Invalid);
        assert_eq!(handles::str_arg(c"abc".as_ptr(), "topic").unwrap(), "abc");
        let bad = [0xffu8, 0xfe, 0];
        let e = handles::str_arg(bad.as_ptr().cast(), "topic").unwrap_err();
        assert!(e.message.contains("UTF-8"), "{e}");
    }
}

#[test]
fn handles_round_trip() {
    let h = handles::into_handle(vec![1u8, 2, 3]);
    // SAFETY: `h` came from into_handle and is freed once; NULL is ignored.
    unsafe {
        assert_eq!(handles::handle_ref(h, "h").unwrap().len(), 3);
        handles::handle_mut(h, "h").unwrap().push(4);
        assert_eq!(*h, vec![1, 2, 3, 4]);
        handles::free_handle(h);
        handles::free_handle::<Vec<u8>>(null_mut());
        assert!(handles::handle_ref::<u8>(null(), "h").is_err());
    }
}
