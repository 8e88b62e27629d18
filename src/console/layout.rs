//! The frame every console page shares: the document head with its small inline style
//! sheet, the navigation, who is signed in and the sign-out button.

use axum::response::Html;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::i18n::bi;
use super::viewer::Viewer;

/// The pages of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Channels,
    Alerts,
    Packages,
    Reports,
    Usage,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Channels,
        Section::Alerts,
        Section::Packages,
        Section::Reports,
        Section::Usage,
    ];

    fn path(self) -> &'static str {
        match self {
            Section::Channels => "/console",
            Section::Alerts => "/console/alerts",
            Section::Packages => "/console/packages",
            Section::Reports => "/console/reports",
            Section::Usage => "/console/usage",
        }
    }

    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Section::Channels => ("渠道余量", "Channels"),
            Section::Alerts => ("告警", "Alerts"),
            Section::Packages => ("套餐", "Packages"),
            Section::Reports => ("月报", "Monthly report"),
            Section::Usage => ("用量趋势", "Burn chart"),
        }
    }

    /// The package list is the account's purchases: for admins only, as in the API.
    fn visible_to(self, viewer: &Viewer) -> bool {
        self != Section::Packages || viewer.admin
    }
}

/// A page of the console for a signed-in viewer.
pub fn page(viewer: &Viewer, section: Section, body: Markup) -> Html<String> {
    let (zh, en) = section.names();
    let frame = html! {
        header.top {
            div.brand { "tollgate " (bi("控制台", "Console")) }
            div.who {
                span { (bi("已登录", "Signed in as")) " " strong #viewer { (viewer.client) } }
                @if viewer.admin { " " span.badge { (bi("管理员", "admin")) } }
                form.inline method="post" action="/console/sign-out" {
                    input type="hidden" name="csrf" value=(viewer.csrf_token());
                    button.link type="submit" { (bi("退出", "Sign out")) }
                }
            }
        }
        nav {
            @for item in Section::ALL.into_iter().filter(|s| s.visible_to(viewer)) {
                @let (zh, en) = item.names();
                a href=(item.path()) aria-current=[(item == section).then_some("page")] {
                    (bi(zh, en))
                }
            }
        }
        main {
            h1 { (bi(zh, en)) }
            (body)
        }
    };
    document(&format!("{zh} {en} · tollgate"), frame)
}

/// A page without navigation: the sign-in form and error pages.
pub fn bare_page(title: (&str, &str), body: Markup) -> Html<String> {
    let frame = html! {
        header.top { div.brand { "tollgate " (bi("控制台", "Console")) } }
        main {
            h1 { (bi(title.0, title.1)) }
            (body)
        }
    };
    document(&format!("{} {} · tollgate", title.0, title.1), frame)
}

fn document(title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    };
    Html(markup.into_string())
}

/// Phone first: one column of cards, tables that scroll sideways inside their card, and
/// wider cards side by side from 720 px on.
const STYLE: &str = r#"
:root { --ink:#1d2433; --muted:#5f6b7a; --line:#dfe3ea; --bg:#f5f7fa; --card:#fff;
  --accent:#1f6feb; --ok:#2da44e; --warn:#d4a72c; --bad:#cf222e; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.5 -apple-system,"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",system-ui,sans-serif;
  color:var(--ink); background:var(--bg); }
.en { color:var(--muted); font-size:.85em; }
header.top { display:flex; flex-wrap:wrap; gap:.5rem; justify-content:space-between; align-items:center;
  padding:.6rem 1rem; background:#0d1b2a; color:#fff; }
header.top .en { color:#b8c2cf; }
.brand { font-weight:700; }
.who { display:flex; flex-wrap:wrap; gap:.4rem; align-items:center; font-size:.9em; }
nav { display:flex; flex-wrap:wrap; gap:.25rem; padding:.4rem .6rem; background:#fff; border-bottom:1px solid var(--line); }
nav a { white-space:nowrap; padding:.35rem .6rem; border-radius:6px; color:var(--ink); text-decoration:none; }
nav a[aria-current=page] { background:#e7efff; color:var(--accent); font-weight:600; }
main { max-width:1240px; margin:0 auto; padding:1rem; }
h1 { font-size:1.35rem; margin:.2rem 0 1rem; }
h2 { font-size:1.1rem; margin:0 0 .6rem; }
h3 { font-size:1rem; margin:1rem 0 .4rem; }
.grid { display:grid; gap:1rem; grid-template-columns:1fr; }
@media (min-width:720px) { .grid { grid-template-columns:repeat(auto-fill,minmax(320px,1fr)); } }
.pair { display:grid; gap:0 1rem; grid-template-columns:1fr; }
@media (min-width:900px) { .pair { grid-template-columns:1fr 1fr; } }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:1rem; margin-bottom:1rem; }
.grid .card { margin-bottom:0; }
.muted { color:var(--muted); }
.big { font-size:1.6rem; font-weight:700; }
.bar { height:12px; background:#e9edf2; border-radius:6px; overflow:hidden; margin:.3rem 0 .6rem; }
.bar > span { display:block; height:100%; background:var(--ok); }
.bar.warn > span { background:var(--warn); } .bar.bad > span { background:var(--bad); }
dl.facts { display:grid; grid-template-columns:minmax(0,2fr) minmax(0,3fr); gap:.35rem .8rem; margin:0; }
dl.facts dt { color:var(--muted); line-height:1.3; } dl.facts dt .en { display:block; }
dl.facts dd { margin:0; font-variant-numeric:tabular-nums; }
p.explain { margin:.6rem 0 0; font-size:.9em; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:.4rem .5rem; border-bottom:1px solid var(--line); white-space:nowrap; vertical-align:top; }
th { font-weight:600; font-size:.9em; background:#fafbfc; }
td.num, th.num { text-align:right; }
.badge { display:inline-block; padding:0 .45rem; border-radius:999px; background:#e7efff; color:var(--accent); font-size:.8em; }
.badge.firing { background:#ffebe9; color:var(--bad); } .badge.ok { background:#dafbe1; color:#116329; }
.badge.warning { background:#fff8c5; color:#7d4e00; } .badge.critical { background:#ffebe9; color:var(--bad); }
.notice { padding:.6rem .8rem; border-radius:8px; background:#dafbe1; border:1px solid #aceebb; margin-bottom:1rem; }
.notice.error { background:#ffebe9; border-color:#ffcecb; }
form.stack { display:grid; gap:.7rem; max-width:32rem; }
form.stack label { display:grid; gap:.2rem; font-size:.95em; }
input, select, button { font:inherit; }
input, select { padding:.45rem .55rem; border:1px solid #c6ccd5; border-radius:6px; background:#fff; width:100%; }
button { padding:.45rem .9rem; border:0; border-radius:6px; background:var(--accent); color:#fff; cursor:pointer; }
button .en, .badge .en { color:inherit; opacity:.8; }
a { color:var(--accent); }
button.link { background:none; color:inherit; text-decoration:underline; padding:0 .2rem; }
form.inline { display:inline; margin:0; }
a.buy { display:inline-block; margin-top:.7rem; padding:.45rem .9rem; border-radius:6px; background:var(--accent); color:#fff; text-decoration:none; }
a.buy .en { color:#dbe7ff; }
.row { display:flex; flex-wrap:wrap; gap:.5rem 1.5rem; align-items:baseline; }
svg.chart { width:100%; height:auto; display:block; }
svg.chart .bar-units { fill:#1f6feb; } svg.chart .bar-cost { fill:#8250df; }
svg.chart text { font-size:14px; fill:#5f6b7a; }
@media (max-width:600px) { svg.chart text { font-size:24px; } }
svg.chart line { stroke:#dfe3ea; }
"#;
