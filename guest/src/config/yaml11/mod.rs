//! YAML read as Knot Resolver's manager reads it: with PyYAML's `SafeLoader` (through a subclass
//! refusing a key repeated in one mapping), that is by YAML 1.1's rules. `yaml-rust2` parses the
//! text (the syntax of YAML 1.1 and 1.2 differs only in corners); every scalar is then typed
//! here as PyYAML 6 types it (`yaml/resolver.py`, `yaml/constructor.py`), so `yes` and `on` are
//! booleans, `0755` is 493, `1:30` is 90, `1_000` is 1000, and `1e3` is a string.
//!
//! Refused as the manager refuses them: a character PyYAML does not read, a second document, a
//! key repeated in one mapping (keys compared as Python compares them: `yes` and `true` are the
//! same key), an anchor defined twice, a merge key `<<` (the manager's loader has no merge), a
//! plain `=` (YAML 1.1's value key, which no safe constructor builds), a tag SafeLoader does not
//! know or one that does not fit its node (`!!int abc`). Refused here only, to bound the guest's
//! work: nesting deeper than [`MAX_DEPTH`], and anchors and aliases that copy more than
//! [`MAX_COPIED_NODES`] nodes or [`MAX_COPIED_BYTES`] bytes of text (a "billion laughs": PyYAML
//! shares an aliased node, the `Value` built here copies it). And where JSON cannot say what
//! PyYAML builds: a number that is not finite (`.inf`, `.nan`), an integer beyond 64 bits, a
//! mapping key that is a list or a mapping (PyYAML refuses those too: they are not hashable).
//!
//! A key is kept as its text (`0x10: a` gives the key `"0x10"`): a JSON key is a string, and the
//! manager's schema only knows string keys. So keys Python tells apart but their text does not
//! (`1` and `"1"`) are refused as repeated.
//!
//! Known differences, all in the syntax (yaml-rust2 reads YAML 1.2's, PyYAML 1.1's), none in
//! how a scalar is typed. PyYAML refuses a tab between tokens (`a: b<TAB>`), reads or refuses
//! a plain `:x` in a flow collection, and reads NEL, LS and PS as line breaks; yaml-rust2 takes
//! the first two and reads the last as characters. yaml-rust2 refuses `'b'#c` and a lone `-`
//! in a flow list, which PyYAML takes. Each is rare in a configuration.
//!
//! Must never recurse on the document's nesting (a hostile file would overflow the stack): the
//! parser's pull interface is driven here with an explicit stack.

use serde_json::{Map, Number, Value};
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, Scanner, TScalarStyle, Token, TokenType};

mod scalar;

use scalar::{check_collection_tag, type_scalar};

/// Deepest nesting of lists and mappings accepted: serde_json's own limit for the JSON syntax,
/// so both syntaxes take the same documents. Real configurations nest fewer than ten levels.
pub const MAX_DEPTH: usize = 128;

/// Most nodes (scalars, lists, mappings) anchors and aliases may copy in one document. Each alias
/// copies the node it names, each anchored list or mapping is kept as a copy, and copies of
/// copies multiply: ten nested lists of ten aliases make 10^10 nodes from a few hundred bytes.
/// A million nodes is a few hundred MiB of `Value` at most, near the guest's memory cap, and
/// far above what a configuration's few shared blocks copy.
pub const MAX_COPIED_NODES: u64 = 1_000_000;

/// Most scalar bytes anchors and aliases may copy in one document: one aliased long string
/// copies much text in few nodes. The size of the largest configuration file accepted.
pub const MAX_COPIED_BYTES: u64 = crate::config::MAX_CONFIG_SIZE;

/// Where PyYAML's core tags live; `!!int` is `tag:yaml.org,2002:int`.
const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// A YAML document refused: why, and where (both counted from 1; the column in characters).
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{why} at line {line} column {column}")]
pub struct Error {
    /// What is wrong.
    pub why: Why,
    /// The line where it is, from 1.
    pub line: usize,
    /// The column where it is, from 1, in characters.
    pub column: usize,
}

/// Why a YAML document is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Why {
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error("the character U+{:04X} is not allowed in YAML", u32::from(*.0))]
    Unprintable(char),
    /// The parser's own message.
    #[error("{0}")]
    Syntax(String),
    #[error("a second document is not accepted: a configuration is one YAML document")]
    SecondDocument,
    #[error("key {0:?} is given twice in one mapping")]
    RepeatedKey(String),
    #[error("a mapping key must be a scalar, not {0}")]
    KeyNotScalar(&'static str),
    #[error("anchor &{0} is defined twice")]
    RepeatedAnchor(String),
    #[error("an alias is used inside the node its anchor names")]
    RecursiveAlias,
    #[error("YAML merge keys (\"<<\") are not accepted: write the keys out in full")]
    MergeKey,
    #[error("a plain \"=\" is YAML 1.1's value key, which the manager does not read: quote it")]
    ValueKey,
    #[error(
        "the tag {0} is not accepted (accepted: !!str, !!int, !!float, !!bool, !!null, !!map, !!seq)"
    )]
    UnknownTag(String),
    #[error("the tag {tag} cannot be given to {node}")]
    TagMismatch { tag: String, node: &'static str },
    #[error("{text:?} is not {what}")]
    NotTagged { text: String, what: &'static str },
    #[error("{0} is not a finite number")]
    NotFinite(String),
    #[error("integer {0} is out of range (64 bits)")]
    IntegerRange(String),
    #[error("lists and mappings nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error(
        "anchors and aliases copy more than {MAX_COPIED_NODES} nodes or {MAX_COPIED_BYTES} bytes"
    )]
    TooManyCopies,
}

/// Read `content` as PyYAML's `yaml.load(text, SafeLoader)` would, refusing what the manager
/// refuses. An empty document (or none) is `null`.
pub fn load(content: &[u8]) -> Result<Value, Error> {
    let text = std::str::from_utf8(content).map_err(|e| {
        let (line, column) = position(&content[..e.valid_up_to()]);
        Error {
            why: Why::NotUtf8,
            line,
            column,
        }
    })?;
    check_printable(text)?;
    // PyYAML skips a byte-order mark opening the stream; yaml-rust2 would make it part of the
    // first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut documents = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(syntax)?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(at(mark, Why::SecondDocument));
                }
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            event => builder.event(event, mark)?,
        }
    }
    if builder.anchored {
        check_anchors(text)?;
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

/// PyYAML's reader refuses these before parsing: control characters other than tab and line
/// breaks, C1 controls but NEL, surrogates (never in a `str`), U+FFFE and U+FFFF.
fn check_printable(text: &str) -> Result<(), Error> {
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}'
            | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    };
    for (line, text) in text.split('\n').enumerate() {
        if let Some((column, c)) = text.chars().enumerate().find(|&(_, c)| !printable(c)) {
            return Err(Error {
                why: Why::Unprintable(c),
                line: line + 1,
                column: column + 1,
            });
        }
    }
    Ok(())
}

/// PyYAML refuses an anchor name given twice in one document; yaml-rust2 lets the second
/// replace the first, and its events carry no names. So the text is scanned once more for them,
/// only when the document has anchors at all.
fn check_anchors(text: &str) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for Token(mark, token) in Scanner::new(text.chars()) {
        if let TokenType::Anchor(name) = token
            && !seen.insert(name.clone())
        {
            return Err(at(mark, Why::RepeatedAnchor(name)));
        }
    }
    Ok(())
}

/// Line and column (from 1, in characters) just after `valid`.
fn position(valid: &[u8]) -> (usize, usize) {
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

fn at(mark: Marker, why: Why) -> Error {
    Error {
        why,
        line: mark.line(),
        // yaml-rust2 counts columns from 0.
        column: mark.col() + 1,
    }
}

fn syntax(e: ScanError) -> Error {
    at(*e.marker(), Why::Syntax(e.info().to_owned()))
}

/// Builds the document from the parser's events, keeping open lists and mappings on a stack.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    /// Nodes by anchor id, once complete. An id the parser knows but this map does not is that
    /// of a node still open: an alias to it is recursive.
    anchors: HashMap<usize, Node>,
    /// Whether the document defines an anchor: only then are anchor names checked.
    anchored: bool,
    /// What anchors and aliases copied so far.
    copied: Size,
}

/// An open list or mapping.
struct Frame {
    open: Open,
    /// The node's anchor id, 0 for none.
    anchor: usize,
    /// Where the node starts.
    mark: Marker,
    /// Size of the children so far.
    size: Size,
}

enum Open {
    List(Vec<Value>),
    Mapping {
        entries: Map<String, Value>,
        /// Keys that are not strings to Python (`1`, `yes`, `~`), to find repeats by value.
        other_keys: Vec<PyKey>,
        /// The key whose value comes next.
        key: Option<String>,
    },
}

/// A complete node.
#[derive(Clone)]
enum Node {
    /// A scalar stays text until it is known whether it is a key or a value.
    Scalar {
        text: String,
        typed: Typed,
    },
    Collection {
        value: Value,
        size: Size,
    },
}

/// What PyYAML makes of a scalar; `Str` is the text itself.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Typed {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

/// A key that is not a string, as Python compares it: `True == 1 == 1.0`.
#[derive(Clone, Copy, PartialEq)]
enum PyKey {
    Null,
    Number(i128),
    /// The bits of a float with a fraction (or too large for `Number`).
    Float(u64),
}

/// How much a node holds: nodes, scalar bytes, and nesting depth (0 for a scalar).
#[derive(Clone, Copy, Default, Debug)]
struct Size {
    nodes: u64,
    bytes: u64,
    depth: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes += other.nodes;
        self.bytes += other.bytes;
        self.depth = self.depth.max(other.depth);
    }
}

impl Node {
    fn size(&self) -> Size {
        match self {
            Node::Scalar { text, .. } => Size {
                nodes: 1,
                bytes: text.len() as u64,
                depth: 0,
            },
            Node::Collection { size, .. } => *size,
        }
    }

    /// The node as a mapping value, list item or document.
    fn into_value(self) -> Result<Value, Why> {
        let (text, typed) = match self {
            Node::Collection { value, .. } => return Ok(value),
            Node::Scalar { text, typed } => (text, typed),
        };
        Ok(match typed {
            Typed::Null => Value::Null,
            Typed::Bool(b) => Value::Bool(b),
            Typed::Int(i) => match (i64::try_from(i), u64::try_from(i)) {
                (Ok(i), _) => Value::from(i),
                (_, Ok(u)) => Value::from(u),
                _ => return Err(Why::IntegerRange(text)),
            },
            Typed::Float(f) => Value::Number(Number::from_f64(f).ok_or(Why::NotFinite(text))?),
            Typed::Str => Value::String(text),
        })
    }
}

impl Builder {
    /// Take one event of the document's content (`load` handles the stream's and documents').
    fn event(&mut self, event: Event, mark: Marker) -> Result<(), Error> {
        let here = |why| at(mark, why);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let typed = type_scalar(&text, style, tag.as_ref()).map_err(here)?;
                let node = Node::Scalar { text, typed };
                self.anchor(anchor, &node).map_err(here)?;
                self.complete(node, mark)
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_ref(), "seq", "a list").map_err(here)?;
                self.open(Open::List(Vec::new()), anchor, mark)
                    .map_err(here)
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_ref(), "map", "a mapping").map_err(here)?;
                let open = Open::Mapping {
                    entries: Map::new(),
                    other_keys: Vec::new(),
                    key: None,
                };
                self.open(open, anchor, mark).map_err(here)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self
                    .stack
                    .pop()
                    .expect("the parser closes only what it opened");
                let value = match frame.open {
                    Open::List(items) => Value::Array(items),
                    Open::Mapping { entries, .. } => Value::Object(entries),
                };
                let size = Size {
                    nodes: frame.size.nodes + 1,
                    bytes: frame.size.bytes,
                    depth: frame.size.depth + 1,
                };
                let node = Node::Collection { value, size };
                self.anchor(frame.anchor, &node).map_err(here)?;
                self.complete(node, frame.mark)
            }
            Event::Alias(id) => {
                let size = self
                    .anchors
                    .get(&id)
                    .ok_or(Why::RecursiveAlias)
                    .map_err(here)?
                    .size();
                if self.stack.len() + size.depth > MAX_DEPTH {
                    return Err(here(Why::TooDeep));
                }
                self.copy(size).map_err(here)?;
                let node = self.anchors[&id].clone();
                self.complete(node, mark)
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => Ok(()),
        }
    }

    fn open(&mut self, open: Open, anchor: usize, mark: Marker) -> Result<(), Why> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Why::TooDeep);
        }
        self.stack.push(Frame {
            open,
            anchor,
            mark,
            size: Size::default(),
        });
        Ok(())
    }

    /// Keep a copy of an anchored node for its aliases.
    fn anchor(&mut self, anchor: usize, node: &Node) -> Result<(), Why> {
        if anchor == 0 {
            return Ok(());
        }
        self.anchored = true;
        self.copy(node.size())?;
        self.anchors.insert(anchor, node.clone());
        Ok(())
    }

    /// Count a copy against the limits before it is made.
    fn copy(&mut self, size: Size) -> Result<(), Why> {
        self.copied.add(size);
        if self.copied.nodes > MAX_COPIED_NODES || self.copied.bytes > MAX_COPIED_BYTES {
            return Err(Why::TooManyCopies);
        }
        Ok(())
    }

    /// Put a complete node, which starts at `mark`, where it belongs: the document, a list
    /// item, a mapping's key, or a key's value.
    fn complete(&mut self, node: Node, mark: Marker) -> Result<(), Error> {
        let here = |why| at(mark, why);
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node.into_value().map_err(here)?);
            return Ok(());
        };
        frame.size.add(node.size());
        match &mut frame.open {
            Open::List(items) => items.push(node.into_value().map_err(here)?),
            Open::Mapping {
                entries,
                other_keys,
                key: key @ None,
            } => {
                let (text, typed) = match node {
                    Node::Scalar { text, typed } => (text, typed),
                    Node::Collection { value, .. } => {
                        let kind = if value.is_array() {
                            "a list"
                        } else {
                            "a mapping"
                        };
                        return Err(here(Why::KeyNotScalar(kind)));
                    }
                };
                let py = py_key(typed);
                if entries.contains_key(&text) || py.is_some_and(|k| other_keys.contains(&k)) {
                    return Err(here(Why::RepeatedKey(text)));
                }
                other_keys.extend(py);
                *key = Some(text);
            }
            Open::Mapping { entries, key, .. } => {
                let key = key
                    .take()
                    .expect("the arm above takes a mapping awaiting a key");
                entries.insert(key, node.into_value().map_err(here)?);
            }
        }
        Ok(())
    }
}

/// How Python tells a non-string key from others, `None` for a string key (compared by text).
fn py_key(typed: Typed) -> Option<PyKey> {
    match typed {
        Typed::Str => None,
        Typed::Null => Some(PyKey::Null),
        Typed::Bool(b) => Some(PyKey::Number(i128::from(b))),
        Typed::Int(i) => Some(PyKey::Number(i)),
        // 2^127: every integral float below converts to i128 exactly.
        Typed::Float(f) if f.fract() == 0.0 && f.abs() < 1.7e38 => Some(PyKey::Number(f as i128)),
        Typed::Float(f) => Some(PyKey::Float(f.to_bits())),
    }
}
