//! Form values read the way Go's `Request.FormValue` / `FormFile` read them,
//! because Portainer's multipart routes (endpoint creation, TLS uploads) are
//! driven by clients that rely on it: `http --form` sends
//! `application/x-www-form-urlencoded` unless a file is attached, the UI
//! sends `multipart/form-data`, and scripts put values in the query string.
//! A name given twice (in the body, or in the body and the query string)
//! is refused with a 400 rather than resolved by a precedence rule.
//!
//! Unlike Go (which spills big parts to temp files with no upper bound),
//! everything is held in memory under hard limits: total body size (413),
//! number of parts (400) and size of a non-file value (413). A body of any
//! other content type is not read at all, as in Go.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{header, StatusCode};
use http_body_util::BodyStream;

use super::ApiRequest;
use crate::error::{ApiError, ApiResult};

/// Bounds on one form body.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Whole body, multipart framing included.
    pub max_body: usize,
    /// Parts (multipart) or pairs (urlencoded) in the body.
    pub max_parts: usize,
    /// One non-file value; files are bounded by `max_body` only.
    pub max_value: usize,
}

/// Portainer's forms have about twenty fields; a hundred leaves room for
/// clients that send extra ones without letting a body of tiny parts cost
/// more bookkeeping than its size suggests.
pub const DEFAULT_MAX_PARTS: usize = 100;
/// A name, a URL or a JSON list of tag ids; a megabyte of it is already abuse.
pub const DEFAULT_MAX_VALUE: usize = 1024 * 1024;

impl Limits {
    pub fn upload(max_body: usize) -> Limits {
        Limits { max_body, max_parts: DEFAULT_MAX_PARTS, max_value: DEFAULT_MAX_VALUE.min(max_body) }
    }
}

/// An uploaded file part.
#[derive(Clone, Debug)]
pub struct FilePart {
    pub file_name: Option<String>,
    pub bytes: Bytes,
}

#[derive(Default, Debug)]
pub struct Form {
    body: Vec<(String, String)>,
    query: Vec<(String, String)>,
    files: Vec<(String, FilePart)>,
}

impl Form {
    /// First value of `name`: body first, then query string. Absent and
    /// empty are the same thing to callers, as with Go's `FormValue`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.body
            .iter()
            .chain(self.query.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An uploaded file. A plain (non-file) part of that name is accepted as
    /// the file's content too: curl's `-F name=<file` sends one, and refusing
    /// it would only produce a confusing "file missing" error.
    pub fn file(&self, name: &str) -> Option<FilePart> {
        if let Some((_, f)) = self.files.iter().find(|(k, _)| k == name) {
            return Some(f.clone());
        }
        self.body
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| FilePart { file_name: None, bytes: Bytes::from(v.clone().into_bytes()) })
    }
}

impl Form {
    /// Refuses a name given more than once, in the body (as values, files
    /// or both) or in the body and the query string: Go's `FormValue` takes
    /// the first and a proxy in front may take another, so a request whose
    /// meaning depends on who reads it is refused rather than guessed at.
    fn check_single_values(&self) -> ApiResult<()> {
        let mut seen = std::collections::HashSet::new();
        let names = self
            .body
            .iter()
            .map(|(k, _)| k)
            .chain(self.files.iter().map(|(k, _)| k))
            .chain(self.query.iter().map(|(k, _)| k));
        for name in names {
            if !seen.insert(name.as_str()) {
                return Err(ApiError::invalid_payload(format!(
                    "the form field {name:?} has more than one value (in the body, the query string or both)"
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn too_large(details: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", details)
}

fn too_many_parts(limit: usize) -> ApiError {
    ApiError::invalid_payload(format!("the form has more than {limit} parts"))
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| serde_urlencoded::from_str(q).unwrap_or_default()).unwrap_or_default()
}

/// Reads the request's form: its body (multipart or urlencoded) and query.
pub async fn read(req: &mut ApiRequest, limits: Limits) -> ApiResult<Form> {
    let content_type = req.parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_length =
        req.parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let query = req.parts.uri.query().map(str::to_owned);
    let (ct, cl, q) = (content_type.as_deref(), content_length, query.as_deref());
    match req.body.take() {
        Some(b) => {
            let frames = BodyStream::new(b).try_filter_map(|f| futures_util::future::ready(Ok(f.into_data().ok())));
            read_from(ct, cl, q, frames, limits).await
        }
        None => read_from(ct, cl, q, futures_util::stream::empty::<Result<Bytes, hyper::Error>>(), limits).await,
    }
}

/// The transport-independent part of [`read`], so it can be tested on
/// in-memory streams.
pub async fn read_from<S, E>(
    content_type: Option<&str>,
    content_length: Option<u64>,
    query: Option<&str>,
    body: S,
    limits: Limits,
) -> ApiResult<Form>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut form = Form { query: parse_query(query), ..Default::default() };
    let essence = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    // Any other body is not read at all, as in Go.
    if let (Some(ct), Some(e @ ("multipart/form-data" | "application/x-www-form-urlencoded"))) =
        (content_type, essence.as_deref())
    {
        // The whole body is read before it is parsed, so that every error
        // below is answered with nothing left unread: a server that answers
        // while the client is still sending closes a connection with unread
        // data, the client gets a reset, and may never see the answer.
        let bytes = read_body(body, content_length, limits.max_body).await?;
        if e == "application/x-www-form-urlencoded" {
            form.body = parse_urlencoded(&bytes, limits)?;
        } else {
            parse_multipart(ct, bytes, limits, &mut form).await?;
        }
    }
    form.check_single_values()?;
    Ok(form)
}

fn parse_urlencoded(bytes: &[u8], limits: Limits) -> ApiResult<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|e| ApiError::invalid_payload(format!("malformed urlencoded form: {e}")))?;
    if pairs.len() > limits.max_parts {
        return Err(too_many_parts(limits.max_parts));
    }
    if let Some((k, _)) = pairs.iter().find(|(_, v)| v.len() > limits.max_value) {
        return Err(too_large(format!("The form value {k:?} exceeds {} bytes", limits.max_value)));
    }
    Ok(pairs)
}

/// Adds the parts of a whole multipart body to `form`.
async fn parse_multipart(ct: &str, bytes: Bytes, limits: Limits, form: &mut Form) -> ApiResult<()> {
    let boundary = multer::parse_boundary(ct)
        .map_err(|e| ApiError::invalid_payload(format!("invalid multipart Content-Type {ct:?}: {e}")))?;
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(limits.max_body as u64).per_field(limits.max_body as u64));
    let once = futures_util::stream::once(futures_util::future::ready(Ok::<Bytes, std::convert::Infallible>(bytes)));
    let mut mp = multer::Multipart::with_constraints(once, boundary, constraints);
    let mut parts = 0usize;
    while let Some(mut field) = mp.next_field().await.map_err(multer_err)? {
        parts += 1;
        if parts > limits.max_parts {
            return Err(too_many_parts(limits.max_parts));
        }
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let value_limit = if file_name.is_some() { usize::MAX } else { limits.max_value };
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(multer_err)? {
            if buf.len() + chunk.len() > value_limit {
                return Err(too_large(format!("The form value {name:?} exceeds {} bytes", limits.max_value)));
            }
            buf.extend_from_slice(&chunk);
        }
        if name.is_empty() {
            continue;
        }
        match file_name {
            Some(f) => form.files.push((name, FilePart { file_name: Some(f), bytes: buf.freeze() })),
            None => {
                let v = String::from_utf8(buf.to_vec())
                    .map_err(|_| ApiError::invalid_payload(format!("the form value {name:?} is not valid UTF-8")))?;
                form.body.push((name, v));
            }
        }
    }
    Ok(())
}

/// A body past the limit is still read (and discarded) up to this much more,
/// so the client finishes sending and sees the 413; beyond it the
/// connection is simply closed.
const DRAIN_CAP: u64 = 16 * 1024 * 1024;
/// ... and for at most this long, so a slow sender cannot hold the request.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

fn read_err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
    let e: Box<dyn std::error::Error + Send + Sync> = e.into();
    if crate::body::BodyTimeout::find(&*e).is_some() {
        return ApiError::new(StatusCode::REQUEST_TIMEOUT, "Request body timeout", e.to_string());
    }
    ApiError::bad_request("Invalid request payload", format!("unable to read body: {e}"))
}

/// Reads a whole body up to `limit`. Past the limit it answers 413 after
/// discarding a bounded amount, so the client reads the 413 instead of a
/// connection reset.
pub(crate) async fn read_body<S, E>(body: S, declared: Option<u64>, limit: usize) -> ApiResult<Bytes>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let over = || too_large(format!("The limit is {limit} bytes"));
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        if n - limit as u64 <= DRAIN_CAP {
            drain(body.as_mut(), n).await;
        }
        return Err(over());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.try_next().await.map_err(read_err)? {
        if buf.len() + chunk.len() > limit {
            // Only a chunked body gets here (hyper holds a declared length
            // to its word), and its size is unknown: cut it at the cap as
            // it streams rather than read megabytes more; the 413 closes
            // the connection.
            return Err(over());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Discards up to `max` more bytes, within [`DRAIN_TIME`].
async fn drain<S, E>(mut body: std::pin::Pin<&mut S>, max: u64)
where
    S: Stream<Item = Result<Bytes, E>> + Send,
{
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len() as u64;
            if seen > max {
                break;
            }
        }
    })
    .await;
}

fn multer_err(e: multer::Error) -> ApiError {
    match e {
        multer::Error::StreamSizeExceeded { limit } => too_large(format!("The limit is {limit} bytes")),
        multer::Error::FieldSizeExceeded { limit, field_name } => {
            too_large(format!("The form part {:?} exceeds {limit} bytes", field_name.unwrap_or_default()))
        }
        other => ApiError::invalid_payload(format!("malformed multipart/form-data body: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<&[u8]>) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect::<Vec<_>>())
    }

    fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, data) in parts {
            out.extend_from_slice(b"--XYZ\r\n");
            match file {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\r\n").as_bytes(),
                ),
                None => {
                    out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes())
                }
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XYZ--\r\n");
        out
    }

    const MP: &str = "multipart/form-data; boundary=XYZ";

    fn limits() -> Limits {
        Limits { max_body: 4096, max_parts: 5, max_value: 64 }
    }

    #[tokio::test]
    async fn multipart_values_and_files() {
        let body = multipart(&[
            ("Name", None, b"test"),
            ("TLSCACertFile", Some("ca.pem"), b"PEM DATA"),
            ("TLS", None, b"true"),
        ]);
        // Split mid-boundary to exercise multer's buffering.
        let (a, b) = body.split_at(17);
        let f =
            read_from(Some(MP), Some(body.len() as u64), Some("URL=unix%3A%2F%2F%2Fx"), chunks(vec![a, b]), limits())
                .await
                .unwrap();
        assert_eq!(f.value("Name"), Some("test"));
        assert_eq!(f.value("URL"), Some("unix:///x"), "the query is read too");
        assert_eq!(f.value("TLS"), Some("true"));
        let file = f.file("TLSCACertFile").unwrap();
        assert_eq!(&file.bytes[..], b"PEM DATA");
        assert_eq!(file.file_name.as_deref(), Some("ca.pem"));
        assert_eq!(f.value("TLSCACertFile"), None, "files are not values");
        assert!(f.file("Missing").is_none());
    }

    #[tokio::test]
    async fn urlencoded_and_query() {
        let body = b"Name=test-local&EndpointType=1&TagIds=%5B1%2C2%5D&Empty=";
        let f = read_from(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            None,
            Some("Other=o"),
            chunks(vec![body]),
            limits(),
        )
        .await
        .unwrap();
        assert_eq!(f.value("Name"), Some("test-local"));
        assert_eq!(f.value("EndpointType"), Some("1"));
        assert_eq!(f.value("TagIds"), Some("[1,2]"));
        assert_eq!(f.value("Other"), Some("o"));
        assert_eq!(f.value("Empty"), None);
    }

    #[tokio::test]
    async fn a_field_given_twice_is_refused() {
        let ue = "application/x-www-form-urlencoded";
        let mp = multipart(&[("Name", None, b"a"), ("Name", None, b"b")]);
        let mp_file = multipart(&[("TLSCACertFile", None, b"a"), ("TLSCACertFile", Some("ca.pem"), b"b")]);
        let mp_one = multipart(&[("Name", None, b"a")]);
        let cases: [(&str, Option<&str>, &[u8]); 6] = [
            (ue, None, b"Name=a&Name=b"),
            (ue, None, b"Name=&Name=b"),
            (ue, Some("Name=q"), b"Name=a"),
            (MP, None, &mp),
            (MP, None, &mp_file),
            (MP, Some("Name=q"), &mp_one),
        ];
        for (i, (ct, q, body)) in cases.into_iter().enumerate() {
            let e = read_from(Some(ct), None, q, chunks(vec![body]), limits()).await.unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "case {i}");
            assert!(e.details.contains("more than one value"), "case {i}: {}", e.details);
        }
        // Twice in the query string alone, on a body of another type.
        let e = read_from(Some("application/json"), None, Some("a=1&a=2"), chunks(vec![b"{}"]), limits())
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn other_content_types_are_not_read() {
        let f = read_from(Some("application/json"), None, Some("Name=q"), chunks(vec![b"{\"Name\":\"x\"}"]), limits())
            .await
            .unwrap();
        assert_eq!(f.value("Name"), Some("q"));
        let f = read_from(None, None, None, chunks(vec![b"Name=x"]), limits()).await.unwrap();
        assert_eq!(f.value("Name"), None);
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        // Declared length beyond the limit: refused, after the body was
        // read and discarded so the client sees the answer.
        let consumed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = consumed.clone();
        let body = futures_util::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1000]))))
            .inspect(move |_| {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        let e = read_from(Some(MP), Some(5000), None, body, limits()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(consumed.load(std::sync::atomic::Ordering::Relaxed), 5, "drained");

        // Streamed (no length) beyond the limit.
        let big = vec![b'a'; 5000];
        let body = multipart(&[("f", Some("x"), &big)]);
        let e = read_from(Some(MP), None, None, chunks(vec![&body]), limits()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE, "{e}");
        let e = read_from(Some("application/x-www-form-urlencoded"), None, None, chunks(vec![&big]), limits())
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE, "{e}");

        // A value beyond max_value, while a file of that size is fine.
        let v = vec![b'v'; 100];
        let body = multipart(&[("Name", None, &v)]);
        let e = read_from(Some(MP), None, None, chunks(vec![&body]), limits()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.details.contains("Name"), "{}", e.details);
        let body = multipart(&[("File", Some("f"), &v)]);
        let f = read_from(Some(MP), None, None, chunks(vec![&body]), limits()).await.unwrap();
        assert_eq!(f.file("File").unwrap().bytes.len(), 100);

        // Too many parts, in both encodings.
        let many: Vec<(&str, Option<&str>, &[u8])> = (0..6).map(|_| ("a", None, &b"1"[..])).collect();
        let body = multipart(&many);
        let e = read_from(Some(MP), None, None, chunks(vec![&body]), limits()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.details.contains("more than 5 parts"), "{}", e.details);
        let e = read_from(
            Some("application/x-www-form-urlencoded"),
            None,
            None,
            chunks(vec![b"a=1&a=2&a=3&a=4&a=5&a=6"]),
            limits(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn malformed_bodies_are_400() {
        let e = read_from(Some("multipart/form-data"), None, None, chunks(vec![b"x"]), limits()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.details.contains("boundary"), "{}", e.details);
        let e = read_from(
            Some(MP),
            None,
            None,
            chunks(vec![b"--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated"]),
            limits(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let body = multipart(&[("Name", None, &[0xff, 0xfe])]);
        let e = read_from(Some(MP), None, None, chunks(vec![&body]), limits()).await.unwrap_err();
        assert!(e.details.contains("UTF-8"), "{}", e.details);
        let failing = futures_util::stream::iter(vec![Err::<Bytes, _>(std::io::Error::other("reset by peer"))]);
        let e = read_from(Some(MP), None, None, failing, limits()).await.unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.details.contains("reset by peer"), "{}", e.details);
    }
}
