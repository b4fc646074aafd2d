//! Bounded fuzzing of the pure core (no cluster needed): random and adversarial strings and
//! structures fed to the validators, parsers and builders of `govcloud::core` and to the
//! serde deserialisation of every CRD type. Each target runs a fixed, seeded sequence of
//! inputs (adversarial seeds first, then a tiny xorshift PRNG) for at most a few hundred
//! milliseconds to ~2 s, so the whole binary stays well under 20 s.
//!
//! What fails a target: a panic (caught with `catch_unwind`; the panicking input is printed)
//! or a broken property (e.g. a quantity that does not read back as itself). Set
//! `FUZZ_SEED=<n>` to explore another sequence, `FUZZ_SCALE=<n>` to run n times longer.
//!
//! Inputs are adversarial but stay inside the domain a function can be given by the
//! operator where the API server guarantees that domain (Kubernetes object names are DNS
//! names, numbers in a spec are finite JSON numbers); every user-typed string is fuzzed
//! without restriction.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use govcloud_api::agency::{CloudSpec, EgressRule};
use govcloud_api::backup::{BackupPolicySpec, DrillSpec, Retention};
use govcloud_api::catalog::ServiceTemplateSpec;
use govcloud_api::hosted::HostedSystemSpec;
use govcloud_api::hosted::TemplateRef;
use govcloud_api::labels::POLICY_LABEL;
use govcloud_api::report::{AgencyRow, ClusterRow, PriceCatalogue, Totals};
use govcloud_api::{
    AgencyCloud, BackupLocation, BackupPolicy, DataCenterCluster, HostedSystem, NetworkZone, ServiceTemplate,
    TenancyRequest, UtilizationReport,
};
use govcloud_core::backup::{self, Backup, Schedule};
use govcloud_core::placement::{self, Candidate, Request};
use govcloud_core::quantity::Milli;
use govcloud_core::utilization;
use govcloud_core::{agency, catalog, cluster, conditions, credit_code, hosted, levels, subset};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, LabelSelectorRequirement, Time};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// PRNG and generators

/// xorshift64* — tiny, deterministic, good enough to pick inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    fn i64_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (u128::from(self.next_u64()) % span) as i128) as i64
    }

    fn f64_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// Pieces of adversarial text: separators, quantity and cron syntax, template syntax,
/// multi-byte and invisible characters, NUL, RTL override, emoji with joiners.
const PIECES: &[&str] = &[
    "",
    "0",
    "1",
    "7",
    "9",
    "00",
    "a",
    "Z",
    "x",
    "-",
    "_",
    ".",
    "..",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "/",
    ":",
    "*",
    ",",
    "?",
    "#",
    "L",
    "W",
    "$",
    "{",
    "}",
    "${",
    "${x}",
    "$${",
    "e",
    "E",
    "e18",
    "e-9",
    "m",
    "k",
    "Ki",
    "Mi",
    "Gi",
    "Ei",
    "h",
    "统",
    "一",
    "社",
    "é",
    "\u{0}",
    "\u{7}",
    "\u{200B}",
    "\u{200F}",
    "\u{202E}",
    "\u{FEFF}",
    "😀",
    "👨\u{200D}👩",
    "\u{10FFFF}",
    "ß",
    "İ",
    "Ⅻ",
    "١",
    "９",
    "\\",
    "\"",
    "'",
    "%",
    "+",
    "<",
    ">",
    "&",
    "=",
    "@",
];

fn text(rng: &mut Rng, max_pieces: usize) -> String {
    let n = rng.below(max_pieces + 1);
    let mut s = String::new();
    for _ in 0..n {
        let piece: &str = rng.pick::<&str>(PIECES);
        s.push_str(piece);
    }
    if rng.one_in(40) {
        let unit = rng.pick(PIECES).to_string();
        s.push_str(&unit.repeat(10_240 / unit.len().max(1)));
    }
    s
}

fn from_chars(rng: &mut Rng, alphabet: &[char], max_len: usize) -> String {
    let n = rng.below(max_len + 1);
    (0..n).map(|_| *rng.pick(alphabet)).collect()
}

/// A DNS-1123 name (what the API server allows for object names), 1–253 characters.
fn dns_name(rng: &mut Rng) -> String {
    const A: &[char] = &['a', 'b', 'c', 'x', 'y', 'z', '0', '1', '9', '-', '-', 'm', 'o', 'f'];
    let len = if rng.one_in(8) { 253 } else { 1 + rng.below(70) };
    let mut s: String = (0..len).map(|_| *rng.pick(A)).collect();
    s.replace_range(0..1, "a");
    if s.ends_with('-') {
        s.pop();
        s.push('z');
    }
    s
}

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "4",
    "5",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "0.5",
    "1.5",
    "-0.0",
    "1e3",
    "1e308",
    "-1e308",
    "2.2250738585072014e-308",
    "5e-324",
];

fn number(rng: &mut Rng) -> Value {
    let n: &str = rng.pick::<&str>(NUMBERS);
    serde_json::from_str(n).unwrap_or(Value::Null)
}

/// Keys the CRD types use (so that random objects sometimes look like the real thing).
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "labels",
    "spec",
    "status",
    "region",
    "zone",
    "maxSecurityLevel",
    "securityLevel",
    "agency",
    "shortName",
    "creditCode",
    "displayName",
    "contact",
    "email",
    "environments",
    "quota",
    "cpu",
    "memory",
    "storage",
    "pods",
    "owners",
    "egress",
    "cidr",
    "internetExit",
    "allowedRegistries",
    "placement",
    "cluster",
    "components",
    "image",
    "replicas",
    "ports",
    "port",
    "flows",
    "to",
    "from",
    "exposure",
    "mode",
    "template",
    "parameters",
    "versions",
    "version",
    "schedule",
    "timeZone",
    "rpo",
    "retention",
    "keepLast",
    "offsiteRegion",
    "drill",
    "prices",
    "periodStart",
    "periodEnd",
    "cloud",
    "decision",
    "reviewedGeneration",
    "conditions",
    "type",
    "overcommit",
    "kubeconfigSecret",
    "bucket",
    "endpoint",
    "credentialsSecret",
    "encryption",
    "perAgency",
    "migration",
    "phase",
    "category",
    "description",
    "justification",
    "selector",
    "matchLabels",
];

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let choice = if depth == 0 { rng.below(4) } else { rng.below(7) };
    match choice {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => number(rng),
        3 => Value::String(if rng.bool() {
            text(rng, 6)
        } else {
            rng.pick(KEYS).to_string()
        }),
        4 | 5 => {
            let n = rng.below(4);
            let mut m = serde_json::Map::new();
            for _ in 0..n {
                let k = if rng.one_in(5) {
                    text(rng, 3)
                } else {
                    rng.pick(KEYS).to_string()
                };
                m.insert(k, random_value(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect()),
    }
}

/// JSON pointers of every node of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Changes one to three random nodes of `v`: replaced by a random value, a random string,
/// a number, an emptied container, or removed.
fn mutate(rng: &mut Rng, v: &mut Value) {
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        pointers(v, String::new(), &mut all);
        let p = rng.pick(&all).clone();
        if p.is_empty() {
            continue;
        }
        let how = rng.below(6);
        if how == 0 {
            // Remove it from its parent.
            let (parent, key) = p.rsplit_once('/').unwrap_or(("", ""));
            let key = key.replace("~1", "/").replace("~0", "~");
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&key);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = key.parse::<usize>()
                        && i < a.len()
                    {
                        a.remove(i);
                    }
                }
                _ => {}
            }
            continue;
        }
        let new = match how {
            1 => random_value(rng, 2),
            2 => Value::String(text(rng, 8)),
            3 => number(rng),
            4 => match v.pointer(&p) {
                Some(Value::Array(a)) if !a.is_empty() => {
                    let item = a[rng.below(a.len())].clone();
                    Value::Array(vec![item; 1 + rng.below(3)])
                }
                Some(Value::Array(_)) => json!([]),
                Some(Value::Object(_)) => json!({}),
                _ => Value::String(String::new()),
            },
            _ => Value::String(from_chars(rng, &['0', '1', '9', 'a', '-', '.', ':', '/'], 20)),
        };
        if let Some(slot) = v.pointer_mut(&p) {
            *slot = new;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The runner: catches panics quietly and reports the inputs.

thread_local! {
    /// While fuzzing, panics are recorded here instead of being printed.
    static CAPTURE: RefCell<Option<String>> = const { RefCell::new(None) };
    static FUZZING: RefCell<bool> = const { RefCell::new(false) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let quiet = FUZZING.with(|f| *f.borrow());
            if quiet {
                CAPTURE.with(|c| *c.borrow_mut() = Some(info.to_string()));
            } else {
                default(info);
            }
        }));
    });
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn shorten(s: &str) -> String {
    let s = s.escape_debug().to_string();
    if s.len() > 400 {
        let mut end = 400;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    } else {
        s
    }
}

/// Runs `check` on the adversarial `seeds`, then on generated inputs until `iterations` or
/// `budget` is reached. `check` returns Err for a broken property; panics are caught.
fn fuzz<I: Debug>(
    target: &str,
    seeds: Vec<I>,
    iterations: usize,
    budget: Duration,
    mut generate: impl FnMut(&mut Rng) -> I,
    mut check: impl FnMut(&I) -> Result<(), String>,
) {
    install_hook();
    let scale = env_u64("FUZZ_SCALE").unwrap_or(1).max(1) as u32;
    let seed =
        env_u64("FUZZ_SEED").unwrap_or(0x5EED) ^ target.bytes().fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let mut panics: Vec<String> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    let mut panic_sites = BTreeSet::new();
    let mut ran = 0usize;
    let mut seeds = seeds.into_iter();
    loop {
        let input = match seeds.next() {
            Some(s) => s,
            None => {
                if ran >= iterations * scale as usize || start.elapsed() > budget * scale {
                    break;
                }
                generate(&mut rng)
            }
        };
        ran += 1;
        FUZZING.with(|f| *f.borrow_mut() = true);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&input)));
        FUZZING.with(|f| *f.borrow_mut() = false);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                if broken.len() < 5 {
                    broken.push(format!(
                        "  input: {}\n  broken: {}",
                        shorten(&format!("{input:?}")),
                        shorten(&why)
                    ));
                }
            }
            Err(_) => {
                let what = CAPTURE
                    .with(|c| c.borrow_mut().take())
                    .unwrap_or_else(|| "panic".into());
                let site = what.lines().next().unwrap_or_default().to_string();
                // One example per panic site, up to 8 sites.
                if panic_sites.insert(site) && panics.len() < 8 {
                    panics.push(format!(
                        "  input: {}\n  {}",
                        shorten(&format!("{input:?}")),
                        what.replace('\n', "\n  ")
                    ));
                }
            }
        }
    }
    println!(
        "fuzz {target}: {ran} inputs in {} ms (seed {seed:#x}); panic sites: {}, broken properties: {}",
        start.elapsed().as_millis(),
        panic_sites.len(),
        broken.len()
    );
    // Figures for docs/reliability.md (hack/reliability-report.py sums the targets).
    let dir = govcloud_tests::repo_root().join("target").join("reliability");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("fuzz-{target}.json")),
        json!({"target": target, "inputs": ran, "millis": start.elapsed().as_millis() as u64,
               "panics": panic_sites.len(), "broken": broken.len()})
        .to_string(),
    );
    let mut report = String::new();
    if !panics.is_empty() {
        report.push_str(&format!(
            "{target}: PANICS (one input per panic site):\n{}\n",
            panics.join("\n")
        ));
    }
    if !broken.is_empty() {
        report.push_str(&format!("{target}: BROKEN PROPERTIES:\n{}\n", broken.join("\n")));
    }
    assert!(report.is_empty(), "{report}");
}

fn budget_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

// ---------------------------------------------------------------------------------------
// Quantities

/// Strings whose significant digits sit just below `i128::MAX` milli-units for a suffix,
/// written with as many fraction digits as the parser accepts (30 digits in all); they are
/// also valid Kubernetes quantities and match the AgencyCloud quota pattern when ≤ 32 chars.
fn near_overflow_quantities() -> Vec<String> {
    let mut out = Vec::new();
    for (suffix, milli) in [
        ("Ei", 1000i128 << 60),
        ("E", 1000 * 10i128.pow(18)),
        ("Pi", 1000 << 50),
        ("P", 1000 * 10i128.pow(15)),
        ("Ti", 1000 << 40),
        ("e18", 1000 * 10i128.pow(18)),
    ] {
        let digits = (i128::MAX / milli).to_string();
        for total in [digits.len() + 1, 28, 29, 30] {
            if total < digits.len() {
                continue;
            }
            let zeros = total - 1 - digits.len().min(total - 1);
            out.push(format!("0.{}{digits}{suffix}", "0".repeat(zeros)));
        }
        out.push(format!("{digits}{suffix}"));
        out.push(format!("-{digits}{suffix}"));
    }
    out
}

#[test]
fn quantity_parsing_never_panics() {
    let mut seeds: Vec<String> = [
        "",
        "0",
        "-0",
        "+1",
        "1e18",
        "1e-9",
        "1e-10",
        "1e19",
        "1e400",
        "-1",
        "1.5Gi",
        "1e",
        "e3",
        ".5",
        "5.",
        "1..2",
        "-",
        "+",
        "1Ki ",
        " 1Ki",
        "1k1",
        "١٢٣",
        "１２",
        "1\u{0}",
        "99999999999999999Ei",
        "-99999999999999999Ei",
        "0.000000000000000000000000000001",
        "1E18",
        "1e+3",
        "1e-",
        "1e2147483648",
        "1e-2147483649",
        "1n",
        "1u",
        "123456789012345678901234567890Ei",
        "0.5m",
        "1.0000000000000000000000000009n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    seeds.push("9".repeat(30));
    seeds.push("9".repeat(31));
    seeds.extend(near_overflow_quantities());
    const Q: &[char] = &[
        '0', '1', '5', '9', '9', '9', '.', 'e', 'E', 'm', 'k', 'M', 'G', 'T', 'P', 'i', 'n', 'u', '-', '+', ' ', '统',
    ];
    fuzz(
        "quantity",
        seeds,
        40_000,
        budget_ms(1500),
        |rng| {
            if rng.one_in(3) {
                // Many digits, many decimals, a random suffix.
                let int = from_chars(rng, &['0', '9', '1', '7'], 20);
                let frac = from_chars(rng, &['0', '0', '9', '3'], 30);
                let suffix = *rng.pick(&["", "m", "n", "u", "k", "Ki", "Ei", "E", "e18", "e-9", "Pi", "e3", "x"]);
                format!("{int}.{frac}{suffix}")
            } else if rng.bool() {
                from_chars(rng, Q, 40)
            } else {
                text(rng, 6)
            }
        },
        |s| {
            let _ = agency::canonical_cpu(s);
            let _ = agency::canonical_bytes(s);
            let _ = utilization::quota_totals(&BTreeMap::from([
                ("requests.cpu".to_string(), s.clone()),
                ("requests.memory".to_string(), s.clone()),
                ("pods".to_string(), s.clone()),
            ]));
            let Ok(m) = Milli::parse(s) else { return Ok(()) };
            let _ = (m.to_bytes_string(), m.to_count_string(), m.whole());
            for r in [
                0.0,
                1.0,
                1.5,
                4.0,
                10.0,
                1e300,
                -1.0,
                f64::NAN,
                f64::INFINITY,
                f64::MIN_POSITIVE,
            ] {
                let _ = m.scale(r);
            }
            let _ = [
                m + m,
                m - m,
                Milli(i128::MIN) - m,
                [m, m, Milli(i128::MAX)].into_iter().sum::<Milli>(),
            ];
            let cpu = m.to_cpu_string();
            // The parser reads at most 30 digits: only values printed within that read back.
            if cpu.chars().filter(char::is_ascii_digit).count() > 30 {
                return Ok(());
            }
            match Milli::parse(&cpu) {
                Ok(back) if back == m => Ok(()),
                other => Err(format!(
                    "{s:?} parsed as {m:?}, printed as {cpu:?}, read back as {other:?}"
                )),
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// Unified social credit codes

#[test]
fn credit_code_validation_never_panics() {
    let alphabet: Vec<char> = credit_code::ALPHABET.chars().collect();
    let mut wide = alphabet.clone();
    wide.extend([
        'I', 'O', 'S', 'V', 'Z', 'a', 'x', ' ', '统', '\u{0}', '\u{200B}', '０', '٣', 'Ａ',
    ]);
    let seeds: Vec<String> = [
        "",
        "91350100M000100Y43",
        "91350100M000100Y4",
        "91350100M000100Y433",
        "统一社会信用代码统一社会信用代码统一",
        "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀",
        "91350100M000100Y4\u{0}",
        "９１３５０１００Ｍ０００１００Ｙ４３",
        "11100000MB0123456X",
        "000000000000000000",
        "YYYYYYYYYYYYYYYYYY",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fuzz(
        "credit_code",
        seeds,
        60_000,
        budget_ms(1200),
        |rng| match rng.below(4) {
            0 => {
                // A well-formed prefix: registration, type, six division digits, nine symbols.
                let mut p = String::new();
                for i in 0..17 {
                    let c = if (2..8).contains(&i) {
                        (b'0' + rng.below(10) as u8) as char
                    } else {
                        *rng.pick(&alphabet)
                    };
                    p.push(c);
                }
                p
            }
            1 => from_chars(rng, &wide, 20),
            2 => {
                let mut s = from_chars(rng, &alphabet, 18);
                while s.chars().count() < 18 {
                    s.push(*rng.pick(&wide));
                }
                s
            }
            _ => text(rng, 20),
        },
        |s| {
            let _ = credit_code::validate(s);
            let _ = credit_code::check_char(s);
            let chars: Vec<char> = s.chars().collect();
            let well_formed = chars.len() == 17
                && chars.iter().all(|c| credit_code::ALPHABET.contains(*c))
                && chars[2..8].iter().all(char::is_ascii_digit);
            if !well_formed {
                return Ok(());
            }
            let check = credit_code::check_char(s).map_err(|e| format!("check_char({s:?}): {e}"))?;
            let code = format!("{s}{check}");
            credit_code::validate(&code).map_err(|e| format!("computed code {code} is refused: {e}"))?;
            // Every single-character substitution is detected.
            let mut typo: Vec<char> = code.chars().collect();
            let pos = code.len() % 18;
            typo[pos] = if typo[pos] == '1' { '2' } else { '1' };
            let typo: String = typo.into_iter().collect();
            match credit_code::validate(&typo) {
                Err(_) => Ok(()),
                Ok(()) => Err(format!("typo {typo} of {code} is accepted")),
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// Backup: RPO, schedules, policy validation, retention, Velero objects

const CRON_TOKENS: &[&str] = &[
    "*",
    "*",
    "0",
    "1",
    "2",
    "5",
    "7",
    "12",
    "23",
    "24",
    "29",
    "30",
    "31",
    "32",
    "59",
    "60",
    "61",
    "99",
    "-1",
    "*/5",
    "*/0",
    "*/60",
    "1-5",
    "5-1",
    "0-59",
    "1,2,3",
    "1,,2",
    "L",
    "LW",
    "W",
    "15W",
    "5#3",
    "5#6",
    "?",
    "MON",
    "MON-FRI",
    "SUN-SAT",
    "JAN",
    "FEB-DEC",
    "FOO",
    "@daily",
    "@reboot",
    "99999999999999999999",
    "1/2",
    "/",
    "",
    "统",
    "\u{0}",
    "L-3",
    "1-",
    "-",
];

const ZONES: &[&str] = &[
    "Asia/Shanghai",
    "UTC",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "America/New_York",
    "Mars/Olympus",
    "",
    "../../etc/passwd",
    "Asia/Shanghai\u{0}",
    "EST5EDT",
    "Local",
    "+08:00",
    "亚洲/上海",
];

fn cron(rng: &mut Rng) -> String {
    let n = if rng.one_in(4) { rng.below(8) } else { 5 };
    let sep = if rng.one_in(6) {
        *rng.pick(&["  ", "\t", " \u{200B}", "\n"])
    } else {
        " "
    };
    (0..n)
        .map(|_| rng.pick(CRON_TOKENS).to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// A time the operator can be asked about: 1970–2200.
fn timestamp(rng: &mut Rng) -> Timestamp {
    Timestamp::from_second(rng.i64_in(0, 7_258_118_400)).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[derive(Debug)]
struct ScheduleInput {
    rpo: String,
    secs: i64,
    expr: String,
    tz: String,
    at: Timestamp,
}

#[test]
fn rpo_and_schedule_parsing_never_panics() {
    let seeds: Vec<ScheduleInput> = [
        ("24h", "0 2 * * *", "Asia/Shanghai"),
        ("1时", "0 2 30 2 *", "UTC"),
        ("9223372036854775807h", "*/0 * * * *", "UTC"),
        ("-9223372036854775808m", "0 0 31 2 *", "UTC"),
        ("99999999999h", "0 0 29 2 *", "Asia/Shanghai"),
        ("h", "0 2 * * * *", "Mars/Olympus"),
        ("", "61 25 32 13 8", ""),
        ("1h\u{0}", "0 2 L * *", "Asia/Shanghai\u{0}"),
        ("１h", "0 2 * * 5#6", "Etc/GMT+12"),
        ("3000000000000000h", "@daily", "UTC"),
        ("😀", "0 2 * * MON-FRI", "UTC"),
    ]
    .into_iter()
    .map(|(rpo, expr, tz)| ScheduleInput {
        rpo: rpo.into(),
        secs: i64::MIN,
        expr: expr.into(),
        tz: tz.into(),
        at: Timestamp::UNIX_EPOCH,
    })
    .collect();
    let mut n = 0usize;
    fuzz(
        "rpo_and_schedule",
        seeds,
        20_000,
        budget_ms(1500),
        |rng| ScheduleInput {
            rpo: if rng.bool() {
                format!("{}{}", rng.pick(NUMBERS), rng.pick(&["h", "m", "", "s", "时", "H"]))
            } else {
                text(rng, 4)
            },
            secs: match rng.below(3) {
                0 => rng.next_u64() as i64,
                1 => *rng.pick(&[i64::MIN, i64::MAX, 0, -1, 59, 3600, -3600]),
                _ => rng.i64_in(-100_000, 100_000),
            },
            expr: if rng.one_in(5) { text(rng, 10) } else { cron(rng) },
            tz: if rng.one_in(6) {
                text(rng, 3)
            } else {
                rng.pick(ZONES).to_string()
            },
            at: timestamp(rng),
        },
        |i| {
            let _ = backup::parse_rpo(&i.rpo);
            let _ = backup::format_rpo(i.secs);
            if let Ok(s) = Schedule::parse("spec.schedule", &i.expr, &i.tz) {
                let _ = s.next_after(i.at);
                let _ = s.previous_at_or_before(i.at);
                n += 1;
                // The year-long scan is expensive: only sometimes.
                if n.is_multiple_of(16) {
                    let _ = s.max_interval(i.at);
                }
            }
            Ok(())
        },
    );
}

#[derive(Debug)]
struct PolicyInput {
    spec: BackupPolicySpec,
    level: u8,
    primary: String,
    zone: NetworkZone,
    locations: Vec<BackupLocation>,
    backups: Vec<Backup>,
    labels: BTreeMap<String, String>,
    namespace: String,
    policy: String,
    systems: Option<Vec<String>>,
}

fn selector(rng: &mut Rng) -> LabelSelector {
    let key = |rng: &mut Rng| rng.pick(&["tier", "app", "x", "", "统", "a/b"]).to_string();
    LabelSelector {
        match_labels: rng
            .bool()
            .then(|| (0..rng.below(3)).map(|_| (key(rng), key(rng))).collect()),
        match_expressions: rng.bool().then(|| {
            (0..rng.below(3))
                .map(|_| LabelSelectorRequirement {
                    key: key(rng),
                    operator: rng
                        .pick(&["In", "NotIn", "Exists", "DoesNotExist", "Gt", "", "in"])
                        .to_string(),
                    values: rng.bool().then(|| (0..rng.below(3)).map(|_| key(rng)).collect()),
                })
                .collect()
        }),
    }
}

fn retention(rng: &mut Rng) -> Retention {
    let n = |rng: &mut Rng| *rng.pick(&[0u32, 1, 2, 7, 1000, 1001, u32::MAX]);
    Retention {
        keep_last: n(rng),
        daily: n(rng),
        weekly: n(rng),
        monthly: n(rng),
    }
}

#[test]
fn backup_policy_validation_and_retention_never_panic() {
    fuzz(
        "backup_policy",
        vec![],
        3_000,
        budget_ms(2000),
        |rng| {
            let locations: Vec<BackupLocation> = (0..rng.below(5))
                .filter_map(|_| {
                    serde_json::from_value(json!({
                        "apiVersion": "govcloud.io/v1alpha1", "kind": "BackupLocation",
                        "metadata": {"name": rng.pick(&["a", "b", "c", "统"])},
                        "spec": {"region": rng.pick(&["beijing", "guizhou", "", "r1", "统"]),
                                 "zone": rng.pick(&["internal", "external"]),
                                 "encryption": rng.pick(&["None", "SM4-GCM"]),
                                 "perAgency": rng.bool(),
                                 "bucket": "b", "endpoint": "http://x", "credentialsSecret": "s"}
                    }))
                    .ok()
                })
                .collect();
            let tz = rng.pick(ZONES).to_string();
            let t0 = timestamp(rng);
            PolicyInput {
                spec: BackupPolicySpec {
                    selector: rng.bool().then(|| selector(rng)),
                    // Mostly schedules that parse, so that validation goes deep.
                    schedule: if rng.bool() {
                        rng.pick(&["0 2 * * *", "*/5 * * * *", "0 0 1 1 *", "0 0 29 2 *", "0 */6 * * *"])
                            .to_string()
                    } else {
                        cron(rng)
                    },
                    time_zone: tz,
                    retention: retention(rng),
                    // The schema's pattern ^[1-9][0-9]{0,4}(m|h)$ (free text: see the RPO target).
                    rpo: rng
                        .bool()
                        .then(|| format!("{}{}", 1 + rng.below(99_999), rng.pick(&["h", "m"]))),
                    offsite_region: rng
                        .bool()
                        .then(|| rng.pick(&["beijing", "guizhou", "mars", ""]).to_string()),
                    drill: rng.bool().then(|| DrillSpec {
                        schedule: rng.bool().then(|| cron(rng)),
                        history: rng.below(120) as u32,
                    }),
                    volume_data: if rng.bool() {
                        govcloud_api::backup::VolumeData::All
                    } else {
                        govcloud_api::backup::VolumeData::None
                    },
                },
                level: *rng.pick(&[0u8, 1, 2, 3, 4, 5, 255]),
                primary: rng.pick(&["beijing", "guizhou", "", "r1"]).to_string(),
                zone: if rng.bool() {
                    NetworkZone::Internal
                } else {
                    NetworkZone::External
                },
                locations,
                backups: (0..rng.below(40))
                    .map(|i| Backup {
                        name: format!("b{i}-{}", rng.below(5)),
                        time: if rng.one_in(10) { t0 } else { timestamp(rng) },
                        phase: rng
                            .pick(&[
                                "Completed",
                                "Failed",
                                "PartiallyFailed",
                                "InProgress",
                                "",
                                "New",
                                "Deleting",
                                "统",
                            ])
                            .to_string(),
                    })
                    .collect(),
                labels: (0..rng.below(3))
                    .map(|_| {
                        (
                            rng.pick(&["tier", "app", "x"]).to_string(),
                            rng.pick(&["web", "db", ""]).to_string(),
                        )
                    })
                    .collect(),
                namespace: dns_name(rng),
                policy: dns_name(rng),
                systems: rng.bool().then(|| (0..rng.below(3)).map(|_| dns_name(rng)).collect()),
            }
        },
        |i| {
            let now = Timestamp::now();
            let owner = backup::Owner {
                level: i.level,
                zone: i.zone,
                region: &i.primary,
            };
            let (_, problems) = backup::validate(&i.spec, owner, &i.locations, now);
            // A store the policy may use never breaks the zone or encryption rule.
            if let Ok(l) = backup::choose_location(&i.locations, &i.primary, owner) {
                assert_eq!(l.spec.zone, i.zone, "{i:?}");
                assert!(i.level < 3 || l.spec.encryption.sm4(), "{i:?}");
            } else {
                assert!(!problems.is_empty(), "no store chosen but no problem reported: {i:?}");
            }
            let tz = TimeZone::get(&i.spec.time_zone).unwrap_or(TimeZone::UTC);
            let keep = backup::retained(&i.backups, &i.spec.retention, &tz);
            if let Some(s) = &i.spec.selector {
                let _ = backup::selects(s, &i.labels);
            }
            let name = backup::schedule_name(&i.namespace, &i.policy, i.level % 2 == 0);
            let _ = backup::legacy_schedule_name(&i.namespace, &i.policy, i.level % 2 == 0);
            let _ = backup::policy_label_value(&i.policy);
            let _ = backup::policy_hash(&i.namespace, &i.policy);
            let _ = backup::storage_location_name(&i.policy);
            let _ = backup::backup_list_selector(&i.namespace, &i.policy);
            let id = backup::PolicyId::new(&i.namespace, &i.policy, "11100000MB0123456X");
            let v = backup::velero_schedule(&name, &id, &i.spec, i.systems.as_deref(), "loc", true);
            let _ = backup::velero_initial_backup(&name, &id, &i.spec, i.systems.as_deref(), "loc", false, now);
            let _ = backup::velero_restore(&name, "b0", &id, Some(&i.policy));
            let _ = backup::velero_delete_request(&i.policy, &id);
            let _ = backup::velero_label_value(&i.policy);
            // Properties: the newest successful backup and every running one are kept; the
            // schedule name and the policy label are valid label values (≤ 63 characters).
            if name.len() > backup::SCHEDULE_NAME_MAX {
                return Err(format!("schedule name {name:?} is longer than 63 characters"));
            }
            let newest_good = i
                .backups
                .iter()
                .filter(|b| b.successful())
                .max_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
            if let Some(b) = newest_good
                && !keep.contains(&b.name)
            {
                return Err(format!("newest successful backup {} was not retained", b.name));
            }
            if let Some(b) = i.backups.iter().find(|b| b.running() && !keep.contains(&b.name)) {
                return Err(format!("running backup {} was not retained", b.name));
            }
            let label = v["metadata"]["labels"][POLICY_LABEL].as_str().unwrap_or_default();
            if label.len() > 63 {
                return Err(format!("policy label value {label:?} is longer than 63 characters"));
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// Catalogue templates

fn template_base() -> Value {
    json!({
        "displayName": "协同办公系统",
        "description": "Office automation",
        "category": "office",
        "parameters": [
            {"name": "host"},
            {"name": "storage", "default": "50Gi", "pattern": "^[0-9]+Gi$"},
            {"name": "cpu", "default": "500m"}
        ],
        "versions": [
            {"version": "1.0", "components": [
                {"name": "web", "image": "registry.gov.cn/oa-web:${host}", "replicas": 2,
                 "resources": {"cpu": "${cpu}", "memory": "256Mi"}, "ports": [{"name": "http", "port": 8080}],
                 "env": [{"name": "HOST", "value": "${host}"}]},
                {"name": "db", "kind": "Stateful", "image": "registry.gov.cn/postgres:16", "ports": [{"name": "pg", "port": 5432}],
                 "storage": {"size": "${storage}", "mountPath": "/data"}}
            ],
             "flows": [{"from": "web", "to": {"component": "db"}, "port": 5432}],
             "exposure": {"mode": "GovernmentNetwork", "component": "web", "port": 8080, "host": "${host}"}}
        ]
    })
}

fn system_base() -> Value {
    json!({
        "securityLevel": 2,
        "dataClassification": "general",
        "components": [
            {"name": "api", "image": "registry.gov.cn/api:1", "replicas": 2, "resources": {"cpu": "250m", "memory": "256Mi"},
             "ports": [{"name": "http", "port": 9000}], "health": {"path": "/healthz", "port": 9000},
             "env": [{"name": "A", "value": "b"}, {"name": "S", "secretKeyRef": {"name": "s", "key": "k"}}]},
            {"name": "cache", "kind": "Stateful", "image": "registry.gov.cn/redis:7", "ports": [{"name": "redis", "port": 6379}],
             "storage": {"size": "1Gi", "mountPath": "/data"}}
        ],
        "flows": [{"from": "api", "to": {"component": "cache"}, "port": 6379}, {"from": "api", "to": {"cidr": "10.1.0.0/16"}}],
        "admit": [{"system": "other", "to": "api", "port": 9000}],
        "exposure": {"mode": "Internet", "component": "api", "port": 9000, "host": "portal.example.gov.cn", "tlsSecretName": "tls"},
        "migration": {"sourceDataCenter": "旧机房", "sourceSystemId": "SYS-1", "phase": "Syncing"}
    })
}

/// Random text sprinkled with `${...}` syntax and parameter names.
fn template_text(rng: &mut Rng) -> String {
    let bits = [
        "${host}",
        "${storage}",
        "${cpu}",
        "${",
        "}",
        "${}",
        "${${host}}",
        "$${host}",
        "${统}",
        "${undeclared}",
        "a",
        "500m",
        "20Gi",
        "统",
        "\u{0}",
        "${host",
        "${ host }",
    ];
    (0..rng.below(5)).map(|_| *rng.pick(&bits)).collect()
}

/// Replaces some free-text string fields (not enums) with template text.
fn sprinkle(rng: &mut Rng, v: &mut Value) {
    const FREE: &[&str] = &[
        "image",
        "host",
        "value",
        "size",
        "class",
        "cpu",
        "memory",
        "mountPath",
        "path",
        "default",
        "description",
        "displayName",
        "name",
    ];
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| sprinkle(rng, x)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(s) if FREE.contains(&k.as_str()) && rng.one_in(3) => *s = template_text(rng),
                    _ => sprinkle(rng, x),
                }
            }
        }
        _ => {}
    }
}

/// RE2 patterns a template may carry: valid, invalid, and (as seeds, since compiling them
/// is slow) huge ones.
const PATTERNS: &[&str] = &[
    "^[0-9]+Gi$",
    "(",
    "[",
    "[z-a]",
    "\\",
    "(?",
    "\\p{Unknown}",
    "a{4294967295}",
    "((((((((((a*)*)*)*)*)*)*)*)*)*)*",
    "^.*$",
    "",
    "(?i)^OA$",
    "\\d+\u{0}",
    "统+",
];

#[derive(Debug)]
struct CatalogInput {
    template: ServiceTemplateSpec,
    reference: TemplateRef,
    system: HostedSystemSpec,
}

fn catalog_input(template: Value, reference: Value, system: Value) -> Option<CatalogInput> {
    Some(CatalogInput {
        template: serde_json::from_value(template).ok()?,
        reference: serde_json::from_value(reference).ok()?,
        system: serde_json::from_value(system).ok()?,
    })
}

#[test]
fn catalog_expansion_never_panics() {
    let mut seeds = Vec::new();
    for (pattern, value) in [
        ("(a{1000}){1000}", "a"),
        ("(((a{100}){100}){100})", "a"),
        ("^(a+)+$", &*format!("{}!", "a".repeat(5000))),
        ("[\\x{0}-\\x{10FFFF}]{1000}", "统"),
    ] {
        let mut t = template_base();
        t["parameters"][0]["pattern"] = json!(pattern);
        let r = json!({"name": "oa", "parameters": {"host": value}});
        seeds.extend(catalog_input(t, r, system_base()));
    }
    let undeclared = {
        let mut t = template_base();
        t["versions"][0]["components"][0]["image"] = json!("${nope}${${host}}${");
        t
    };
    seeds.extend(catalog_input(
        undeclared,
        json!({"name": "oa", "parameters": {"host": "${host}"}}),
        system_base(),
    ));
    let mut skipped = 0usize;
    fuzz(
        "catalog",
        seeds,
        6_000,
        budget_ms(1500),
        |rng| loop {
            let mut t = template_base();
            sprinkle(rng, &mut t);
            if rng.one_in(4) {
                mutate(rng, &mut t);
            }
            if let Some(ps) = t["parameters"].as_array_mut() {
                for p in ps.iter_mut().filter(|p| p.is_object()) {
                    if rng.one_in(3) {
                        p["pattern"] = json!(rng.pick(PATTERNS));
                    }
                    if rng.one_in(4) {
                        p["default"] = json!(template_text(rng));
                    }
                }
            }
            if rng.one_in(8) {
                t["versions"] = json!([]);
            }
            let names = ["host", "storage", "cpu", "nope", "", "统"];
            let parameters: BTreeMap<String, String> = (0..rng.below(4))
                .map(|_| (rng.pick(&names).to_string(), template_text(rng)))
                .collect();
            let replicas: BTreeMap<String, i32> = (0..rng.below(3))
                .map(|_| {
                    (
                        rng.pick(&["web", "db", "ghost"]).to_string(),
                        *rng.pick(&[0, 1, 100, 101, -1, i32::MAX, i32::MIN]),
                    )
                })
                .collect();
            let r = json!({"name": "oa", "version": rng.pick(&[None, Some("1.0"), Some("9"), Some("")]),
                           "parameters": parameters, "replicas": replicas});
            let mut s = system_base();
            if rng.one_in(4) {
                mutate(rng, &mut s);
            }
            if rng.bool()
                && let Some(name) = s.pointer_mut("/components/0/name")
            {
                *name = json!(rng.pick(&["web", "db", "api"]));
            }
            match (
                serde_json::from_value::<ServiceTemplateSpec>(t),
                serde_json::from_value::<TemplateRef>(r),
                serde_json::from_value::<HostedSystemSpec>(s),
            ) {
                (Ok(template), Ok(reference), Ok(system)) => {
                    break CatalogInput {
                        template,
                        reference,
                        system,
                    };
                }
                _ => skipped += 1,
            }
        },
        |i| {
            if let Ok(x) = catalog::expand("oa", &i.template, &i.reference) {
                let _ = catalog::effective(&i.system, Some(&x));
            }
            let _ = catalog::effective(&i.system, None);
            Ok(())
        },
    );
    println!("catalog: {skipped} generated inputs were not representable and were skipped");
}

// ---------------------------------------------------------------------------------------
// Placement

/// Milli values the operator can hold: parsed quota and capacity quantities (non-negative,
/// up to what `Milli::parse` accepts) and their saturating sums (up to `i128::MAX`).
fn milli(rng: &mut Rng) -> Milli {
    match rng.below(5) {
        0 => Milli(*rng.pick(&[
            0,
            1,
            999,
            1000,
            i128::MAX,
            i128::MAX / 1000,
            i128::MAX / 1000 + 1,
            1i128 << 100,
        ])),
        1 => Milli(i128::from(rng.next_u64() >> rng.below(64))),
        2 => Milli::parse(&format!(
            "{}{}",
            rng.below(1_000_000),
            rng.pick(&["", "m", "Gi", "Ti", "Ki"])
        ))
        .unwrap_or_default(),
        3 => Milli::parse(&format!(
            "{}{}",
            rng.pick(NUMBERS).trim_start_matches('-'),
            rng.pick(&["", "Ei", "E"])
        ))
        .unwrap_or_default(),
        _ => Milli(rng.below(64_000_000) as i128),
    }
}

fn candidate(rng: &mut Rng, i: usize) -> Candidate {
    Candidate {
        name: format!("dc{i}-{}", rng.below(3)),
        region: rng.pick(&["beijing", "guizhou", ""]).to_string(),
        zone: if rng.bool() {
            NetworkZone::Internal
        } else {
            NetworkZone::External
        },
        max_level: *rng.pick(&[1u8, 2, 3, 4]),
        schedulable: !rng.one_in(4),
        ready: !rng.one_in(4),
        labels: (0..rng.below(3))
            .map(|_| {
                (
                    rng.pick(&["g", "x", ""]).to_string(),
                    rng.pick(&["1", "2", ""]).to_string(),
                )
            })
            .collect(),
        allocatable_cpu: milli(rng),
        allocatable_memory: milli(rng),
        // The schema bounds overcommit to 1–10 (CPU) and 1–4 (memory).
        overcommit_cpu: if rng.bool() {
            *rng.pick(&[1.0, 10.0, 2.5])
        } else {
            rng.f64_in(1.0, 10.0)
        },
        overcommit_memory: if rng.bool() {
            *rng.pick(&[1.0, 4.0, 1.5])
        } else {
            rng.f64_in(1.0, 4.0)
        },
        placed_cpu: milli(rng),
        placed_memory: milli(rng),
        agencies: (0..rng.below(4))
            .map(|_| (rng.pick(&["mof", "zj", "me"]).to_string(), *rng.pick(&[1u8, 2, 3, 4])))
            .collect(),
    }
}

#[test]
fn placement_never_panics() {
    fuzz(
        "placement",
        vec![],
        30_000,
        budget_ms(1500),
        |rng| {
            let req = Request {
                agency: rng.pick(&["me", "mof", ""]).to_string(),
                level: *rng.pick(&[1u8, 2, 3, 4]),
                zone: if rng.bool() {
                    NetworkZone::Internal
                } else {
                    NetworkZone::External
                },
                cpu: milli(rng),
                memory: milli(rng),
                cluster: rng.bool().then(|| format!("dc{}-{}", rng.below(3), rng.below(3))),
                region: rng.one_in(3).then(|| rng.pick(&["beijing", "guizhou"]).to_string()),
                selector: (0..rng.below(2))
                    .map(|_| (rng.pick(&["g", "x"]).to_string(), rng.pick(&["1", "2"]).to_string()))
                    .collect(),
            };
            let cands: Vec<Candidate> = (0..rng.below(5)).map(|i| candidate(rng, i)).collect();
            (req, cands)
        },
        |(req, cands)| {
            let d = placement::decide(req, cands);
            let _ = d.explain();
            for c in cands {
                let _ = placement::recheck(req, c);
            }
            match &d.chosen {
                Some(c) if !d.eligible.iter().any(|(n, _)| n == c) => Err(format!("chose {c}, which is not eligible")),
                _ => Ok(()),
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// Data recovery: Velero's pod volume objects, pods, drill histories and hub backup files
// come from clusters and files, not from the schema: never a panic, and the sums and
// checks hold.

#[test]
fn data_recovery_inputs_never_panic() {
    use govcloud_core::{backup as b, rebuild};
    let pvb = json!({"metadata": {"name": "x"}, "spec": {"pod": {"name": "db-0"}, "volume": "data"},
                     "status": {"phase": "Completed", "progress": {"totalBytes": 10}}});
    let pod = json!({"metadata": {"name": "db-0"}, "spec": {"nodeName": "n1",
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}});
    let doc = rebuild::bundle(
        vec![json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud",
                                           "metadata": {"name": "a"}, "spec": {}})],
        "t",
    );
    fuzz(
        "data_recovery",
        vec![(vec![pvb.clone()], vec![pod.clone()], doc.clone(), 0u32)],
        20_000,
        budget_ms(1500),
        |rng| {
            let mut vols: Vec<Value> = (0..rng.below(4)).map(|_| pvb.clone()).collect();
            let mut pods: Vec<Value> = (0..rng.below(4)).map(|_| pod.clone()).collect();
            for v in vols.iter_mut().chain(pods.iter_mut()) {
                if rng.bool() {
                    mutate(rng, v);
                }
            }
            if rng.one_in(4) {
                vols.push(random_value(rng, 3));
                pods.push(random_value(rng, 3));
            }
            let mut d = doc.clone();
            if rng.bool() {
                mutate(rng, &mut d);
            }
            (vols, pods, d, rng.below(200) as u32)
        },
        |(vols, pods, d, keep)| {
            let s = b::pod_volumes(vols);
            if s.volumes as usize != vols.len() || s.completed as usize + s.failed.len() > vols.len() {
                return Err(format!("summary {s:?} of {} objects", vols.len()));
            }
            let agents = ["n1".to_string()].into_iter().collect();
            let _ = b::pods_without_node_agent(pods, &agents);
            let r = govcloud_api::backup::RestoreRecord {
                restore: "r".into(),
                result: "Passed".into(),
                ..Default::default()
            };
            let h = b::drill_history(&[r.clone(), r.clone()], &r, *keep);
            if h.is_empty() || h.len() > (*keep).max(1) as usize {
                return Err(format!("history of {} kept {}", keep, h.len()));
            }
            // A document that passes its check restores exactly its items, each marked.
            if let Ok(items) = rebuild::check(d) {
                let plan = rebuild::restore_plan(&items, d["digest"].as_str().unwrap_or(""));
                if plan.len() != items.len() {
                    return Err(format!("{} items, {} in the plan", items.len(), plan.len()));
                }
                if d != &doc
                    && rebuild::digest(&items)
                        == rebuild::digest(doc["items"].as_array().map(Vec::as_slice).unwrap_or(&[]))
                    && d["items"] != doc["items"]
                {
                    return Err("different items with the same digest".into());
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------
// serde deserialisation of every CRD type

fn agency_spec_base() -> Value {
    json!({
        "agency": {"displayName": "财政部", "shortName": "mof", "creditCode": "11100000MB0123456X", "adminLevel": "central",
                   "contact": {"name": "王主任", "phone": "010-6855 1234", "email": "it@mof.gov.cn"}},
        "securityLevel": 3, "zone": "internal",
        "environments": [{"name": "prod", "quota": {"cpu": "32", "memory": "128Gi", "storage": "2Ti", "pods": 300, "gpus": 0}},
                         {"name": "test", "quota": {"cpu": "500m", "memory": "1.5Gi"}}],
        "owners": [{"kind": "Group", "name": "mof-ops"}], "viewers": [{"kind": "User", "name": "auditor"}],
        "egress": [{"name": "ldap", "cidr": "10.8.0.0/16", "ports": [{"port": 636}, {"port": 53, "protocol": "UDP"}], "description": "LDAP"},
                   {"name": "pay", "cidr": "203.0.113.0/24", "internetExit": true}],
        "allowedRegistries": ["registry.gov.cn", "harbor.dc.gov.cn:8443/mof"],
        "placement": {"region": "beijing", "clusterSelector": {"tier": "gold"}},
        "deletionPolicy": "Protect"
    })
}

fn manifests() -> Vec<(&'static str, Value)> {
    let meta = |name: &str, ns: Option<&str>| {
        let mut m = json!({"name": name, "uid": "u-1", "generation": 2, "creationTimestamp": "2025-01-01T00:00:00Z"});
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    let cond = json!([{"type": "Ready", "status": "False", "reason": "X", "message": "m",
                       "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 2}]);
    vec![
        (
            "DataCenterCluster",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "DataCenterCluster", "metadata": meta("dc1", None),
                   "spec": {"region": "beijing", "zone": "internal", "maxSecurityLevel": 4, "ownership": "partner", "schedulable": false,
                            "overcommit": {"cpu": 2.0, "memory": 1.5}, "kubeconfigSecret": {"name": "dc1", "key": "k"}, "displayName": "北京"},
                   "status": {"conditions": cond, "nodeCount": 3, "readyNodeCount": 2, "capacity": {"cpu": "96", "memory": "384Gi", "pods": "330"},
                              "allocatable": {"cpu": "90", "memory": "380Gi"}, "kubernetesVersion": "v1.34.4",
                              "lastProbeTime": "2025-01-01T00:00:00Z"}}),
        ),
        (
            "TenancyRequest",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "TenancyRequest", "metadata": meta("mof", Some("requests")),
                   "spec": {"cloud": agency_spec_base(), "justification": "迁移预算管理一体化系统", "requestedBy": "liu",
                            "decision": {"action": "Approve", "decidedBy": "wang", "reason": "ok", "reviewedGeneration": 1}},
                   "status": {"conditions": cond, "placementPreview": {"cluster": "dc1", "rejected": [{"cluster": "dc2", "reason": "ZoneMismatch", "message": "m"}]},
                              "agencyCloud": "mof", "decisionObservedTime": "2025-01-01T00:00:00Z"}}),
        ),
        (
            "AgencyCloud",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "AgencyCloud", "metadata": meta("mof", None), "spec": agency_spec_base(),
                   "status": {"conditions": cond, "placement": {"cluster": "dc1", "region": "beijing", "zone": "internal"},
                              "environments": [{"name": "prod", "namespace": "mof-prod", "hard": {"requests.cpu": "32"}, "used": {"requests.cpu": "1"}}]}}),
        ),
        (
            "HostedSystem",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "HostedSystem", "metadata": meta("portal", Some("mof-prod")),
                   "spec": {
                       "securityLevel": 3, "dataClassification": "important",
                       "template": {"name": "oa", "version": "1.0", "parameters": {"host": "oa.mof.gov.cn"}, "replicas": {"web": 3}},
                       "components": system_base()["components"].clone(), "flows": system_base()["flows"].clone(),
                       "admit": system_base()["admit"].clone(), "exposure": system_base()["exposure"].clone(),
                       "internetExposureApproval": {"approvedBy": "wang", "host": "portal.example.gov.cn", "reason": "等保测评 2025-001"},
                       "migration": system_base()["migration"].clone(), "volumeRetention": "Delete"},
                   "status": {"conditions": cond, "cluster": "dc1", "components": [{"name": "api", "desired": 2, "ready": 1, "endpoints": ["a:1"]}],
                              "url": "https://portal/", "readySummary": "1/2", "template": {"name": "oa", "version": "1.0", "components": [], "flows": []},
                              "migrationTransitions": {"Syncing": "2025-01-01T00:00:00Z"}}}),
        ),
        (
            "ServiceTemplate",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "ServiceTemplate", "metadata": meta("oa", None), "spec": template_base()}),
        ),
        (
            "BackupLocation",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "BackupLocation", "metadata": meta("beijing", None),
                   "spec": {"region": "beijing", "zone": "internal", "encryption": "SM4-GCM", "perAgency": true,
                            "bucket": "govcloud-backups", "endpoint": "https://oss.dc.gov.cn", "s3Region": "us-east-1",
                            "credentialsSecret": "oss-beijing"}}),
        ),
        (
            "BackupPolicy",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "BackupPolicy", "metadata": meta("daily", Some("mof-prod")),
                   "spec": {"selector": {"matchLabels": {"tier": "web"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
                            "schedule": "0 2 * * *", "timeZone": "Asia/Shanghai", "retention": {"keepLast": 7, "daily": 14, "weekly": 8, "monthly": 12},
                            "rpo": "24h", "offsiteRegion": "guizhou", "drill": {"schedule": "0 3 1 * *"}},
                   "status": {"conditions": cond, "cluster": "dc1", "rpo": "24h", "systems": ["portal"], "retained": 3, "copiesInRegions": ["beijing"],
                              "lastBackup": {"name": "b", "phase": "Completed", "time": "2025-01-01T00:00:00Z", "region": "beijing"},
                              "lastDrill": {"trigger": "schedule", "backup": "b", "restore": "r", "namespace": "n", "result": "Passed", "durationSeconds": 5}}}),
        ),
        (
            "UtilizationReport",
            json!({"apiVersion": "govcloud.io/v1alpha1", "kind": "UtilizationReport", "metadata": meta("daily-2025-01-01", None),
                   "spec": {"periodStart": "2025-01-01T00:00:00Z", "periodEnd": "2025-01-02T00:00:00Z",
                            "prices": {"currency": "CNY", "cpuCoreMonth": 100.0, "memoryGiBMonth": 10.0, "storageGiBMonth": 0.5}},
                   "status": {"phase": "Completed", "generatedAt": "2025-01-02T00:00:00Z",
                              "summary": {"clusters": 1, "agencies": 1, "allocatable": {"cpu": 1.0, "memory": 2.0, "storage": 0.0, "pods": 3.0},
                                          "allocated": {"cpu": 1.0, "memory": 2.0, "storage": 0.0, "pods": 3.0},
                                          "used": {"cpu": 1.0, "memory": 2.0, "storage": 0.0, "pods": 3.0},
                                          "cpuAllocatedPercent": "10%", "cpuUsedPercent": "1%", "systems": 2, "systemsReady": 1,
                                          "backupNonCompliantAgencies": 0, "totalCost": "1.00 CNY"},
                              "tables": [{"configMap": "t", "rows": 1}], "currency": "CNY"}}),
        ),
    ]
}

/// Deserialises `text` as `T`; when it succeeds, the value must serialise and read back
/// as itself.
fn roundtrip<T: DeserializeOwned + Serialize + PartialEq + Debug>(text: &str) -> Result<(), String> {
    let Ok(obj) = serde_json::from_str::<T>(text) else {
        return Ok(());
    };
    let back = serde_json::to_string(&obj).map_err(|e| format!("accepted but cannot be serialised: {e}"))?;
    match serde_json::from_str::<T>(&back) {
        Ok(again) if again == obj => Ok(()),
        Ok(_) => Err(format!("serialises to {back} which reads back differently")),
        Err(e) => Err(format!("serialises to {back} which does not read back: {e}")),
    }
}

fn check_kind(kind: &str, text: &str) -> Result<(), String> {
    match kind {
        "DataCenterCluster" => roundtrip::<DataCenterCluster>(text),
        "TenancyRequest" => roundtrip::<TenancyRequest>(text),
        "AgencyCloud" => roundtrip::<AgencyCloud>(text),
        "HostedSystem" => roundtrip::<HostedSystem>(text),
        "ServiceTemplate" => roundtrip::<ServiceTemplate>(text),
        "BackupLocation" => roundtrip::<BackupLocation>(text),
        "BackupPolicy" => roundtrip::<BackupPolicy>(text),
        "UtilizationReport" => roundtrip::<UtilizationReport>(text),
        other => Err(format!("unknown kind {other}")),
    }
}

#[test]
fn crd_deserialisation_never_panics() {
    let bases = manifests();
    // The bases themselves must read and round-trip (otherwise the fuzzing below is moot).
    for (kind, v) in &bases {
        let text = v.to_string();
        let ok = match *kind {
            "DataCenterCluster" => serde_json::from_str::<DataCenterCluster>(&text).is_ok(),
            "TenancyRequest" => serde_json::from_str::<TenancyRequest>(&text).is_ok(),
            "AgencyCloud" => serde_json::from_str::<AgencyCloud>(&text).is_ok(),
            "HostedSystem" => serde_json::from_str::<HostedSystem>(&text).is_ok(),
            "ServiceTemplate" => serde_json::from_str::<ServiceTemplate>(&text).is_ok(),
            "BackupLocation" => serde_json::from_str::<BackupLocation>(&text).is_ok(),
            "BackupPolicy" => serde_json::from_str::<BackupPolicy>(&text).is_ok(),
            _ => serde_json::from_str::<UtilizationReport>(&text).is_ok(),
        };
        assert!(ok, "the fuzz base of {kind} does not deserialise");
    }
    let mut seeds: Vec<(&str, String)> = Vec::new();
    for (kind, _) in &bases {
        seeds.push((kind, "[".repeat(100_000)));
        seeds.push((kind, "{\"a\":".repeat(50_000)));
        seeds.push((kind, String::new()));
        seeds.push((kind, "\u{0}".into()));
        seeds.push((kind, "{\"spec\": 1e400}".into()));
        seeds.push((
            kind,
            "{\"spec\": {\"securityLevel\": 1e400, \"maxSecurityLevel\": -1e400}}".into(),
        ));
        seeds.push((
            kind,
            format!("{{\"metadata\": {{\"name\": \"{}\"}}}}", "x".repeat(1 << 20)),
        ));
    }
    fuzz(
        "crd_serde",
        seeds,
        40_000,
        budget_ms(2000),
        |rng| {
            let (kind, base) = rng.pick(&bases);
            let text = match rng.below(10) {
                0 => random_value(rng, 4).to_string(),
                1 => {
                    let mut s = base.to_string();
                    let cut = rng.below(s.len());
                    while !s.is_char_boundary(cut.min(s.len())) {
                        s.pop();
                    }
                    s.truncate(cut.min(s.len()));
                    s
                }
                2 => text(rng, 20),
                _ => {
                    let mut v = base.clone();
                    mutate(rng, &mut v);
                    v.to_string()
                }
            };
            (*kind, text)
        },
        |(kind, text)| check_kind(kind, text),
    );
}

// ---------------------------------------------------------------------------------------
// Builders of desired state, conditions, node sums

#[derive(Debug)]
struct BuilderInput {
    name: String,
    cloud: CloudSpec,
    system: HostedSystemSpec,
    level: u8,
    cidrs: Vec<String>,
    message: String,
    nodes: Vec<Node>,
    live: Value,
    desired: Value,
}

#[test]
fn builders_never_panic() {
    let mut skipped = 0usize;
    fuzz(
        "builders",
        vec![],
        8_000,
        budget_ms(1500),
        |rng| loop {
            let mut c = agency_spec_base();
            if rng.bool() {
                mutate(rng, &mut c);
            }
            sprinkle(rng, &mut c);
            let mut s = system_base();
            if rng.bool() {
                mutate(rng, &mut s);
            }
            sprinkle(rng, &mut s);
            let nodes: Vec<Node> = (0..rng.below(4))
                .filter_map(|_| {
                    let q = |rng: &mut Rng| {
                        if rng.bool() {
                            text(rng, 4)
                        } else {
                            format!("{}{}", rng.pick(NUMBERS), rng.pick(&["", "Gi", "Ei", "m"]))
                        }
                    };
                    serde_json::from_value(json!({
                        "metadata": {"name": "n"},
                        "spec": {"unschedulable": rng.bool()},
                        "status": {"capacity": {"cpu": q(rng), "memory": q(rng), "pods": q(rng)},
                                   "allocatable": {"cpu": q(rng), "memory": q(rng), "pods": q(rng)},
                                   "conditions": [{"type": "Ready", "status": rng.pick(&["True", "False"])}]}
                    }))
                    .ok()
                })
                .collect();
            let (Ok(cloud), Ok(system)) = (
                serde_json::from_value::<CloudSpec>(c),
                serde_json::from_value::<HostedSystemSpec>(s),
            ) else {
                skipped += 1;
                continue;
            };
            let cidr_bits = [
                "10.0.0.0",
                "/",
                "8",
                "33",
                "-1",
                "::",
                "fc00::",
                "256.1.1.1",
                "0.0.0.0",
                "/0",
                "统",
                "1",
            ];
            break BuilderInput {
                name: dns_name(rng),
                cloud,
                system,
                level: *rng.pick(&[0u8, 1, 2, 3, 4, 5, 255]),
                cidrs: (0..4)
                    .map(|_| (0..rng.below(4)).map(|_| *rng.pick(&cidr_bits)).collect())
                    .collect(),
                message: text(rng, 12) + &"统".repeat(rng.below(2) * 12_000),
                nodes,
                live: random_value(rng, 3),
                desired: random_value(rng, 3),
            };
        },
        |i| {
            let (children, _) = agency::member_children(&i.name, &i.cloud);
            let _ = agency::hub_children(&i.name, &i.cloud);
            let _ = agency::total_quota(&i.cloud);
            let _ = agency::egress_allowed(i.level, i.cloud.zone, &i.cloud.egress);
            let rules: Vec<EgressRule> = i
                .cidrs
                .iter()
                .map(|c| EgressRule {
                    name: "r".into(),
                    cidr: c.clone(),
                    ports: vec![],
                    internet_exit: c.len() % 2 == 0,
                    description: None,
                })
                .collect();
            let _ = agency::egress_allowed(i.level, NetworkZone::Internal, &rules);
            let _ = agency::registry_annotation(&i.cloud);
            let _ = hosted::children(&i.name, i.level, &i.name, "ns", &i.system);
            let _ = (
                hosted::url(&i.system),
                hosted::spec_record(&i.name, &i.name, "ns", &i.system),
            );
            let _ = hosted::http_route(&i.name, &i.name, "ns", &i.system);
            let _ = levels::rules(i.level);
            let _ = cluster::probe_backoff(u32::from(i.level) << 24, Duration::from_secs(30));
            let now = Time(Timestamp::UNIX_EPOCH);
            let desired = [conditions::Desired::new(
                "Ready",
                i.level % 2 == 0,
                "Reason",
                i.message.clone(),
            )];
            let merged = conditions::merge(&[] as &[Condition], &desired, Some(1), &now);
            let _ = conditions::merge(&merged, &desired, None, &now);
            let summary = cluster::summarize_nodes(&i.nodes);
            let _ = summary.capacity.to_status();
            let _ = cluster::reachable_conditions(&summary, &i.message);
            let _ = subset::contains(&i.live, &i.desired);
            // Properties: each desired child is contained in itself; a truncated condition
            // message stays within 32 KiB plus the ellipsis.
            if let Some(c) = children.iter().find(|c| !subset::contains(&c.body, &c.body)) {
                return Err(format!("child {} is not a subset of itself", c.name));
            }
            if merged.first().is_some_and(|c| c.message.len() > 32 * 1024 + 3) {
                return Err("condition message longer than 32 KiB".into());
            }
            Ok(())
        },
    );
    println!("builders: {skipped} generated inputs were not representable and were skipped");
}

// ---------------------------------------------------------------------------------------
// Utilization exports

fn totals(rng: &mut Rng) -> Totals {
    let f = |rng: &mut Rng| *rng.pick(&[0.0, 1.5, 1e18, 123456.789, 1e-9, f64::MAX, 5e-324]);
    Totals {
        cpu: f(rng),
        memory: f(rng),
        storage: f(rng),
        pods: f(rng),
    }
}

#[derive(Debug)]
struct ExportInput {
    rows: Vec<AgencyRow>,
    clusters: Vec<ClusterRow>,
    csv: String,
    title: String,
    prices: PriceCatalogue,
}

#[test]
fn utilization_exports_never_panic_and_round_trip() {
    fuzz(
        "utilization",
        vec![],
        6_000,
        budget_ms(1500),
        |rng| {
            let s = |rng: &mut Rng| text(rng, 5);
            let rows: Vec<AgencyRow> = (0..rng.below(4))
                .map(|_| AgencyRow {
                    agency: s(rng),
                    display_name: s(rng),
                    level: *rng.pick(&[0u8, 1, 4, 255]),
                    cluster: s(rng),
                    region: s(rng),
                    zone: s(rng),
                    quota: totals(rng),
                    used: totals(rng),
                    cpu_efficiency: rng.bool().then(|| rng.f64_in(0.0, 2.0)),
                    systems: *rng.pick(&[0u32, 1, u32::MAX]),
                    systems_ready: *rng.pick(&[0u32, 1, u32::MAX]),
                    backup_compliant: rng.bool().then(|| rng.bool()),
                    cost: rng.bool().then(|| *rng.pick(&[0.0, 12345.67, -1.0, 1e300])),
                })
                .collect();
            let clusters = (0..rng.below(3))
                .map(|_| ClusterRow {
                    cluster: s(rng),
                    region: s(rng),
                    zone: s(rng),
                    reachable: rng.bool(),
                    capacity: totals(rng),
                    allocatable: totals(rng),
                    allocated: totals(rng),
                    used: totals(rng),
                    agencies: rng.below(5) as u32,
                })
                .collect();
            let mut csv = utilization::to_csv(&rows);
            if rng.bool() {
                let cut = rng.below(csv.len() + 1);
                let mut cut = cut.min(csv.len());
                while !csv.is_char_boundary(cut) {
                    cut -= 1;
                }
                csv.insert_str(cut, &text(rng, 4));
            }
            ExportInput {
                rows,
                clusters,
                csv,
                title: s(rng),
                prices: PriceCatalogue {
                    currency: s(rng),
                    cpu_core_month: *rng.pick(&[0.0, -1.0, 1e308, 100.0]),
                    memory_gib_month: *rng.pick(&[0.0, 1e308, 10.0]),
                    storage_gib_month: *rng.pick(&[0.0, 1.0]),
                },
            }
        },
        |i| {
            let _ = utilization::from_csv(&i.csv);
            let _ = utilization::to_html(&i.title, &i.title, &i.clusters, &i.rows, Some(&i.prices.currency));
            let _ = utilization::sum(i.rows.iter().map(|r| &r.quota));
            for r in &i.rows {
                let _ = govcloud_core::utilization::cost(&i.prices, &r.quota, 1.0);
            }
            // Property: the CSV export reads back as the rows it was written from. On failure,
            // name the row and the text fields that make it fail.
            let reads_back = |rows: &[AgencyRow]| match utilization::from_csv(&utilization::to_csv(rows)) {
                Ok(back) if back == rows => Ok(()),
                Ok(_) => Err("reads back as different rows".to_string()),
                Err(e) => Err(format!("does not read back: {e}")),
            };
            if reads_back(&i.rows).is_ok() {
                return Ok(());
            }
            for row in &i.rows {
                let Err(why) = reads_back(std::slice::from_ref(row)) else {
                    continue;
                };
                let mut culprits = Vec::new();
                for field in ["agency", "display_name", "cluster", "region", "zone"] {
                    let mut r = row.clone();
                    let (slot, value) = match field {
                        "agency" => (&mut r.agency, row.agency.clone()),
                        "display_name" => (&mut r.display_name, row.display_name.clone()),
                        "cluster" => (&mut r.cluster, row.cluster.clone()),
                        "region" => (&mut r.region, row.region.clone()),
                        _ => (&mut r.zone, row.zone.clone()),
                    };
                    *slot = "x".into();
                    if reads_back(std::slice::from_ref(&r)).is_ok() {
                        culprits.push(format!("{field} = {value:?}"));
                    }
                }
                return Err(format!("a row with {} {why}", culprits.join(", ")));
            }
            Err("the rows do not read back together (each alone does)".into())
        },
    );
}
