//! `/proc/<pid>/cgroup` (cgroup v1, v2 and hybrid) and the container ID and Kubernetes pod UID in its paths.
//!
//! Each line is `hierarchy-ID:controller-list:cgroup-path`: cgroup v2 has one line `0::/path`; v1 has one
//! line per hierarchy (`4:memory:/docker/<id>`); hybrid systems have both. The path may contain `:`.
//!
//! Container runtimes name a container's cgroup after its 64-hex-digit ID, and the kubelet names a pod's
//! cgroup after the pod UID:
//!
//! | Runtime, driver | Path (v2 shown; v1 uses the same path under each controller) |
//! |---|---|
//! | Docker, cgroupfs | `/docker/<id>` |
//! | Docker, systemd | `/system.slice/docker-<id>.scope` |
//! | Podman | `/machine.slice/libpod-<id>.scope` (rootless: under `user@<uid>.service`) |
//! | containerd (Kubernetes), systemd | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid with _>.slice/cri-containerd-<id>.scope` |
//! | containerd or CRI-O, cgroupfs | `/kubepods/burstable/pod<uid>/<id>` |
//! | CRI-O, systemd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/crio-<id>.scope` |
//!
//! The extraction is the one of SPIRE's `pkg/common/containerinfo/extract.go` (v1.15.3), so both
//! attestors agree on the same process: walk each path backwards to the last segment holding a 64-hex
//! *word* (bounded by non-word characters, as regexp `\b[[:xdigit:]]{64}\b`), then further back to the first
//! `pod<UUID>` (dashes or systemd's underscores; reported with dashes). A line with a pod UID wins over a
//! line without one (kind on Docker shows the outer container's ID on the v2 line). Two different
//! containers or pods among the lines are an error rather than a guess.
//!
//! Unlike SPIRE, this does not fall back to `/proc/<pid>/mountinfo`: that file reflects the workload's own
//! mount namespace, which the workload may have crafted, while `/proc/<pid>/cgroup` is written by the
//! kernel.
//!
//! What the kernel's file does not prove: a process allowed to create cgroups (a delegated subtree such as
//! systemd's `user@<uid>.service`, or root) can name one `docker-<64 hex>.scope` and move itself there.
//! Entries that rely on `container_id` should also name the user (`uid`) or the full `cgroup` path.

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    /// Hierarchy ID (`0` for cgroup v2).
    pub hierarchy: u32,
    /// Comma-separated controllers (empty for cgroup v2; `name=systemd` for the systemd v1 hierarchy).
    pub controllers: String,
    /// The cgroup path, relative to the reader's cgroup namespace root.
    pub path: String,
}

/// Why the cgroup file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// The file is not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
    /// A line is not `id:controllers:path`.
    #[error("line {line}: {got:?} is not `hierarchy-id:controllers:path`")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line.
        got: String,
    },
    /// Two lines name different containers or pods.
    #[error("conflicting {what}: {first} and {second}")]
    Conflict {
        /// `container ID` or `pod UID`.
        what: &'static str,
        /// First value.
        first: String,
        /// Disagreeing value.
        second: String,
    },
}

/// Parses `/proc/<pid>/cgroup`; blank lines are skipped.
///
/// # Errors
///
/// [`CgroupError`] for text that is not UTF-8 or a line without two `:` and a numeric hierarchy ID.
pub fn parse(text: &[u8]) -> Result<Vec<CgroupLine>, CgroupError> {
    let text = std::str::from_utf8(text).map_err(|_| CgroupError::NotUtf8)?;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || CgroupError::BadLine {
            line: i.saturating_add(1),
            got: line.to_owned(),
        };
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        lines.push(CgroupLine {
            hierarchy: id.parse().map_err(|_| bad())?,
            controllers: controllers.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(lines)
}

/// The distinct cgroup paths, in file order (cgroup v2: one; v1: usually one shared by all controllers).
#[must_use]
pub fn distinct_paths(lines: &[CgroupLine]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for l in lines {
        if !out.contains(&l.path.as_str()) {
            out.push(&l.path);
        }
    }
    out
}

/// What the cgroup paths say about a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The container ID (64 lower- or upper-case hex digits, as written in the path).
    pub container_id: Option<String>,
    /// The Kubernetes pod UID, with dashes; only looked for once a container ID was found.
    pub pod_uid: Option<String>,
}

/// The container and pod of a process, from all of its cgroup lines (SPIRE's rules, see the module doc).
///
/// # Errors
///
/// [`CgroupError::Conflict`] if two lines name different pods, or different containers.
pub fn container_info(lines: &[CgroupLine]) -> Result<ContainerInfo, CgroupError> {
    let mut found = ContainerInfo::default();
    for line in lines {
        let (pod, cid) = extract(&line.path);
        match (&found.pod_uid, &pod) {
            // A line without a pod UID cannot override one with.
            (Some(_), None) => continue,
            (None, Some(_)) => {
                found.pod_uid.clone_from(&pod);
                found.container_id.clone_from(&cid);
            }
            _ => {}
        }
        if let (Some(first), Some(second)) = (&found.pod_uid, &pod) {
            if first != second {
                return Err(CgroupError::Conflict {
                    what: "pod UID",
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
        if let Some(first) = &found.container_id {
            if cid.as_ref() != Some(first) {
                return Err(CgroupError::Conflict {
                    what: "container ID",
                    first: first.clone(),
                    second: cid.unwrap_or_else(|| "none".to_owned()),
                });
            }
        }
        found.container_id = cid;
        found.pod_uid = pod;
    }
    Ok(found)
}

/// Pod UID and container ID of one path: `(None, None)` when no segment holds a container ID.
fn extract(path: &str) -> (Option<String>, Option<String>) {
    let mut segments = path.rsplit('/');
    let mut container = None;
    let mut rest_of_segment = "";
    for seg in segments.by_ref() {
        if let Some(start) = find_hex64_word(seg) {
            container = seg.get(start..start.saturating_add(64)).map(str::to_owned);
            rest_of_segment = seg.get(..start).unwrap_or_default();
            break;
        }
    }
    if container.is_none() {
        return (None, None);
    }
    // The pod UID may share the container's segment (`…pod<uid>:<id>`) or come before it.
    let pod = std::iter::once(rest_of_segment)
        .filter(|s| !s.is_empty())
        .chain(segments)
        .find_map(find_pod_uid);
    (pod, container)
}

/// A "word" character of regexp `\b`: ASCII letter, digit or underscore.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Start of the first run of word characters that is exactly 64 hex digits.
fn find_hex64_word(seg: &str) -> Option<usize> {
    let bytes = seg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes.get(i).copied().is_some_and(is_word) {
            i = i.saturating_add(1);
            continue;
        }
        let start = i;
        while bytes.get(i).copied().is_some_and(is_word) {
            i = i.saturating_add(1);
        }
        let word = bytes.get(start..i).unwrap_or_default();
        if word.len() == 64 && word.iter().all(u8::is_ascii_hexdigit) {
            return Some(start);
        }
    }
    None
}

/// The first `pod<UUID>` in `seg` that starts and ends at a word boundary, with `_` turned into `-`.
fn find_pod_uid(seg: &str) -> Option<String> {
    const UUID_LEN: usize = 36;
    let bytes = seg.as_bytes();
    let mut from = 0;
    while let Some(pos) = seg.get(from..).and_then(|s| s.find("pod")) {
        let at = from.saturating_add(pos);
        from = at.saturating_add(1);
        let boundary_before =
            at == 0 || bytes.get(at.wrapping_sub(1)).is_some_and(|&b| !is_word(b));
        let uuid_start = at.saturating_add(3);
        let uuid_end = uuid_start.saturating_add(UUID_LEN);
        let boundary_after = bytes.get(uuid_end).is_none_or(|&b| !is_word(b));
        let Some(uuid) = seg.get(uuid_start..uuid_end) else {
            continue;
        };
        if boundary_before && boundary_after && is_uuid(uuid) {
            return Some(uuid.replace('_', "-"));
        }
    }
    None
}

/// 8-4-4-4-12 hex digits separated by `-` or `_`.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-' || b == b'_',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const CID: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";
    const CID2: &str = "93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26";
    const POD: &str = "a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80";
    const POD_US: &str = "a2830d0d_b0f0_4ff0_81b5_0ee4e299cf80";

    fn info(text: &str) -> Result<ContainerInfo, CgroupError> {
        container_info(&parse(text.as_bytes()).unwrap())
    }

    fn found(cid: &str, pod: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            container_id: Some(cid.to_owned()),
            pod_uid: pod.map(str::to_owned),
        }
    }

    #[test]
    fn parses_v1_v2_and_hybrid() {
        let v2 = parse(b"0::/user.slice/user-1000.slice/session-3.scope\n").unwrap();
        assert_eq!(
            v2,
            vec![CgroupLine {
                hierarchy: 0,
                controllers: String::new(),
                path: "/user.slice/user-1000.slice/session-3.scope".into()
            }]
        );
        let hybrid = "12:pids:/user.slice/user-1000.slice/session-3.scope\n\
                      11:memory:/user.slice/user-1000.slice/session-3.scope\n\
                      1:name=systemd:/user.slice/user-1000.slice/session-3.scope\n\
                      0::/user.slice/user-1000.slice/session-3.scope\n";
        let lines = parse(hybrid.as_bytes()).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2].controllers, "name=systemd");
        assert_eq!(
            distinct_paths(&lines),
            vec!["/user.slice/user-1000.slice/session-3.scope"]
        );
        // Paths may contain colons.
        let colon = parse(b"0::/a:b:c\n").unwrap();
        assert_eq!(colon[0].path, "/a:b:c");
        assert_eq!(info("0::/init.scope\n").unwrap(), ContainerInfo::default());
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse(b"0::/\nnot a cgroup line\n"),
            Err(CgroupError::BadLine {
                line: 2,
                got: "not a cgroup line".into()
            })
        );
        assert!(matches!(
            parse(b"x::/a"),
            Err(CgroupError::BadLine { line: 1, .. })
        ));
        assert_eq!(parse(b"0::/\xff"), Err(CgroupError::NotUtf8));
    }

    #[test]
    fn docker_cgroupfs_v1_and_systemd_v2() {
        let v1 = format!(
            "12:perf_event:/docker/{CID}\n11:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n"
        );
        assert_eq!(info(&v1).unwrap(), found(CID, None));
        let v2 = format!("0::/system.slice/docker-{CID}.scope\n");
        assert_eq!(info(&v2).unwrap(), found(CID, None));
        let podman = format!("0::/machine.slice/libpod-{CID}.scope/container\n");
        assert_eq!(info(&podman).unwrap(), found(CID, None));
    }

    #[test]
    fn kubernetes_containerd_crio_both_drivers() {
        let containerd_systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_US}.slice/cri-containerd-{CID}.scope\n"
        );
        assert_eq!(info(&containerd_systemd).unwrap(), found(CID, Some(POD)));
        let crio_systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_US}.slice/crio-{CID}.scope\n"
        );
        assert_eq!(info(&crio_systemd).unwrap(), found(CID, Some(POD)));
        let cgroupfs_v1 = format!(
            "11:cpu,cpuacct:/kubepods/burstable/pod{POD}/{CID}\n1:name=systemd:/kubepods/burstable/pod{POD}/{CID}\n"
        );
        assert_eq!(info(&cgroupfs_v1).unwrap(), found(CID, Some(POD)));
        // Guaranteed QoS pods sit right under kubepods.
        let guaranteed = format!("0::/kubepods/pod{POD}/{CID}\n");
        assert_eq!(info(&guaranteed).unwrap(), found(CID, Some(POD)));
        // Some runtimes join pod and container with a colon in one segment.
        let colon = format!("0::/kubepods/pod{POD}:cri-containerd:{CID}\n");
        assert_eq!(info(&colon).unwrap(), found(CID, Some(POD)));
    }

    #[test]
    fn kind_on_docker_prefers_the_line_with_a_pod() {
        // SPIRE's example: the v1 line is the inner pod, the v2 line the outer Docker container.
        let text = format!(
            "1:cpuset:/docker/{CID2}/kubepods/besteffort/pod{POD}/{CID}\n0::/docker/{CID2}/system.slice/containerd.service\n"
        );
        assert_eq!(info(&text).unwrap(), found(CID, Some(POD)));
        // Order does not matter.
        let swapped = format!(
            "0::/docker/{CID2}/system.slice/containerd.service\n1:cpuset:/docker/{CID2}/kubepods/besteffort/pod{POD}/{CID}\n"
        );
        assert_eq!(info(&swapped).unwrap(), found(CID, Some(POD)));
    }

    #[test]
    fn conflicts_are_errors() {
        let two_containers = format!("4:memory:/docker/{CID}\n3:cpu:/docker/{CID2}\n");
        assert_eq!(
            info(&two_containers),
            Err(CgroupError::Conflict {
                what: "container ID",
                first: CID.into(),
                second: CID2.into()
            })
        );
        let other_pod = "b2830d0d-b0f0-4ff0-81b5-0ee4e299cf80";
        let two_pods =
            format!("4:memory:/kubepods/pod{POD}/{CID}\n3:cpu:/kubepods/pod{other_pod}/{CID}\n");
        assert!(matches!(
            info(&two_pods),
            Err(CgroupError::Conflict {
                what: "pod UID",
                ..
            })
        ));
        // A container on one line and none on another is also a conflict (SPIRE agrees).
        let half = format!("4:memory:/docker/{CID}\n0::/\n");
        assert!(matches!(
            info(&half),
            Err(CgroupError::Conflict { what: "container ID", second, .. }) if second == "none"
        ));
    }

    #[test]
    fn near_misses_are_not_ids() {
        // 63 and 65 hex digits, hex glued to a word character, a non-hex letter.
        let short = &CID[..63];
        let long = format!("{CID}a");
        for path in [
            format!("/docker/{short}"),
            format!("/docker/{long}"),
            format!("/docker/x{CID}"),
            format!("/docker/{CID}_x"),
            format!("/docker/{}g", &CID[..63]),
        ] {
            assert_eq!(
                info(&format!("0::{path}\n")).unwrap(),
                ContainerInfo::default(),
                "{path}"
            );
        }
        // A pod segment without a container is not reported.
        assert_eq!(
            info(&format!("0::/kubepods/pod{POD}\n")).unwrap(),
            ContainerInfo::default()
        );
        // `kubepods` does not start a pod UID at a word boundary; a truncated UUID is not one.
        assert_eq!(
            info(&format!("0::/xpod{POD}/{CID}\n")).unwrap(),
            found(CID, None)
        );
        assert_eq!(
            info(&format!("0::/pod{}/{CID}\n", &POD[..35])).unwrap(),
            found(CID, None)
        );
    }

    #[test]
    fn container_id_after_other_segments() {
        // The ID need not be last; segments after it are walked past.
        let text = format!("0::/system.slice/docker-{CID}.scope/init\n");
        assert_eq!(info(&text).unwrap(), found(CID, None));
    }
}
