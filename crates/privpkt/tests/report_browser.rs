//! report.html in a real browser: a tiny `privpkt experiment` runs, then Debian's Chromium,
//! driven headless through chromedriver's W3C WebDriver API, opens the page it wrote. The test
//! checks what a reader gets rather than the HTML text: every number of the summary and per-cell
//! tables as the browser shows it equals `results.json`'s in the report's one format, every plot
//! lays out at a real size with many drawn elements, nothing is fetched, and the screenshot has
//! coloured plot lines where the trade-off plot is.
//!
//! Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install chromium chromium-driver`):
//! without them the test says so and passes, except under CI (env `CI` set), where it fails.
//! The screenshots land in `target/tmp/` (report-screenshot.png, report-fullpage.png).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

mod common;
#[path = "../src/results.rs"]
#[allow(dead_code)]
mod results;

use results::{fmt3, Results, Stat};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WINDOW: (u32, u32) = (1400, 2000);

/// chromedriver and its browser session, both ended on drop (also when an assertion fails).
struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
    agent: ureq::Agent,
    log: PathBuf,
}

impl Driver {
    fn start(tmp: &Path) -> Driver {
        // A free port: bind, read it, release it for chromedriver.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let log = tmp.join("chromedriver.log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(90)))
            .build();
        let mut d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            agent: ureq::Agent::new_with_config(config),
            log,
        };
        let t0 = Instant::now();
        loop {
            if let Ok(v) = d.call("GET", "/status", None) {
                if v["ready"] == json!(true) {
                    break;
                }
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("chromedriver exited at start ({st}); log:\n{}", d.log_text());
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver not ready in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tmp.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                ]
            }
        }}});
        let v = d
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("{e}\nchromedriver log:\n{}", d.log_text()));
        d.session = Some(v["sessionId"].as_str().expect("a session id").to_string());
        d
    }

    fn log_text(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        t[t.len().saturating_sub(4000)..].to_string()
    }

    /// One WebDriver command; its `value`, or the driver's error message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut resp = resp.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(512 << 20)
            .read_to_string()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: HTTP {status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    /// A command on the session.
    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let id = self.session.as_deref().expect("a session");
        self.call(method, &format!("/session/{id}{path}"), body)
            .unwrap_or_else(|e| panic!("{e}\nchromedriver log:\n{}", self.log_text()))
    }

    fn script(&self, js: &str) -> Value {
        self.session("POST", "/execute/sync", Some(json!({"script": js, "args": []})))
    }

    fn screenshot(&self) -> Vec<u8> {
        let b64 = self.session("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("the screenshot is base64")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self.call("DELETE", &format!("/session/{id}"), None);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `file://` URL of an absolute path (bytes outside the unreserved set percent-encoded).
fn file_url(p: &Path) -> String {
    let mut u = String::from("file://");
    for b in p.to_str().expect("a UTF-8 path").bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            u.push(b as char);
        } else {
            u.push_str(&format!("%{b:02X}"));
        }
    }
    u
}

/// What a reader must find on the page: (`row:<i>` or `cell:<id>`, metric) → fmt3 text, for
/// every number of the summary, per-class and per-cell tables in results.json.
fn expected_numbers(r: &Results) -> BTreeMap<(String, String), String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, metric: String, v: f64| {
        m.insert((k.to_string(), metric), fmt3(v));
    };
    for (i, s) in r.summary.iter().enumerate() {
        let k = format!("row:{i}");
        let several = s.seeds.len() > 1;
        let mut stat = |name: &str, attack: Option<&str>, st: Stat| {
            let (mean, std) = match attack {
                Some(a) => (format!("{name}:{a}"), format!("{name}_std:{a}")),
                None => (name.to_string(), format!("{name}_std")),
            };
            put(&k, mean, st.mean);
            if several {
                put(&k, std, st.std);
            }
        };
        stat("macro_f1", None, s.macro_f1);
        stat("flow_macro_f1", None, s.flow_macro_f1);
        stat("accuracy", None, s.accuracy);
        for a in &s.attacks {
            stat("auc", Some(&a.attack), a.auc);
            stat("tpr1", Some(&a.attack), a.tpr_at_1pct_fpr);
        }
        if let Some(e) = s.epsilon {
            put(&k, "epsilon".into(), e);
        }
    }
    for c in &r.cells {
        let k = format!("cell:{}", c.id);
        let u = &c.utility;
        put(&k, "macro_f1".into(), u.macro_f1);
        put(&k, "flow_macro_f1".into(), u.flow_macro_f1);
        put(&k, "accuracy".into(), u.accuracy);
        put(&k, "baseline_macro_f1".into(), u.baseline_macro_f1);
        put(&k, "train_seconds".into(), c.train_seconds);
        put(&k, "attack_seconds".into(), c.attack_seconds);
        if let Some(p) = &c.privacy {
            put(&k, "epsilon".into(), p.epsilon);
            put(&k, "sigma".into(), p.sigma);
        }
        for a in &c.attacks {
            put(&k, format!("auc:{}", a.attack), a.auc);
            put(&k, format!("tpr1:{}", a.attack), a.tpr_at_1pct_fpr);
        }
        for (class, f1) in r.data.classes.iter().zip(&u.per_class_f1) {
            put(&k, format!("f1:{class}"), *f1);
        }
    }
    m
}

/// Everything the checks need, read from the live page in one script.
const PROBE: &str = r#"
const metrics = [...document.querySelectorAll('[data-metric]')].map(e => [
  e.hasAttribute('data-row') ? 'row:' + e.getAttribute('data-row') : 'cell:' + e.getAttribute('data-cell'),
  e.getAttribute('data-metric'), e.textContent]);
const plots = [...document.querySelectorAll('figure.plot')].map(f => {
  const svgs = f.querySelectorAll('svg');
  const s = svgs[0];
  const r = s ? s.getBoundingClientRect() : {left: 0, top: 0, width: 0, height: 0};
  return {id: f.id, svgs: svgs.length, left: r.left, top: r.top, width: r.width, height: r.height,
    drawn: s ? s.querySelectorAll('path,polyline,polygon,circle,rect,line,text').length : 0,
    caption: (f.querySelector('figcaption') || {textContent: ''}).textContent};
});
const refs = [...document.querySelectorAll('[src],[href]')]
  .map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => !u.startsWith('#'));
return {title: document.title, h1: document.querySelector('h1').textContent, metrics, plots, refs,
  scripts: document.scripts.length, resources: performance.getEntriesByType('resource').length,
  sections: [...document.querySelectorAll('h2')].map(h => h.textContent),
  innerWidth: window.innerWidth, innerHeight: window.innerHeight, dpr: window.devicePixelRatio,
  scrollHeight: document.documentElement.scrollHeight};
"#;

/// Decoded screenshot: width, height, RGB(A) pixels and bytes per pixel.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>, usize) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("the screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG pixels");
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit screenshot");
    let bpp = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf, bpp)
}

/// Pixels in `rect` (x0, y0, x1, y1) clearly coloured (not grey, black or white): plot lines.
fn coloured_pixels(w: u32, h: u32, px: &[u8], bpp: usize, rect: (u32, u32, u32, u32)) -> usize {
    let mut n = 0;
    for y in rect.1..rect.3.min(h) {
        for x in rect.0..rect.2.min(w) {
            let i = (y as usize * w as usize + x as usize) * bpp;
            let (r, g, b) = (px[i] as i32, px[i + 1] as i32, px[i + 2] as i32);
            if r.max(g).max(b) - r.min(g).min(b) > 60 {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn report_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        let msg = format!(
            "report browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}; CI is set, so this is a failure");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.toml");
    std::fs::write(&plan, common::TINY_PLAN).unwrap();
    let out = tmp.path().join("exp");
    common::ok(&common::privpkt(
        &["experiment", "plan.toml", "--out", "exp"],
        tmp.path(),
    ));
    let experiment_s = t0.elapsed().as_secs_f64();
    let results: Results =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).expect("results.json parses");
    assert_eq!(results.cells.len(), 8, "the plan has eight cells");
    assert!(
        results.summary.iter().any(|s| s.epsilon.is_some()),
        "a DP configuration"
    );
    let report = out.join("report.html");
    assert!(report.exists(), "the experiment writes report.html");

    let t1 = Instant::now();
    let driver = Driver::start(tmp.path());
    driver.session("POST", "/url", Some(json!({"url": file_url(&report)})));
    let page = driver.script(PROBE);

    // Escaped in the HTML, shown as written.
    assert_eq!(page["title"], json!(results.title));
    assert_eq!(page["h1"], json!(results.title));
    // Self-contained: no scripts, no fetched resource, no link off the page.
    assert_eq!(page["scripts"], json!(0), "no scripts");
    assert_eq!(page["resources"], json!(0), "nothing fetched");
    assert_eq!(page["refs"], json!([]), "only in-page links");
    let sections: Vec<&str> = page["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for s in ["At a glance", "Summary", "Cells", "How to read this"] {
        assert!(sections.contains(&s), "section {s} in {sections:?}");
    }

    // Every number, exactly, and nothing else.
    let mut shown: BTreeMap<(String, String), String> = BTreeMap::new();
    for m in page["metrics"].as_array().unwrap() {
        let key = (m[0].as_str().unwrap().to_string(), m[1].as_str().unwrap().to_string());
        let text = m[2].as_str().unwrap().to_string();
        assert!(shown.insert(key.clone(), text).is_none(), "{key:?} shown twice");
    }
    let expected = expected_numbers(&results);
    for (key, want) in &expected {
        assert_eq!(shown.get(key), Some(want), "{key:?} on the page vs results.json");
    }
    for key in shown.keys() {
        assert!(
            expected.contains_key(key),
            "{key:?} on the page is not a results.json number"
        );
    }

    // Plots: laid out at a real size, with their drawing inside.
    let plots = page["plots"].as_array().unwrap();
    let ids: Vec<&str> = plots.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["plot-tradeoff", "plot-curves", "plot-roc", "plot-confusion"]);
    for p in plots {
        let (w, h, drawn) = (
            p["width"].as_f64().unwrap(),
            p["height"].as_f64().unwrap(),
            p["drawn"].as_u64().unwrap(),
        );
        assert_eq!(p["svgs"], json!(1), "{}: one inline svg", p["id"]);
        assert!(w > 400.0 && h > 250.0, "{}: laid out at {w}×{h}", p["id"]);
        assert!(drawn > 60, "{}: only {drawn} drawn elements", p["id"]);
        assert!(p["caption"].as_str().unwrap().len() > 40, "{}: a caption", p["id"]);
    }

    // The screenshot: the requested window, with the trade-off plot's coloured lines in it.
    let png_bytes = driver.screenshot();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join("report-screenshot.png"), &png_bytes).unwrap();
    let (w, h, px, bpp) = decode_png(&png_bytes);
    let dpr = page["dpr"].as_f64().unwrap();
    assert!(
        (w as f64 / dpr - WINDOW.0 as f64).abs() <= 40.0 && (h as f64 / dpr - WINDOW.1 as f64).abs() <= 200.0,
        "screenshot {w}×{h} for a {WINDOW:?} window"
    );
    let tp = &plots[0];
    let s = |k: &str| (tp[k].as_f64().unwrap() * dpr).max(0.0) as u32;
    assert!(s("top") + 300 < h, "the trade-off plot starts in the first screen");
    let rect = (s("left"), s("top"), s("left") + s("width"), s("top") + s("height"));
    let lines = coloured_pixels(w, h, &px, bpp, rect);
    assert!(
        lines > 1500,
        "only {lines} coloured pixels in the trade-off plot {rect:?}"
    );
    let page_coloured = coloured_pixels(w, h, &px, bpp, (0, 0, w, h));

    // The whole page, for a human to look at (not asserted: window limits vary).
    let full_h = page["scrollHeight"].as_u64().unwrap_or(WINDOW.1 as u64).min(16_000);
    let resized = driver.call(
        "POST",
        &format!("/session/{}/window/rect", driver.session.as_deref().unwrap()),
        Some(json!({"width": WINDOW.0, "height": full_h})),
    );
    if resized.is_ok() {
        std::fs::write(shots.join("report-fullpage.png"), driver.screenshot()).unwrap();
    }
    drop(driver);
    eprintln!(
        "report browser test: experiment {experiment_s:.1} s, browser {:.1} s; {} numbers checked; \
         {lines} coloured pixels in the trade-off plot ({page_coloured} on screen); screenshots in {}",
        t1.elapsed().as_secs_f64(),
        expected.len(),
        shots.display()
    );
}
