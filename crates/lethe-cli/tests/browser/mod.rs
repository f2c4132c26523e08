//! A real headless Chromium driven over the W3C WebDriver protocol
//! (Debian's `chromium` and `chromium-driver`; nothing downloaded): just
//! the commands the dashboard tests use — open a page, find, click, type,
//! read text, run a script, take a screenshot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Debian installs them; the README's test command installs them.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C key of an element reference in a WebDriver answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
    /// Where screenshots go.
    pub shots: PathBuf,
}

/// A found element.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium with a
    /// fresh profile. Panics (never skips) when either is missing.
    pub fn start(port: u16) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver (./scripts/test.sh does)"
            );
        }
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let t0 = Instant::now();
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            base: format!("{base}/session/{id}"),
            http,
            _profile: profile,
            shots,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body)
            .unwrap_or_else(|(e, message)| panic!("webdriver {method} {path}: {e}: {message}"))
    }

    /// A WebDriver command's value, or its error and message.
    fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, (String, Value)> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r: Value = req.send().unwrap().json().unwrap();
        if let Some(e) = r["value"].get("error") {
            return Err((
                e.as_str().unwrap_or_default().to_string(),
                r["value"]["message"].clone(),
            ));
        }
        Ok(r["value"].clone())
    }

    /// Opens a URL.
    pub fn open(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    /// The elements matching a CSS selector now.
    pub fn all(&self, css: &str) -> Vec<Element> {
        let found = self.cmd("POST", "/elements", json!({"using": "css selector", "value": css}));
        found
            .as_array()
            .unwrap_or_else(|| panic!("elements `{css}`: {found}"))
            .iter()
            .map(|e| {
                Element(
                    e[ELEMENT]
                        .as_str()
                        .unwrap_or_else(|| panic!("element: {e}"))
                        .to_string(),
                )
            })
            .collect()
    }

    /// Waits (up to 20 s) for an element matching `css` whose text
    /// contains `text`, and returns it.
    pub fn wait_for(&self, css: &str, text: &str) -> Element {
        let t0 = Instant::now();
        loop {
            for e in self.all(css) {
                // The page may render again between finding an element and
                // reading it: a stale element is looked for again.
                match self.try_cmd("GET", &format!("/element/{}/text", e.0), json!({})) {
                    Ok(t) if t.as_str().unwrap_or("").contains(text) => return e,
                    Ok(_) => {}
                    Err((kind, _)) if kind == "stale element reference" => {}
                    Err((kind, message)) => panic!("webdriver text of `{css}`: {kind}: {message}"),
                }
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let body = self.all("body").first().map(|b| self.text(b)).unwrap_or_default();
                self.screenshot("timeout");
                panic!("no `{css}` with text `{text}` appeared; the page says:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element matching `css` (waiting up to 20 s for it).
    pub fn find(&self, css: &str) -> Element {
        self.wait_for(css, "")
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({}));
    }

    /// Replaces an input's value with `text` (typed, as a user would).
    pub fn fill(&self, e: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), json!({}));
        self.cmd("POST", &format!("/element/{}/value", e.0), json!({ "text": text }));
    }

    /// The element that has the keyboard focus.
    pub fn active(&self) -> Element {
        let e = self.cmd("GET", "/element/active", json!({}));
        Element(
            e[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no focused element: {e}"))
                .to_string(),
        )
    }

    /// Types into the focused element, as keys (`\u{E004}` is Tab,
    /// `\u{E007}` Enter).
    pub fn keys(&self, text: &str) {
        let e = self.active();
        self.cmd("POST", &format!("/element/{}/value", e.0), json!({ "text": text }));
    }

    /// Presses one key wherever the focus is (WebDriver actions).
    pub fn press(&self, key: char) {
        let k = key.to_string();
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]}]}),
        );
    }

    /// An attribute of an element.
    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), json!({}))
            .as_str()
            .map(String::from)
    }

    /// Chooses an option of a `<select>` by its value.
    pub fn select(&self, css: &str, value: &str) {
        self.click(&self.find(&format!("{css} option[value=\"{value}\"]")));
    }

    /// An element's visible text.
    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), json!({}))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Runs an async script (`arguments[0]` is the callback); its result.
    pub fn run_async(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/async", json!({"script": script, "args": []}))
    }

    /// Saves a PNG of the page as `target/ui-screenshots/<name>.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", json!({}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let p = self.shots.join(format!("{name}.png"));
        std::fs::write(&p, png).unwrap();
        p
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
