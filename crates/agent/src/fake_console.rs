//! A minimal RFB (VNC) server for the fake driver, so a console request answers with a
//! host, port and password that a real VNC client can open even though there is no guest.
//!
//! Each console request opens a fresh listener on `127.0.0.1` (a free port) that accepts
//! connections for [`LISTEN_WINDOW`], like a vncauthproxy forwarding: after that the
//! password is useless. A session speaks RFB 3.3, 3.7 or 3.8 with VNC authentication (DES
//! challenge/response with the temporary password), then serves a static placeholder screen:
//! the server's host name drawn in a built-in 5×7 bitmap font on a plain background, in raw
//! encoding and whatever true-colour pixel format the client asks for. Sessions end when the
//! client leaves, when the server is destroyed, or after [`SESSION_LIMIT`].

use des::Des;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long a console's port accepts new connections.
pub const LISTEN_WINDOW: Duration = Duration::from_secs(60);
/// The longest a session lasts.
pub const SESSION_LIMIT: Duration = Duration::from_secs(30 * 60);
/// A client silent this long is dropped.
const IDLE_LIMIT: Duration = Duration::from_secs(10 * 60);

pub const WIDTH: u16 = 640;
pub const HEIGHT: u16 = 400;

/// A console that is listening.
#[derive(Clone, Debug)]
pub struct Opened {
    pub host: String,
    pub port: u16,
    pub password: String,
}

/// An RGB frame.
#[derive(Clone, Debug)]
pub struct Screen {
    pub width: u16,
    pub height: u16,
    /// Row-major RGB triples.
    pub pixels: Vec<[u8; 3]>,
}

impl Screen {
    fn new(width: u16, height: u16, bg: [u8; 3]) -> Self {
        Screen {
            width,
            height,
            pixels: vec![bg; width as usize * height as usize],
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..(y + h).min(self.height as usize) {
            for xx in x..(x + w).min(self.width as usize) {
                self.pixels[yy * self.width as usize + xx] = c;
            }
        }
    }

    /// Draw `text` with the built-in font, each font pixel `scale`×`scale`, centred
    /// horizontally on row `y`.
    fn text_centered(&mut self, text: &str, y: usize, scale: usize, c: [u8; 3]) {
        let max_chars = (self.width as usize / (6 * scale)).max(1);
        let text: String = text.chars().take(max_chars).collect();
        let w = text.chars().count() * 6 * scale;
        let x0 = (self.width as usize).saturating_sub(w) / 2;
        for (i, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            for (ry, bits) in rows.iter().enumerate() {
                for rx in 0..5 {
                    if bits & (0x10 >> rx) != 0 {
                        self.fill(x0 + (i * 6 + rx) * scale, y + ry * scale, scale, scale, c);
                    }
                }
            }
        }
    }
}

/// The placeholder screen: a title bar, the server's name, and a note that no guest runs.
pub fn placeholder(name: &str) -> Screen {
    let mut s = Screen::new(WIDTH, HEIGHT, [0x1e, 0x2a, 0x38]);
    s.fill(0, 0, WIDTH as usize, 36, [0x2f, 0x6f, 0xa8]);
    s.text_centered("NIMBUS CONSOLE", 8, 3, [0xff, 0xff, 0xff]);
    s.text_centered(name, 170, 5, [0xf0, 0xc0, 0x40]);
    s.text_centered(
        "SIMULATED SERVER (FAKE DRIVER): NO GUEST",
        300,
        2,
        [0xc8, 0xd0, 0xd8],
    );
    s
}

/// The 5×7 glyph of `c` (rows top to bottom, bit 4 leftmost). Lower case draws as upper
/// case; characters without a glyph draw as `?`.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}

/// A temporary VNC password: 8 characters (VNC authentication uses at most 8).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The client's answer to a VNC authentication challenge: the challenge encrypted with DES
/// (ECB, two blocks), keyed by the password's first 8 bytes (zero-padded) with the bits of
/// each byte reversed, as RFB specifies.
pub fn vnc_auth_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.as_bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = Des::new(GenericArray::from_slice(&key));
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

/// Open a console showing `name`: a listener on a free loopback port, accepting for
/// [`LISTEN_WINDOW`]. Sessions stop when `stop` changes or its sender is dropped (the
/// server was destroyed).
pub async fn open(name: &str, stop: watch::Receiver<bool>) -> std::io::Result<Opened> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let password = generate_password();
    let screen = Arc::new(placeholder(name));
    let desktop = name.to_owned();
    let pw = password.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + LISTEN_WINDOW;
        loop {
            let mut stop_rx = stop.clone();
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop_rx.changed() => break,
            };
            let Ok((conn, peer)) = accepted else { continue };
            let _ = conn.set_nodelay(true);
            let (screen, pw, desktop, mut stop_rx) =
                (screen.clone(), pw.clone(), desktop.clone(), stop.clone());
            tokio::spawn(async move {
                let session = serve(conn, &pw, &desktop, &screen);
                tokio::select! {
                    r = tokio::time::timeout(SESSION_LIMIT, session) => {
                        if let Ok(Err(e)) = r {
                            tracing::debug!(%peer, error = %e, "fake console session ended");
                        }
                    }
                    _ = stop_rx.changed() => {}
                }
            });
        }
    });
    Ok(Opened {
        host: "127.0.0.1".into(),
        port,
        password,
    })
}

/// A client's pixel format (RFB §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PixelFormat {
    bits_per_pixel: u8,
    depth: u8,
    big_endian: bool,
    true_colour: bool,
    max: [u16; 3],
    shift: [u8; 3],
}

impl PixelFormat {
    /// What the server announces: 32-bit little-endian xRGB.
    const SERVER: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        max: [255, 255, 255],
        shift: [16, 8, 0],
    };

    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = self.big_endian as u8;
        b[3] = self.true_colour as u8;
        b[4..6].copy_from_slice(&self.max[0].to_be_bytes());
        b[6..8].copy_from_slice(&self.max[1].to_be_bytes());
        b[8..10].copy_from_slice(&self.max[2].to_be_bytes());
        b[10..13].copy_from_slice(&self.shift);
        b
    }

    fn decode(b: &[u8; 16]) -> Self {
        PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            max: [
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]),
                u16::from_be_bytes([b[8], b[9]]),
            ],
            shift: [b[10], b[11], b[12]],
        }
    }

    fn usable(&self) -> bool {
        self.true_colour
            && matches!(self.bits_per_pixel, 8 | 16 | 32)
            && self.shift.iter().all(|s| *s < 32)
    }

    fn put(&self, out: &mut Vec<u8>, rgb: [u8; 3]) {
        let mut v: u32 = 0;
        for ((c, max), shift) in rgb.iter().zip(self.max).zip(self.shift) {
            v |= (*c as u32 * max as u32 / 255) << shift;
        }
        match (self.bits_per_pixel, self.big_endian) {
            (8, _) => out.push(v as u8),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

fn proto_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> std::io::Result<()> {
    match tokio::time::timeout(IDLE_LIMIT, s.read_exact(buf)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client idle",
        )),
    }
}

/// One RFB session over `conn`.
pub async fn serve<S>(
    mut conn: S,
    password: &str,
    desktop: &str,
    screen: &Screen,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    read_exact(&mut conn, &mut version).await?;
    let minor = parse_version(&version).ok_or_else(|| proto_err("not an RFB client"))?;
    // Security: only VNC authentication (type 2) is offered.
    if minor >= 7 {
        conn.write_all(&[1, 2]).await?;
        let mut chosen = [0u8; 1];
        read_exact(&mut conn, &mut chosen).await?;
        if chosen[0] != 2 {
            return fail(&mut conn, minor, "Only VNC authentication is supported.").await;
        }
    } else {
        conn.write_all(&2u32.to_be_bytes()).await?;
    }
    let mut challenge = [0u8; 16];
    rand::thread_rng().fill(&mut challenge);
    conn.write_all(&challenge).await?;
    let mut response = [0u8; 16];
    read_exact(&mut conn, &mut response).await?;
    if response != vnc_auth_response(password, &challenge) {
        return fail(&mut conn, minor, "Authentication failed.").await;
    }
    conn.write_all(&0u32.to_be_bytes()).await?;
    let mut shared = [0u8; 1];
    read_exact(&mut conn, &mut shared).await?;

    let mut init = Vec::with_capacity(24 + desktop.len());
    init.extend_from_slice(&screen.width.to_be_bytes());
    init.extend_from_slice(&screen.height.to_be_bytes());
    init.extend_from_slice(&PixelFormat::SERVER.encode());
    init.extend_from_slice(&(desktop.len() as u32).to_be_bytes());
    init.extend_from_slice(desktop.as_bytes());
    conn.write_all(&init).await?;

    let mut format = PixelFormat::SERVER;
    loop {
        let mut kind = [0u8; 1];
        read_exact(&mut conn, &mut kind).await?;
        match kind[0] {
            0 => {
                // SetPixelFormat
                let mut b = [0u8; 19];
                read_exact(&mut conn, &mut b).await?;
                let mut pf = [0u8; 16];
                pf.copy_from_slice(&b[3..19]);
                let pf = PixelFormat::decode(&pf);
                if !pf.usable() {
                    return Err(proto_err(format!("unsupported pixel format {pf:?}")));
                }
                format = pf;
            }
            2 => {
                // SetEncodings: raw is always understood, so the list does not matter.
                let mut b = [0u8; 3];
                read_exact(&mut conn, &mut b).await?;
                let n = u16::from_be_bytes([b[1], b[2]]) as usize;
                let mut encodings = vec![0u8; n * 4];
                read_exact(&mut conn, &mut encodings).await?;
            }
            3 => {
                // FramebufferUpdateRequest. The screen never changes, so an incremental
                // request has nothing to report and gets no answer until a full one comes.
                let mut b = [0u8; 9];
                read_exact(&mut conn, &mut b).await?;
                if b[0] != 0 {
                    continue;
                }
                let x = u16::from_be_bytes([b[1], b[2]]).min(screen.width);
                let y = u16::from_be_bytes([b[3], b[4]]).min(screen.height);
                let w = u16::from_be_bytes([b[5], b[6]]).min(screen.width - x);
                let h = u16::from_be_bytes([b[7], b[8]]).min(screen.height - y);
                conn.write_all(&update(screen, &format, x, y, w, h)).await?;
            }
            4 => {
                // KeyEvent: there is no guest to type into.
                let mut b = [0u8; 7];
                read_exact(&mut conn, &mut b).await?;
            }
            5 => {
                // PointerEvent
                let mut b = [0u8; 5];
                read_exact(&mut conn, &mut b).await?;
            }
            6 => {
                // ClientCutText
                let mut b = [0u8; 7];
                read_exact(&mut conn, &mut b).await?;
                let n = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
                if n > 1 << 20 {
                    return Err(proto_err("cut text too long"));
                }
                let mut text = vec![0u8; n];
                read_exact(&mut conn, &mut text).await?;
            }
            other => return Err(proto_err(format!("unknown client message {other}"))),
        }
    }
}

/// `RFB 003.00x\n` → minor version (3, 7 or 8; unknown minors below 7 count as 3).
fn parse_version(v: &[u8; 12]) -> Option<u8> {
    let s = std::str::from_utf8(v).ok()?;
    let rest = s.strip_prefix("RFB 003.")?.strip_suffix('\n')?;
    let minor: u32 = rest.parse().ok()?;
    Some(match minor {
        m if m >= 8 => 8,
        7 => 7,
        _ => 3,
    })
}

async fn fail<S: AsyncWrite + Unpin>(conn: &mut S, minor: u8, reason: &str) -> std::io::Result<()> {
    conn.write_all(&1u32.to_be_bytes()).await?;
    if minor >= 8 {
        conn.write_all(&(reason.len() as u32).to_be_bytes()).await?;
        conn.write_all(reason.as_bytes()).await?;
    }
    conn.flush().await?;
    Err(proto_err(reason))
}

/// A FramebufferUpdate with one raw rectangle.
fn update(screen: &Screen, format: &PixelFormat, x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
    let bytes = format.bits_per_pixel as usize / 8;
    let mut out = Vec::with_capacity(16 + w as usize * h as usize * bytes);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&1u16.to_be_bytes());
    for v in [x, y, w, h] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&0i32.to_be_bytes());
    for row in y..y + h {
        let start = row as usize * screen.width as usize;
        for px in &screen.pixels[start + x as usize..start + (x + w) as usize] {
            format.put(&mut out, *px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnc_auth_matches_an_independent_des() {
        // `openssl enc -des-ecb -nopad -K 7696b646aece0000` of bytes 0..16: the key is
        // "nimbus" zero-padded with every byte's bits reversed.
        let challenge: [u8; 16] = std::array::from_fn(|i| i as u8);
        let want = "97d557d090d94ff3bc62013cb4fb9d78";
        let got: String = vnc_auth_response("nimbus", &challenge)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want);
        // Only the first 8 bytes of a password count.
        assert_eq!(
            vnc_auth_response("12345678abc", &challenge),
            vnc_auth_response("12345678", &challenge)
        );
    }

    #[test]
    fn pixel_formats() {
        let mut out = Vec::new();
        PixelFormat::SERVER.put(&mut out, [0x11, 0x22, 0x33]);
        assert_eq!(out, vec![0x33, 0x22, 0x11, 0x00]);
        let rgb565 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            max: [31, 63, 31],
            shift: [11, 5, 0],
        };
        let mut out = Vec::new();
        rgb565.put(&mut out, [255, 255, 255]);
        assert_eq!(out, vec![0xff, 0xff]);
        assert_eq!(PixelFormat::decode(&rgb565.encode()), rgb565);
        assert!(
            !PixelFormat {
                true_colour: false,
                ..rgb565
            }
            .usable()
        );
        assert_eq!(parse_version(b"RFB 003.008\n"), Some(8));
        assert_eq!(parse_version(b"RFB 003.889\n"), Some(8));
        assert_eq!(parse_version(b"RFB 003.003\n"), Some(3));
        assert_eq!(parse_version(b"HTTP/1.1 200"), None);
    }

    #[test]
    fn placeholder_draws_the_name() {
        let s = placeholder("web-1");
        assert_eq!(s.pixels.len(), WIDTH as usize * HEIGHT as usize);
        let name_colour = [0xf0, 0xc0, 0x40];
        assert!(s.pixels.iter().filter(|p| **p == name_colour).count() > 100);
    }

    #[tokio::test]
    async fn wrong_password_is_refused() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let screen = placeholder("x");
        let task = tokio::spawn(async move { serve(server, "right", "x", &screen).await });
        let mut v = [0u8; 12];
        client.read_exact(&mut v).await.unwrap();
        client.write_all(b"RFB 003.008\n").await.unwrap();
        let mut types = [0u8; 2];
        client.read_exact(&mut types).await.unwrap();
        assert_eq!(types, [1, 2]);
        client.write_all(&[2]).await.unwrap();
        let mut challenge = [0u8; 16];
        client.read_exact(&mut challenge).await.unwrap();
        client
            .write_all(&vnc_auth_response("wrong", &challenge))
            .await
            .unwrap();
        let mut result = [0u8; 4];
        client.read_exact(&mut result).await.unwrap();
        assert_eq!(u32::from_be_bytes(result), 1);
        assert!(task.await.unwrap().is_err());
    }
}
