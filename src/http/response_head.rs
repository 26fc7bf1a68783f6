//! A response head as a message: a backend's, read out of the bytes its
//! connection sent (interim heads and switches too), or the head of one
//! of rsp's own answers; `respond()` reads and changes it, and the client
//! gets what it says, written for the client's protocol (`forward`).

use std::ops::Range;

use super::edit::{self, EditError, REFUSED_IN_RESPONSES};
use super::request::Field;
use super::response::{self, ClientSide, Head, ResponseInfo};
use super::{HeadError, MAX_HEADERS};

#[derive(Default)]
pub struct ResponseHead {
    raw: Vec<u8>,
    status: u16,
    /// The status the head came with: its body is framed by it.
    original: u16,
    reason: Range<usize>,
    version: Option<u8>,
    fields: Vec<Field>,
    /// The bytes of the backend's head, to be consumed from its buffer.
    head_length: usize,
}

impl ResponseHead {
    /// Parses a response head at the start of `buffer` into this one.
    /// `Ok(None)` means more bytes are needed.
    pub fn read(&mut self, buffer: &[u8]) -> Result<Option<usize>, HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let Some((head_length, status)) = response::parse(&mut response, buffer)? else {
            return Ok(None);
        };
        let base = buffer.as_ptr() as usize;
        // Where a part httparse read lies in the head; an empty one it
        // made up (a missing reason) is empty here too.
        let range = |part: &[u8]| match (part.as_ptr() as usize).checked_sub(base) {
            Some(start) if start + part.len() <= head_length => start..start + part.len(),
            _ => 0..0,
        };
        self.raw.clear();
        self.raw.extend_from_slice(&buffer[..head_length]);
        self.fields.clear();
        self.fields
            .extend(response.headers.iter().map(|field| Field {
                name: range(field.name.as_bytes()),
                value: range(field.value),
                added: false,
            }));
        self.reason = range(response.reason.unwrap_or("").as_bytes());
        self.status = status;
        self.original = status;
        self.version = response.version;
        self.head_length = head_length;
        Ok(Some(head_length))
    }

    /// The head of one of rsp's own answers.
    pub fn local(&mut self, status: u16, headers: &[(String, String)]) {
        let fields = headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
        self.stored(status, fields);
    }

    /// The head of a stored response being served (`cache`), its fields
    /// as stored.
    pub fn stored<'a>(&mut self, status: u16, fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        self.raw.clear();
        self.fields.clear();
        for (name, value) in fields {
            let name = self.keep(name);
            let value = self.keep(value);
            self.fields.push(Field {
                name,
                value,
                added: true,
            });
        }
        self.reason = 0..0;
        self.status = status;
        self.original = status;
        self.version = Some(1);
        self.head_length = 0;
    }

    /// The head of a response rsp encodes itself (`compress`): its body in
    /// `coding`, sent chunked (no `Content-Length`, no `Accept-Ranges`),
    /// `Vary: Accept-Encoding` added, a strong `ETag` made weak (the bytes
    /// are no longer the backend's).
    pub fn encode_as(&mut self, coding: &[u8]) {
        let reason = self.raw[self.reason.clone()].to_vec();
        let varies = vary_names_encoding(self.fields());
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = self
            .fields()
            .filter(|(name, _)| {
                !name.eq_ignore_ascii_case(b"content-length")
                    && !name.eq_ignore_ascii_case(b"transfer-encoding")
                    && !name.eq_ignore_ascii_case(b"accept-ranges")
            })
            .map(|(name, value)| {
                let weakened = name.eq_ignore_ascii_case(b"etag") && !value.starts_with(b"W/");
                let value = match weakened {
                    true => [b"W/", value].concat(),
                    false => value.to_vec(),
                };
                (name.to_vec(), value)
            })
            .collect();
        fields.push((b"Content-Encoding".to_vec(), coding.to_vec()));
        fields.push((b"Transfer-Encoding".to_vec(), b"chunked".to_vec()));
        if !varies {
            fields.push((b"Vary".to_vec(), b"Accept-Encoding".to_vec()));
        }
        self.raw.clear();
        self.fields.clear();
        self.reason = self.keep(&reason);
        for (name, value) in &fields {
            let name = self.keep(name);
            let value = self.keep(value);
            self.fields.push(Field {
                name,
                value,
                added: true,
            });
        }
    }

    /// Says the response varies by `Accept-Encoding`, unless it does
    /// already (a compressible response sent as it is, so a cache keeps
    /// it apart from the encoded one).
    pub fn vary_by_encoding(&mut self) {
        if !vary_names_encoding(self.fields()) {
            let _ = self.add_header(b"Vary", b"Accept-Encoding");
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.raw.len();
        self.raw.extend_from_slice(bytes);
        start..self.raw.len()
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// 1xx heads other than 101: another head follows.
    pub fn is_interim(&self) -> bool {
        self.status < 200 && self.status != 101
    }

    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.fields.iter().map(|field| {
            (
                &self.raw[field.name.clone()],
                &self.raw[field.value.clone()],
            )
        })
    }

    /// A status the body as framed still fits: 200-599 but 204 and 304,
    /// for a response that did not come as 204 or 304 (the backend frames
    /// the body by the status it sent).
    pub fn set_status(&mut self, status: u16) -> Result<(), EditError> {
        if status == self.status {
            return Ok(());
        }
        if !(200..=599).contains(&status) {
            return Err(EditError::Status("a final status is from 200 to 599"));
        }
        if status == 204 || status == 304 || self.original == 204 || self.original == 304 {
            return Err(EditError::Status(
                "204 and 304 frame no body: neither is set nor changed",
            ));
        }
        self.status = status;
        Ok(())
    }

    pub fn set_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        edit::check_field_name(name, REFUSED_IN_RESPONSES)?;
        edit::set_field(&mut self.raw, &mut self.fields, 0, name, value)
    }

    pub fn add_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        edit::check_field_name(name, REFUSED_IN_RESPONSES)?;
        edit::add_field(&mut self.raw, &mut self.fields, 0, name, value)
    }

    pub fn del_header(&mut self, name: &[u8]) -> Result<(), EditError> {
        edit::check_field_name(name, REFUSED_IN_RESPONSES)?;
        edit::del_field(&self.raw, &mut self.fields, name);
        Ok(())
    }

    /// The fields as (name, value) strings, for a local answer.
    pub fn string_fields(&self) -> Vec<(String, String)> {
        self.fields()
            .map(|(name, value)| {
                (
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                )
            })
            .collect()
    }

    /// The head as the writers take it: the reason the backend gave,
    /// unless a script changed the status.
    fn as_head(&self) -> Head<'_, impl response::Fields<'_>> {
        let reason = if self.status == self.original {
            std::str::from_utf8(&self.raw[self.reason.clone()]).unwrap_or("")
        } else {
            crate::reply::reason(self.status)
        };
        Head {
            status: self.status,
            reason,
            version: self.version,
            fields: self.fields(),
        }
    }

    /// Writes the head the client gets of a backend's head read into this
    /// one: a switch (checked against what the request offered, in
    /// `upgrade_offer`), an interim head (nothing for a client that
    /// cannot take one), or the final head.
    pub fn forward(
        &self,
        client: ClientSide,
        upgrade_offer: &[u8],
        request_id: Option<&str>,
        out: crate::message::Out,
    ) -> Result<ResponseInfo, HeadError> {
        let head = self.as_head();
        let (framing, keep_alive, backend_keep_alive) = match self.status {
            101 => {
                response::check_switch(client, upgrade_offer, self.fields())?;
                response::write_switch(&head, request_id, out);
                (crate::framing::Framing::Empty, false, false)
            }
            100..=199 => {
                response::write_interim(&head, client, out);
                (crate::framing::Framing::Empty, client.keep_alive, false)
            }
            _ => response::write_final(&head, client, request_id, out)?,
        };
        Ok(ResponseInfo {
            head_length: self.head_length,
            status: self.status,
            framing,
            keep_alive,
            backend_keep_alive,
        })
    }

    /// Writes the final head the client gets.
    pub fn write_final(
        &self,
        client: ClientSide,
        request_id: Option<&str>,
        out: crate::message::Out,
    ) -> Result<ResponseInfo, HeadError> {
        let (framing, keep_alive, backend_keep_alive) =
            response::write_final(&self.as_head(), client, request_id, out)?;
        Ok(ResponseInfo {
            head_length: self.head_length,
            status: self.status,
            framing,
            keep_alive,
            backend_keep_alive,
        })
    }
}

/// Whether `Vary` names `Accept-Encoding` (or is `*`).
fn vary_names_encoding<'a>(mut fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> bool {
    fields.any(|(name, value)| {
        name.eq_ignore_ascii_case(b"vary")
            && value.split(|&byte| byte == b',').any(|token| {
                let token = token.trim_ascii();
                token == b"*" || token.eq_ignore_ascii_case(b"accept-encoding")
            })
    })
}
