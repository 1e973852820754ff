//! `/servers/{id}/stats` and the PNG graphs its URLs point at.
//!
//! The graphs (CPU bar, CPU time series, network bar, network time series) are drawn by
//! Nimbus from the server's recorded samples (`Control::server_metrics`: the last hour of
//! rates) with `plotters` and encoded with `png`.
//!
//! Graph URLs are meant for `<img>` tags, which cannot send `X-Auth-Token`, so they carry a
//! signature instead of a token: `/compute/v2.0/stats/<payload>.<mac>/cpu-bar.png`, where the
//! payload names the server, the caller's project and user and an expiry time
//! ([`GRAPH_URL_TTL`]), and the MAC is HMAC-SHA256 under a key drawn at process start. Such a
//! URL grants read access to that server's graphs only, until it expires; a restart
//! invalidates every outstanding URL (clients fetch `/stats` again).

use super::fault::CyResult;
use super::servers::live_server;
use super::{Cy, PREFIX};
use crate::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use nimbus_model::identity::{Context, ROLE_READER};
use nimbus_model::stats::Point;
use nimbus_model::{Error, ServerId};
use plotters::prelude::*;
use serde_json::json;
use sha2::Sha256;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a graph URL stays valid.
pub const GRAPH_URL_TTL: Duration = Duration::from_secs(3600);
/// How far back the time series look.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// The font the graphs' text is drawn in (DejaVu Sans Mono, see `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

const GRAPHS: &[&str] = &["cpu-bar.png", "cpu-ts.png", "net-bar.png", "net-ts.png"];

pub fn routes() -> Router<AppState> {
    Router::new().route("/compute/v2.0/servers/{id}/stats", get(stats))
}

/// The signed graph URLs: no token (see the module docs).
pub fn graph_routes() -> Router<AppState> {
    Router::new().route("/compute/v2.0/stats/{token}/{graph}", get(graph))
}

fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand_key)
}

fn rand_key() -> [u8; 32] {
    // Two v4 UUIDs: 244 random bits from the OS generator, without another dependency.
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    k
}

fn mac(payload: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key()).expect("HMAC takes any key length");
    m.update(payload.as_bytes());
    m
}

/// Who a graph URL was issued to, and until when.
#[derive(Clone, Debug, PartialEq)]
struct Grant {
    server: ServerId,
    project: String,
    user: String,
    expires: i64,
}

fn sign(g: &Grant) -> String {
    let payload = format!("{}|{}|{}|{}", g.server, g.project, g.user, g.expires);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.as_bytes());
    let tag = hex::encode(mac(&b64).finalize().into_bytes());
    format!("{b64}.{tag}")
}

fn verify(token: &str, now: i64) -> Option<Grant> {
    let (b64, tag) = token.split_once('.')?;
    let tag = hex::decode(tag).ok()?;
    mac(b64).verify_slice(&tag).ok()?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    let payload = String::from_utf8(payload).ok()?;
    let mut parts = payload.split('|');
    let g = Grant {
        server: parts.next()?.parse().ok()?,
        project: parts.next()?.to_owned(),
        user: parts.next()?.to_owned(),
        expires: parts.next()?.parse().ok()?,
    };
    (parts.next().is_none() && g.expires >= now).then_some(g)
}

async fn stats(cy: Cy, Path(id): Path<String>) -> CyResult {
    let s = live_server(&cy, &id).await?;
    let grant = Grant {
        server: s.id,
        project: cy.ctx.project_id.to_string(),
        user: cy.ctx.user_id.to_string(),
        expires: nimbus_model::time::now().timestamp() + GRAPH_URL_TTL.as_secs() as i64,
    };
    let base = format!("{}{PREFIX}/stats/{}", cy.state.public_url(), sign(&grant));
    Ok(crate::common::json(
        StatusCode::OK,
        json!({"stats": {
            "serverRef": s.serial,
            "refresh": cy.control().stats_period().as_secs().max(1),
            "cpuBar": format!("{base}/cpu-bar.png"),
            "cpuTimeSeries": format!("{base}/cpu-ts.png"),
            "netBar": format!("{base}/net-bar.png"),
            "netTimeSeries": format!("{base}/net-ts.png"),
        }}),
    ))
}

async fn graph(
    State(state): State<AppState>,
    Path((token, graph)): Path<(String, String)>,
) -> CyResult {
    if !GRAPHS.contains(&graph.as_str()) {
        return Err(Error::not_found(format!("No graph named {graph}.")).into());
    }
    let grant = verify(&token, nimbus_model::time::now().timestamp())
        .ok_or_else(|| Error::Forbidden("Invalid or expired graph URL.".into()))?;
    // The signature stands for the token: read-only access as the user it was issued to.
    let ctx = Context {
        user_id: grant.user.as_str().into(),
        user_name: String::new(),
        project_id: grant.project.as_str().into(),
        project_name: String::new(),
        roles: vec![ROLE_READER.into()],
        request_id: nimbus_model::request_id(),
    };
    let c = &state.control;
    let server = c.server_get(&ctx, grant.server).await?;
    let points = c.server_metrics(&ctx, grant.server, WINDOW).await?;
    let now = nimbus_model::time::now();
    let name = server.name.clone();
    let png = tokio::task::spawn_blocking(move || render(&graph, &name, &points, now))
        .await
        .map_err(|e| Error::internal(format!("graph task: {e}")))??;
    let mut resp = (StatusCode::OK, png).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

// ---- drawing ----

const BAR_SIZE: (u32, u32) = (360, 64);
const TS_SIZE: (u32, u32) = (640, 260);
const CPU_COLOUR: RGBColor = RGBColor(0x2f, 0x6f, 0xa8);
const RX_COLOUR: RGBColor = RGBColor(0x2e, 0x9e, 0x4f);
const TX_COLOUR: RGBColor = RGBColor(0xd0, 0x7a, 0x1c);
const GRID: RGBColor = RGBColor(0xe4, 0xe8, 0xec);

fn font_ready() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if plotters::style::register_font("sans-serif", style, FONT).is_err() {
                tracing::error!("the bundled graph font could not be loaded");
            }
        }
    });
}

fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::internal(format!("drawing a graph: {e:?}"))
}

/// Render one graph as PNG bytes.
pub fn render(
    graph: &str,
    name: &str,
    points: &[Point],
    now: nimbus_model::time::Timestamp,
) -> Result<Vec<u8>, Error> {
    font_ready();
    let (w, h) = if graph.ends_with("-bar.png") {
        BAR_SIZE
    } else {
        TS_SIZE
    };
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        match graph {
            "cpu-bar.png" => cpu_bar(&root, points)?,
            "net-bar.png" => net_bar(&root, points)?,
            "cpu-ts.png" => cpu_series(&root, name, points, now)?,
            _ => net_series(&root, name, points, now)?,
        }
        root.present().map_err(draw_err)?;
    }
    encode_png(&buf, w, h)
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(draw_err)?;
    writer.write_image_data(rgb).map_err(draw_err)?;
    writer.finish().map_err(draw_err)?;
    Ok(out)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Bytes per second in a short human form.
fn rate(bps: f64) -> String {
    if bps >= 1e6 {
        format!("{:.1} MB/s", bps / 1e6)
    } else if bps >= 1e3 {
        format!("{:.1} kB/s", bps / 1e3)
    } else {
        format!("{bps:.0} B/s")
    }
}

/// One labelled horizontal bar filled to `fraction` (0–1), in the band `y0..y1`.
fn bar(
    root: &Area<'_>,
    y0: i32,
    y1: i32,
    label: &str,
    fraction: f64,
    colour: RGBColor,
) -> Result<(), Error> {
    let (w, _) = root.dim_in_pixel();
    let (left, right) = (110, w as i32 - 8);
    let style = ("sans-serif", 13).into_font().color(&BLACK);
    root.draw(&Text::new(label.to_owned(), (6, y0 + 2), style))
        .map_err(draw_err)?;
    root.draw(&Rectangle::new([(left, y0), (right, y1)], GRID.filled()))
        .map_err(draw_err)?;
    let filled = left + ((right - left) as f64 * fraction.clamp(0.0, 1.0)).round() as i32;
    if filled > left {
        root.draw(&Rectangle::new([(left, y0), (filled, y1)], colour.filled()))
            .map_err(draw_err)?;
    }
    Ok(())
}

fn cpu_bar(root: &Area<'_>, points: &[Point]) -> Result<(), Error> {
    match points.last() {
        Some(p) => bar(
            root,
            22,
            44,
            &format!("CPU {:>5.1}%", p.cpu_percent),
            p.cpu_percent / 100.0,
            CPU_COLOUR,
        ),
        None => bar(root, 22, 44, "CPU  no data", 0.0, CPU_COLOUR),
    }
}

fn net_bar(root: &Area<'_>, points: &[Point]) -> Result<(), Error> {
    // Scaled to the busiest moment of the window, so the bars compare now with recently.
    let peak = points
        .iter()
        .map(|p| p.net_rx_bps.max(p.net_tx_bps))
        .fold(0.0f64, f64::max);
    let (rx, tx) = points
        .last()
        .map(|p| (p.net_rx_bps, p.net_tx_bps))
        .unwrap_or((0.0, 0.0));
    let frac = |v: f64| if peak > 0.0 { v / peak } else { 0.0 };
    let label = |dir: &str, v: f64| {
        if points.is_empty() {
            format!("{dir} no data")
        } else {
            format!("{dir} {}", rate(v))
        }
    };
    bar(root, 8, 28, &label("in ", rx), frac(rx), RX_COLOUR)?;
    bar(root, 36, 56, &label("out", tx), frac(tx), TX_COLOUR)
}

/// Minutes before `now` of each point.
fn minutes_ago(p: &Point, now: nimbus_model::time::Timestamp) -> f64 {
    -((now - p.at).num_milliseconds() as f64 / 60_000.0)
}

fn x_range(points: &[Point], now: nimbus_model::time::Timestamp) -> std::ops::Range<f64> {
    let first = points
        .first()
        .map(|p| minutes_ago(p, now))
        .unwrap_or(-1.0)
        .min(-1.0);
    first..0.0
}

/// An x-axis label: minutes before now, with a decimal when the window is short.
fn minutes_label(x: f64, span: f64) -> String {
    let m = -x;
    if m.abs() < 1e-9 {
        "0".to_owned()
    } else if span < 5.0 {
        format!("{m:.1}")
    } else {
        format!("{m:.0}")
    }
}

fn cpu_series(
    root: &Area<'_>,
    name: &str,
    points: &[Point],
    now: nimbus_model::time::Timestamp,
) -> Result<(), Error> {
    let range = x_range(points, now);
    let span = -range.start;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("CPU usage (%) - {name}"), ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(40)
        .build_cartesian_2d(range, 0f64..100f64)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .x_labels(7)
        .y_labels(6)
        .x_desc("minutes ago")
        .x_label_formatter(&|x| minutes_label(*x, span))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(draw_err)?;
    if points.is_empty() {
        return no_data(root);
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (minutes_ago(p, now), p.cpu_percent)),
            CPU_COLOUR.stroke_width(2),
        ))
        .map_err(draw_err)?;
    Ok(())
}

fn net_series(
    root: &Area<'_>,
    name: &str,
    points: &[Point],
    now: nimbus_model::time::Timestamp,
) -> Result<(), Error> {
    let peak_kb = points
        .iter()
        .map(|p| p.net_rx_bps.max(p.net_tx_bps) / 1e3)
        .fold(0.0f64, f64::max);
    let top = if peak_kb > 0.0 { peak_kb * 1.15 } else { 1.0 };
    let range = x_range(points, now);
    let span = -range.start;
    let mut chart = ChartBuilder::on(root)
        .caption(format!("Network (kB/s) - {name}"), ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(52)
        .build_cartesian_2d(range, 0f64..top)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .x_labels(7)
        .y_labels(6)
        .x_desc("minutes ago")
        .x_label_formatter(&|x| minutes_label(*x, span))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(draw_err)?;
    if points.is_empty() {
        return no_data(root);
    }
    for (label, colour, pick) in [
        (
            "in",
            RX_COLOUR,
            (|p: &Point| p.net_rx_bps) as fn(&Point) -> f64,
        ),
        ("out", TX_COLOUR, |p: &Point| p.net_tx_bps),
    ] {
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (minutes_ago(p, now), pick(p) / 1e3)),
                colour.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(GRID)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn no_data(root: &Area<'_>) -> Result<(), Error> {
    let (w, h) = root.dim_in_pixel();
    let style = ("sans-serif", 16)
        .into_font()
        .color(&RGBColor(0x80, 0x88, 0x90));
    root.draw(&Text::new(
        "no samples yet".to_owned(),
        (w as i32 / 2 - 60, h as i32 / 2),
        style,
    ))
    .map_err(draw_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let g = Grant {
            server: ServerId::new(),
            project: "p1".into(),
            user: "u1".into(),
            expires: 2_000,
        };
        let t = sign(&g);
        assert_eq!(verify(&t, 1_000), Some(g.clone()));
        assert_eq!(verify(&t, 2_001), None, "expired");
        let (payload, tag) = t.split_once('.').unwrap();
        let forged = sign(&Grant {
            project: "p2".into(),
            ..g
        });
        let (other_payload, _) = forged.split_once('.').unwrap();
        assert_eq!(verify(&format!("{other_payload}.{tag}"), 0), None);
        assert_eq!(verify(&format!("{payload}.00"), 0), None);
        assert_eq!(verify("garbage", 0), None);
    }

    fn points(n: usize) -> Vec<Point> {
        let now = nimbus_model::time::now();
        (0..n)
            .map(|i| Point {
                at: now - chrono::Duration::seconds(10 * (n - i) as i64),
                cpu_percent: 10.0 + i as f64,
                mem_used_mb: 100,
                mem_percent: 10.0,
                disk_read_bps: 0.0,
                disk_write_bps: 0.0,
                net_rx_bps: 20_000.0 + i as f64 * 100.0,
                net_tx_bps: 10_000.0,
            })
            .collect()
    }

    #[test]
    fn graphs_are_pngs() {
        let now = nimbus_model::time::now();
        for g in GRAPHS {
            for pts in [points(0), points(1), points(30)] {
                let png = render(g, "web-1", &pts, now).unwrap();
                assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{g}");
                let dec = png::Decoder::new(std::io::Cursor::new(&png));
                let reader = dec.read_info().unwrap();
                let (w, h) = if g.ends_with("-bar.png") {
                    BAR_SIZE
                } else {
                    TS_SIZE
                };
                assert_eq!((reader.info().width, reader.info().height), (w, h));
            }
        }
        assert_eq!(rate(1500.0), "1.5 kB/s");
        assert_eq!(rate(2_500_000.0), "2.5 MB/s");
        assert_eq!(rate(12.0), "12 B/s");
        assert_eq!(minutes_label(-0.0, 60.0), "0");
        assert_eq!(minutes_label(-30.0, 60.0), "30");
        assert_eq!(minutes_label(-0.5, 1.0), "0.5");
    }
}
