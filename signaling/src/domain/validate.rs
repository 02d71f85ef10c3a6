//! Field validation for everything that comes from outside: one [`FieldError`] per bad field, with a
//! machine-readable code, so a client can mark the field and nothing is half-written.

use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Field name as in the request body.
    pub field: String,
    /// `required`, `too_long`, `too_short`, `invalid_format`, `invalid_value`, `unknown_reference`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    /// A new, empty checker.
    pub fn new() -> Self {
        Checker::default()
    }

    /// Record an error.
    pub fn fail(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    /// Free text of `min..=max` characters (after trimming); control characters other than newline
    /// and tab are refused.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.trim().chars().count();
        if n == 0 && min > 0 {
            self.fail(field, "required", format!("{field} is required"));
        } else if n < min {
            self.fail(
                field,
                "too_short",
                format!("{field} needs at least {min} characters"),
            );
        } else if value.chars().count() > max {
            self.fail(
                field,
                "too_long",
                format!("{field} is longer than {max} characters"),
            );
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            self.fail(
                field,
                "invalid_format",
                format!("{field} contains control characters"),
            );
        }
    }

    /// An identifier: 1–`max` characters of `a-z 0-9 - _ .`.
    pub fn ident(&mut self, field: &str, value: &str, max: usize) {
        if value.is_empty() {
            self.fail(field, "required", format!("{field} is required"));
        } else if value.len() > max {
            self.fail(
                field,
                "too_long",
                format!("{field} is longer than {max} characters"),
            );
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        {
            self.fail(
                field,
                "invalid_format",
                format!("{field} may contain only a-z, 0-9, '-', '_' and '.'"),
            );
        }
    }

    /// A patient pseudonym: 3–32 characters of `A-Z a-z 0-9 -`, and not an 18-character resident ID
    /// number, so no name or ID number ends up in the system by mistake.
    pub fn pseudonym(&mut self, field: &str, value: &str) {
        let ok_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let looks_like_id = value.len() == 18
            && value[..17].bytes().all(|b| b.is_ascii_digit())
            && value[17..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x');
        if value.is_empty() {
            self.fail(field, "required", format!("{field} is required"));
        } else if !(3..=32).contains(&value.len()) || !ok_chars {
            self.fail(
                field,
                "invalid_format",
                "a pseudonym is 3 to 32 characters of A-Z, a-z, 0-9 and '-' (never the patient's name)",
            );
        } else if looks_like_id {
            self.fail(
                field,
                "invalid_value",
                "this looks like a resident ID number; use the pseudonym instead",
            );
        }
    }

    /// A password for a new account or a reset: 8–256 characters.
    pub fn password(&mut self, field: &str, value: &str) {
        let n = value.chars().count();
        if n < 8 {
            self.fail(field, "too_short", "a password needs at least 8 characters");
        } else if n > 256 {
            self.fail(field, "too_long", "a password is at most 256 characters");
        }
    }

    /// Done: the errors, if any.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(f: impl FnOnce(&mut Checker)) -> Vec<&'static str> {
        let mut c = Checker::new();
        f(&mut c);
        c.finish()
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.code)
            .collect()
    }

    #[test]
    fn text_fields() {
        assert!(codes(|c| c.text("q", "chest pain", 1, 20)).is_empty());
        assert_eq!(codes(|c| c.text("q", "   ", 1, 20)), ["required"]);
        assert_eq!(codes(|c| c.text("q", "ab", 3, 20)), ["too_short"]);
        assert_eq!(
            codes(|c| c.text("q", &"心".repeat(21), 1, 20)),
            ["too_long"]
        );
        assert!(codes(|c| c.text("q", &"心".repeat(20), 1, 20)).is_empty());
        assert_eq!(codes(|c| c.text("q", "a\u{0}b", 1, 20)), ["invalid_format"]);
        assert!(codes(|c| c.text("q", "line\nline", 1, 20)).is_empty());
    }

    #[test]
    fn identifiers_and_pseudonyms() {
        assert!(codes(|c| c.ident("id", "county-1", 32)).is_empty());
        assert_eq!(codes(|c| c.ident("id", "", 32)), ["required"]);
        assert_eq!(codes(|c| c.ident("id", "Upper", 32)), ["invalid_format"]);
        assert_eq!(codes(|c| c.ident("id", &"a".repeat(33), 32)), ["too_long"]);
        assert!(codes(|c| c.pseudonym("p", "P-2026-0042")).is_empty());
        assert_eq!(codes(|c| c.pseudonym("p", "张三")), ["invalid_format"]);
        assert_eq!(
            codes(|c| c.pseudonym("p", "11010519491231002X")),
            ["invalid_value"]
        );
        assert_eq!(codes(|c| c.pseudonym("p", "")), ["required"]);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut c = Checker::new();
        c.text("question", "", 1, 10);
        c.ident("specialty", "BAD", 10);
        c.password("password", "short");
        let e = c.finish().unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["question", "specialty", "password"]);
    }
}
