//! Networks and host names derived from a tenant's input: CIDR containment and DNS-name
//! ownership, exact and without look-alikes.

use std::net::IpAddr;

/// A network: its address with the host bits cleared, and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`. The host bits are cleared, so `10.1.2.3/8` is
    /// `10.0.0.0/8`, as the API server and the network plugin read it.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = s.trim().split_once('/')?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
            return None;
        }
        let len: u8 = len.parse().ok()?;
        let addr: IpAddr = addr.parse().ok()?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return None;
        }
        Some(Cidr {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether every address of `inner` is in `self` (same family only: an IPv4-mapped
    /// IPv6 network is not inside an IPv4 one, and is refused rather than guessed).
    pub fn contains(&self, inner: &Cidr) -> bool {
        self.addr.is_ipv4() == inner.addr.is_ipv4() && self.len <= inner.len && mask(inner.addr, self.len) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Whether `host` is `domain` or a name under it (`a.mof.gov.cn` is under `mof.gov.cn`;
/// `evilmof.gov.cn` is not). Both are compared as written: the schema admits only
/// lowercase ASCII names, so no case folding or Unicode look-alike can make two differ.
pub fn under_domain(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// Which agency a host belongs to: the one whose domain is the longest match. `None` when
/// no agency's domain covers it, or when two agencies list the same longest domain (the
/// platform gave one domain twice: nobody may use it until that is fixed).
pub fn host_owner<'a>(host: &str, agencies: &[(&'a str, &[String])]) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    let mut tie = false;
    for (agency, domains) in agencies {
        for d in domains.iter().filter(|d| under_domain(host, d)) {
            match best {
                Some((len, a)) if d.len() == len && a != *agency => tie = true,
                Some((len, _)) if d.len() <= len => {}
                _ => {
                    best = Some((d.len(), agency));
                    tie = false;
                }
            }
        }
    }
    if tie { None } else { best.map(|(_, a)| a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        match Cidr::parse(s) {
            Some(c) => c,
            None => panic!("test CIDR {s} does not parse"),
        }
    }

    #[test]
    fn containment_is_exact() {
        assert!(c("10.0.0.0/8").contains(&c("10.8.0.0/16")));
        assert!(c("10.0.0.0/8").contains(&c("10.0.0.0/8")));
        assert!(c("10.8.0.0/16").contains(&c("10.8.3.4/32")));
        assert!(!c("10.8.0.0/16").contains(&c("10.0.0.0/8")));
        assert!(!c("10.8.0.0/16").contains(&c("10.9.0.0/16")));
        assert!(!c("10.0.0.0/8").contains(&c("0.0.0.0/0")));
        assert!(!c("10.0.0.0/8").contains(&c("11.0.0.0/8")));
        // Host bits are cleared as the network plugin does: 10.1.2.3/8 is all of 10/8.
        assert!(!c("10.8.0.0/16").contains(&c("10.8.0.1/8")));
        assert!(c("10.0.0.0/8").contains(&c("10.200.0.1/8")));
        // IPv6, and no crossing between families (IPv4-mapped IPv6 included).
        assert!(c("fd00::/8").contains(&c("fd12:3456::/32")));
        assert!(!c("10.0.0.0/8").contains(&c("::ffff:10.0.0.0/104")));
        assert!(!c("::/0").contains(&c("10.0.0.0/8")));
        assert!(c("0.0.0.0/0").contains(&c("203.0.113.0/24")));
    }

    #[test]
    fn malformed_cidrs_do_not_parse() {
        for s in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/08x",
            "::/129",
            "10.0.0.0/ 8",
        ] {
            assert_eq!(Cidr::parse(s), None, "{s}");
        }
        assert_eq!(c("10.1.2.3/8").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn hosts_belong_to_the_longest_domain() {
        let mof = vec!["mof.gov.cn".to_string()];
        let zj = vec!["zj.gov.cn".to_string(), "zjzwfw.gov.cn".to_string()];
        let broad = vec!["gov.cn".to_string()];
        let agencies = [
            ("mof", mof.as_slice()),
            ("zj", zj.as_slice()),
            ("nat", broad.as_slice()),
        ];
        assert_eq!(host_owner("portal.mof.gov.cn", &agencies), Some("mof"));
        assert_eq!(host_owner("mof.gov.cn", &agencies), Some("mof"));
        assert_eq!(host_owner("a.b.zjzwfw.gov.cn", &agencies), Some("zj"));
        // Not a suffix on a label boundary: falls to the broader domain.
        assert_eq!(host_owner("evilmof.gov.cn", &agencies), Some("nat"));
        assert_eq!(host_owner("example.com", &agencies), None);
        // The same domain given to two agencies: nobody owns it.
        let twice = [("mof", mof.as_slice()), ("copy", mof.as_slice())];
        assert_eq!(host_owner("portal.mof.gov.cn", &twice), None);
        // One agency listing it twice is not a tie.
        let dup = vec!["mof.gov.cn".to_string(), "mof.gov.cn".to_string()];
        assert_eq!(host_owner("a.mof.gov.cn", &[("mof", dup.as_slice())]), Some("mof"));
        assert!(!under_domain("xmof.gov.cn", "mof.gov.cn"));
        assert!(under_domain("x.mof.gov.cn", "mof.gov.cn"));
    }
}
