//! Reading names back out of a certificate (x509-parser).

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

/// The DNS names and IP addresses a PEM certificate carries besides
/// `localhost` and `127.0.0.1` (which every leaf gets); empty if it does
/// not parse.
pub fn extra_names(cert_pem: &str) -> Vec<String> {
    let Ok((_, pem)) = parse_x509_pem(cert_pem.as_bytes()) else {
        return Vec::new();
    };
    let Ok(cert) = pem.parse_x509() else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_string()),
            GeneralName::IPAddress(bytes) => ip(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .filter(|n| n != "localhost" && n != "127.0.0.1")
        .collect()
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
