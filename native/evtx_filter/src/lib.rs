//! `govsoc hunt`'s EVTX record filter.
//!
//! Reads an EVTX file with the parser the `evtx` Python package wraps (same crate, same
//! version: the same JSON for every record), and answers for each record which rules
//! the evaluator could still find true, using the plans the Python evaluator itself
//! worked out for records of the same shape (channel, event id, provider and the names
//! of the record's EventData / UserData fields). A record no rule can match never
//! becomes a Python object beyond its id; that is where a hunt spent most of its time
//! (parsing, decoding and prefiltering in Python). The file itself is checked here as
//! the Python reader checks it (`file.rs`).
//!
//! The rules' conditions that have a native form (`detections.prefilter.native_condition`)
//! are decided here with the evaluator's semantics; the others stay candidates for the
//! Python predicates. Anything unusual about a record (a value that is not a string or
//! an integer, a dotted name, an odd timestamp, a shape without a plan) hands the whole
//! record to Python, which treats it as it always did.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rustc_hash::FxHashMap;
use evtx::err::EvtxError;
use evtx::ParserSettings;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};

mod file;

// -- a small JSON reader over the parser's own output ------------------------------

enum J<'a> {
    Null,
    Bool(bool),
    Num(&'a str),     // the number's text
    Str(Cow<'a, str>),
    Arr(Vec<J<'a>>),
    Obj(Vec<(Cow<'a, str>, J<'a>)>),
}

impl<'a> J<'a> {
    fn get(&self, key: &str) -> Option<&J<'a>> {
        match self {
            J::Obj(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: u32) -> Option<J<'a>> {
        if depth > 64 {
            return None;
        }
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut items = Vec::with_capacity(16);
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Some(J::Obj(items));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return None;
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(J::Obj(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                let mut items = Vec::with_capacity(4);
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Some(J::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(J::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => Some(J::Str(self.string()?)),
            b't' | b'f' | b'n' => {
                let start = self.i;
                while self.i < self.b.len() && self.b[self.i].is_ascii_alphabetic() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    "true" => Some(J::Bool(true)),
                    "false" => Some(J::Bool(false)),
                    "null" => Some(J::Null),
                    _ => None,
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(self.b[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    self.i += 1;
                }
                if start == self.i {
                    return None;
                }
                Some(J::Num(&self.s[start..self.i]))
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// The position of the next quote or backslash from `self.i` (the end if none).
    fn stop(&self) -> usize {
        memchr::memchr2(b'"', b'\\', &self.b[self.i..]).map_or(self.b.len(), |n| self.i + n)
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.i += 1; // the opening quote
        let start = self.i;
        self.i = self.stop();
        if self.b.get(self.i)? == &b'"' {
            self.i += 1;
            return Some(Cow::Borrowed(&self.s[start..self.i - 1]));
        }
        let mut out = String::from(&self.s[start..self.i]);
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    self.i += 1;
                    let c = *self.b.get(self.i)?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&u) {
                                if self.s.get(self.i..self.i + 2)? != "\\u" {
                                    return None; // a lone surrogate: not text Python keeps
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                u
                            };
                            out.push(char::from_u32(cp)?);
                        }
                        _ => return None,
                    }
                }
                _ => {
                    let s = self.i;
                    self.i = self.stop();
                    out.push_str(&self.s[s..self.i]);
                }
            }
        }
    }
}

fn parse_json(s: &str) -> Option<J<'_>> {
    let mut r = Reader { s, b: s.as_bytes(), i: 0 };
    let v = r.value(0)?;
    r.ws();
    (r.i == r.b.len()).then_some(v)
}

// -- a record's fields, as the Python reader flattens a plain record ------------------

/// An integer as Python's `int` reads JSON's (digits, an optional minus): its text.
fn int_text<'a>(v: &J<'a>) -> Option<&'a str> {
    match v {
        J::Num(t) => {
            let digits = t.strip_prefix('-').unwrap_or(t);
            (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) && *t != "-0")
                .then_some(*t)
        }
        _ => None,
    }
}

/// The value as `orjson.loads` makes it (a planned record's System block, which its
/// event is built from); None when it holds a number that is no 64-bit integer.
fn to_py<'py>(py: Python<'py>, v: &J<'_>) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(Some(match v {
        J::Null => py.None().into_bound(py),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        J::Num(t) => match (t.parse::<i64>(), t.parse::<u64>()) {
            (Ok(i), _) => i.into_pyobject(py)?.into_any(),
            (_, Ok(u)) => u.into_pyobject(py)?.into_any(),
            _ => return Ok(None),
        },
        J::Str(t) => PyString::new(py, t).into_any(),
        J::Arr(xs) => {
            let list = PyList::empty(py);
            for x in xs {
                let Some(x) = to_py(py, x)? else { return Ok(None) };
                list.append(x)?;
            }
            list.into_any()
        }
        J::Obj(items) => {
            let dict = PyDict::new(py);
            for (k, x) in items {
                let Some(x) = to_py(py, x)? else { return Ok(None) };
                dict.set_item(PyString::new(py, k), x)?;
            }
            dict.into_any()
        }
    }))
}

/// `datetime.fromisoformat` accepts it (and the reader's fixed form): its stored form.
fn stored_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 27 || b[26] != b'Z' {
        return None;
    }
    for (i, c) in b[..26].iter().enumerate() {
        let ok = match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        };
        if !ok {
            return None;
        }
    }
    let num = |a: usize, z: usize| s[a..z].parse::<u32>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if y == 0 || d == 0 || d > days || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    Some(format!("{}Z", &s[..23]))
}

/// A scalar as the Python reader writes it (`str()` of the parsed value; null: None).
fn scalar<'j>(v: &'j J<'_>) -> Option<Option<Cow<'j, str>>> {
    Some(match v {
        J::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        J::Num(_) => Some(Cow::Borrowed(int_text(v)?)),
        J::Bool(true) => Some(Cow::Borrowed("True")),
        J::Bool(false) => Some(Cow::Borrowed("False")),
        J::Null => None,
        _ => return None, // a float (Python's repr), an object, an array: not here
    })
}

/// An element's text as the reader takes it (`_str(_text(x))`): a scalar, or an
/// object's `#text` scalar; null and a missing `#text` are "".
fn element_text<'j>(x: &'j J<'_>) -> Option<Cow<'j, str>> {
    let x = match x {
        J::Obj(_) => match x.get("#text") {
            None => return Some(Cow::Borrowed("")),
            Some(t) => t,
        },
        _ => x,
    };
    Some(scalar(x)?.unwrap_or(Cow::Borrowed("")))
}

fn joined<'j>(items: &'j [J<'_>]) -> Option<Vec<Cow<'j, str>>> {
    items.iter().map(element_text).collect()
}

/// The names and values of an EventData (or UserData) block as the Python reader
/// flattens it (`_flatten_event_data`): scalars as `str()` writes them, nulls left out,
/// a list or an element's `#text` list joined with ", " (the values of unnamed `Data`
/// elements also as param1...), the block's `#attributes` no field. None for a block
/// with a dotted name, a name met twice, or a value of another kind.
fn plain_block<'a, 'j>(block: &'j J<'a>, names: &mut Vec<Cow<'j, str>>,
                       values: &mut Vec<Cow<'j, str>>) -> Option<()> {
    let J::Obj(items) = block else { return None };
    let first = names.len();
    let mut put = |names: &mut Vec<Cow<'j, str>>, name: Cow<'j, str>, value: Cow<'j, str>| {
        if name.contains('.') || names[first..].contains(&name) {
            return None;
        }
        names.push(name);
        values.push(value);
        Some(())
    };
    for (k, v) in items {
        if k == "#attributes" {
            continue;
        }
        let name = Cow::Borrowed(k.as_ref());
        match v {
            J::Arr(xs) => put(names, name, Cow::Owned(joined(xs)?.join(", ")))?,
            J::Obj(_) => match v.get("#text") {
                None => {}
                Some(J::Arr(xs)) => {
                    let parts = joined(xs)?;
                    if k == "Data" {
                        for (i, p) in parts.iter().enumerate() {
                            put(names, Cow::Owned(format!("param{}", i + 1)), p.clone())?;
                        }
                    }
                    put(names, name, Cow::Owned(parts.join(", ")))?;
                }
                Some(t) => {
                    if let Some(text) = scalar(t)? {
                        put(names, name, text)?;
                    }
                }
            },
            _ => {
                if let Some(text) = scalar(v)? {
                    put(names, name, text)?;
                }
            }
        }
    }
    Some(())
}

struct Flat<'j> {
    key: Vec<u8>,
    values: Vec<Cow<'j, str>>, // channel, event id, provider, computer, record id, data..., user...
    data_names: usize,
    has_user: bool,
    stored: String,
}

fn push_part(key: &mut Vec<u8>, part: &str) {
    key.extend_from_slice(&(part.len() as u32).to_le_bytes());
    key.extend_from_slice(part.as_bytes());
}

/// The record's shape key and field values, when it is plain (see the module's note).
fn flatten<'j>(root: &'j J<'_>) -> Option<Flat<'j>> {
    let event = root.get("Event")?;
    let system = event.get("System")?;
    // the event id as Python's int() of it writes it: a number, or decimal text already
    // in that form (a record writer that types every value as a string)
    let canonical = |t: &'j str| -> Option<&'j str> {
        let digits = t.strip_prefix('-').unwrap_or(t);
        (!digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
         && (digits == "0" || !digits.starts_with('0')) && t != "-0").then_some(t)
    };
    let event_id = match system.get("EventID")? {
        v @ J::Num(_) => int_text(v)?,
        J::Str(t) => canonical(t.as_ref())?,
        v @ J::Obj(_) => match v.get("#text")? {
            t @ J::Num(_) => int_text(t)?,
            J::Str(t) => canonical(t.as_ref())?,
            _ => return None,
        },
        _ => return None,
    };
    // a null channel or computer is "" to the Python reader (an ETW capture has no channel)
    let text_or_empty = |v: Option<&'j J<'_>>| -> Option<&'j str> {
        match v? {
            J::Str(s) => Some(s.as_ref()),
            J::Null => Some(""),
            _ => None,
        }
    };
    let channel = text_or_empty(system.get("Channel"))?;
    let computer = text_or_empty(system.get("Computer"))?;
    let record_id = match system.get("EventRecordID")? {
        v @ J::Num(_) => int_text(v)?,
        J::Str(t) => t.as_ref(), // kept as written, as the Python reader keeps it
        _ => return None,
    };
    let provider = match system.get("Provider") {
        None => "",
        Some(p) => {
            let attrs = p.get("#attributes");
            if let Some(a) = attrs {
                if let Some(g) = a.get("Guid") {
                    if !matches!(g, J::Str(_)) {
                        return None;
                    }
                }
            }
            match attrs.and_then(|a| a.get("Name")) {
                None => "",
                Some(J::Str(s)) => s.as_ref(),
                Some(_) => return None,
            }
        }
    };
    // the blocks the Python reader checks when it reads a record (winlog's inputs)
    if let Some(ex) = system.get("Execution") {
        match ex {
            J::Obj(_) => {
                if let Some(a) = ex.get("#attributes") {
                    if !matches!(a, J::Obj(_)) {
                        return None;
                    }
                }
            }
            _ => return None,
        }
    }
    if let Some(sec) = system.get("Security") {
        if let Some(a) = sec.get("#attributes") {
            if !matches!(a, J::Obj(_)) {
                return None;
            }
        }
    }
    let J::Str(time) = system.get("TimeCreated")?.get("#attributes")?.get("SystemTime")? else {
        return None;
    };
    let stored = stored_time(time)?;
    let mut values: Vec<Cow<'j, str>> = vec![
        Cow::Borrowed(channel),
        Cow::Borrowed(event_id),
        Cow::Borrowed(provider),
        Cow::Borrowed(computer),
        Cow::Borrowed(record_id),
    ];
    let mut key = Vec::with_capacity(256);
    for part in [channel, event_id, provider] {
        push_part(&mut key, part);
    }
    let mut names: Vec<Cow<'j, str>> = Vec::new();
    match event.get("EventData") {
        None | Some(J::Null) => {}
        Some(d) => plain_block(d, &mut names, &mut values)?,
    }
    let data_names = names.len();
    key.extend_from_slice(&(data_names as u32).to_le_bytes());
    let has_user = event.get("UserData").is_some();
    match event.get("UserData") {
        None => key.push(0),
        Some(u) => {
            let J::Obj(items) = u else { return None };
            let (_, inner) = items.iter().find(|(k, _)| k != "#attributes")?;
            plain_block(inner, &mut names, &mut values)?;
            key.push(1);
            key.extend_from_slice(&((names.len() - data_names) as u32).to_le_bytes());
        }
    }
    for n in &names {
        push_part(&mut key, n);
    }
    Some(Flat { key, values, data_names, has_user, stored })
}

// -- the event's identity, as the Python reader makes it ------------------------------

/// `repr()` of a Python str, for the strings it writes as `'...'` unchanged (printable
/// ASCII without a quote or backslash); None for any other (Python makes that id).
fn simple_repr(s: &str) -> Option<&str> {
    s.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'\'' && c != b'\\').then_some(s)
}

/// The event's dataset and id (`stable_id(dataset, ("evtx", computer, channel, record
/// id))`), when every part is simple enough to make here.
fn identity(datasets: &HashMap<String, String>, channel: &str, computer: &str,
            record_id: &str) -> Option<(String, String)> {
    use blake2::digest::consts::U16;
    use blake2::{Blake2b, Digest};
    if !channel.is_ascii() {
        return None;
    }
    let dataset = datasets.get(&channel.to_ascii_lowercase()).map_or("windows.eventlog",
                                                                   |d| d.as_str());
    let (computer, channel, record_id) =
        (simple_repr(computer)?, simple_repr(channel)?, simple_repr(record_id)?);
    let mut h = Blake2b::<U16>::new();
    for part in [dataset, "\x1f('evtx', '", computer, "', '", channel, "', '", record_id,
                 "')\x1f"] {
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for b in digest {
        hex.push(HEX[(b >> 4) as usize] as char);
        hex.push(HEX[(b & 15) as usize] as char);
    }
    Some((dataset.to_string(), hex))
}

// -- rule conditions evaluated here ----------------------------------------------------

/// A rule condition in the form `detections.prefilter.native_condition` writes: the
/// Python evaluator's semantics for records whose every field is a string (a planned
/// record's are). `F` is a field: its path, or (resolved for one plan) its position.
enum Cond<F> {
    And(Vec<Cond<F>>),
    Or(Vec<Cond<F>>),
    Not(Box<Cond<F>>),
    /// the field's text (case-folded unless `cased`) equal to, starting with, ending
    /// with or containing one of the values
    Str { field: F, kind: Kind, values: Vec<String>, cased: bool },
    Equals { field: F, text: String }, // the raw text equal (numbers, booleans)
    Exists { field: F, want: bool },
    Const(bool),
    /// RE2's search over the raw text, for an ASCII text without a vertical tab (where
    /// an ASCII-only program answers as RE2's); any other text: unsure (Python decides)
    Regex { field: F, re: Arc<regex::bytes::Regex> },
    /// a value with wildcards inside (`*`, `?`), matched whole, case-folded unless cased
    Glob { field: F, globs: Arc<Vec<Vec<Glob>>>, cased: bool },
}

#[derive(Clone)]
enum Glob {
    Lit(char),
    One,
    Star,
}

/// The wildcard value the evaluator writes as a regex (`.*`, `.`, the rest escaped by
/// Python's `re.escape`) as its parts.
fn glob_parts(rx: &str) -> Option<Vec<Glob>> {
    let mut out = Vec::new();
    let mut it = rx.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' => out.push(Glob::Lit(it.next()?)),
            '.' if it.peek() == Some(&'*') => {
                it.next();
                out.push(Glob::Star);
            }
            '.' => out.push(Glob::One),
            '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => return None,
            c => out.push(Glob::Lit(c)),
        }
    }
    Some(out)
}

/// Whether the whole text matches the parts (`*`: any run of characters, newlines too).
fn glob_match(parts: &[Glob], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let (mut p, mut i) = (0usize, 0usize);
    let mut back: Option<(usize, usize)> = None; // (part after the last star, text there)
    while i < t.len() {
        match parts.get(p) {
            Some(Glob::Star) => {
                back = Some((p + 1, i));
                p += 1;
                continue;
            }
            Some(Glob::One) => {
                p += 1;
                i += 1;
                continue;
            }
            Some(Glob::Lit(c)) if *c == t[i] => {
                p += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        match back {
            Some((bp, bi)) => {
                p = bp;
                i = bi + 1;
                back = Some((bp, bi + 1));
            }
            None => return false,
        }
    }
    parts[p..].iter().all(|x| matches!(x, Glob::Star))
}

#[derive(Clone, Copy)]
enum Kind {
    Eq,
    Pre,
    Suf,
    Sub,
}

/// A condition from its Python form; None where it has no native form after all (a
/// regular expression this engine's syntax refuses or reads otherwise).
fn cond_from_py(obj: &Bound<'_, PyAny>, depth: u32) -> PyResult<Option<Cond<String>>> {
    if depth > 200 {
        return Err(PyValueError::new_err("condition nested too deep"));
    }
    let t = obj.cast::<PyTuple>()?;
    let op: String = t.get_item(0)?.extract()?;
    let kids = |i: usize| -> PyResult<Option<Vec<Cond<String>>>> {
        t.get_item(i)?.try_iter()?.map(|k| cond_from_py(&k?, depth + 1)).collect()
    };
    Ok(Some(match op.as_str() {
        "and" => match kids(1)? { Some(k) => Cond::And(k), None => return Ok(None) },
        "or" => match kids(1)? { Some(k) => Cond::Or(k), None => return Ok(None) },
        "not" => match cond_from_py(&t.get_item(1)?, depth + 1)? {
            Some(k) => Cond::Not(Box::new(k)),
            None => return Ok(None),
        },
        "re" => {
            let pattern: String = t.get_item(2)?.extract()?;
            // RE2 reads `{,n}` as text, this engine as a count; and RE2 folds some
            // non-ASCII letters to ASCII ones (the Kelvin sign to k): such rules stay Python's
            if pattern.contains("{,") || !pattern.is_ascii() {
                return Ok(None);
            }
            match regex::bytes::RegexBuilder::new(&pattern).unicode(false).build() {
                Ok(re) => Cond::Regex { field: t.get_item(1)?.extract()?, re: Arc::new(re) },
                Err(_) => return Ok(None),
            }
        }
        "glob" => {
            let values: Vec<String> = t.get_item(2)?.extract()?;
            let globs: Option<Vec<Vec<Glob>>> = values.iter().map(|v| glob_parts(v)).collect();
            let Some(globs) = globs else { return Ok(None) };
            Cond::Glob { field: t.get_item(1)?.extract()?, globs: Arc::new(globs),
                         cased: t.get_item(3)?.extract()? }
        }
        "str" => Cond::Str {
            field: t.get_item(1)?.extract()?,
            kind: match t.get_item(2)?.extract::<String>()?.as_str() {
                "eq" => Kind::Eq,
                "pre" => Kind::Pre,
                "suf" => Kind::Suf,
                "sub" => Kind::Sub,
                k => return Err(PyValueError::new_err(format!("string test {k}"))),
            },
            values: t.get_item(3)?.extract()?,
            cased: t.get_item(4)?.extract()?,
        },
        "equals" => Cond::Equals { field: t.get_item(1)?.extract()?, text: t.get_item(2)?.extract()? },
        "exists" => Cond::Exists { field: t.get_item(1)?.extract()?, want: t.get_item(2)?.extract()? },
        "const" => Cond::Const(t.get_item(1)?.extract()?),
        _ => return Err(PyValueError::new_err(format!("condition {op}"))),
    }))
}

const SYSTEM_PATHS: [&str; 5] = ["winlog.channel", "winlog.event_id", "winlog.provider_name",
                                 "winlog.computer_name", "winlog.record_id"];
const EVENT_DATA: &str = "winlog.event_data.";
const USER_DATA: &str = "winlog.user_data.";

/// Whether a path is one a planned record answers (present or absent) by itself.
fn known_path(path: &str) -> bool {
    SYSTEM_PATHS.contains(&path) || path == "message" || path.starts_with(EVENT_DATA)
        || path.starts_with(USER_DATA)
}

/// The path's position among a layout's values (system, data names, user names), None
/// when a record of that layout lacks it: an EventData name falls back to UserData, as
/// the evaluator reads it.
fn position(path: &str, data: &[String], user: &Option<Vec<String>>) -> Option<usize> {
    if let Some(i) = SYSTEM_PATHS.iter().position(|p| *p == path) {
        return Some(i);
    }
    let in_user = |name: &str| {
        user.as_ref().and_then(|u| u.iter().position(|n| n == name))
            .map(|i| 5 + data.len() + i)
    };
    if let Some(name) = path.strip_prefix(EVENT_DATA) {
        return data.iter().position(|n| n == name).map(|i| 5 + i).or_else(|| in_user(name));
    }
    if let Some(name) = path.strip_prefix(USER_DATA) {
        return in_user(name);
    }
    None // "message": an EVTX record has none
}

fn resolve(c: &Cond<String>, data: &[String], user: &Option<Vec<String>>) -> Cond<Option<usize>> {
    match c {
        Cond::And(k) => Cond::And(k.iter().map(|x| resolve(x, data, user)).collect()),
        Cond::Or(k) => Cond::Or(k.iter().map(|x| resolve(x, data, user)).collect()),
        Cond::Not(x) => Cond::Not(Box::new(resolve(x, data, user))),
        Cond::Str { field, kind, values, cased } => Cond::Str {
            field: position(field, data, user), kind: *kind, values: values.clone(), cased: *cased,
        },
        Cond::Equals { field, text } => Cond::Equals { field: position(field, data, user),
                                                       text: text.clone() },
        Cond::Exists { field, want } => Cond::Exists { field: position(field, data, user),
                                                       want: *want },
        Cond::Const(b) => Cond::Const(*b),
        Cond::Regex { field, re } => Cond::Regex { field: position(field, data, user),
                                                   re: re.clone() },
        Cond::Glob { field, globs, cased } => Cond::Glob {
            field: position(field, data, user), globs: globs.clone(), cased: *cased },
    }
}

fn paths_known(c: &Cond<String>) -> bool {
    match c {
        Cond::And(k) | Cond::Or(k) => k.iter().all(paths_known),
        Cond::Not(x) => paths_known(x),
        Cond::Str { field, .. } | Cond::Equals { field, .. } | Cond::Exists { field, .. }
        | Cond::Regex { field, .. } | Cond::Glob { field, .. } => known_path(field),
        Cond::Const(_) => true,
    }
}

/// `soc_core.textcase.fold_case(text)` for text whose letters are all below U+0250
/// (ASCII, Latin-1, Latin Extended-A and -B: "Microsoft® Windows®" and the like in many
/// records), None for any other text (the Python fold decides it: Greek's final sigma,
/// and mappings that differ between Python's Unicode version and Rust's). Below U+0250
/// every lowercase mapping is one code point and the same in both, but U+0130's, which
/// `fold_case` maps to "i" as Lucene does.
fn fold_latin(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            '\0'..='\u{7f}' => out.push(c),
            '\u{130}' => out.push('i'),
            '\u{80}'..='\u{24f}' => out.extend(c.to_lowercase()),
            _ => return None,
        }
    }
    Some(out)
}

/// One record's values for the conditions: raw, and case-folded on first use.
struct Values<'v, 'j> {
    raw: &'v [Cow<'j, str>],
    folded: Vec<Option<String>>,
    unsure: bool, // a regular expression met a text only RE2 itself can answer for
}

impl Values<'_, '_> {
    fn folded(&mut self, py: Python<'_>, fold: &Py<PyAny>, i: usize) -> PyResult<&str> {
        if self.folded[i].is_none() {
            let v = &self.raw[i];
            let f = match fold_latin(v) {
                Some(f) => f,
                None => fold.bind(py).call1((PyString::new(py, v),))?.extract::<String>()?,
            };
            self.folded[i] = Some(f);
        }
        Ok(self.folded[i].as_deref().unwrap_or_default())
    }
}

fn holds(c: &Cond<Option<usize>>, v: &mut Values<'_, '_>, py: Python<'_>, fold: &Py<PyAny>
         ) -> PyResult<bool> {
    Ok(match c {
        Cond::And(k) => {
            for x in k {
                if !holds(x, v, py, fold)? {
                    return Ok(false);
                }
            }
            true
        }
        Cond::Or(k) => {
            for x in k {
                if holds(x, v, py, fold)? {
                    return Ok(true);
                }
            }
            false
        }
        Cond::Not(x) => !holds(x, v, py, fold)?,
        Cond::Str { field, kind, values, cased } => {
            let Some(i) = *field else { return Ok(false) };
            let text: &str = if *cased { &v.raw[i] } else { v.folded(py, fold, i)? };
            match kind {
                Kind::Eq => values.iter().any(|x| text == x),
                Kind::Pre => values.iter().any(|x| text.starts_with(x.as_str())),
                Kind::Suf => values.iter().any(|x| text.ends_with(x.as_str())),
                Kind::Sub => values.iter().any(|x| text.contains(x.as_str())),
            }
        }
        Cond::Equals { field, text } => field.is_some_and(|i| v.raw[i] == *text),
        Cond::Exists { field, want } => field.is_some() == *want,
        Cond::Const(b) => *b,
        Cond::Regex { field, re } => {
            let Some(i) = *field else { return Ok(false) };
            let text = v.raw[i].as_bytes();
            if !text.is_ascii() || text.contains(&0x0b) {
                v.unsure = true;
                false
            } else {
                re.is_match(text)
            }
        }
        Cond::Glob { field, globs, cased } => {
            let Some(i) = *field else { return Ok(false) };
            let text: &str = if *cased { &v.raw[i] } else { v.folded(py, fold, i)? };
            globs.iter().any(|g| glob_match(g, text))
        }
    })
}

// -- the plans, and the filter --------------------------------------------------------

struct Scan {
    // the group's own literals: each group's automaton reports only the literals its
    // rules need (one automaton for all ~16,000 reported every occurrence of any)
    literals: Option<Arc<AhoCorasick>>,
    numbers: Vec<u32>,              // the automaton's pattern -> the literal's number
    opens: Vec<Vec<u32>>,           // the automaton's pattern -> the rules it opens
    positions: Vec<usize>,          // the values scanned, in the evaluator's order
    first: FxHashMap<u32, Vec<u32>>,  // literal -> the rules it opens
    rest: FxHashMap<u32, Vec<Vec<u32>>>, // rule -> the other literal sets it needs
}

struct Plan {
    names: Vec<Py<PyString>>, // the data names, then the user names (interned once)
    always: Vec<u32>,
    scan: Option<Scan>,
    // the plan's rules whose conditions are evaluated here, resolved for its layout
    conditions: FxHashMap<u32, Cond<Option<usize>>>,
}

/// JSON text of the scanned values as `orjson.dumps` writes a string or a tuple of
/// strings (the evaluator's scan text).
fn scan_text(values: &[Cow<'_, str>], positions: &[usize], out: &mut String) {
    fn one(s: &str, out: &mut String) {
        out.push('"');
        let b = s.as_bytes();
        let mut run = 0; // start of the bytes not yet copied
        for (i, &c) in b.iter().enumerate() {
            let esc: &str = match c {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..=0x1f => "",
                _ => continue,
            };
            out.push_str(&s[run..i]);
            if esc.is_empty() {
                out.push_str(&format!("\\u{c:04x}"));
            } else {
                out.push_str(esc);
            }
            run = i + 1;
        }
        out.push_str(&s[run..]);
        out.push('"');
    }
    out.clear();
    if positions.len() == 1 {
        one(&values[positions[0]], out);
        return;
    }
    out.push('[');
    for (n, &p) in positions.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        one(&values[p], out);
    }
    out.push(']');
}

#[pyclass(module = "detections._native")]
struct EvtxFilter {
    literals: Vec<String>,
    automata: HashMap<Vec<u32>, Arc<AhoCorasick>>, // by the literals they find
    conditions: Vec<Option<Cond<String>>>,
    plans: FxHashMap<Vec<u8>, Arc<Plan>>, // by shape key: looked up for every record
    fold: Py<PyAny>,
    mark: Vec<u32>,
    generation: u32,
    chunks: Option<file::Chunks>,
    datasets: HashMap<String, String>, // lowercased channel -> dataset (else windows.eventlog)
    settings: Arc<ParserSettings>,
    text: String,
    // counters, for the benchmark and the tests: records handed over whole, as
    // candidates, and as bookkeeping only
    whole: u64,
    candidates: u64,
    skipped: u64,
}

#[pymethods]
impl EvtxFilter {
    /// `literals`: the evaluator's literal numbering (number = position); `fold`: its
    /// case fold for non-ASCII text (`soc_core.textcase.fold_case`).
    #[new]
    fn new(literals: Vec<String>, fold: Py<PyAny>) -> PyResult<Self> {
        Ok(EvtxFilter {
            automata: HashMap::new(),
            conditions: Vec::new(),
            mark: vec![0; literals.len()],
            literals,
            plans: FxHashMap::default(),
            fold,
            generation: 0,
            chunks: None,
            datasets: HashMap::new(),
            settings: Arc::new(ParserSettings::new().num_threads(1)),
            text: String::new(),
            whole: 0,
            candidates: 0,
            skipped: 0,
        })
    }

    /// The evaluator's plan for records of one shape: the rules always evaluated, and
    /// (`positions` not None) the scan deciding on the others.
    #[pyo3(signature = (channel, event_id, provider, data_names, user_names, always,
                        positions, first, rest))]
    #[allow(clippy::too_many_arguments)]
    fn plan(&mut self, py: Python<'_>, channel: &str, event_id: &str, provider: &str, data_names: Vec<String>,
            user_names: Option<Vec<String>>, always: Vec<u32>, positions: Option<Vec<usize>>,
            first: Vec<(u32, Vec<u32>)>, rest: Vec<(u32, Vec<Vec<u32>>)>) -> PyResult<()> {
        let mut key = Vec::with_capacity(256);
        for part in [channel, event_id, provider] {
            push_part(&mut key, part);
        }
        key.extend_from_slice(&(data_names.len() as u32).to_le_bytes());
        match &user_names {
            None => key.push(0),
            Some(u) => {
                key.push(1);
                key.extend_from_slice(&(u.len() as u32).to_le_bytes());
            }
        }
        let held = 5 + data_names.len() + user_names.as_ref().map_or(0, |u| u.len());
        for n in data_names.iter().chain(user_names.iter().flatten()) {
            push_part(&mut key, n);
        }
        let n_lit = self.mark.len() as u32;
        let scan = match positions {
            None => None,
            Some(positions) => {
                if positions.iter().any(|&p| p >= held)
                    || first.iter().any(|(l, _)| *l >= n_lit)
                    || rest.iter().any(|(_, sets)| sets.iter().flatten().any(|l| *l >= n_lit))
                {
                    return Err(PyValueError::new_err("plan names a field or literal it lacks"));
                }
                let mut numbers: Vec<u32> = first.iter().map(|(l, _)| *l)
                    .chain(rest.iter().flat_map(|(_, sets)| sets.iter().flatten().copied()))
                    .collect();
                numbers.sort_unstable();
                numbers.dedup();
                let literals = if numbers.is_empty() {
                    None
                } else if let Some(ac) = self.automata.get(&numbers) {
                    Some(ac.clone()) // plans of one dataset often need the same literals
                } else {
                    let ac = Arc::new(AhoCorasickBuilder::new()
                        .match_kind(MatchKind::Standard)
                        .build(numbers.iter().map(|n| &self.literals[*n as usize]))
                        .map_err(|e| PyValueError::new_err(format!("literal automaton: {e}")))?);
                    self.automata.insert(numbers.clone(), ac.clone());
                    Some(ac)
                };
                let first: FxHashMap<u32, Vec<u32>> = first.into_iter().collect();
                let opens = numbers.iter()
                    .map(|n| first.get(n).cloned().unwrap_or_default()).collect();
                Some(Scan {
                    literals,
                    numbers,
                    opens,
                    positions,
                    first,
                    rest: rest.into_iter().collect(),
                })
            }
        };
        let mut conditions = FxHashMap::default();
        let rules = always.iter().copied()
            .chain(scan.iter().flat_map(|sc| sc.first.values().flatten().copied()));
        for i in rules {
            if let Some(Some(c)) = self.conditions.get(i as usize) {
                conditions.entry(i).or_insert_with(|| resolve(c, &data_names, &user_names));
            }
        }
        let names = data_names.iter().chain(user_names.iter().flatten())
            .map(|n| PyString::intern(py, n).unbind()).collect();
        self.plans.insert(key, Arc::new(Plan { names, always, scan, conditions }));
        Ok(())
    }

    /// The rules' conditions this filter evaluates itself (index: the evaluator's rule
    /// number; None: the rule stays the Python evaluator's). A condition naming a path
    /// a planned record cannot answer by itself is refused (the rule stays Python's).
    fn conditions(&mut self, conds: Vec<Option<Bound<'_, PyAny>>>) -> PyResult<usize> {
        let mut out = Vec::with_capacity(conds.len());
        for c in conds {
            out.push(match c {
                None => None,
                Some(c) => cond_from_py(&c, 0)?.filter(paths_known),
            });
        }
        let n = out.iter().filter(|c| c.is_some()).count();
        self.conditions = out;
        Ok(n)
    }

    fn plans(&self) -> usize {
        self.plans.len()
    }

    fn counts(&self) -> (u64, u64, u64) {
        (self.whole, self.candidates, self.skipped)
    }

    /// Start reading an EVTX file, checked first as the Python reader checks it: its
    /// damage as (reason, chunk number or None, records), its damaged chunks left out.
    /// `datasets`: the reader's dataset of each (lowercased) channel. OSError when the
    /// file cannot be read, ValueError when it is no EVTX file the parser can read.
    fn open(&mut self, path: &str, datasets: HashMap<String, String>) -> PyResult<file::Damage> {
        // the last file's memory is reused: a fresh allocation for each file was page
        // faults for all of its bytes
        let buffer = self.chunks.take().map(file::Chunks::into_buffer).unwrap_or_default();
        let (chunks, damage) = file::open(path, buffer).map_err(|e| match e {
            file::OpenError::Io(e) => {
                let text = e.to_string();
                let text = text.split(" (os error").next().unwrap_or_default().to_string();
                match e.raw_os_error() {
                    Some(code) => PyOSError::new_err((code, text)),
                    None => PyOSError::new_err(text),
                }
            }
            file::OpenError::Format(text) => PyValueError::new_err(text),
        })?;
        self.datasets = datasets;
        self.chunks = Some(chunks);
        Ok(damage)
    }

    /// The next chunk's records, in order, or None at the end of the file. Each item:
    /// `(0, record_id, json)` a record for Python to read whole; `(1, record_id, json,
    /// (candidates, matched), made, parts, stored_time, fields)` one whose rules are only
    /// those candidates; `(2, dataset, ids, earliest, latest)` consecutive records of one
    /// dataset no rule can match (their ids, and the first and last of their stored
    /// times); `(4, record_id, (channel, computer, record id), stored_time)` one such
    /// record whose id Python makes; `(3, message)` damage skipped.
    fn batch<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(chunks) = self.chunks.as_mut() else { return Ok(None) };
        let out = PyList::empty(py);
        let Some(next) = chunks.next_chunk() else {
            return Ok(None);
        };
        let mut chunk = match next {
            Ok(c) => c,
            Err(e) => {
                out.append((3, skipping(file::chained(&e))))?;
                return Ok(Some(out));
            }
        };
        let (first_id, last_id) = (chunk.header.first_event_record_id,
                                   chunk.header.last_event_record_id);
        let mut parsed = match chunk.parse(self.settings.clone()) {
            Ok(p) => p,
            Err(e) => {
                out.append((3, skipping(format_args!(
                    "Failed to parse chunk containing record IDs {first_id}..{last_id}: {}",
                    file::chained(&e)))))?;
                return Ok(Some(out));
            }
        };
        let mut rendered = Vec::new();
        for record in parsed.iter() {
            rendered.push(record.and_then(|r| {
                let record_id = r.event_record_id;
                r.into_json().map_err(|e| EvtxError::FailedToParseRecord {
                    record_id, source: Box::new(e) })
            }));
        }
        let mut run = None;
        for record in rendered {
            match record {
                Err(e) => {
                    flush(&out, &mut run)?;
                    out.append((3, skipping(file::chained(&e))))?
                }
                Ok(r) => self.item(py, &out, &mut run, r.event_record_id, r.data)?,
            }
        }
        flush(&out, &mut run)?;
        Ok(Some(out))
    }
}

/// Damage skipped, worded as the `evtx` package's warning words it (the same reasons
/// counted with and without the filter).
fn skipping(what: impl std::fmt::Display) -> String {
    format!("Skipping EVTX data: RuntimeError: {what}")
}

/// Consecutive records of one dataset no rule can match, their ids made here: handed
/// over as one item (what a hunt does with them is count them and keep their ids).
struct Run {
    dataset: String,
    ids: Vec<String>,
    earliest: String, // stored times: fixed width, so text order is time order
    latest: String,
}

fn flush(out: &Bound<'_, PyList>, run: &mut Option<Run>) -> PyResult<()> {
    match run.take() {
        Some(r) => out.append((2, r.dataset, r.ids, r.earliest, r.latest)),
        None => Ok(()),
    }
}

enum Decision {
    Whole,
    Skip(Identity),
    // to evaluate, already true; the record's plan (its field names)
    Candidates(Vec<u32>, Vec<u32>, Identity, Fields, Arc<Plan>),
}

/// (dataset, id) when made here, else (channel, computer, record id); the stored time.
struct Identity {
    made: Option<(String, String)>,
    parts: [String; 3],
    stored: String,
}

/// The values of the record's fields: system (5), data values, user ones (their names
/// are the plan's).
struct Fields {
    block: Option<Py<PyAny>>, // the System block as Python objects
    system: [String; 5],
    data: Vec<String>,
    user: Option<Vec<String>>,
}

/// An item's identity part: (dataset, id) made here, or the parts Python makes it from.
fn split(made: Option<(String, String)>, parts: [String; 3])
         -> (Option<(String, String)>, Option<[String; 3]>) {
    match made {
        Some(m) => (Some(m), None),
        None => (None, Some(parts)),
    }
}

impl EvtxFilter {
    fn item(&mut self, py: Python<'_>, out: &Bound<'_, PyList>, run: &mut Option<Run>,
            rid: u64, json: String) -> PyResult<()> {
        let decision = self.decide(py, &json)?;
        if let Decision::Skip(Identity { made: Some((dataset, id)), stored, .. }) = decision {
            self.skipped += 1;
            match run {
                Some(r) if r.dataset == dataset => {
                    if stored < r.earliest {
                        r.earliest = stored;
                    } else if stored > r.latest {
                        r.latest = stored;
                    }
                    r.ids.push(id);
                }
                _ => {
                    flush(out, run)?;
                    *run = Some(Run { dataset, ids: vec![id], earliest: stored.clone(),
                                      latest: stored });
                }
            }
            return Ok(());
        }
        flush(out, run)?;
        match decision {
            Decision::Whole => {
                self.whole += 1;
                out.append((0, rid, json))
            }
            Decision::Candidates(cands, matched, who, fields, plan) => {
                self.candidates += 1;
                let (data_names, user_names) = plan.names.split_at(fields.data.len());
                let data = PyDict::new(py);
                for (k, v) in data_names.iter().zip(&fields.data) {
                    data.set_item(k.bind(py), v)?;
                }
                let user = match &fields.user {
                    None => None,
                    Some(u) => {
                        let d = PyDict::new(py);
                        for (k, v) in user_names.iter().zip(u) {
                            d.set_item(k.bind(py), v)?;
                        }
                        Some(d)
                    }
                };
                let system = PyTuple::new(py, &fields.system)?;
                let (made, parts) = split(who.made, who.parts);
                // the System block the event is built from, else the record's JSON
                let source = match fields.block {
                    Some(block) => block,
                    None => PyString::new(py, &json).into_any().unbind(),
                };
                out.append((1, rid, source, (cands, matched), made, parts, who.stored,
                            (system, data, user)))
            }
            Decision::Skip(who) => {
                self.skipped += 1;
                out.append((4, rid, who.parts, who.stored))
            }
        }
    }

    fn decide(&mut self, py: Python<'_>, json: &str) -> PyResult<Decision> {
        let Some(root) = parse_json(json) else { return Ok(Decision::Whole) };
        let Some(flat) = flatten(&root) else { return Ok(Decision::Whole) };
        let Some(plan) = self.plans.get(&flat.key).cloned() else { return Ok(Decision::Whole) };
        let mut cands: Vec<u32> = plan.always.clone();
        if let Some(scan) = &plan.scan {
            let mut text = std::mem::take(&mut self.text);
            scan_text(&flat.values, &scan.positions, &mut text);
            let folded: String;
            let bytes: &[u8] = if text.is_ascii() {
                text.make_ascii_lowercase();
                text.as_bytes()
            } else {
                folded = match fold_latin(&text) {
                    Some(f) => f,
                    None => self.fold.bind(py).call1((PyString::new(py, &text),))?
                        .extract::<String>()?,
                };
                folded.as_bytes()
            };
            self.generation = self.generation.wrapping_add(1);
            if self.generation == 0 {
                self.mark.iter_mut().for_each(|m| *m = 0);
                self.generation = 1;
            }
            let g = self.generation;
            let mut opened: Vec<u32> = Vec::new();
            if let Some(ac) = &scan.literals {
                for m in ac.find_overlapping_iter(bytes) {
                    let p = m.pattern().as_usize();
                    let n = scan.numbers[p];
                    if self.mark[n as usize] != g {
                        self.mark[n as usize] = g;
                        opened.extend_from_slice(&scan.opens[p]);
                    }
                }
            }
            opened.sort_unstable();
            opened.dedup();
            let mark = &self.mark;
            for i in opened {
                let met = scan.rest.get(&i).is_none_or(|sets| {
                    sets.iter().all(|s| s.iter().any(|l| mark[*l as usize] == g))
                });
                if met {
                    cands.push(i);
                }
            }
            self.text = text;
        }
        // the candidates whose conditions are evaluated here: true ones are matches,
        // false ones gone; the others stay candidates for the Python evaluator
        let mut matched: Vec<u32> = Vec::new();
        if !plan.conditions.is_empty() {
            let mut values = Values { raw: &flat.values, folded: vec![None; flat.values.len()],
                                      unsure: false };
            let mut left = Vec::with_capacity(cands.len());
            for i in cands {
                match plan.conditions.get(&i) {
                    None => left.push(i),
                    Some(c) => {
                        values.unsure = false;
                        let yes = holds(c, &mut values, py, &self.fold)?;
                        if values.unsure {
                            left.push(i); // the Python evaluator decides this one
                        } else if yes {
                            matched.push(i);
                        }
                    }
                }
            }
            cands = left;
        }
        let v = &flat.values;
        let who = Identity {
            made: identity(&self.datasets, &v[0], &v[3], &v[4]),
            parts: [v[0].to_string(), v[3].to_string(), v[4].to_string()],
            stored: flat.stored.clone(),
        };
        if cands.is_empty() && matched.is_empty() {
            return Ok(Decision::Skip(who));
        }
        // their names are the plan's (its key holds them, in this order)
        let data = v[5..5 + flat.data_names].iter().map(|v| v.to_string()).collect();
        let user = flat.has_user.then(|| v[5 + flat.data_names..].iter()
            .map(|v| v.to_string()).collect());
        let block = match root.get("Event").and_then(|e| e.get("System")) {
            Some(b) => to_py(py, b)?.map(Bound::unbind),
            None => None,
        };
        let fields = Fields {
            block,
            system: [v[0].to_string(), v[1].to_string(), v[2].to_string(), v[3].to_string(),
                     v[4].to_string()],
            data,
            user,
        };
        Ok(Decision::Candidates(cands, matched, who, fields, plan))
    }
}

/// Whether the reader takes a record (its JSON) as plain, and then its stored time and
/// field values in the evaluator's order (for the tests holding it to the Python reader).
#[pyfunction]
fn plain_fields(json: &str, datasets: HashMap<String, String>)
                -> Option<(String, Vec<String>, Option<(String, String)>)> {
    let root = parse_json(json)?;
    let flat = flatten(&root)?;
    let v = &flat.values;
    let made = identity(&datasets, &v[0], &v[3], &v[4]);
    Some((flat.stored, v.iter().map(|v| v.to_string()).collect(), made))
}

/// `fold_latin`, for the tests holding it to `fold_case`.
#[pyfunction]
fn fold_text(text: &str) -> Option<String> {
    fold_latin(text)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EvtxFilter>()?;
    m.add_function(wrap_pyfunction!(fold_text, m)?)?;
    m.add_function(wrap_pyfunction!(plain_fields, m)?)?;
    Ok(())
}
