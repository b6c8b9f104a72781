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
