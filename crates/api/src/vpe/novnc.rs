//! The vendored noVNC core (`crates/api/assets/novnc/`, see its README for version and
//! licenses), embedded in the binary and served under `/vnc/novnc/`, plus Nimbus's own
//! console script. The browser console loads nothing from outside Nimbus.

/// Embed every listed file under `assets/novnc/`.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/novnc/", $path)) as &[u8])),*]
    };
}

/// `(path under /vnc/novnc/, bytes)` of every file the console may load: the ES modules of
/// noVNC's core and the parts of pako it imports, and the license texts.
pub const FILES: &[(&str, &[u8])] = embed![
    "core/base64.js",
    "core/crypto/aes.js",
    "core/crypto/bigint.js",
    "core/crypto/crypto.js",
    "core/crypto/des.js",
    "core/crypto/dh.js",
    "core/crypto/md5.js",
    "core/crypto/rsa.js",
    "core/decoders/copyrect.js",
    "core/decoders/h264.js",
    "core/decoders/hextile.js",
    "core/decoders/jpeg.js",
    "core/decoders/raw.js",
    "core/decoders/rre.js",
    "core/decoders/tight.js",
    "core/decoders/tightpng.js",
    "core/decoders/zlib.js",
    "core/decoders/zrle.js",
    "core/deflator.js",
    "core/display.js",
    "core/encodings.js",
    "core/inflator.js",
    "core/input/domkeytable.js",
    "core/input/fixedkeys.js",
    "core/input/gesturehandler.js",
    "core/input/keyboard.js",
    "core/input/keysym.js",
    "core/input/keysymdef.js",
    "core/input/util.js",
    "core/input/vkeys.js",
    "core/input/xtscancodes.js",
    "core/ra2.js",
    "core/rfb.js",
    "core/util/browser.js",
    "core/util/cursor.js",
    "core/util/element.js",
    "core/util/events.js",
    "core/util/eventtarget.js",
    "core/util/int.js",
    "core/util/logging.js",
    "core/util/strings.js",
    "core/websock.js",
    "vendor/pako/lib/utils/common.js",
    "vendor/pako/lib/zlib/adler32.js",
    "vendor/pako/lib/zlib/constants.js",
    "vendor/pako/lib/zlib/crc32.js",
    "vendor/pako/lib/zlib/deflate.js",
    "vendor/pako/lib/zlib/gzheader.js",
    "vendor/pako/lib/zlib/inffast.js",
    "vendor/pako/lib/zlib/inflate.js",
    "vendor/pako/lib/zlib/inftrees.js",
    "vendor/pako/lib/zlib/messages.js",
    "vendor/pako/lib/zlib/trees.js",
    "vendor/pako/lib/zlib/zstream.js",
    "LICENSE.txt",
    "AUTHORS",
    "licenses/LICENSE.MPL-2.0",
    "vendor/pako/LICENSE",
];

/// Nimbus's console page script (not part of noVNC), served at `/vnc/console.js`.
pub const CONSOLE_JS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/vpe-console/console.js"
));

/// The console page; `{{CONFIG}}` and `{{TITLE}}` are filled in per request.
pub const CONSOLE_HTML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/vpe-console/console.html"
));

/// A vendored file by its path under `/vnc/novnc/`.
pub fn file(path: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// The content type of a served file.
pub fn content_type(path: &str) -> &'static str {
    if path.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_its_imports_are_embedded() {
        assert!(file("core/rfb.js").is_some_and(|b| b.len() > 10_000));
        assert!(file("vendor/pako/lib/zlib/inflate.js").is_some());
        assert!(file("../Cargo.toml").is_none());
        // Every relative import of every embedded module resolves to an embedded file.
        for (path, bytes) in FILES.iter().filter(|(p, _)| p.ends_with(".js")) {
            let text = std::str::from_utf8(bytes).expect("utf-8");
            // `import ... from './x.js'` (possibly over several lines: the specifier is on
            // the line with `from`).
            for line in text.lines().filter(|l| l.contains("from ")) {
                let after = &line[line.find("from ").unwrap_or(0) + 5..];
                let Some(spec) = after
                    .split(['\'', '"'])
                    .nth(1)
                    .filter(|s| s.starts_with('.'))
                else {
                    continue;
                };
                let mut parts: Vec<&str> = path.split('/').collect();
                parts.pop();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(file(&target).is_some(), "{path} imports missing {target}");
            }
        }
        assert!(CONSOLE_JS.contains("core/rfb.js"));
        assert!(CONSOLE_HTML.contains("{{CONFIG}}"));
    }
}
