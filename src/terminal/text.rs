//! Docker's terminal output as WebSocket text: Portainer's clients expect
//! text frames, and a frame must hold whole UTF-8 characters. Docker
//! writes bytes wherever its buffers happen to end, so a character can be
//! split between two reads; the tail of an incomplete character waits for
//! the next read instead of being dropped (Portainer drops it). Bytes that
//! can never be UTF-8 become U+FFFD, so the client still sees that
//! something was there.
//!
//! A container attached without a TTY multiplexes stdout and stderr in
//! Docker's 8-byte-header frames; [`Demux`] takes the headers out and
//! decodes each stream on its own, since a character can only be split
//! within one stream.

/// Bytes of an incomplete character carried to the next read: at most
/// three (a four-byte character missing its last byte).
const MAX_CARRY: usize = 3;

/// Turns a byte stream into text, one read at a time.
#[derive(Default)]
pub struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// The text of `bytes` (after whatever the previous read left), up to
    /// the last complete character; an incomplete one is kept for the next
    /// call.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len() + self.carry.len());
        let owned;
        let mut rest: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(bytes);
            owned = joined;
            &owned
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    return out;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The bytes up to valid_up_to() are UTF-8 by the error's contract.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the very end: wait for the rest.
                        None if after.len() <= MAX_CARRY => {
                            self.carry.extend_from_slice(after);
                            return out;
                        }
                        None => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                    }
                }
            }
        }
    }

    /// What is left when the stream ends: an incomplete character that
    /// will never be completed.
    pub fn finish(&mut self) -> String {
        if self.carry.is_empty() {
            return String::new();
        }
        self.carry.clear();
        char::REPLACEMENT_CHARACTER.to_string()
    }
}

/// Docker's multiplexed stream (`[stream, 0, 0, 0, size as u32 BE]` then
/// `size` bytes) as text, stdout and stderr decoded separately.
#[derive(Default)]
pub struct Demux {
    header: [u8; 8],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    stream: u8,
    stdout: Utf8Stream,
    stderr: Utf8Stream,
}

impl Demux {
    pub fn push(&mut self, mut bytes: &[u8]) -> String {
        let mut out = String::new();
        while !bytes.is_empty() {
            if self.remaining == 0 {
                let take = (8 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len < 8 {
                    break;
                }
                self.header_len = 0;
                self.stream = self.header[0];
                let [_, _, _, _, a, b, c, d] = self.header;
                self.remaining = u32::from_be_bytes([a, b, c, d]) as usize;
                continue;
            }
            let take = self.remaining.min(bytes.len());
            let (payload, rest) = bytes.split_at(take);
            let decoder = if self.stream == 2 { &mut self.stderr } else { &mut self.stdout };
            out.push_str(&decoder.push(payload));
            self.remaining -= take;
            bytes = rest;
        }
        out
    }

    pub fn finish(&mut self) -> String {
        let mut out = self.stdout.finish();
        out.push_str(&self.stderr.finish());
        out
    }
}

/// How a session's output is read: raw (a TTY, or any exec, which Berth
/// always starts with `Tty`) or multiplexed (attach without a TTY).
pub enum Output {
    Raw(Utf8Stream),
    Multiplexed(Demux),
}

impl Output {
    pub fn new(multiplexed: bool) -> Output {
        if multiplexed {
            Output::Multiplexed(Demux::default())
        } else {
            Output::Raw(Utf8Stream::default())
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> String {
        match self {
            Output::Raw(d) => d.push(bytes),
            Output::Multiplexed(d) => d.push(bytes),
        }
    }

    pub fn finish(&mut self) -> String {
        match self {
            Output::Raw(d) => d.finish(),
            Output::Multiplexed(d) => d.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of cutting `input` into two reads gives the same text.
    #[test]
    fn characters_split_between_reads_arrive_whole() {
        let input = "a\u{e9}\u{20ac}\u{1f600}z".as_bytes();
        for cut in 0..=input.len() {
            let mut d = Utf8Stream::default();
            let mut text = d.push(&input[..cut]);
            text.push_str(&d.push(&input[cut..]));
            text.push_str(&d.finish());
            assert_eq!(text, "a\u{e9}\u{20ac}\u{1f600}z", "cut at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_reads_arrive_whole() {
        let input = "\u{1f600}\u{e9}x\u{20ac}".repeat(50);
        let mut d = Utf8Stream::default();
        let text: String = input.as_bytes().iter().map(|b| d.push(std::slice::from_ref(b))).collect();
        assert_eq!(text, input);
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Utf8Stream::default();
        assert_eq!(d.push(b"a\xffb\xc3(c"), "a\u{fffd}b\u{fffd}(c");
        // A truncated character at the end waits, then is replaced at the end.
        assert_eq!(d.push(b"x\xe2\x82"), "x");
        assert_eq!(d.finish(), "\u{fffd}");
        // Not a character's start: replaced at once, not carried.
        assert_eq!(d.push(b"\x80\x80"), "\u{fffd}\u{fffd}");
    }

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn multiplexed_frames_lose_their_headers_and_keep_characters_per_stream() {
        let euro = "\u{20ac}".as_bytes();
        let mut wire = frame(1, b"out ");
        wire.extend(frame(1, &euro[..1]));
        wire.extend(frame(2, "err\u{e9}".as_bytes()));
        wire.extend(frame(1, &euro[1..]));
        for cut in 0..=wire.len() {
            let mut d = Demux::default();
            let mut text = d.push(&wire[..cut]);
            text.push_str(&d.push(&wire[cut..]));
            assert_eq!(text, "out err\u{e9}\u{20ac}", "cut at {cut}");
        }
    }

    #[test]
    fn empty_frames_and_large_sizes_are_read() {
        let mut d = Demux::default();
        let payload = vec![b'x'; 70_000];
        let mut wire = frame(1, b"");
        wire.extend(frame(1, &payload));
        let text: String = wire.chunks(4096).map(|c| d.push(c)).collect();
        assert_eq!(text.len(), 70_000);
    }
}
