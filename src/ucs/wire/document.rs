//! A streaming reader of `GetDocument` answers: finds the content field (a JSON string, see
//! [`DOCUMENT_CONTENT_FIELDS`](super::DOCUMENT_CONTENT_FIELDS)) in a JSON document that
//! arrives chunk by chunk, and base64-decodes it as it goes. Memory is bounded whatever the
//! document's size: a key of at most [`MAX_KEY`] bytes, three base64 characters, a nesting
//! stack of at most [`MAX_DEPTH`] levels; the decoded bytes of each chunk go straight out.
//!
//! It also notices a top-level `FaultCode` (a fault answer, see [`super::Fault`]) and keeps
//! its code (never the fault's text).

/// The longest key that is compared (longer keys are never a content field).
pub const MAX_KEY: usize = 64;
/// The deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// The longest fault code kept.
const MAX_CODE: usize = 16;

/// Why a document answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON, not base64, or no content field.
    Malformed,
    /// The answer ended in the middle.
    Truncated,
    /// The answer is a UCS fault with this code.
    Fault(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Key,
    Content,
    FaultCode,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Started,
    /// Inside `\uXXXX`: how many hex digits were read, and their value so far.
    Unicode(u8, u32),
}

/// The decoder. Feed it every chunk, then [`finish`](DocumentDecoder::finish) it.
#[derive(Debug)]
pub struct DocumentDecoder {
    fields: &'static [&'static str],
    stack: Vec<u8>,
    started: bool,
    ended: bool,
    expect_key: bool,
    awaiting_colon: bool,
    in_string: Option<Role>,
    escape: Escape,
    key: Vec<u8>,
    key_overflow: bool,
    pending_key: Option<Vec<u8>>,
    found: bool,
    fault: Option<Vec<u8>>,
    in_scalar: bool,
    scalar_is_fault: bool,
    quad: [u8; 4],
    filled: usize,
    padding: usize,
    content_done: bool,
}

impl DocumentDecoder {
    /// A decoder looking for the first string field named one of `fields`.
    pub fn new(fields: &'static [&'static str]) -> Self {
        Self {
            fields,
            stack: Vec::new(),
            started: false,
            ended: false,
            expect_key: false,
            awaiting_colon: false,
            in_string: None,
            escape: Escape::None,
            key: Vec::new(),
            key_overflow: false,
            pending_key: None,
            found: false,
            fault: None,
            in_scalar: false,
            scalar_is_fault: false,
            quad: [0; 4],
            filled: 0,
            padding: 0,
            content_done: false,
        }
    }

    /// Feeds one chunk; the decoded content bytes it completes are appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        for &byte in input {
            self.byte(byte, out)?;
        }
        Ok(())
    }

    /// Ends the answer: `Ok` if the content was found and the JSON is whole. (The content's
    /// last bytes went out when its string closed.)
    pub fn finish(mut self) -> Result<(), DecodeError> {
        if self.in_scalar {
            self.end_scalar();
        }
        if self.in_string.is_some() || !self.stack.is_empty() || !self.started {
            return Err(DecodeError::Truncated);
        }
        if let Some(code) = self.fault.take() {
            return Err(DecodeError::Fault(String::from_utf8_lossy(&code).into_owned()));
        }
        if !self.found {
            return Err(DecodeError::Malformed);
        }
        Ok(())
    }

    fn byte(&mut self, byte: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if let Some(role) = self.in_string {
            return self.string_byte(role, byte, out);
        }
        if self.in_scalar {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'+' | b'.') {
                if self.scalar_is_fault {
                    self.push_code(byte);
                }
                return Ok(());
            }
            self.end_scalar();
        }
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => Ok(()),
            _ if self.ended => Err(DecodeError::Malformed),
            b':' if self.awaiting_colon => {
                self.awaiting_colon = false;
                Ok(())
            }
            _ if self.awaiting_colon => Err(DecodeError::Malformed),
            b'"' => {
                let role = if self.expect_key && self.stack.last() == Some(&b'{') {
                    self.key.clear();
                    self.key_overflow = false;
                    Role::Key
                } else {
                    self.begin_value()?
                };
                self.in_string = Some(role);
                Ok(())
            }
            b'{' | b'[' => {
                self.begin_value()?;
                if self.stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::Malformed);
                }
                self.stack.push(byte);
                self.expect_key = byte == b'{';
                Ok(())
            }
            b'}' | b']' => {
                let open = if byte == b'}' { b'{' } else { b'[' };
                if self.stack.pop() != Some(open) {
                    return Err(DecodeError::Malformed);
                }
                self.after_value();
                Ok(())
            }
            b':' => Err(DecodeError::Malformed),
            b',' => {
                self.expect_key = self.stack.last() == Some(&b'{');
                if self.stack.is_empty() {
                    return Err(DecodeError::Malformed);
                }
                Ok(())
            }
            _ if byte.is_ascii_alphanumeric() || byte == b'-' => {
                let role = self.begin_value()?;
                self.in_scalar = true;
                self.scalar_is_fault = role == Role::FaultCode;
                if self.scalar_is_fault {
                    self.fault = Some(Vec::new());
                    self.push_code(byte);
                }
                Ok(())
            }
            _ => Err(DecodeError::Malformed),
        }
    }

    /// A value starts: decides what it is from the key before it.
    fn begin_value(&mut self) -> Result<Role, DecodeError> {
        if self.stack.is_empty() && self.started {
            return Err(DecodeError::Malformed);
        }
        self.started = true;
        let key = self.pending_key.take();
        let Some(key) = key else {
            if self.stack.last() == Some(&b'{') {
                return Err(DecodeError::Malformed);
            }
            return Ok(Role::Other);
        };
        if !self.found && self.fields.iter().any(|field| field.as_bytes() == key.as_slice()) {
            return Ok(Role::Content);
        }
        if self.stack.len() == 1 && key == b"FaultCode" {
            return Ok(Role::FaultCode);
        }
        Ok(Role::Other)
    }

    fn after_value(&mut self) {
        if self.stack.is_empty() {
            self.ended = true;
        }
    }

    fn end_scalar(&mut self) {
        self.in_scalar = false;
        self.scalar_is_fault = false;
        self.after_value();
    }

    fn push_code(&mut self, byte: u8) {
        if let Some(code) = &mut self.fault
            && code.len() < MAX_CODE
            && (byte.is_ascii_alphanumeric() || byte == b'-')
        {
            code.push(byte);
        }
    }

    fn string_byte(&mut self, role: Role, byte: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        match self.escape {
            Escape::Started => {
                self.escape = Escape::None;
                let unescaped = match byte {
                    b'u' => {
                        self.escape = Escape::Unicode(0, 0);
                        return Ok(());
                    }
                    b'"' | b'\\' | b'/' => byte,
                    b'b' | b'f' | b'n' | b'r' | b't' => b' ',
                    _ => return Err(DecodeError::Malformed),
                };
                return self.string_char(role, unescaped, out);
            }
            Escape::Unicode(count, value) => {
                let digit = char::from(byte).to_digit(16).ok_or(DecodeError::Malformed)?;
                let value = value * 16 + digit;
                if count + 1 < 4 {
                    self.escape = Escape::Unicode(count + 1, value);
                    return Ok(());
                }
                self.escape = Escape::None;
                // Only ASCII matters (base64 and keys); anything else stands in as a byte that
                // is neither a base64 character nor part of a field name.
                let unescaped = u8::try_from(value).ok().filter(u8::is_ascii).unwrap_or(0xFF);
                return self.string_char(role, unescaped, out);
            }
            Escape::None => {}
        }
        match byte {
            b'\\' => {
                self.escape = Escape::Started;
                Ok(())
            }
            b'"' => {
                self.in_string = None;
                match role {
                    Role::Key => {
                        self.pending_key =
                            Some(if self.key_overflow { Vec::new() } else { self.key.clone() });
                        self.expect_key = false;
                        self.awaiting_colon = true;
                    }
                    Role::Content => {
                        self.end_base64(out)?;
                        self.found = true;
                        self.after_value();
                    }
                    Role::FaultCode | Role::Other => self.after_value(),
                }
                Ok(())
            }
            0x00..=0x1F => Err(DecodeError::Malformed),
            _ => self.string_char(role, byte, out),
        }
    }

    fn string_char(&mut self, role: Role, byte: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        match role {
            Role::Key => {
                if self.key.len() < MAX_KEY {
                    self.key.push(byte);
                } else {
                    self.key_overflow = true;
                }
                Ok(())
            }
            Role::Content => self.base64_char(byte, out),
            Role::FaultCode => {
                if self.fault.is_none() {
                    self.fault = Some(Vec::new());
                }
                self.push_code(byte);
                Ok(())
            }
            Role::Other => Ok(()),
        }
    }

    fn base64_char(&mut self, byte: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            return Ok(());
        }
        if self.content_done {
            return Err(DecodeError::Malformed);
        }
        if byte == b'=' {
            if self.filled < 2 {
                return Err(DecodeError::Malformed);
            }
            self.padding += 1;
            self.push_sextet(0, out);
            return Ok(());
        }
        if self.padding > 0 {
            return Err(DecodeError::Malformed);
        }
        let sextet = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(DecodeError::Malformed),
        };
        self.push_sextet(sextet, out);
        Ok(())
    }

    fn push_sextet(&mut self, sextet: u8, out: &mut Vec<u8>) {
        if let Some(slot) = self.quad.get_mut(self.filled) {
            *slot = sextet;
        }
        self.filled += 1;
        if self.filled == 4 {
            let [a, b, c, d] = self.quad;
            let bytes = [(a << 2) | (b >> 4), (b << 4) | (c >> 2), (c << 6) | d];
            let keep = 3 - self.padding;
            out.extend_from_slice(bytes.get(..keep).unwrap_or(&[]));
            self.filled = 0;
            if self.padding > 0 {
                self.content_done = true;
            }
        }
    }

    /// The end of the content string: an unpadded tail of 2 or 3 characters is accepted.
    fn end_base64(&mut self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        match self.filled {
            0 => Ok(()),
            1 => Err(DecodeError::Malformed),
            n => {
                let missing = 4 - n;
                self.padding += missing;
                for _ in 0..missing {
                    self.push_sextet(0, out);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const FIELDS: &[&str] = &["Content", "BinaryContent"];

    fn decode_in_chunks(json: &[u8], cut: &[usize]) -> Result<Vec<u8>, DecodeError> {
        let mut decoder = DocumentDecoder::new(FIELDS);
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cut.iter().chain(std::iter::once(&json.len())) {
            decoder.feed(&json[start..end], &mut out)?;
            start = end;
        }
        decoder.finish()?;
        Ok(out)
    }

    fn document(bytes: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!(
            "{{\"DocumentId\":\"0000DOC1000000AA\",\"TheName\":\"a \\\"q\\\" name\",\
             \"Nested\":{{\"Content\":null,\"x\":[1,2,{{\"y\":\"z\"}}]}},\
             \"TheSize\":{},\"Content\":\"{}\",\"MimeType\":\"text/plain\"}}",
            bytes.len(),
            b64.replace('/', "\\/")
        )
    }

    #[test]
    fn every_cut_of_a_small_document_decodes_the_same() {
        for len in 0..=7 {
            let bytes: Vec<u8> = (0..len).map(|i: u32| ((i * 37 + 250) % 256) as u8).collect();
            let json = document(&bytes);
            for cut in 0..=json.len() {
                assert_eq!(decode_in_chunks(json.as_bytes(), &[cut]).unwrap(), bytes, "cut {cut}");
            }
            for a in 0..=json.len() {
                for b in a..=json.len() {
                    assert_eq!(decode_in_chunks(json.as_bytes(), &[a, b]).unwrap(), bytes);
                }
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_with_escapes_and_line_breaks() {
        let bytes = b"\x00\xff\xfe hello /+ world".to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let wrapped: String = b64
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap().replace('/', "\\u002F"))
            .collect::<Vec<_>>()
            .join("\\r\\n");
        let json = format!("{{\"BinaryContent\" : \"{wrapped}\" }}");
        let cuts: Vec<usize> = (1..json.len()).collect();
        assert_eq!(decode_in_chunks(json.as_bytes(), &cuts).unwrap(), bytes);
    }

    #[test]
    fn a_large_document_streams_in_bounded_chunks() {
        let bytes: Vec<u8> = (0..3_000_001u32).map(|i| (i % 251) as u8).collect();
        let json = document(&bytes);
        let mut decoder = DocumentDecoder::new(FIELDS);
        let mut total = Vec::with_capacity(bytes.len());
        for chunk in json.as_bytes().chunks(8191) {
            let mut out = Vec::new();
            decoder.feed(chunk, &mut out).unwrap();
            assert!(out.len() <= chunk.len(), "a chunk decodes to less than itself");
            total.extend_from_slice(&out);
        }
        decoder.finish().unwrap();
        assert_eq!(total, bytes);
    }

    #[test]
    fn truncation_faults_and_garbage_are_errors() {
        let json = document(b"some bytes");
        for cut in 0..json.len() {
            let mut decoder = DocumentDecoder::new(FIELDS);
            let mut out = Vec::new();
            let fed = decoder.feed(&json.as_bytes()[..cut], &mut out);
            assert!(fed.is_ok());
            assert_eq!(decoder.finish(), Err(DecodeError::Truncated), "cut {cut}");
        }
        assert_eq!(
            decode_in_chunks(br#"{"FaultCode":510,"FaultString":"Msg: x not found"}"#, &[13]),
            Err(DecodeError::Fault("510".into()))
        );
        assert_eq!(
            decode_in_chunks(br#"{"FaultCode":"201","FaultString":"Missing"}"#, &[]),
            Err(DecodeError::Fault("201".into()))
        );
        for bad in [
            &br#"{"Content":"QUJD*"}"#[..],
            br#"{"Content":"QUJDR"}"#,
            br#"{"Content":"QQ==QQ=="}"#,
            br#"{"TheName":"x"}"#,
            br#"{"Content":"QUJD"}}"#,
            br#"{"Content":"QUJD"} x"#,
            br#"{"Content" "QUJD"}"#,
            b"[1,2]]",
        ] {
            assert!(decode_in_chunks(bad, &[]).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Unpadded base64 is accepted.
        assert_eq!(decode_in_chunks(br#"{"Content":"QUI"}"#, &[]).unwrap(), b"AB");
    }
}
