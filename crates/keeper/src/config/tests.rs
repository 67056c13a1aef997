//! Unit tests of the configuration: each feeds `zoo.cfg` text (or builds a [`Config`]) and
//! checks the values, warnings and errors corral makes of it.

use super::properties::unescape;
use super::values::java_decode_int;
use super::*;

const KAZOO: &str = "tickTime=2000
dataDir=/tmp/tmpXXXX/data
clientPort=20000
maxClientCnxns=0
admin.serverPort=20003
authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider
reconfigEnabled=true
4lw.commands.whitelist=*
secureClientPort=20004
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=/tmp/tmpXXXX/keystore.jks
ssl.keyStore.password=apassword
ssl.trustStore.location=/tmp/tmpXXXX/truststore.jks
ssl.trustStore.password=apassword
server.1=localhost:20001:20002:participant;localhost:20000
";

fn parse_ok(text: &str) -> (Config, Vec<String>) {
    match parse(text, Path::new("zoo.cfg")) {
        Ok(r) => r,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn parse_err(text: &str) -> String {
    match parse(text, Path::new("zoo.cfg")) {
        Ok((c, _)) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = "dataDir=/var/zk\nclientPort=2181\n";

#[test]
fn embedded_default_is_standalone_on_localhost() {
    let c = Config::default();
    assert_eq!(c.client_port, 2181);
    assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.data_dir, PathBuf::from("./corral-data"));
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (4000, 40000)
    );
    assert!(c.four_letter_whitelist.allows("srvr"));
    assert!(!c.four_letter_whitelist.allows("stat"));
    assert!(!c.is_distributed());
    // `corral serve` with no file: loopback only, so the read-only words doctor needs are on;
    // the ones that change state or dump the tree stay off.
    let e = Config::embedded();
    for w in ["srvr", "mntr", "conf", "cons", "obit", "ruok"] {
        assert!(e.four_letter_whitelist.allows(w), "{w}");
    }
    for w in ["crst", "srst", "stmk", "dump", "wchp"] {
        assert!(!e.four_letter_whitelist.allows(w), "{w}");
    }
    assert_eq!(e.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn kazoo_harness_config_parses_with_only_warnings() {
    let (c, warnings) = parse_ok(KAZOO);
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/tmpXXXX/data"));
    assert_eq!(c.client_port, 20000);
    assert_eq!(c.max_client_cnxns, 0);
    assert_eq!(c.admin_server_port, 20003);
    assert!(c.reconfig_enabled);
    assert!(c.four_letter_whitelist.is_all());
    assert!(c.four_letter_whitelist.allows("mntr"));
    assert_eq!(c.servers.len(), 1);
    assert_eq!(c.server_id, Some(1));
    assert!(
        !c.is_distributed(),
        "one voter with standaloneEnabled is standalone"
    );
    // clientPort given explicitly: address stays ZooKeeper's all-interfaces default.
    assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("serverCnxnFactory") && w.contains("not used by corral")),
        "no warning for serverCnxnFactory: {warnings:?}"
    );
    // TLS and SASL keys are not warnings: start-up refuses them unless allowed.
    let keys: Vec<&str> = c
        .unenforced_security
        .iter()
        .map(|u| u.key.as_str())
        .collect();
    for key in [
        "authProvider.1",
        "secureClientPort",
        "ssl.keyStore.location",
        "ssl.trustStore.password",
    ] {
        assert!(keys.contains(&key), "{key} not flagged: {keys:?}");
    }
    let refusal = c.check_security().expect_err("TLS and SASL keys refused");
    let text = refusal.to_string();
    assert!(
        text.contains("authProvider.1") && text.contains("SASL"),
        "{text}"
    );
    assert!(text.contains("--allow-unenforced-security"), "{text}");
    let allowed = Config {
        allow_unenforced_security: true,
        ..c.clone()
    };
    let warned = allowed.check_security().expect("allowed");
    assert_eq!(warned.len(), keys.len());
    assert!(warned.iter().all(|w| w.contains("WITHOUT")), "{warned:?}");
    let (by_key, _) = parse_ok(&format!("{KAZOO}corral.allowUnenforcedSecurity=true\n"));
    assert!(by_key.check_security().is_ok());
}

#[test]
fn security_keys_that_ask_for_nothing_more_are_accepted() {
    let (c, _) = parse_ok(
        "dataDir=/d\nclientPort=2181\nauthProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider\n\
         sslQuorum=false\nportUnification=false\nenforce.auth.enabled=false\n",
    );
    assert_eq!(c.unenforced_security, vec![]);
    assert!(c.check_security().is_ok());
    for (line, key) in [
        ("requireClientAuthScheme=sasl", "requireClientAuthScheme"),
        ("enforce.auth.enabled=true", "enforce.auth.enabled"),
        ("sslQuorum=true", "sslQuorum"),
        ("portUnification=true", "portUnification"),
        ("quorum.auth.enableSasl=true", "quorum.auth.enableSasl"),
        (
            "kerberos.removeHostFromPrincipal=true",
            "kerberos.removeHostFromPrincipal",
        ),
        ("secureClientPortAddress=0.0.0.0", "secureClientPortAddress"),
    ] {
        let (c, _) = parse_ok(&format!("dataDir=/d\nclientPort=2181\n{line}\n"));
        let e = c.check_security().expect_err(line).to_string();
        assert!(e.contains(key), "{line}: {e}");
    }
}

#[test]
fn server_line_parts() {
    let (c, _) = parse_ok(KAZOO);
    let s = &c.servers[0];
    assert_eq!(
        s,
        &ServerEntry {
            id: 1,
            host: "localhost".into(),
            quorum_port: 20001,
            election_port: 20002,
            role: ServerRole::Participant,
            client_host: Some("localhost".into()),
            client_port: Some(20000),
        }
    );
    let (c, _) = parse_ok(
        "dataDir=/d\nclientPort=1\nserver.3=[::1]:2890:3890:Observer;2183\nserver.1=a:1:2\nserver.2=b:3:4\n",
    );
    assert_eq!(
        c.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(c.servers[2].host, "::1");
    assert_eq!(c.servers[2].role, ServerRole::Observer);
    assert_eq!(
        (c.servers[2].client_host.clone(), c.servers[2].client_port),
        (None, Some(2183))
    );
    assert!(c.is_distributed());
}

#[test]
fn client_port_from_server_line_suffix() {
    let (c, _) =
        parse_ok("tickTime=2000\ndataDir=/d\nserver.1=localhost:20001:20002;127.0.0.1:20010\n");
    assert_eq!(c.client_port, 20010);
    assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (c, _) = parse_ok("dataDir=/d\nserver.1=localhost:20001:20002;20010\n");
    assert_eq!(c.client_port, 20010);
    assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
}

#[test]
fn explicit_client_port_wins_over_server_line_with_warning() {
    let (c, w) = parse_ok("dataDir=/d\nclientPort=20000\nserver.1=localhost:1:2;20010\n");
    assert_eq!(c.client_port, 20000);
    assert!(w.iter().any(|w| w.contains("differs")), "{w:?}");
}

#[test]
fn file_defaults_follow_zookeeper() {
    let (c, w) = parse_ok(BASE);
    assert_eq!(c.tick_time_ms, 3000);
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (6000, 60000)
    );
    assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!(c.snap_count, 100_000);
    assert!(c.force_sync);
    assert_eq!(c.jute_max_buffer, 0xfffff);
    assert!(w.iter().any(|w| w.contains("tickTime")));
    assert_eq!(c.config_path, Some(PathBuf::from("zoo.cfg")));
}

#[test]
fn session_timeouts_derive_from_tick_and_minus_one_means_default() {
    let (c, _) = parse_ok(
        "tickTime=+100\ndataDir=/d\nclientPort=1\nminSessionTimeout=-1\nmaxSessionTimeout=-1\n",
    );
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (200, 2000)
    );
    let (c, _) = parse_ok("tickTime=2000\ndataDir=/d\nclientPort=1\nmaxSessionTimeout=100000\n");
    assert_eq!(
        (c.min_session_timeout_ms, c.max_session_timeout_ms),
        (4000, 100000)
    );
}

#[test]
fn negotiate_clamps_into_range() {
    let c = Config::default();
    assert_eq!(c.negotiate_timeout(100), 4000);
    assert_eq!(c.negotiate_timeout(10_000), 10_000);
    assert_eq!(c.negotiate_timeout(1_000_000), 40_000);
    assert_eq!(c.negotiate_timeout(-5), 4000);
}

#[test]
fn properties_syntax_like_java() {
    let text = "# comment\n  ! also a comment\n\ndataDir /var/zk\nclientPort: 2181\n  tickTime  =  1000  \n\
                4lw.commands.whitelist=ruok, \\\n   stat\n";
    let (c, _) = parse_ok(text);
    assert_eq!(c.data_dir, PathBuf::from("/var/zk"));
    assert_eq!(c.client_port, 2181);
    assert_eq!(c.tick_time_ms, 1000);
    assert!(c.four_letter_whitelist.allows("stat"));
    assert!(c.four_letter_whitelist.allows("ruok"));
    assert!(!c.four_letter_whitelist.allows("mntr"));
    assert_eq!(unescape(r"a\tb\u0041\\c\:d"), "a\tbA\\c:d");
}

#[test]
fn last_repeated_key_wins() {
    let (c, _) = parse_ok(
        "dataDir=/d\nclientPort=1\n4lw.commands.whitelist=*\n4lw.commands.whitelist=srvr,ruok\n",
    );
    assert!(!c.four_letter_whitelist.is_all());
    assert!(c.four_letter_whitelist.allows("ruok"));
}

#[test]
fn whitelist_parsing() {
    let (w, unknown) = FourLetterWhitelist::parse("stat ruok,  mntr,bogus");
    assert!(w.allows("stat") && w.allows("ruok") && w.allows("mntr"));
    assert!(w.allows("srvr"), "srvr is always allowed");
    assert!(!w.allows("dump"));
    assert_eq!(unknown, vec!["bogus".to_string()]);
    let (w, _) = FourLetterWhitelist::parse("");
    assert_eq!(w, FourLetterWhitelist::default());
    let (w, _) = FourLetterWhitelist::parse("ruok, *");
    assert!(w.allows("telnet close") && w.is_all());
    let (_, warnings) = parse_ok("dataDir=/d\nclientPort=1\n4lw.commands.whitelist=ruok,xyzw\n");
    assert!(warnings.iter().any(|w| w.contains("xyzw")), "{warnings:?}");
}

#[test]
fn keys_passed_through_as_zookeeper_system_properties() {
    let text =
        "dataDir=/d\nclientPort=1\nextendedTypesEnabled=true\nforceSync=no\nsnapCount=5000\n\
                DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n\
                admin.enableServer=false\nadmin.serverAddress=127.0.0.1\njute.maxbuffer=0x200000\n\
                fsync.warningthresholdms=250\nsnapshot.maxWriteMBps=0\nenforceQuota=true\n";
    let (c, w) = parse_ok(text);
    assert!(c.enforce_quota);
    assert_eq!(c.fsync_warning_threshold_ms, 250);
    assert_eq!(c.snapshot_max_write_mbps, 0);
    assert_eq!(
        parse_ok("dataDir=/d\nclientPort=1\n")
            .0
            .snapshot_max_write_mbps,
        100
    );
    assert_eq!(
        parse_ok("dataDir=/d\nclientPort=1\n")
            .0
            .fsync_warning_threshold_ms,
        1000
    );
    assert!(c.extended_types_enabled);
    assert!(!c.force_sync);
    assert_eq!(c.snap_count, 5000);
    assert_eq!(
        c.super_digest.as_deref(),
        Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")
    );
    assert!(!c.admin_enable_server);
    assert_eq!(c.admin_server_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.jute_max_buffer, 0x200000);
    assert!(w.iter().any(|w| w.contains("jute.maxbuffer")), "{w:?}");
}

#[test]
fn unknown_keys_warn() {
    let (_, w) = parse_ok("dataDir=/d\nclientPort=1\nfrobnicate=3\ninitLimit=10\n");
    assert!(
        w.iter()
            .any(|w| w.contains("ignoring unknown key frobnicate") && w.contains("zoo.cfg:3")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("initLimit") && w.contains("not used by corral")),
        "{w:?}"
    );
}

#[test]
fn relative_data_dir_stays_relative_and_warns() {
    let (c, w) = parse_ok("dataDir=data\nclientPort=1\n");
    assert_eq!(c.data_dir, PathBuf::from("data"));
    assert!(w.iter().any(|w| w.contains("relative")));
    let (_, w) = parse_ok("dataDir=./data\nclientPort=1\n");
    assert!(!w.iter().any(|w| w.contains("relative")));
}

#[test]
fn snapshot_size_factor_defaults_like_zookeeper_and_can_be_set() {
    let (c, _) = parse_ok(BASE);
    assert_eq!(c.snapshot_size_factor, 0.33);
    let (c, w) = parse_ok(&format!("{BASE}snapshotSizeFactor=0.5\n"));
    assert_eq!(c.snapshot_size_factor, 0.5);
    assert!(!w.iter().any(|w| w.contains("snapshotSizeFactor")), "{w:?}");
    assert_eq!(c.obituaries_kept, 1000);
    let (c, _) = parse_ok(&format!("{BASE}corral.obituaries=0\n"));
    assert_eq!(c.obituaries_kept, 0);
    // A negative factor is ZooKeeper's "never catch up from the log"; it is kept.
    let (c, _) = parse_ok(&format!("{BASE}snapshotSizeFactor=-1\n"));
    assert_eq!(c.snapshot_size_factor, -1.0);
}

#[test]
fn snap_retain_below_three_is_raised() {
    let (c, w) = parse_ok(
        "dataDir=/d\nclientPort=1\nautopurge.snapRetainCount=1\nautopurge.purgeInterval=24\n",
    );
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(c.autopurge_purge_interval_hours, 24);
    assert!(w.iter().any(|w| w.contains("autopurge.snapRetainCount")));
}

/// Every bad value names its key and the value, and points at the line.
#[test]
fn bad_values_name_key_and_value() {
    let cases: &[(&str, &str, &str)] = &[
        ("tickTime=abc", "tickTime", "\"abc\""),
        ("tickTime=0", "tickTime", "\"0\""),
        ("tickTime=-5", "tickTime", "\"-5\""),
        ("clientPort=70000", "clientPort", "70000"),
        ("clientPort=-1", "clientPort", "-1"),
        ("clientPort=", "clientPort", "\"\""),
        ("maxClientCnxns=-3", "maxClientCnxns", "-3"),
        ("minSessionTimeout=-7", "minSessionTimeout", "-7"),
        ("maxSessionTimeout=1.5", "maxSessionTimeout", "1.5"),
        (
            "autopurge.purgeInterval=-1",
            "autopurge.purgeInterval",
            "-1",
        ),
        (
            "autopurge.snapRetainCount=x",
            "autopurge.snapRetainCount",
            "x",
        ),
        ("reconfigEnabled=yes", "reconfigEnabled", "yes"),
        ("standaloneEnabled=1", "standaloneEnabled", "1"),
        (
            "extendedTypesEnabled=maybe",
            "extendedTypesEnabled",
            "maybe",
        ),
        ("forceSync=sometimes", "forceSync", "sometimes"),
        ("jute.maxbuffer=lots", "jute.maxbuffer", "lots"),
        ("jute.maxbuffer=0", "jute.maxbuffer", "0"),
        ("snapCount=-2", "snapCount", "-2"),
        ("snapshotSizeFactor=big", "snapshotSizeFactor", "big"),
        ("corral.obituaries=-1", "corral.obituaries", "-1"),
        ("corral.obituaries=many", "corral.obituaries", "many"),
        ("snapshotSizeFactor=NaN", "snapshotSizeFactor", "NaN"),
        (
            "fsync.warningthresholdms=-1",
            "fsync.warningthresholdms",
            "-1",
        ),
        ("admin.serverPort=99999", "admin.serverPort", "99999"),
        ("snapshot.maxWriteMBps=-5", "snapshot.maxWriteMBps", "-5"),
        (
            "snapshot.maxWriteMBps=fast",
            "snapshot.maxWriteMBps",
            "fast",
        ),
        ("admin.enableServer=on", "admin.enableServer", "on"),
        (
            "DigestAuthenticationProvider.superDigest=nocolon",
            "DigestAuthenticationProvider.superDigest",
            "nocolon",
        ),
        ("clientPortAddress=[]", "clientPortAddress", "[]"),
        ("server.1=localhost:2888", "server.1", "localhost:2888"),
        ("server.1=localhost:2888:3888:boss", "server.1", "boss"),
        ("server.x=localhost:2888:3888", "server.x", "\"x\""),
        ("server.1=localhost:2888:99999", "server.1", "99999"),
        ("server.1=a:1:2|b:1:2", "server.1", "multiAddress"),
        ("dataDir=", "dataDir", "empty"),
    ];
    for (line, key, value) in cases {
        let e = parse_err(&format!("{BASE}{line}\n"));
        assert!(e.starts_with(&format!("zoo.cfg:3: {key}: ")), "{line}: {e}");
        assert!(e.contains(value), "{line}: {e}");
    }
}

#[test]
fn min_above_max_is_an_error_naming_the_key() {
    let e = parse_err("dataDir=/d\nclientPort=1\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n");
    assert!(
        e.contains("minSessionTimeout") && e.contains("5000") && e.contains("4000"),
        "{e}"
    );
    // Also when the maximum comes from the tick default.
    let e = parse_err("dataDir=/d\nclientPort=1\ntickTime=100\nminSessionTimeout=5000\n");
    assert!(e.contains("minSessionTimeout"), "{e}");
}

#[test]
fn required_keys() {
    let e = parse_err("clientPort=2181\n");
    assert!(e.contains("dataDir") && e.contains("not set"), "{e}");
    let e = parse_err("dataDir=/d\n");
    assert!(e.contains("clientPort") && e.contains("not set"), "{e}");
}

/// The `zookeeper.*` properties corral reads, each set the one way corral offers: a zoo.cfg key,
/// which ZooKeeper turns into that property.
#[test]
fn system_properties() {
    let set = |line: &str| parse(&format!("{BASE}{line}\n"), Path::new("zoo.cfg"));
    let (c, _) = parse_ok(&format!("{BASE}extendedTypesEnabled=true\n"));
    assert!(c.extended_types_enabled);
    assert!(!c.enforce_quota);
    let (c, _) = parse_ok(&format!("{BASE}enforceQuota=true\n"));
    assert!(c.enforce_quota);
    assert!(set("enforceQuota=maybe").is_err());
    let (c, _) = parse_ok(&format!(
        "{BASE}DigestAuthenticationProvider.superDigest=super:abc=\n"
    ));
    assert_eq!(c.super_digest.as_deref(), Some("super:abc="));
    let (c, _) = parse_ok(&format!("{BASE}jute.maxbuffer=4194304\n"));
    assert_eq!(c.jute_max_buffer, 4_194_304);
    let (c, _) = parse_ok(&format!("{BASE}4lw.commands.whitelist=*\n"));
    assert!(c.four_letter_whitelist.is_all());
    assert!(!parse_ok(BASE).0.read_only_mode);
    let (c, w) = parse_ok(&format!("{BASE}readonlymode.enabled=true\n"));
    assert!(c.read_only_mode, "{w:?}");
    assert!(!w.iter().any(|w| w.contains("readonly")), "{w:?}");
    assert!(set("readonlymode.enabled=yes").is_err());
    let (_, w) = parse_ok(&format!("{BASE}nonsense=1\n"));
    assert!(w.iter().any(|w| w.contains("nonsense")), "{w:?}");
    match set("jute.maxbuffer=big") {
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("jute.maxbuffer") && e.contains("big"), "{e}");
        }
        Ok(_) => panic!("accepted a bad jute.maxbuffer"),
    }
    assert!(set("extendedTypesEnabled=yes").is_err());
}

#[test]
fn java_integer_decoding() {
    assert_eq!(java_decode_int("0x10"), Ok(16));
    assert_eq!(java_decode_int("#10"), Ok(16));
    assert_eq!(java_decode_int("-12"), Ok(-12));
    assert!(java_decode_int("--1").is_err());
    assert!(java_decode_int("0x-1").is_err());
    assert!(java_decode_int("99999999999").is_err());
}

#[test]
fn conf_lines_in_zookeeper_order() {
    let (c, _) = parse_ok("tickTime=2000\ndataDir=/tmp/zk\nclientPort=38081\nmaxClientCnxns=0\n");
    let lines = c.conf_lines(10, 20);
    let keys: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "clientPort",
            "secureClientPort",
            "dataDir",
            "dataDirSize",
            "dataLogDir",
            "dataLogSize",
            "tickTime",
            "maxClientCnxns",
            "minSessionTimeout",
            "maxSessionTimeout",
            "clientPortListenBacklog",
            "serverId"
        ]
    );
    assert_eq!(lines[4].1, "/tmp/zk");
    assert_eq!(lines[8].1, "4000");
    assert_eq!(lines[11].1, "0");
}

#[test]
fn load_reads_file_and_myid_for_an_ensemble() {
    let dir = std::env::temp_dir().join(format!("corral-config-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let cfg = dir.join("zoo.cfg");
    let text = format!(
        "dataDir={}\nserver.1=127.0.0.1:2888:3888;2181\nserver.2=127.0.0.1:2889:3889;127.0.0.1:2182\n",
        dir.display()
    );
    assert!(std::fs::write(&cfg, text).is_ok());
    // Two members: an ensemble, whose member id comes from myid.
    match load(&cfg) {
        Err(ConfigError::Io { path, .. }) => assert!(path.ends_with("myid")),
        other => panic!("expected the missing myid to be reported, got {other:?}"),
    }
    assert!(std::fs::write(dir.join("myid"), "3\n").is_ok());
    match load(&cfg) {
        Err(e @ ConfigError::Invalid { .. }) => {
            assert!(e.to_string().contains("no server.3 line"), "{e}")
        }
        other => panic!("expected myid 3 to be refused, got {other:?}"),
    }
    assert!(std::fs::write(dir.join("myid"), "1\n").is_ok());
    match load(&cfg) {
        Ok((c, _)) => {
            assert!(c.is_distributed());
            assert_eq!((c.server_id, c.client_port), (Some(1), 2181));
            assert_eq!(c.servers.len(), 2);
        }
        Err(e) => panic!("{e}"),
    }
    assert!(std::fs::remove_file(dir.join("myid")).is_ok());
    // One member with standaloneEnabled=false: its id comes from myid.
    let text = format!(
        "dataDir={}\nstandaloneEnabled=false\nserver.2=127.0.0.1:2889:3889;127.0.0.1:2182\n",
        dir.display()
    );
    assert!(std::fs::write(&cfg, text).is_ok());
    match load(&cfg) {
        Err(ConfigError::Io { path, .. }) => assert!(path.ends_with("myid")),
        other => panic!("expected the missing myid to be reported, got {other:?}"),
    }
    assert!(std::fs::write(dir.join("myid"), "2\n").is_ok());
    match load(&cfg) {
        Ok((c, _)) => {
            assert_eq!(c.server_id, Some(2));
            assert_eq!(c.client_port, 2182);
            assert_eq!(c.client_port_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Err(e) => panic!("{e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    match load(Path::new("/nonexistent/zoo.cfg")) {
        Err(e @ ConfigError::Io { .. }) => {
            assert!(e.to_string().contains("/nonexistent/zoo.cfg"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn raft_timing_follows_the_tick_and_can_be_set() {
    let (c, _) = parse(
        "dataDir=/tmp/x\nclientPort=2181\ntickTime=2000\n",
        Path::new("zoo.cfg"),
    )
    .unwrap();
    assert_eq!(c.raft_timing(), (250, 1000, 2000));
    let (c, _) = parse(
        "dataDir=/tmp/x\nclientPort=2181\ntickTime=2000\ncorral.raft.heartbeatMs=20\ncorral.raft.electionTimeoutMs=400\n",
        Path::new("zoo.cfg"),
    )
    .unwrap();
    assert_eq!(c.raft_timing(), (20, 400, 800));
    // Never beyond syncLimit ticks; the heartbeat stays under half the election timeout.
    let (c, _) = parse(
        "dataDir=/tmp/x\nclientPort=2181\ntickTime=100\nsyncLimit=2\ncorral.raft.electionTimeoutMs=5000\ncorral.raft.heartbeatMs=900\n",
        Path::new("zoo.cfg"),
    )
    .unwrap();
    assert_eq!(c.raft_timing(), (100, 200, 400));
    for bad in [
        "corral.raft.heartbeatMs=0",
        "syncLimit=-1",
        "corral.raft.electionTimeoutMs=x",
    ] {
        let text = format!("dataDir=/tmp/x\nclientPort=2181\n{bad}\n");
        match parse(&text, Path::new("zoo.cfg")) {
            Err(ConfigError::BadValue { key, .. }) => assert!(bad.starts_with(&key), "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}
