//! `--filter EXPR`: a small grammar over a run's fields, config and best results, modelled on
//! Guild's.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | "(" expr ")" | compare
//! compare := KEY OP VALUE          OP: = != < <= > >= ~ (substring)
//! KEY     := name | id | status | group | split.metric (a best-result value) | a dotted config key
//! VALUE   := a number, a bare word, or a 'quoted' / "quoted" string
//! ```
//!
//! Values compare as numbers when both sides are numbers, as text otherwise. A key a run lacks
//! makes the comparison false (and `!=` true).

use serde_json::Value;

use super::scan::Run;

/// A parse error: the message and the 1-based character position it is at.
#[derive(Debug, PartialEq)]
pub struct FilterError {
    /// The 1-based character position of the fault.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--filter: {} at position {}", self.message, self.position)
    }
}

impl std::error::Error for FilterError {}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~`: the value's text contains this text.
    Contains,
}

/// A parsed filter.
#[derive(Debug, PartialEq)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// It does not hold.
    Not(Box<Filter>),
    /// A key's value compared with a value, as text or as numbers. Build one directly to match a
    /// value that holds quotes or spaces: nothing is parsed.
    Compare {
        /// `name`, `id`, `status`, `group`, a dotted config key or a `split.metric`.
        key: String,
        /// The comparison.
        op: Op,
        /// The value compared with.
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (token, len) = match (c, two.as_str()) {
            (_, "!=") => (Token::Op(Op::Ne), 2),
            (_, "<=") => (Token::Op(Op::Le), 2),
            (_, ">=") => (Token::Op(Op::Ge), 2),
            (_, "==") => (Token::Op(Op::Eq), 2),
            ('=', _) => (Token::Op(Op::Eq), 1),
            ('<', _) => (Token::Op(Op::Lt), 1),
            ('>', _) => (Token::Op(Op::Gt), 1),
            ('~', _) => (Token::Op(Op::Contains), 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            ('\'' | '"', _) => {
                let end = chars[i + 1..].iter().position(|&d| d == c).ok_or(FilterError {
                    position: at,
                    message: format!("the string that starts here has no closing {c}"),
                })?;
                let value: String = chars[i + 1..i + 1 + end].iter().collect();
                (Token::Quoted(value), end + 2)
            }
            _ => {
                let len = chars[i..]
                    .iter()
                    .position(|&d| d.is_whitespace() || "=!<>~()'\"".contains(d))
                    .unwrap_or(chars.len() - i);
                if len == 0 {
                    return Err(FilterError {
                        position: at,
                        message: format!("unexpected `{c}`"),
                    });
                }
                (Token::Word(chars[i..i + len].iter().collect()), len)
            }
        };
        out.push((at, token));
        i += len;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            position: self.position(),
            message: message.into(),
        })
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Token::Close) {
                return self.error("expected `)`");
            }
            self.at += 1;
            return Ok(inner);
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Filter, FilterError> {
        let key = match self.peek() {
            Some(Token::Word(w)) if !["and", "or", "not"].contains(&w.as_str()) => w.clone(),
            Some(_) => return self.error("expected a key (name, status, optim.lr, val.accuracy, …)"),
            None => return self.error("expected a key, found the end"),
        };
        self.at += 1;
        let op = match self.peek() {
            Some(Token::Op(op)) => *op,
            _ => return self.error(format!("expected an operator (= != < <= > >= ~) after `{key}`")),
        };
        self.at += 1;
        let value = match self.peek() {
            Some(Token::Word(w) | Token::Quoted(w)) => w.clone(),
            _ => return self.error("expected a value"),
        };
        self.at += 1;
        Ok(Filter::Compare { key, op, value })
    }
}

impl Filter {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let tokens = tokens(text)?;
        let end = text.chars().count() + 1;
        let mut parser = Parser { tokens, at: 0, end };
        let filter = parser.or()?;
        if parser.at < parser.tokens.len() {
            return parser.error("expected `and`, `or` or the end");
        }
        Ok(filter)
    }

    /// Whether `run` passes.
    pub fn matches(&self, run: &Run) -> bool {
        match self {
            Filter::And(a, b) => a.matches(run) && b.matches(run),
            Filter::Or(a, b) => a.matches(run) || b.matches(run),
            Filter::Not(a) => !a.matches(run),
            Filter::Compare { key, op, value } => match field(run, key) {
                Some(found) => compare(&found, *op, value),
                None => *op == Op::Ne,
            },
        }
    }
}

/// A field of a run as a filter, a sort key or a column sees it: `name`, `id`, `status`, `group`,
/// `split.metric` of the best result, or a dotted config key.
pub fn field(run: &Run, key: &str) -> Option<Value> {
    match key {
        "name" => return Some(Value::String(run.name.clone())),
        "id" => return Some(Value::String(run.id.clone())),
        "status" => return Some(Value::String(run.status.as_str().to_owned())),
        "group" => return run.group.clone().map(Value::String),
        "best" => return run.best.map(|b| number(b.value)),
        "last" => return run.last.map(|b| number(b.value)),
        "dir" => return Some(Value::String(run.dir.display().to_string())),
        _ => {}
    }
    if let Some((split, metric)) = key.split_once('.')
        && let Some(value) = run
            .best_record()
            .and_then(|r| r.get(split))
            .and_then(|m| m.get(metric))
    {
        return Some(number(*value));
    }
    run.config_value(key).filter(|v| !v.is_null()).cloned()
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A value as text, as the table writes it.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn compare(found: &Value, op: Op, wanted: &str) -> bool {
    let found_text = text(found);
    if op == Op::Contains {
        return found_text.contains(wanted);
    }
    let ordering = match (
        found.as_f64().or_else(|| found_text.parse().ok()),
        wanted.parse::<f64>(),
    ) {
        (Some(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(found_text.as_str().cmp(wanted)),
    };
    let Some(ordering) = ordering else {
        return op == Op::Ne;
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Op::Eq => ordering == Equal,
        Op::Ne => ordering != Equal,
        Op::Lt => ordering == Less,
        Op::Le => ordering != Greater,
        Op::Gt => ordering == Greater,
        Op::Ge => ordering != Less,
        Op::Contains => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_parses_precedence_and_parentheses() {
        let parsed = Filter::parse("not status = failed and (optim.lr < 0.01 or name ~ 'big run')").unwrap();
        let Filter::And(left, right) = parsed else {
            panic!("and binds the two")
        };
        assert!(matches!(*left, Filter::Not(_)));
        assert!(matches!(*right, Filter::Or(_, _)));
    }

    #[test]
    fn errors_name_the_position() {
        let error = |text: &str| Filter::parse(text).unwrap_err();
        assert_eq!(error("optim.lr <").position, 11);
        assert_eq!(error("optim.lr 0.1").position, 10);
        assert_eq!(error("(a = 1").position, 7);
        assert_eq!(error("a = 1 b = 2").position, 7);
        assert_eq!(error("a = 'open").position, 5);
        assert_eq!(error("and = 1").position, 1);
        assert_eq!(
            error("optim.lr <").to_string(),
            "--filter: expected a value at position 11"
        );
    }
}
