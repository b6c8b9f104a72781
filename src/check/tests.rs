//! The checker must accept every linearizable history and reject the classic violations.

use super::*;

fn w(client: u64, invoked: u64, returned: u64, v: &str) -> Operation {
    Operation {
        client,
        invoked,
        returned: Some(returned),
        op: RegisterOp::Write(v.to_string()),
    }
}

fn r(client: u64, invoked: u64, returned: u64, v: Option<&str>) -> Operation {
    Operation {
        client,
        invoked,
        returned: Some(returned),
        op: RegisterOp::Read(v.map(String::from)),
    }
}

fn unknown(mut o: Operation) -> Operation {
    o.returned = None;
    o
}

#[test]
fn sequential_reads_see_the_last_write() {
    assert!(register(
        &[
            w(1, 0, 1, "a"),
            r(2, 2, 3, Some("a")),
            w(1, 4, 5, "b"),
            r(2, 6, 7, Some("b"))
        ],
        None
    ));
    assert!(register(&[r(1, 0, 1, None), w(1, 2, 3, "a")], None));
}

#[test]
fn a_stale_read_after_a_completed_write_is_rejected() {
    assert!(!register(
        &[w(1, 0, 1, "a"), w(1, 2, 3, "b"), r(2, 4, 5, Some("a"))],
        None
    ));
    assert!(!register(&[w(1, 0, 1, "a"), r(2, 2, 3, None)], None));
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    let before = [w(1, 0, 1, "a"), w(1, 2, 10, "b"), r(2, 3, 4, Some("a"))];
    let after = [w(1, 0, 1, "a"), w(1, 2, 10, "b"), r(2, 3, 4, Some("b"))];
    assert!(register(&before, None));
    assert!(register(&after, None));
}

#[test]
fn a_new_then_old_read_inversion_is_rejected() {
    // The write of b overlaps both reads, but the second read began after the first saw b.
    let h = [
        w(1, 0, 1, "a"),
        w(1, 2, 20, "b"),
        r(2, 3, 4, Some("b")),
        r(3, 5, 6, Some("a")),
    ];
    assert!(!register(&h, None));
}

#[test]
fn a_value_nobody_wrote_is_rejected() {
    assert!(!register(&[w(1, 0, 1, "a"), r(2, 2, 3, Some("z"))], None));
}

#[test]
fn an_unknown_write_may_have_happened_or_not() {
    let seen = [unknown(w(1, 0, 1, "a")), r(2, 5, 6, Some("a"))];
    let not_seen = [unknown(w(1, 0, 1, "a")), r(2, 5, 6, None)];
    assert!(register(&seen, None));
    assert!(register(&not_seen, None));
    // But not before it was invoked.
    assert!(!register(
        &[r(2, 0, 1, Some("a")), unknown(w(1, 5, 6, "a"))],
        None
    ));
    // And once seen, it stays.
    let flicker = [
        unknown(w(1, 0, 1, "a")),
        r(2, 5, 6, Some("a")),
        r(2, 7, 8, None),
    ];
    assert!(!register(&flicker, None));
}

#[test]
fn a_read_with_no_result_constrains_nothing() {
    let h = [w(1, 0, 1, "a"), unknown(r(2, 2, 3, Some("whatever")))];
    assert!(register(&h, None));
}

#[test]
fn many_concurrent_writers_are_checked_quickly() {
    // 12 clients each write their own value then read; all overlap. Linearizable: every read
    // sees some value written by a write that overlaps or precedes it.
    let mut h = Vec::new();
    for c in 0..12u64 {
        h.push(w(c, c, 100 + c, &format!("v{c}")));
        h.push(r(c, 200 + c, 300, Some("v11")));
    }
    assert!(register(&h, None));
    h.push(r(99, 400, 401, Some("v3")));
    assert!(
        !register(&h, None),
        "after every write returned, v3 cannot come back"
    );
}

#[test]
fn the_report_names_the_key_and_a_short_failing_prefix() {
    let mut history = BTreeMap::new();
    history.insert(
        "fine".to_string(),
        vec![w(1, 0, 1, "a"), r(1, 2, 3, Some("a"))],
    );
    let mut bad = vec![w(1, 0, 1, "a"), w(1, 2, 3, "b"), r(2, 4, 5, Some("a"))];
    for i in 0..20 {
        bad.push(w(1, 10 + 2 * i, 11 + 2 * i, "c"));
    }
    history.insert("broken".to_string(), bad);
    let v = registers(&history, None).unwrap_err();
    assert_eq!(v.key, "broken");
    assert_eq!(v.operations.len(), 3, "{v}");
    assert!(v.to_string().contains("key \"broken\""));
}

#[test]
fn a_long_history_does_not_exhaust_the_stack() {
    // 6,000 sequential operations on one key: a search as deep as a long chaos run makes.
    let mut h = Vec::new();
    for i in 0..3_000u64 {
        h.push(w(1, 4 * i, 4 * i + 1, &format!("v{i}")));
        h.push(r(2, 4 * i + 2, 4 * i + 3, Some(&format!("v{i}"))));
    }
    assert!(register(&h, None));
}

fn append(v: &str, invoked: u64, returned: Option<u64>) -> Append {
    Append {
        value: v.to_string(),
        invoked,
        returned,
    }
}

fn log(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn read(invoked: u64, returned: u64, values: &[&str]) -> LogRead {
    LogRead {
        invoked,
        returned,
        values: log(values),
    }
}

#[test]
fn a_log_in_real_time_order_with_prefix_reads_passes() {
    let appends = [
        append("a", 0, Some(1)),
        append("b", 2, Some(5)),
        append("c", 3, Some(4)),
        append("lost?", 6, None),
    ];
    // b and c overlap: either order is fine; an unknown append may be missing.
    let reads = [read(1, 2, &["a"]), read(6, 7, &["a", "c", "b"])];
    assert!(append_log(&appends, &reads, &log(&["a", "c", "b"])).is_empty());
    assert!(append_log(&appends, &[], &log(&["a", "b", "c", "lost?"])).is_empty());
}

#[test]
fn a_lost_duplicated_or_invented_entry_is_caught() {
    let appends = [append("a", 0, Some(1)), append("b", 2, Some(3))];
    let lost = append_log(&appends, &[], &log(&["a"]));
    assert!(lost
        .iter()
        .any(|p| p.contains("\"b\" was acknowledged but is not stored")));
    let twice = append_log(&appends, &[], &log(&["a", "b", "b"]));
    assert!(twice.iter().any(|p| p.contains("more than once")));
    let invented = append_log(&appends, &[], &log(&["a", "x", "b"]));
    assert!(invented.iter().any(|p| p.contains("nobody appended")));
    // An append of unknown outcome stored twice is still a duplicate.
    let unknown = [append("u", 0, None)];
    assert!(!append_log(&unknown, &[], &log(&["u", "u"])).is_empty());
}

#[test]
fn an_order_against_real_time_is_caught() {
    let appends = [append("first", 0, Some(1)), append("second", 2, Some(3))];
    let p = append_log(&appends, &[], &log(&["second", "first"]));
    assert!(p.iter().any(|p| p.contains("comes before it")), "{p:?}");
}

#[test]
fn reads_that_rewrite_history_or_go_stale_are_caught() {
    let appends = [append("a", 0, Some(1)), append("b", 2, Some(3))];
    let stored = log(&["a", "b"]);
    // A read that saw an entry later gone, or in another order.
    let rewritten = append_log(&appends, &[read(4, 5, &["b"])], &stored);
    assert!(rewritten.iter().any(|p| p.contains("not a prefix")));
    // A read after b was acknowledged that misses it.
    let stale = append_log(&appends, &[read(4, 5, &["a"])], &stored);
    assert!(stale.iter().any(|p| p.contains("missed \"b\"")));
    // A read that saw b before b was even invoked.
    let early = append_log(&appends, &[read(0, 1, &["a", "b"])], &stored);
    assert!(early
        .iter()
        .any(|p| p.contains("appended after it returned")));
}
