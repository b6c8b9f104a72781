//! Memory search: exact words, word prefixes, one typo, category and tag filters, ranking, a
//! search right after a write, and an index rebuilt from the store when missing or damaged.

mod common;

use aide::client::Client;
use aide::grpc::pb::aidememory::*;
use common::NodeProc;

async fn add(c: &Client, content: &str, category: &str, tags: &[&str]) -> String {
    c.memory_add(MemoryAddRequest {
        content: content.into(),
        category: category.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
    .memory
    .unwrap()
    .id
}

async fn search(c: &Client, query: &str, category: &str, tags: &[&str]) -> Vec<String> {
    c.memory_search(MemorySearchRequest {
        query: query.into(),
        category: category.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
    .memories
    .into_iter()
    .map(|m| m.id)
    .collect()
}

#[tokio::test]
async fn words_prefixes_typos_filters_and_ranking() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("search");
    let auth = add(
        &c,
        "Authentication uses short-lived JWT tokens",
        "decision",
        &["auth", "scope:global"],
    )
    .await;
    let k8s = add(
        &c,
        "Deploy to kubernetes with helm charts",
        "pattern",
        &["ops"],
    )
    .await;
    let auth2 = add(
        &c,
        "Authentication, authentication everywhere: the authentication middleware",
        "gotcha",
        &["auth"],
    )
    .await;
    let other = add(&c, "The billing service retries payments", "learning", &[]).await;

    // Exact word.
    assert_eq!(
        search(&c, "helm", "", &[]).await,
        std::slice::from_ref(&k8s)
    );
    // A word prefix finds the word.
    let mut prefix = search(&c, "authent", "", &[]).await;
    prefix.sort();
    let mut both = vec![auth.clone(), auth2.clone()];
    both.sort();
    assert_eq!(prefix, both);
    // One typo still finds it.
    assert_eq!(
        search(&c, "kubernets", "", &[]).await,
        std::slice::from_ref(&k8s)
    );
    assert_eq!(
        search(&c, "biling", "", &[]).await,
        std::slice::from_ref(&other)
    );
    // Ranking: the memory about authentication three times ranks first.
    assert_eq!(
        search(&c, "authentication", "", &[]).await,
        [auth2.clone(), auth.clone()]
    );
    // An exact match outranks a prefix-only match.
    let tok = add(&c, "tokenizer settings", "learning", &[]).await;
    let ranked = search(&c, "token", "", &[]).await;
    assert_eq!(ranked.len(), 2, "{ranked:?}");
    let tokens_first = search(&c, "tokens", "", &[]).await;
    assert_eq!(
        tokens_first.first(),
        Some(&auth),
        "exact 'tokens' ranks above the prefix match"
    );
    assert!(ranked.contains(&tok));
    // Category and tag filters.
    assert_eq!(
        search(&c, "authentication", "decision", &[]).await,
        std::slice::from_ref(&auth)
    );
    assert_eq!(
        search(&c, "authentication", "", &["scope:global"]).await,
        std::slice::from_ref(&auth)
    );
    assert!(search(&c, "authentication", "pattern", &[])
        .await
        .is_empty());
    // Limit.
    let one = c
        .memory_search(MemorySearchRequest {
            query: "authentication".into(),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one.memories.len(), 1);
    // Nothing matches.
    assert!(search(&c, "zzzzqqq", "", &[]).await.is_empty());
}

#[tokio::test]
async fn a_search_right_after_a_write_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("fresh");
    for i in 0..25 {
        // Words at least two edits apart, so a typo match cannot blur them.
        let word: String = [i / 26 % 26, i % 26, (i * 7) % 26]
            .iter()
            .flat_map(|d| std::iter::repeat_n((b'a' + *d as u8) as char, 2))
            .collect();
        let id = add(&c, &format!("note {word}"), "", &[]).await;
        assert_eq!(
            search(&c, &word, "", &[]).await,
            [id],
            "write {i} not searchable at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_damaged_index_is_rebuilt_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("rebuild");
    let id = add(&c, "the index is derived from the store", "", &[]).await;

    node.terminate();
    std::fs::remove_dir_all(node.dir.join("search")).unwrap();
    node.restart();
    assert_eq!(
        search(&node.client("rebuild"), "derived", "", &[]).await,
        std::slice::from_ref(&id)
    );

    node.terminate();
    std::fs::write(node.dir.join("search").join("meta.json"), b"{ not json").unwrap();
    node.restart();
    assert_eq!(
        search(&node.client("rebuild"), "derived", "", &[]).await,
        [id]
    );
    assert!(node
        .log_text()
        .contains("cannot be opened; rebuilding it from the store"));
}
