//! Input limits and the checks that enforce them. Every check names the field and the problem,
//! so a client sees exactly what to fix; nothing invalid reaches the log.

use serde::{Deserialize, Serialize};

/// The largest memory content, message content, state value, decision text or task text: 64 KiB.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// The largest id, key, topic, tag, agent id, project or other name: 512 bytes.
pub const MAX_NAME_BYTES: usize = 512;
/// The most tags on one memory and references on one decision.
pub const MAX_LIST_ITEMS: usize = 64;
/// The most ids one touch may name.
pub const MAX_TOUCH_IDS: usize = 1000;
/// The largest `limit` a list or search honours.
pub const MAX_LIMIT: usize = 10_000;

/// A request field that is not acceptable, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct Invalid {
    pub field: String,
    pub problem: String,
}

impl Invalid {
    /// A problem with `field`.
    pub fn new(field: &str, problem: impl Into<String>) -> Self {
        Invalid {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// `value` must not be empty (or only whitespace).
pub fn required(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    Ok(())
}

/// `value` must fit in [`MAX_TEXT_BYTES`].
pub fn text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(Invalid::new(
            field,
            format!(
                "is {} bytes, more than the limit of {} bytes",
                value.len(),
                MAX_TEXT_BYTES
            ),
        ));
    }
    Ok(())
}

/// A name (id, key, topic, tag, agent): at most [`MAX_NAME_BYTES`] and no control characters.
/// Empty is allowed; combine with [`required`] where it is not.
pub fn name(field: &str, value: &str) -> Result<(), Invalid> {
    if value.len() > MAX_NAME_BYTES {
        return Err(Invalid::new(
            field,
            format!(
                "is {} bytes, more than the limit of {} bytes",
                value.len(),
                MAX_NAME_BYTES
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// A required name.
pub fn required_name(field: &str, value: &str) -> Result<(), Invalid> {
    required(field, value)?;
    name(field, value)
}

/// A list of names: at most `max` items, each a non-empty name.
pub fn names(field: &str, values: &[String], max: usize) -> Result<(), Invalid> {
    if values.len() > max {
        return Err(Invalid::new(
            field,
            format!("has {} items, more than the limit of {max}", values.len()),
        ));
    }
    for v in values {
        required_name(field, v)?;
    }
    Ok(())
}

/// A project name: non-empty, at most 128 bytes of letters, digits and `._-:/@`.
pub fn project(value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new("project", "must not be empty"));
    }
    if value.len() > 128 {
        return Err(Invalid::new("project", "is longer than 128 bytes"));
    }
    if !value
        .chars()
        .all(|c| c.is_alphanumeric() || "._-:/@".contains(c))
    {
        return Err(Invalid::new(
            "project",
            format!("{value:?} may hold only letters, digits and . _ - : / @"),
        ));
    }
    Ok(())
}

/// A list limit: negative is an error, 0 means `default`, and it is capped at [`MAX_LIMIT`].
pub fn limit(value: i32, default: usize) -> Result<usize, Invalid> {
    if value < 0 {
        return Err(Invalid::new(
            "limit",
            format!("is {value}; it must be 0 (the default) or more"),
        ));
    }
    if value == 0 {
        return Ok(default);
    }
    Ok((value as usize).min(MAX_LIMIT))
}

/// A duration such as `90s`, `15m`, `1h` or `2d`.
pub fn duration(field: &str, value: &str) -> Result<std::time::Duration, Invalid> {
    required(field, value)?;
    humantime::parse_duration(value.trim()).map_err(|e| {
        Invalid::new(
            field,
            format!("{value:?} is not a duration such as 30m, 1h or 7d ({e})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field_and_the_problem() {
        let e = text("content", &"x".repeat(MAX_TEXT_BYTES + 1)).unwrap_err();
        assert_eq!(e.field, "content");
        assert!(e.to_string().contains("limit of 65536 bytes"), "{e}");
        assert!(required("title", "  ").is_err());
        assert!(name("key", "a\u{0}b").is_err());
        assert_eq!(limit(0, 10).unwrap(), 10);
        assert_eq!(limit(5, 10).unwrap(), 5);
        assert!(limit(-1, 10).unwrap_err().to_string().contains("-1"));
        assert_eq!(duration("max_age", "1h").unwrap().as_secs(), 3600);
        assert!(duration("max_age", "soon").is_err());
        assert!(project("team/app-1").is_ok());
        assert!(project("has space").is_err());
    }
}
