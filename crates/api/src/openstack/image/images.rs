//! `/v2/images`: list (Glance's filters, sorting and paging), show, create, PATCH with
//! JSON Patch, delete, and tags; plus the image view every response uses
//! (glance `api/v2/images.py`, `image_tags.py`).

use super::{Caller, GlanceError, GlanceResult};
use crate::AppState;
use crate::common::time::{isotime, parse_iso};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use nimbus_control::images::{
    CmpOp, HASH_ALGO, ImageChange, ImageCreate, ImageListFilter, ImageListQuery, SORT_KEYS,
    VisibilityFilter, py_repr, schema_error,
};
use nimbus_model::image::{Image, Visibility};
use nimbus_model::{Error, ImageId, ProjectId};
use serde_json::{Map, Value, json};

/// Glance `limit_param_default` and `api_limit_max`.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 1000;

/// The two PATCH media types and the JSON Schema draft each implies.
const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";
const PATCH_V21: &str = "application/openstack-images-v2.1-json-patch";

/// Properties the image schema declares besides the base ones (Glance's default
/// `schema-image.json`): a null value of these is shown as null, of any other as "".
pub const SCHEMA_PROPERTIES: &[&str] = &[
    "kernel_id",
    "ramdisk_id",
    "instance_uuid",
    "architecture",
    "os_distro",
    "os_version",
    "description",
    "cinder_encryption_key_id",
    "cinder_encryption_key_deletion_policy",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/image/v2/images", get(index).post(create))
        .route(
            "/image/v2/images/{id}",
            get(show).patch(update).delete(delete),
        )
        .route(
            "/image/v2/images/{id}/tags/{tag}",
            put(tag_add).delete(tag_delete),
        )
}

/// The Glance v2 image view.
pub fn view(i: &Image) -> Value {
    let mut m = Map::new();
    for (k, v) in i.custom_properties() {
        // Glance's schema filter shows a null non-schema property as "".
        let v = if v.is_null() && !SCHEMA_PROPERTIES.contains(&k.as_str()) {
            json!("")
        } else {
            v.clone()
        };
        m.insert(k.clone(), v);
    }
    let id = i.id.to_string();
    m.insert("name".into(), json!(i.name));
    m.insert("disk_format".into(), json!(i.disk_format));
    m.insert("container_format".into(), json!(i.container_format));
    m.insert("visibility".into(), json!(i.visibility.as_str()));
    m.insert("size".into(), json!(i.size));
    m.insert("virtual_size".into(), json!(i.virtual_size));
    m.insert("status".into(), json!(i.status.as_str()));
    m.insert("checksum".into(), json!(i.checksum));
    m.insert("protected".into(), json!(i.protected));
    m.insert("min_ram".into(), json!(i.min_ram));
    m.insert("min_disk".into(), json!(i.min_disk));
    m.insert("owner".into(), json!(i.owner));
    m.insert("os_hidden".into(), json!(i.os_hidden()));
    m.insert(
        "os_hash_algo".into(),
        json!(i.os_hash_value.as_ref().map(|_| HASH_ALGO)),
    );
    m.insert("os_hash_value".into(), json!(i.os_hash_value));
    m.insert("id".into(), json!(id));
    m.insert("created_at".into(), json!(isotime(&i.created_at)));
    m.insert("updated_at".into(), json!(isotime(&i.updated_at)));
    m.insert("tags".into(), json!(i.tags));
    m.insert("self".into(), json!(format!("/v2/images/{id}")));
    m.insert("file".into(), json!(format!("/v2/images/{id}/file")));
    m.insert("schema".into(), json!("/v2/schemas/image"));
    Value::Object(m)
}

/// Parse an image id from the path; anything else is Glance's 404 for that id.
pub fn image_id(id: &str) -> Result<ImageId, Error> {
    id.parse()
        .map_err(|_| Error::not_found(format!("No image found with ID {id}")))
}

/// Glance's wording of a missing image in show, upload and download.
pub fn not_found_as(id: &str) -> impl Fn(Error) -> GlanceError + '_ {
    move |e| match e {
        Error::NotFound(_) => GlanceError(Error::not_found(format!("No image found with ID {id}"))),
        e => GlanceError(e),
    }
}

// ---- list ----

/// Python's `urllib.parse.quote_plus`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn urlencode(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// glance `utils.split_filter_op`: `op:value`, except that an ISO 8601 time (which has
/// colons) is a plain value.
fn split_op(expr: &str) -> (&str, &str) {
    match expr.split_once(':') {
        Some((op, rest)) if parse_iso(expr).is_none() => (op, rest),
        _ => ("eq", expr),
    }
}

/// glance `utils.split_filter_value_for_quotes`: comma-separated, with double-quoted
/// values that may contain commas.
fn split_in_values(value: &str) -> Result<Vec<String>, Error> {
    let bad = |msg: &str| Error::invalid(format!("Invalid filter value {value}. {msg}"));
    let chars: Vec<char> = value.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            let mut cur = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while j < chars.len() {
                match chars[j] {
                    '\\' if j + 1 < chars.len() => {
                        cur.push(chars[j]);
                        cur.push(chars[j + 1]);
                        j += 2;
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => {
                        cur.push(c);
                        j += 1;
                    }
                }
            }
            if !closed {
                return Err(bad("The quote is not closed."));
            }
            j += 1;
            if j < chars.len() && chars[j] != ',' {
                return Err(bad("There is no comma after closing quotation mark."));
            }
            out.push(cur);
            i = j + 1;
        } else {
            let end = chars[i..]
                .iter()
                .position(|c| *c == ',')
                .map_or(chars.len(), |p| i + p);
            let piece: String = chars[i..end].iter().collect();
            if piece.contains('"') {
                return Err(bad("There is no comma before opening quotation mark."));
            }
            out.push(piece);
            i = end + 1;
        }
    }
    Ok(out)
}

/// A filter on name, id, status or a format: `v`, `eq:v` or `in:a,b`.
fn any_of(expr: &str) -> Result<Vec<String>, Error> {
    match split_op(expr) {
        ("eq", v) => Ok(vec![v.to_owned()]),
        ("in", v) => split_in_values(v),
        (op, _) => Err(Error::invalid(format!(
            "Unable to filter by unknown operator '{op}'."
        ))),
    }
}

fn time_filter(key: &str, expr: &str) -> Result<(CmpOp, nimbus_model::time::Timestamp), Error> {
    let (op, t) = split_op(expr);
    let t = parse_iso(t).ok_or_else(|| {
        Error::invalid(format!(
            "Bad \"{key}\" query filter format. Use ISO 8601 DateTime notation."
        ))
    })?;
    let op = CmpOp::parse(op)
        .ok_or_else(|| Error::invalid("Unable to filter on a unknown operator."))?;
    Ok((op, t))
}

fn int_filter(key: &str, v: &str) -> Result<u64, Error> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| Error::invalid(format!("Invalid value '{v}' for '{key}' filter.")))
}

/// The parsed `GET /v2/images` request.
struct ListRequest {
    query: ImageListQuery,
    limit: usize,
}

/// glance `RequestDeserializer.index` and `ImagesController.index`.
fn parse_list(params: &[(String, String)]) -> Result<ListRequest, Error> {
    let last = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let all = |k: &str| -> Vec<&str> {
        params
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let limit = match last("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => {
            let n: i64 = l
                .trim()
                .parse()
                .map_err(|_| Error::invalid("limit param must be an integer"))?;
            if n < 0 {
                return Err(Error::invalid("limit param must be positive"));
            }
            (n as u64).min(MAX_LIMIT as u64) as usize
        }
    };
    if let Some(ms) = last("member_status")
        && !matches!(ms, "pending" | "accepted" | "rejected" | "all")
    {
        return Err(Error::invalid(format!("Invalid status: {ms}")));
    }
    let (sort, default_desc) = parse_sort(&all("sort"), &all("sort_key"), &all("sort_dir"))?;

    let mut f = ImageListFilter {
        tags: all("tag").iter().map(|t| t.trim().to_owned()).collect(),
        ..Default::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in params {
        if seen.contains(&k.as_str()) {
            continue;
        }
        seen.push(k);
        let Some(v) = last(k) else { continue };
        match k.as_str() {
            "limit" | "marker" | "member_status" | "tag" | "sort" | "sort_key" | "sort_dir"
            | "deleted" => {}
            "visibility" => {
                f.visibility = match v {
                    "all" => VisibilityFilter::All,
                    "" => VisibilityFilter::Default,
                    other => VisibilityFilter::Only(Visibility::parse(other).ok_or_else(|| {
                        Error::invalid(format!("Invalid visibility value: {other}"))
                    })?),
                }
            }
            "changes-since" => {
                return Err(Error::invalid(
                    "The \"changes-since\" filter is no longer available on v2.",
                ));
            }
            "os_hidden" => {
                f.os_hidden = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::invalid(format!(
                            "Invalid value '{}' for 'os_hidden' filter. Valid values are 'true' or 'false'.",
                            v.to_ascii_lowercase()
                        )));
                    }
                }
            }
            "protected" => {
                f.protected = Some(match v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::invalid(format!(
                            "Invalid value '{v}' for 'protected' filter. Valid values are 'true' or 'false'."
                        )));
                    }
                })
            }
            "name" => f.name = Some(any_of(v)?),
            "id" => f.id = Some(any_of(v)?),
            "status" => f.status = Some(any_of(v)?),
            "disk_format" => f.disk_format = Some(any_of(v)?),
            "container_format" => f.container_format = Some(any_of(v)?),
            "created_at" => f.created_at.push(time_filter(k, v)?),
            "updated_at" => f.updated_at.push(time_filter(k, v)?),
            "size_min" | "size_max" => {
                let n: i64 = v.trim().parse().map_err(|_| {
                    Error::invalid("Unable to filter on a range with a non-numeric value.")
                })?;
                if k == "size_min" {
                    f.size_min = Some(n);
                } else {
                    f.size_max = Some(n);
                }
            }
            key if key.ends_with("_min") || key.ends_with("_max") => {
                return Err(Error::invalid(format!(
                    "Unable to filter on a range of '{}'.",
                    &key[..key.len() - 4]
                )));
            }
            "owner" => f.owner = Some(v.to_owned()),
            "checksum" => f.checksum = Some(v.to_owned()),
            "os_hash_algo" => f.os_hash_algo = Some(v.to_owned()),
            "os_hash_value" => f.os_hash_value = Some(v.to_owned()),
            "size" => f.size = Some(int_filter(k, v)?),
            "virtual_size" => f.virtual_size = Some(int_filter(k, v)?),
            "min_ram" => f.min_ram = Some(int_filter(k, v)?),
            "min_disk" => f.min_disk = Some(int_filter(k, v)?),
            prop => {
                f.properties.insert(prop.to_owned(), v.to_owned());
            }
        }
    }
    Ok(ListRequest {
        query: ImageListQuery {
            filter: f,
            marker: last("marker").map(str::to_owned),
            limit: Some(limit),
            sort,
            default_desc,
        },
        limit,
    })
}

fn sort_key(k: &str) -> Result<String, Error> {
    let k = k.trim();
    if SORT_KEYS.contains(&k) {
        Ok(k.to_owned())
    } else {
        Err(Error::invalid(format!(
            "Invalid sort key: {k}. It must be one of the following: {}.",
            SORT_KEYS.join(", ")
        )))
    }
}

fn sort_dir(d: &str) -> Result<bool, Error> {
    match d.trim() {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(Error::invalid(format!("Invalid sort direction: {other}"))),
    }
}

/// glance `_get_sorting_params` plus the database layer's direction defaults: returns
/// the keys with their directions and the direction of the implicit tie-breakers.
fn parse_sort(
    sort: &[&str],
    keys: &[&str],
    dirs: &[&str],
) -> Result<(Vec<(String, bool)>, bool), Error> {
    let mut out_keys = Vec::new();
    let mut out_dirs = Vec::new();
    if let Some(s) = sort.last() {
        if !keys.is_empty() || !dirs.is_empty() {
            return Err(Error::invalid(
                "Old and new sorting syntax cannot be combined",
            ));
        }
        for piece in s.trim().split(',') {
            let (k, d) = piece.split_once(':').unwrap_or((piece, ""));
            out_keys.push(sort_key(k)?);
            out_dirs.push(if d.is_empty() { true } else { sort_dir(d)? });
        }
    } else {
        for k in keys {
            out_keys.push(sort_key(k)?);
        }
        for d in dirs {
            out_dirs.push(sort_dir(d)?);
        }
        if out_dirs.len() > 1 && out_dirs.len() != out_keys.len() {
            return Err(Error::invalid(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
    }
    if out_keys.is_empty() {
        out_keys.push("created_at".into());
    }
    if out_dirs.is_empty() {
        out_dirs.push(true);
    }
    let default_desc = if out_dirs.len() == 1 {
        out_dirs[0]
    } else {
        true
    };
    let sort = out_keys
        .into_iter()
        .enumerate()
        .map(|(n, k)| (k, *out_dirs.get(n).unwrap_or(&default_desc)))
        .collect();
    Ok((sort, default_desc))
}

async fn index(State(state): State<AppState>, Caller(ctx): Caller, req: Request) -> GlanceResult {
    let params = crate::common::query_pairs(req.uri().query());
    let lr = parse_list(&params)?;
    let images = state.control.images_list(&ctx, lr.query).await?;
    let others: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "marker")
        .cloned()
        .collect();
    let mut body = json!({
        "images": images.iter().map(view).collect::<Vec<_>>(),
        "first": "/v2/images",
        "schema": "/v2/schemas/images",
    });
    if !others.is_empty() {
        body["first"] = json!(format!("/v2/images?{}", urlencode(&others)));
    }
    if let Some(last) = images.last()
        && images.len() == lr.limit
    {
        let mut next = others;
        next.push(("marker".into(), last.id.to_string()));
        body["next"] = json!(format!("/v2/images?{}", urlencode(&next)));
    }
    Ok(crate::common::json(StatusCode::OK, body))
}

async fn show(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> GlanceResult {
    let iid = image_id(&id)?;
    let img = state
        .control
        .image_get(&ctx, iid)
        .await
        .map_err(not_found_as(&id))?;
    Ok(crate::common::json(StatusCode::OK, view(&img)))
}

// ---- bodies ----

/// Read a JSON body the way Glance's `JSONRequestDeserializer` does.
async fn json_body(state: &AppState, req: Request) -> Result<Value, Error> {
    let bytes = axum::body::to_bytes(req.into_body(), state.config.max_body_bytes)
        .await
        .map_err(|_| Error::PayloadTooLarge("Request is too large.".into()))?;
    if bytes.is_empty() {
        return Err(Error::invalid("Body expected in request."));
    }
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|_| Error::invalid("Malformed JSON in request body."))?;
    if !(v.is_object() || v.is_array()) {
        return Err(Error::invalid("Unexpected body type. Expected list/dict."));
    }
    Ok(v)
}

fn opt_string(attr: &str, v: &Value, max: Option<usize>) -> Result<Option<String>, Error> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            if let Some(max) = max
                && s.chars().count() > max
            {
                return Err(schema_error(
                    &format!("{} is too long", py_repr(v)),
                    "maxLength",
                    &format!("schema['properties']['{attr}']"),
                    attr,
                    v,
                ));
            }
            Ok(Some(s.clone()))
        }
        other => Err(schema_error(
            &format!("{} is not of type 'null', 'string'", py_repr(other)),
            "type",
            &format!("schema['properties']['{attr}']"),
            attr,
            other,
        )),
    }
}

fn boolean(attr: &str, v: &Value) -> Result<bool, Error> {
    v.as_bool().ok_or_else(|| {
        schema_error(
            &format!("{} is not of type 'boolean'", py_repr(v)),
            "type",
            &format!("schema['properties']['{attr}']"),
            attr,
            v,
        )
    })
}

fn integer(attr: &str, v: &Value) -> Result<u64, Error> {
    match v {
        Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap_or(0)),
        Value::Number(n) if n.is_i64() => Err(Error::invalid(format!(
            "Invalid value '{n}' for parameter '{attr}': Cannot be a negative value."
        ))),
        other => Err(schema_error(
            &format!("{} is not of type 'integer'", py_repr(other)),
            "type",
            &format!("schema['properties']['{attr}']"),
            attr,
            other,
        )),
    }
}

/// glance `RequestDeserializer.create` and the image schema's base properties.
fn parse_create(body: Value) -> Result<ImageCreate, Error> {
    let Value::Object(mut m) = body else {
        return Err(Error::invalid(
            "Provided object does not match schema 'image': the body is not an object",
        ));
    };
    for key in ["direct_url", "self", "file", "schema", "stores"] {
        if m.contains_key(key) {
            return Err(Error::Forbidden(format!("Attribute '{key}' is read-only.")));
        }
    }
    let mut req = ImageCreate::default();
    if let Some(v) = m.remove("id") {
        let bad = || {
            schema_error(
                &format!(
                    "{} does not match '^([0-9a-fA-F]){{8}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{12}}$'",
                    py_repr(&v)
                ),
                "pattern",
                "schema['properties']['id']",
                "id",
                &v,
            )
        };
        let s = v.as_str().filter(|s| s.len() == 36).ok_or_else(bad)?;
        req.id = Some(s.parse().map_err(|_| bad())?);
    }
    if let Some(v) = m.remove("name") {
        req.name = opt_string("name", &v, Some(255))?;
    }
    if let Some(v) = m.remove("visibility") {
        req.visibility = Some(v.as_str().and_then(Visibility::parse).ok_or_else(|| {
            schema_error(
                &format!(
                    "{} is not one of ['community', 'public', 'private', 'shared']",
                    py_repr(&v)
                ),
                "enum",
                "schema['properties']['visibility']",
                "visibility",
                &v,
            )
        })?);
    }
    if let Some(v) = m.remove("protected") {
        req.protected = boolean("protected", &v)?;
    }
    if let Some(v) = m.remove("os_hidden") {
        req.os_hidden = boolean("os_hidden", &v)?;
    }
    if let Some(v) = m.remove("disk_format") {
        req.disk_format = opt_string("disk_format", &v, None)?;
    }
    if let Some(v) = m.remove("container_format") {
        req.container_format = opt_string("container_format", &v, None)?;
    }
    if let Some(v) = m.remove("min_disk") {
        req.min_disk = integer("min_disk", &v)?;
    }
    if let Some(v) = m.remove("min_ram") {
        req.min_ram = integer("min_ram", &v)?;
    }
    if let Some(v) = m.remove("owner") {
        req.owner = opt_string("owner", &v, Some(255))?.map(ProjectId::from);
    }
    if let Some(v) = m.remove("tags") {
        let tags = v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                schema_error(
                    &format!("{} is not of type 'array' of 'string'", py_repr(&v)),
                    "type",
                    "schema['properties']['tags']",
                    "tags",
                    &v,
                )
            })?;
        req.tags = tags;
    }
    // Everything else is a free-form property; the control layer refuses read-only and
    // reserved names and non-string values.
    req.properties = m.into_iter().collect();
    Ok(req)
}

async fn create(State(state): State<AppState>, Caller(ctx): Caller, req: Request) -> GlanceResult {
    let body = json_body(&state, req).await?;
    let create = parse_create(body)?;
    let img = state.control.image_create(&ctx, create).await?;
    let id = img.id.to_string();
    let mut resp = crate::common::json(StatusCode::CREATED, view(&img));
    if let Some(h) = super::header(&format!("/v2/images/{id}")) {
        resp.headers_mut().insert("location", h);
    }
    // No `OpenStack-image-import-methods` header: Nimbus offers no import method, and
    // Glance omits the header when none is enabled.
    Ok(resp)
}

// ---- PATCH ----

/// Decode a JSON pointer the way Glance accepts it (`_decode_json_pointer`).
fn decode_pointer(pointer: &str) -> Result<Vec<String>, Error> {
    if !pointer.starts_with('/') {
        return Err(Error::invalid(format!(
            "Pointer `{pointer}` does not start with \"/\"."
        )));
    }
    let inner = &pointer[1..];
    // Glance's `/\s*?/`: two slashes with only blanks between them.
    let bytes = inner.as_bytes();
    let adjacent = bytes.iter().enumerate().any(|(i, b)| {
        *b == b'/'
            && bytes[i + 1..]
                .iter()
                .find(|c| !c.is_ascii_whitespace())
                .is_some_and(|c| *c == b'/')
    });
    if adjacent {
        return Err(Error::invalid(format!(
            "Pointer `{pointer}` contains adjacent \"/\"."
        )));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(Error::invalid(format!(
            "Pointer `{pointer}` end with \"/\"."
        )));
    }
    let bad_tilde = pointer
        .char_indices()
        .any(|(i, c)| c == '~' && !matches!(pointer[i + 1..].chars().next(), Some('0' | '1')));
    if bad_tilde {
        return Err(Error::invalid(format!(
            "Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    Ok(inner
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~").trim().to_owned())
        .collect())
}

/// glance `RequestDeserializer.update`: JSON Patch operations → changes.
fn parse_patch(body: Value, draft4: bool) -> Result<Vec<ImageChange>, Error> {
    const OPS: [&str; 3] = ["add", "remove", "replace"];
    let Value::Array(ops) = body else {
        return Err(Error::invalid(
            "Request body must be a JSON array of operation objects.",
        ));
    };
    let mut changes = Vec::with_capacity(ops.len());
    for raw in ops {
        let Value::Object(raw) = raw else {
            return Err(Error::invalid("Operations must be JSON objects."));
        };
        let (op, path) = if draft4 {
            let present: Vec<&str> = OPS
                .iter()
                .copied()
                .filter(|o| raw.contains_key(*o))
                .collect();
            match present.as_slice() {
                [op] => (op.to_string(), raw.get(*op).cloned().unwrap_or(Value::Null)),
                [] => {
                    return Err(Error::invalid(
                        "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                    ));
                }
                _ => {
                    return Err(Error::invalid(
                        "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
                    ));
                }
            }
        } else {
            let op = match raw.get("op") {
                None => {
                    return Err(Error::invalid(
                        "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.",
                    ));
                }
                Some(Value::String(op)) if OPS.contains(&op.as_str()) => op.clone(),
                Some(other) => {
                    let shown = other
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| other.to_string());
                    return Err(Error::invalid(format!(
                        "Invalid operation: `{shown}`. It must be one of the following: add, remove, replace."
                    )));
                }
            };
            let path = raw
                .get("path")
                .cloned()
                .ok_or_else(|| Error::invalid("Unable to find 'path' in JSON Schema change"))?;
            (op, path)
        };
        let pointer = path.as_str().ok_or_else(|| {
            Error::invalid(format!("Pointer `{path}` does not start with \"/\"."))
        })?;
        let segs = decode_pointer(pointer)?;
        let root = segs[0].clone();
        let depth = if root == "locations" && op != "replace" {
            2
        } else {
            1
        };
        if segs.len() != depth {
            return Err(Error::invalid(format!(
                "Invalid JSON pointer for this resource: '/{}'",
                segs.join("/")
            )));
        }
        let change = if op == "remove" {
            ImageChange::Remove { attr: root }
        } else {
            let value = raw.get("value").cloned().ok_or_else(|| {
                Error::invalid(format!(
                    "Operation \"{op}\" requires a member named \"value\"."
                ))
            })?;
            ImageChange::Set {
                attr: root,
                value,
                replace: op == "replace",
            }
        };
        changes.push(change);
    }
    Ok(changes)
}

async fn update(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> GlanceResult {
    let ct = super::media_type(&headers);
    let draft4 = match ct.as_deref() {
        Some(PATCH_V21) => false,
        Some(PATCH_V20) => true,
        other => {
            let mut resp = super::unsupported_media(
                other,
                &format!("Image PATCH expects Content-Type one of: {PATCH_V20}, {PATCH_V21}"),
            );
            if let Some(h) = super::header(&format!("{PATCH_V20}, {PATCH_V21}")) {
                resp.headers_mut().insert("accept-patch", h);
            }
            return Ok(resp);
        }
    };
    let body = json_body(&state, req).await?;
    let changes = parse_patch(body, draft4)?;
    let iid = image_id(&id)?;
    let img = state
        .control
        .image_update(&ctx, iid, changes)
        .await
        .map_err(not_found_as(&id))?;
    Ok(crate::common::json(StatusCode::OK, view(&img)))
}

async fn delete(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
) -> GlanceResult {
    let gone = || Error::not_found(format!("Failed to find image {id} to delete"));
    let iid: ImageId = id.parse().map_err(|_| gone())?;
    state
        .control
        .image_delete(&ctx, iid)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => gone(),
            e => e,
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- tags ----

fn tag_not_found(id: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::NotFound(m) if m.starts_with("Image") => {
            Error::not_found(format!("Image {id} not found."))
        }
        e => e,
    }
}

async fn tag_add(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> GlanceResult {
    if tag.chars().count() > 255 {
        return Err(schema_error(
            &format!("{} is too long", py_repr(&Value::from(tag.as_str()))),
            "maxLength",
            "schema['properties']['tags']['items']",
            "tags",
            &Value::from(tag.as_str()),
        )
        .into());
    }
    let iid = image_id(&id).map_err(tag_not_found(&id))?;
    state
        .control
        .image_tag_add(&ctx, iid, &tag)
        .await
        .map_err(tag_not_found(&id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tag_delete(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path((id, tag)): Path<(String, String)>,
) -> GlanceResult {
    let iid = image_id(&id).map_err(tag_not_found(&id))?;
    state
        .control
        .image_tag_delete(&ctx, iid, &tag)
        .await
        .map_err(tag_not_found(&id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        crate::common::query_pairs(Some(q))
    }

    #[test]
    fn list_parsing() {
        let lr = parse_list(&pairs("id=in:a,b&name=x&limit=5&tag=t1&tag=t2")).unwrap();
        assert_eq!(lr.limit, 5);
        assert_eq!(lr.query.filter.id, Some(vec!["a".into(), "b".into()]));
        assert_eq!(lr.query.filter.name, Some(vec!["x".into()]));
        assert_eq!(lr.query.filter.tags, vec!["t1", "t2"]);
        assert_eq!(parse_list(&[]).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(parse_list(&pairs("limit=5000")).unwrap().limit, MAX_LIMIT);
        for bad in [
            "limit=x",
            "limit=-1",
            "visibility=bogus",
            "os_hidden=maybe",
            "protected=yes",
            "name=foo:bar",
            "sort_key=owner",
            "sort_dir=up",
            "sort=name&sort_key=id",
            "sort_key=name&sort_dir=asc&sort_dir=desc&sort_dir=asc",
            "changes-since=2020-01-01",
            "member_status=weird",
            "size_min=big",
            "created_at=gte:yesterday",
            "id=in:\"a,b",
        ] {
            assert!(parse_list(&pairs(bad)).is_err(), "{bad}");
        }
        let lr = parse_list(&pairs("name=in:\"a,b\",c&os_distro=ubuntu")).unwrap();
        assert_eq!(lr.query.filter.name, Some(vec!["a,b".into(), "c".into()]));
        assert_eq!(lr.query.filter.properties["os_distro"], "ubuntu");
        let lr = parse_list(&pairs("created_at=2020-01-01T00:00:00Z")).unwrap();
        assert_eq!(lr.query.filter.created_at[0].0, CmpOp::Eq);
    }

    #[test]
    fn sorting() {
        let (s, d) = parse_sort(&["name:asc,size"], &[], &[]).unwrap();
        assert_eq!(s, vec![("name".into(), false), ("size".into(), true)]);
        assert!(d);
        let (s, d) = parse_sort(&[], &["name", "size"], &["asc"]).unwrap();
        assert_eq!(s, vec![("name".into(), false), ("size".into(), false)]);
        assert!(!d);
        let (s, d) = parse_sort(&[], &[], &[]).unwrap();
        assert_eq!(s, vec![("created_at".into(), true)]);
        assert!(d);
    }

    #[test]
    fn patch_parsing() {
        let c = parse_patch(
            json!([{"op": "replace", "path": "/name", "value": "x"}, {"op": "remove", "path": "/foo"}]),
            false,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        let c = parse_patch(json!([{"replace": "/name", "value": "x"}]), true).unwrap();
        assert!(matches!(&c[0], ImageChange::Set { attr, replace: true, .. } if attr == "name"));
        for bad in [
            json!({"op": "add"}),
            json!([1]),
            json!([{"op": "test", "path": "/name", "value": 1}]),
            json!([{"op": "move", "from": "/a", "path": "/name"}]),
            json!([{"path": "/name", "value": 1}]),
            json!([{"op": "add", "value": 1}]),
            json!([{"op": "add", "path": "name", "value": 1}]),
            json!([{"op": "add", "path": "/a/b", "value": 1}]),
            json!([{"op": "add", "path": "/a~2", "value": 1}]),
            json!([{"op": "add", "path": "/name"}]),
            json!([{"op": "add", "path": 5, "value": 1}]),
        ] {
            assert!(parse_patch(bad.clone(), false).is_err(), "{bad}");
        }
        assert_eq!(decode_pointer("/a~1b~0c").unwrap(), vec!["a/b~c"]);
    }

    #[test]
    fn encoding() {
        assert_eq!(quote_plus("in:a,b c"), "in%3Aa%2Cb+c");
        assert_eq!(
            urlencode(&[("limit".into(), "2".into()), ("name".into(), "a b".into())]),
            "limit=2&name=a+b"
        );
    }

    #[test]
    fn create_parsing() {
        let c =
            parse_create(json!({"name": "n", "disk_format": "raw", "foo": "bar", "tags": ["a"]}))
                .unwrap();
        assert_eq!(c.name.as_deref(), Some("n"));
        assert_eq!(c.properties["foo"], "bar");
        for bad in [
            json!({"name": 5}),
            json!({"id": "nope"}),
            json!({"visibility": "everyone"}),
            json!({"protected": "yes"}),
            json!({"min_ram": "5"}),
            json!({"min_ram": -1}),
            json!({"tags": "a"}),
            json!({"self": "/x"}),
        ] {
            assert!(parse_create(bad.clone()).is_err(), "{bad}");
        }
    }
}
