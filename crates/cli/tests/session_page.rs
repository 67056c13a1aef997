//! The admin server's session page (`/sessions`) as a browser renders it: headless Chromium
//! loads it, runs its script against a live keeper, and the DOM it dumps lists a live session
//! and the obituary of a Kafka broker's session that the client closed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    free_port, fresh_temp_dir, missing_tool, unique_name, wait_child, CorralServer, RawConn,
};
use corral_proto::CreateMode;

const CHROMIUM: &str = "/usr/bin/chromium";

/// How long Chromium may take to load, run the page's fetches and dump the DOM.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// `url` as headless Chromium renders it after its scripts ran: the serialized DOM.
fn rendered_dom(url: &str) -> String {
    let dir = fresh_temp_dir("chromium").expect("temp dir");
    let profile = dir.join("profile");
    let out_path = dir.join("dom.html");
    let err_path = dir.join("chromium.err");
    let out = std::fs::File::create(&out_path).expect("create dom.html");
    let err = std::fs::File::create(&err_path).expect("create chromium.err");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Virtual time runs the page's timers without waiting for them in real time and
        // holds still while its fetches are in flight, so the dump follows the first render.
        .arg("--virtual-time-budget=5000")
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {CHROMIUM}: {e}"));
    let status = wait_child(&mut child, BROWSER_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let dom = std::fs::read_to_string(&out_path).unwrap_or_default();
    let log = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    match status {
        Some(s) if s.success() => dom,
        Some(s) => panic!("chromium exited {s}; stderr:\n{log}"),
        None => panic!("chromium ran over {BROWSER_TIMEOUT:?}; stderr:\n{log}"),
    }
}

/// The `<tr ...>...</tr>` elements of `dom` whose opening tag has `class="{class}"` and
/// `data-session="{session}"` (attributes in any order).
fn rows<'a>(dom: &'a str, class: &str, session: &str) -> Vec<&'a str> {
    let class = format!("class=\"{class}\"");
    let session = format!("data-session=\"{session}\"");
    dom.split("<tr")
        .skip(1)
        .filter_map(|r| r.split_once("</tr>").map(|(row, _)| row))
        .filter(|row| {
            let tag = row.split_once('>').map_or(*row, |(tag, _)| tag);
            tag.contains(&class) && tag.contains(&session)
        })
        .collect()
}

/// The text of the `<td class="{class}" ...>` cell in `row`.
fn cell<'a>(row: &'a str, class: &str) -> Option<&'a str> {
    let open = format!("<td class=\"{class}\"");
    let (_, rest) = row.split_once(open.as_str())?;
    let (_, rest) = rest.split_once('>')?;
    rest.split_once("</td>").map(|(text, _)| text)
}

#[test]
fn the_session_page_renders_live_sessions_and_obituaries_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        missing_tool(&format!(
            "chromium not installed ({CHROMIUM}; apt-get install chromium)"
        ));
        return;
    }
    let admin = free_port();
    let server = CorralServer::start(&format!(
        "admin.enableServer=true\nadmin.serverPort={admin}\n"
    ));
    let addr = server.addr();

    // A live session, quiet but well within its timeout while the browser runs.
    let (_live, live) = RawConn::new_session_with_timeout(&addr, 30_000).expect("live session");
    let live_id = format!("0x{:x}", live.session_id);

    // A Kafka broker registers itself, then closes its session.
    let root = format!("/{}", unique_name("page"));
    let (mut broker, resp) = RawConn::new_session_with_timeout(&addr, 30_000).expect("session");
    let broker_id = format!("0x{:x}", resp.session_id);
    for (xid, path, mode) in [
        (1, root.clone(), CreateMode::Persistent),
        (2, format!("{root}/brokers"), CreateMode::Persistent),
        (3, format!("{root}/brokers/ids"), CreateMode::Persistent),
        (4, format!("{root}/brokers/ids/1"), CreateMode::Ephemeral),
    ] {
        broker.create(xid, &path, mode).expect("create");
    }
    broker.close_session().expect("close");

    let dom = rendered_dom(&format!("http://127.0.0.1:{admin}/sessions"));
    assert!(
        !dom.contains("class=\"error\""),
        "the page could not read the keeper:\n{dom}"
    );

    let live_rows = rows(&dom, "session", &live_id);
    assert_eq!(live_rows.len(), 1, "one row for {live_id} in:\n{dom}");
    assert_eq!(cell(live_rows[0], "id"), Some(live_id.as_str()));
    assert_eq!(cell(live_rows[0], "timeout num"), Some("30000 ms"));
    assert!(
        rows(&dom, "session", &broker_id).is_empty(),
        "the closed session is not live:\n{dom}"
    );

    let obits = rows(&dom, "obituary", &broker_id);
    assert_eq!(obits.len(), 1, "one obituary for {broker_id} in:\n{dom}");
    let ob = obits[0];
    assert!(ob.contains("data-cause=\"closed_by_client\""), "{ob}");
    assert_eq!(cell(ob, "id"), Some(broker_id.as_str()), "{ob}");
    assert_eq!(cell(ob, "cause"), Some("closed_by_client"), "{ob}");
    assert_eq!(cell(ob, "reason"), Some("closed by the client"), "{ob}");
    assert_eq!(cell(ob, "brokers"), Some("broker 1"), "{ob}");
    assert_eq!(cell(ob, "ephemerals num"), Some("1"), "{ob}");
    assert!(
        cell(ob, "ended").is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "an ISO time: {ob}"
    );
}
