//! Filtering Docker's list answers (and the event stream) for standard
//! users, one item at a time, so a 10,000-container answer is rewritten in
//! memory bounded by the largest single item, never by the whole list.
//!
//! [`filter_item`] decides and decorates one item; [`ListRewriter`] splits a
//! streamed answer into items (a byte-level JSON scanner, strings and
//! escapes respected), calls a filter on each and emits the rewritten
//! answer chunk by chunk.

use serde_json::Value;

use super::control::{self, Caller, Controls, Directory, Governing, ObjectView, Scope};
use super::ResourceKind;
use crate::store::model::ResourceControl;

/// The verdict on one list item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    pub keep: bool,
    /// A control built from the item's access-control labels: Portainer
    /// stores it, and so should the proxy (then the next list finds it).
    pub store: Option<ResourceControl>,
}

/// Keeps or drops one item of a `kind` list (`GET /containers/json`,
/// `/services`, `/tasks`, `/volumes` items, `/networks`, `/secrets`,
/// `/configs`, or one `/events` message) and adds Portainer's decoration
/// (admins keep everything and get the decoration too). Volumes also get
/// Portainer's `ResourceID`.
pub fn filter_item(
    kind: ResourceKind,
    item: &mut Value,
    caller: &Caller,
    scope: &Scope,
    controls: &dyn Controls,
    dir: &dyn Directory,
) -> ItemOutcome {
    if kind == ResourceKind::Event && control::public_event(item) {
        return ItemOutcome { keep: true, store: None };
    }
    let Some(view) = ObjectView::of(kind, item) else {
        return ItemOutcome { keep: caller.admin, store: None };
    };
    let gov = control::governing(&view, scope, controls, dir);
    let keep = control::can_use(caller, gov.control());
    let volume_id = (kind == ResourceKind::Volume).then(|| control::volume_resource_id(view.id, scope.docker_id));
    let rc = gov.control().cloned();
    let store = match gov {
        Governing::Labels(rc) => Some(rc),
        _ => None,
    };
    if keep {
        if let (Some(id), Some(o)) = (volume_id, item.as_object_mut()) {
            o.insert("ResourceID".into(), Value::String(id));
        }
        if let (Some(rc), false) = (rc, kind == ResourceKind::Event) {
            control::decorate(item, &rc);
        }
    }
    ItemOutcome { keep, store }
}

/// How a list answer is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JSON array of items (containers, services, networks, ...).
    Array,
    /// An object whose named field is the array of items, the rest copied
    /// (`GET /volumes`: `{"Volumes": [...], "Warnings": ...}`).
    Field(&'static str),
    /// A stream of JSON objects (`GET /events`), one per line out.
    Stream,
}

impl Shape {
    pub fn of(kind: ResourceKind) -> Shape {
        match kind {
            ResourceKind::Volume => Shape::Field("Volumes"),
            ResourceKind::Event => Shape::Stream,
            _ => Shape::Array,
        }
    }
}

/// Why a streamed answer could not be rewritten: the proxy ends the answer
/// (it must not pass the rest unfiltered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// One item is over the cap given to [`ListRewriter::new`].
    ItemTooLarge,
    /// Not the JSON shape expected.
    Malformed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the array (or object, or next stream item).
    Start,
    /// Copying the enclosing object of [`Shape::Field`].
    Outer,
    /// Between items of the array.
    Between,
    /// Inside an item.
    Item,
    Done,
}

/// Rewrites a streamed list answer. Memory: one item (at most `max_item`
/// bytes) plus the current output chunk.
pub struct ListRewriter {
    shape: Shape,
    max_item: usize,
    state: State,
    item: Vec<u8>,
    /// Nesting inside the current item (or the outer object).
    depth: usize,
    in_string: bool,
    escape: bool,
    wrote: bool,
    // Shape::Field: the last key read at the top of the outer object, and
    // whether its ':' was seen.
    key: Vec<u8>,
    reading_key: bool,
    expect_key: bool,
    after_colon: bool,
}

impl ListRewriter {
    pub fn new(shape: Shape, max_item: usize) -> Self {
        ListRewriter {
            shape,
            max_item,
            state: State::Start,
            item: Vec::new(),
            depth: 0,
            in_string: false,
            escape: false,
            wrote: false,
            key: Vec::new(),
            reading_key: false,
            expect_key: false,
            after_colon: false,
        }
    }

    /// Feeds the next chunk; `keep` sees each parsed item (and may decorate
    /// it). Returns what to send on.
    pub fn push(&mut self, chunk: &[u8], keep: &mut dyn FnMut(&mut Value) -> bool) -> Result<Vec<u8>, ListError> {
        let mut out = Vec::with_capacity(chunk.len());
        for &c in chunk {
            self.byte(c, &mut out, keep)?;
        }
        Ok(out)
    }

    /// Checks the answer ended where a complete document ends.
    pub fn finish(&self) -> Result<(), ListError> {
        match (self.state, self.shape) {
            (State::Done, _) | (State::Start, Shape::Stream) => Ok(()),
            _ => Err(ListError::Malformed("the answer ended inside the list".into())),
        }
    }

    fn malformed(c: u8, what: &str) -> ListError {
        ListError::Malformed(format!("unexpected {:?} {what}", c as char))
    }

    fn byte(&mut self, c: u8, out: &mut Vec<u8>, keep: &mut dyn FnMut(&mut Value) -> bool) -> Result<(), ListError> {
        let ws = c.is_ascii_whitespace();
        match self.state {
            State::Start if ws => Ok(()),
            State::Start => match (self.shape, c) {
                (Shape::Array, b'[') => {
                    out.push(c);
                    self.state = State::Between;
                    Ok(())
                }
                (Shape::Field(_), b'{') => {
                    out.push(c);
                    self.state = State::Outer;
                    self.depth = 1;
                    self.expect_key = true;
                    Ok(())
                }
                (Shape::Stream, b'{') => self.begin_item(c),
                _ => Err(Self::malformed(c, "at the start of the answer")),
            },
            State::Outer => self.outer(c, out),
            State::Between if ws || c == b',' => Ok(()),
            State::Between if c == b']' => {
                out.push(c);
                // Back in the outer object of Shape::Field, whose field sits at depth 1.
                self.depth = 1;
                self.state = if self.shape == Shape::Array { State::Done } else { State::Outer };
                Ok(())
            }
            State::Between => self.begin_item(c),
            State::Item => self.item_byte(c, out, keep),
            State::Done if ws => Ok(()),
            State::Done => Err(Self::malformed(c, "after the end of the answer")),
        }
    }

    fn begin_item(&mut self, c: u8) -> Result<(), ListError> {
        if c != b'{' {
            return Err(Self::malformed(c, "where a list item starts"));
        }
        self.item.clear();
        self.item.push(c);
        self.depth = 1;
        self.state = State::Item;
        Ok(())
    }

    fn item_byte(
        &mut self,
        c: u8,
        out: &mut Vec<u8>,
        keep: &mut dyn FnMut(&mut Value) -> bool,
    ) -> Result<(), ListError> {
        if self.item.len() >= self.max_item {
            return Err(ListError::ItemTooLarge);
        }
        self.item.push(c);
        if self.string_byte(c) {
            return Ok(());
        }
        match c {
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.emit(out, keep)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Tracks strings; true while the byte belongs to one.
    fn string_byte(&mut self, c: u8) -> bool {
        if self.in_string {
            match (self.escape, c) {
                (true, _) => self.escape = false,
                (false, b'\\') => self.escape = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return true;
        }
        if c == b'"' {
            self.in_string = true;
            return true;
        }
        false
    }

    fn emit(&mut self, out: &mut Vec<u8>, keep: &mut dyn FnMut(&mut Value) -> bool) -> Result<(), ListError> {
        let mut v: Value =
            serde_json::from_slice(&self.item).map_err(|e| ListError::Malformed(format!("list item: {e}")))?;
        if keep(&mut v) {
            if self.shape == Shape::Stream {
                serde_json::to_writer(&mut *out, &v).map_err(|e| ListError::Malformed(e.to_string()))?;
                out.push(b'\n');
            } else {
                if self.wrote {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, &v).map_err(|e| ListError::Malformed(e.to_string()))?;
                self.wrote = true;
            }
        }
        self.item.clear();
        self.state = if self.shape == Shape::Stream { State::Start } else { State::Between };
        Ok(())
    }

    /// The enclosing object of [`Shape::Field`]: copied, except that the
    /// named field's array is filtered.
    fn outer(&mut self, c: u8, out: &mut Vec<u8>) -> Result<(), ListError> {
        let Shape::Field(field) = self.shape else { return Err(Self::malformed(c, "outside the list")) };
        if self.in_string {
            let closing = c == b'"' && !self.escape;
            if self.reading_key && !closing && self.key.len() < 64 {
                self.key.push(c);
            }
            self.string_byte(c);
            out.push(c);
            return Ok(());
        }
        if self.depth == 1 && self.after_colon && !c.is_ascii_whitespace() {
            self.after_colon = false;
            if c == b'[' && self.key == field.as_bytes() {
                out.push(c);
                self.wrote = false;
                self.state = State::Between;
                return Ok(());
            }
        }
        out.push(c);
        match c {
            b'"' => {
                self.reading_key = self.depth == 1 && self.expect_key;
                if self.reading_key {
                    self.key.clear();
                }
                self.string_byte(c);
            }
            b':' if self.depth == 1 => {
                self.after_colon = true;
                self.expect_key = false;
            }
            b',' if self.depth == 1 => self.expect_key = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.state = State::Done;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
