//! Turns a search request into a tantivy query: each word of the query matches exactly (BM25),
//! as a prefix of a longer word, or with one typo; words are alternatives whose scores add up;
//! project, category and tags are filters that do not change the score.

use super::{Fields, SearchRequest};
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::Term;

/// Weight of a prefix match relative to an exact one.
const PREFIX_BOOST: f32 = 0.5;
/// Weight of a match with one typo.
const TYPO_BOOST: f32 = 0.25;
/// Words shorter than this are not matched with a typo: too many words are one edit away.
const TYPO_MIN_CHARS: usize = 4;

/// The query for `req`, or `None` when its text has no words.
pub(super) fn build(
    f: Fields,
    analyzer: &mut TextAnalyzer,
    req: &SearchRequest,
) -> Option<Box<dyn Query>> {
    let mut words: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(&req.query);
    while stream.advance() {
        let w = stream.token().text.clone();
        if !words.contains(&w) {
            words.push(w);
        }
    }
    if words.is_empty() {
        return None;
    }
    let word_queries: Vec<(Occur, Box<dyn Query>)> =
        words.iter().map(|w| (Occur::Should, word(f, w))).collect();
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
        (Occur::Must, Box::new(BooleanQuery::new(word_queries))),
        (Occur::Must, filter(f.project, &req.project)),
    ];
    if let Some(c) = &req.category {
        clauses.push((Occur::Must, filter(f.category, c)));
    }
    for t in &req.tags {
        clauses.push((Occur::Must, filter(f.tags, t)));
    }
    Some(Box::new(BooleanQuery::new(clauses)))
}

fn word(f: Fields, w: &str) -> Box<dyn Query> {
    let term = Term::from_field_text(f.content, w);
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Should,
        Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
    )];
    alternatives.push((
        Occur::Should,
        Box::new(BoostQuery::new(
            Box::new(FuzzyTermQuery::new_prefix(term.clone(), 0, true)),
            PREFIX_BOOST,
        )),
    ));
    if w.chars().count() >= TYPO_MIN_CHARS {
        alternatives.push((
            Occur::Should,
            Box::new(BoostQuery::new(
                Box::new(FuzzyTermQuery::new_prefix(term, 1, true)),
                TYPO_BOOST,
            )),
        ));
    }
    Box::new(BooleanQuery::new(alternatives))
}

fn filter(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        )),
        0.0,
    ))
}
