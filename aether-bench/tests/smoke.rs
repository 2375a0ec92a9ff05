//! The benchmark runs end to end and prints every figure it promises, in the
//! documented JSON shape. (How fast is not asserted here: see docs/BENCHMARKS.md.)

#[test]
fn tiny_run_prints_every_system_as_json() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aether-bench"))
        .args(["--json", "--round-trips", "300", "--messages", "300"])
        .env("AETHER_NO_AUTOSTART", "1")
        .output()
        .expect("run aether-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aether-bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    for sys in ["cacheline", "record", "futex", "uds"] {
        assert_eq!(has(&format!(r#""bench":"latency","system":"{sys}""#)), 1, "{stdout}");
    }
    assert_eq!(
        has(r#""bench":"latency","system":"aether""#),
        3,
        "spin, futex and poll: {stdout}"
    );
    assert_eq!(
        has(r#""bench":"latency","system":"aether-zc","wait":"spin""#),
        1,
        "zero-copy spin: {stdout}"
    );
    for sys in ["aether", "aether-zc", "handoff", "uds", "memcpy", "memset"] {
        assert_eq!(
            has(&format!(r#""bench":"throughput","system":"{sys}""#)),
            4,
            "4 sizes of {sys}: {stdout}"
        );
    }
    assert_eq!(has(r#""bench":"fanout""#), 4, "{stdout}");
    for l in &lines {
        assert!(l.starts_with('{') && l.ends_with('}'), "one JSON object per line: {l}");
        for field in ["p50_ns", "msgs_per_s", "pub_msgs_per_s", "min_sub_msgs_per_s"] {
            if let Some(rest) = l.split(&format!("\"{field}\":")).nth(1) {
                let v: f64 = rest.split([',', '}']).next().unwrap().parse().expect("a number");
                assert!(v > 0.0, "{field} must be positive: {l}");
            }
        }
        if l.contains(r#""bench":"throughput""#) {
            assert!(l.contains(r#""lost":0"#), "reliable throughput loses nothing: {l}");
        }
    }
}
